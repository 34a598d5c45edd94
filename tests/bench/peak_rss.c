/* Runs one command and prints [exit code, peak RSS in KiB, wall seconds] of that command alone, as
 * JSON, for the benchmarks. It exists because a child's ru_maxrss on Linux starts from the RSS of the
 * process it was forked from (exec carries the old address space's high-water mark over): a command
 * forked from a Python interpreter is never reported below the interpreter's size (11 MiB here, even
 * for /bin/true). Forked from this small program, the floor is about 1 MiB.
 * Usage: peak_rss CAP_BYTES CMD [ARGS...]   (CAP_BYTES > 0 caps the command's address space) */
#define _GNU_SOURCE
#include <stdio.h>
#include <stdlib.h>
#include <sys/resource.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

int main(int argc, char** argv) {
  if (argc < 3) {
    fprintf(stderr, "usage: peak_rss CAP_BYTES CMD [ARGS...]\n");
    return 2;
  }
  const long long cap = atoll(argv[1]);
  struct timespec t0, t1;
  clock_gettime(CLOCK_MONOTONIC, &t0);
  const pid_t pid = fork();
  if (pid < 0) {
    perror("peak_rss: fork");
    return 2;
  }
  if (pid == 0) {
    if (cap > 0) {
      const struct rlimit r = {(rlim_t)cap, (rlim_t)cap};
      setrlimit(RLIMIT_AS, &r);
    }
    execvp(argv[2], argv + 2);
    perror("peak_rss: exec");
    _exit(127);
  }
  int status = 0;
  struct rusage ru;
  if (wait4(pid, &status, 0, &ru) < 0) {
    perror("peak_rss: wait4");
    return 2;
  }
  clock_gettime(CLOCK_MONOTONIC, &t1);
  const int rc = WIFEXITED(status) ? WEXITSTATUS(status) : -WTERMSIG(status);
  printf("[%d, %ld, %.6f]\n", rc, ru.ru_maxrss, (double)(t1.tv_sec - t0.tv_sec) + (double)(t1.tv_nsec - t0.tv_nsec) / 1e9);
  return 0;
}
