// frugal's own thread pool behind parallel_for. OpenMP's barriers spin (libgomp's default wait
// policy), which on a small, shared machine lets an idle worker steal the core a busy one needs;
// these workers spin only briefly after a job and then sleep on a condition variable, and chunks are
// claimed from a shared counter, so the calling thread does whatever a descheduled worker has not.
#include "frugal/parallel.h"

#include <omp.h>

#include <algorithm>
#include <atomic>
#include <condition_variable>
#include <mutex>
#include <thread>
#include <vector>

#if defined(__x86_64__) || defined(__i386__)
#include <immintrin.h>
#define FRUGAL_PAUSE() _mm_pause()
#else
#define FRUGAL_PAUSE() ((void)0)
#endif

namespace frugal {

namespace {

int g_threads = 0;
thread_local bool t_in_pool_job = false;

class Pool {
 public:
  static Pool& get() {
    static Pool* p = new Pool();  // never destroyed: workers may outlive static destructors
    return *p;
  }

  // Runs fn on chunks [c * per, min(n, (c + 1) * per)) for c in [0, chunks), on up to `threads` threads.
  void run(int64_t n, int64_t per, int64_t chunks, int threads, const std::function<void(int64_t, int64_t)>& fn) {
    std::lock_guard<std::mutex> job_lock(job_mu_);  // one job at a time (callers on several threads)
    ensure_workers(threads - 1);
    fn_ = &fn;
    n_ = n;
    per_ = per;
    chunks_ = chunks;
    max_workers_ = threads - 1;
    next_.store(0);
    done_.store(0);
    joined_.store(0);
    gen_.fetch_add(1);
    open_.store(true);
    if (sleepers_.load() > 0) {
      std::lock_guard<std::mutex> l(mu_);
      cv_.notify_all();
    }
    t_in_pool_job = true;
    work();
    t_in_pool_job = false;
    // Wait for chunks other threads claimed; spin briefly, then yield the core to them.
    for (int spins = 0; done_.load() < chunks_; ++spins) {
      if (spins < 4000)
        FRUGAL_PAUSE();
      else
        std::this_thread::yield();
    }
    // Close the job and wait until no worker is still looking at its fields.
    open_.store(false);
    while (in_job_.load() > 0) std::this_thread::yield();
    fn_ = nullptr;
  }

 private:
  void work() {
    for (;;) {
      const int64_t c = next_.fetch_add(1);
      if (c >= chunks_) return;
      const int64_t b = c * per_, e = std::min(n_, b + per_);
      if (b < e) (*fn_)(b, e);
      done_.fetch_add(1);
    }
  }

  void ensure_workers(int want) {
    while (static_cast<int>(workers_.size()) < want) {
      const int id = static_cast<int>(workers_.size());
      // The generation before the job being opened: a worker started for a job must not take that
      // job's generation as already seen (it would wait for the next job and miss this one).
      workers_.emplace_back([this, id, seen = gen_.load()] { loop(id, seen); });
      workers_.back().detach();
    }
  }

  void loop(int id, uint64_t seen) {
    for (;;) {
      // Spin a little (the next node usually starts within microseconds), then sleep.
      uint64_t g = gen_.load();
      for (int spins = 0; g == seen && spins < 20000; ++spins) {
        FRUGAL_PAUSE();
        g = gen_.load();
      }
      if (g == seen) {
        std::unique_lock<std::mutex> l(mu_);
        sleepers_.fetch_add(1);
        cv_.wait(l, [&] { return gen_.load() != seen; });
        sleepers_.fetch_sub(1);
        g = gen_.load();
      }
      seen = g;
      in_job_.fetch_add(1);
      // Only join the job this generation opened, and only as one of its allowed workers.
      if (open_.load() && gen_.load() == g && id < max_workers_ && joined_.fetch_add(1) < max_workers_) {
        t_in_pool_job = true;
        work();
        t_in_pool_job = false;
      }
      in_job_.fetch_sub(1);
    }
  }

  std::mutex job_mu_;
  std::vector<std::thread> workers_;
  std::mutex mu_;
  std::condition_variable cv_;
  std::atomic<uint64_t> gen_{0};
  std::atomic<bool> open_{false};
  std::atomic<int> in_job_{0}, sleepers_{0}, joined_{0};
  std::atomic<int64_t> next_{0}, done_{0};
  const std::function<void(int64_t, int64_t)>* fn_ = nullptr;
  int64_t n_ = 0, per_ = 1, chunks_ = 0;
  int max_workers_ = 0;
};

}  // namespace

// Whether the calling thread is running a parallel_for chunk (nested calls then run inline).
bool parallel_region_active() { return t_in_pool_job; }

SerialRegion::SerialRegion() : was_(t_in_pool_job) { t_in_pool_job = true; }
SerialRegion::~SerialRegion() { t_in_pool_job = was_; }

void set_num_threads(int n) {
  g_threads = n > 0 ? n : omp_get_num_procs();
  omp_set_num_threads(g_threads);
}

int num_threads() { return g_threads > 0 ? g_threads : omp_get_max_threads(); }

void parallel_for(int64_t n, int64_t grain, const std::function<void(int64_t, int64_t)>& fn) {
  if (n <= 0) return;
  const int threads = num_threads();
  grain = std::max<int64_t>(grain, 1);
  if (threads <= 1 || n <= grain || t_in_pool_job) {
    fn(0, n);
    return;
  }
  const int64_t chunks = std::min<int64_t>(threads, (n + grain - 1) / grain);
  const int64_t per = (n + chunks - 1) / chunks;
  Pool::get().run(n, per, (n + per - 1) / per, static_cast<int>(std::min<int64_t>(threads, chunks)), fn);
}

}  // namespace frugal
