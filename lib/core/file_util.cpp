#include "frugal/file_util.h"

#include <unistd.h>

#include <array>
#include <cstring>
#include <fstream>
#include <random>
#include <sstream>
#include <vector>

namespace frugal {

namespace fs = std::filesystem;

StatusOr<std::string> read_file_bytes(const fs::path& path, const std::string& what) {
  std::error_code ec;
  const auto st = fs::status(path, ec);
  if (ec || !fs::exists(st)) return NotFound(what + " '" + path.string() + "' does not exist");
  if (fs::is_directory(st)) return InvalidModel(what + " '" + path.string() + "' is a directory, not a file");
  std::ifstream in(path, std::ios::binary | std::ios::ate);
  if (!in) return IoError(what + " '" + path.string() + "' cannot be opened for reading");
  // One sized read; files whose size is not known up front (pipes, /proc) are read in chunks.
  std::string bytes;
  const std::streamoff size = in.tellg();
  if (size > 0) {
    bytes.resize(static_cast<size_t>(size));
    in.seekg(0);
    in.read(bytes.data(), size);
    if (in.gcount() != size) return IoError(what + " '" + path.string() + "': read failed (file changed while reading?)");
  } else {
    in.clear();
    in.seekg(0);
    std::array<char, 1 << 16> buf;
    while (in.read(buf.data(), buf.size()) || in.gcount() > 0) bytes.append(buf.data(), static_cast<size_t>(in.gcount()));
  }
  if (in.bad()) return IoError(what + " '" + path.string() + "': read failed");
  return bytes;
}

AtomicFile::AtomicFile(fs::path target) : target_(std::move(target)) {
  std::random_device rd;
  std::ostringstream name;
  name << "." << target_.filename().string() << ".tmp." << ::getpid() << "." << std::hex << rd();
  temp_ = target_.parent_path() / name.str();
}

AtomicFile::~AtomicFile() {
  if (!committed_) {
    std::error_code ec;
    fs::remove(temp_, ec);
  }
}

Status AtomicFile::commit() {
  std::error_code ec;
  fs::rename(temp_, target_, ec);
  if (ec) return IoError("cannot move output into place at '" + target_.string() + "': " + ec.message());
  committed_ = true;
  return OkStatus();
}

Status write_file_atomic(const fs::path& path, const std::string& bytes) {
  AtomicFile f(path);
  {
    std::ofstream out(f.temp_path(), std::ios::binary | std::ios::trunc);
    if (!out) return IoError("cannot write '" + path.string() + "' (directory missing or not writable)");
    out.write(bytes.data(), static_cast<std::streamsize>(bytes.size()));
    out.flush();
    if (!out) return IoError("write to '" + path.string() + "' failed (disk full?)");
  }
  return f.commit();
}

bool same_file(const fs::path& a, const fs::path& b) {
  std::error_code ec;
  return fs::exists(a, ec) && fs::exists(b, ec) && fs::equivalent(a, b, ec);
}

// ---- sha256 (FIPS 180-4) ----------------------------------------------------------------------------
//
// Model hashes sit on the quantize/calibrate path (a 150 MB model), so the compression function is
// written for speed: the 64 rounds are unrolled with the eight working variables renamed instead of
// moved, the message schedule is kept as a rolling 16-word window computed as the rounds need it, and
// whole blocks are hashed straight from the caller's buffer (only a trailing partial block is copied).
// A BMI2 build of the same code (rorx: rotate without clobbering its source) is picked at run time.

namespace {

constexpr uint32_t kSha256K[64] = {
    0x428a2f98, 0x71374491, 0xb5c0fbcf, 0xe9b5dba5, 0x3956c25b, 0x59f111f1, 0x923f82a4, 0xab1c5ed5,
    0xd807aa98, 0x12835b01, 0x243185be, 0x550c7dc3, 0x72be5d74, 0x80deb1fe, 0x9bdc06a7, 0xc19bf174,
    0xe49b69c1, 0xefbe4786, 0x0fc19dc6, 0x240ca1cc, 0x2de92c6f, 0x4a7484aa, 0x5cb0a9dc, 0x76f988da,
    0x983e5152, 0xa831c66d, 0xb00327c8, 0xbf597fc7, 0xc6e00bf3, 0xd5a79147, 0x06ca6351, 0x14292967,
    0x27b70a85, 0x2e1b2138, 0x4d2c6dfc, 0x53380d13, 0x650a7354, 0x766a0abb, 0x81c2c92e, 0x92722c85,
    0xa2bfe8a1, 0xa81a664b, 0xc24b8b70, 0xc76c51a3, 0xd192e819, 0xd6990624, 0xf40e3585, 0x106aa070,
    0x19a4c116, 0x1e376c08, 0x2748774c, 0x34b0bcb5, 0x391c0cb3, 0x4ed8aa4a, 0x5b9cca4f, 0x682e6ff3,
    0x748f82ee, 0x78a5636f, 0x84c87814, 0x8cc70208, 0x90befffa, 0xa4506ceb, 0xbef9a3f7, 0xc67178f2};

inline __attribute__((always_inline)) uint32_t rotr32(uint32_t x, int n) { return (x >> n) | (x << (32 - n)); }

inline __attribute__((always_inline)) uint32_t load_be32(const uint8_t* p) {
  uint32_t v;
  std::memcpy(&v, p, 4);
  return __builtin_bswap32(v);
}

// Compresses n consecutive 64-byte blocks at p into h.
inline __attribute__((always_inline)) void sha256_blocks_impl(uint32_t* h, const uint8_t* p, size_t n) {
  for (; n; --n, p += 64) {
    uint32_t w[16];
    for (int i = 0; i < 16; ++i) w[i] = load_be32(p + 4 * i);
    uint32_t a = h[0], b = h[1], c = h[2], d = h[3], e = h[4], f = h[5], g = h[6], hh = h[7];
    // One round with the roles of the eight variables given by the caller: only d and h change.
#define FRUGAL_SHA_ROUND(a, b, c, d, e, f, g, h, i, wi)                                       \
  do {                                                                                        \
    const uint32_t t1 = h + (rotr32(e, 6) ^ rotr32(e, 11) ^ rotr32(e, 25)) +                  \
                        (g ^ (e & (f ^ g))) + kSha256K[i] + (wi);                              \
    const uint32_t t2 = (rotr32(a, 2) ^ rotr32(a, 13) ^ rotr32(a, 22)) + ((a & b) | (c & (a | b))); \
    d += t1;                                                                                  \
    h = t1 + t2;                                                                              \
  } while (0)
    // Message word i >= 16, computed in place in the window.
#define FRUGAL_SHA_W(i)                                                                          \
  (w[(i) & 15] += (rotr32(w[((i) - 2) & 15], 17) ^ rotr32(w[((i) - 2) & 15], 19) ^ (w[((i) - 2) & 15] >> 10)) + \
                  w[((i) - 7) & 15] +                                                           \
                  (rotr32(w[((i) - 15) & 15], 7) ^ rotr32(w[((i) - 15) & 15], 18) ^ (w[((i) - 15) & 15] >> 3)))
#define FRUGAL_SHA_8(i, W0, W1, W2, W3, W4, W5, W6, W7)      \
  FRUGAL_SHA_ROUND(a, b, c, d, e, f, g, hh, (i) + 0, W0);    \
  FRUGAL_SHA_ROUND(hh, a, b, c, d, e, f, g, (i) + 1, W1);    \
  FRUGAL_SHA_ROUND(g, hh, a, b, c, d, e, f, (i) + 2, W2);    \
  FRUGAL_SHA_ROUND(f, g, hh, a, b, c, d, e, (i) + 3, W3);    \
  FRUGAL_SHA_ROUND(e, f, g, hh, a, b, c, d, (i) + 4, W4);    \
  FRUGAL_SHA_ROUND(d, e, f, g, hh, a, b, c, (i) + 5, W5);    \
  FRUGAL_SHA_ROUND(c, d, e, f, g, hh, a, b, (i) + 6, W6);    \
  FRUGAL_SHA_ROUND(b, c, d, e, f, g, hh, a, (i) + 7, W7)
    FRUGAL_SHA_8(0, w[0], w[1], w[2], w[3], w[4], w[5], w[6], w[7]);
    FRUGAL_SHA_8(8, w[8], w[9], w[10], w[11], w[12], w[13], w[14], w[15]);
    for (int i = 16; i < 64; i += 16) {
      FRUGAL_SHA_8(i, FRUGAL_SHA_W(i), FRUGAL_SHA_W(i + 1), FRUGAL_SHA_W(i + 2), FRUGAL_SHA_W(i + 3),
                   FRUGAL_SHA_W(i + 4), FRUGAL_SHA_W(i + 5), FRUGAL_SHA_W(i + 6), FRUGAL_SHA_W(i + 7));
      FRUGAL_SHA_8(i + 8, FRUGAL_SHA_W(i + 8), FRUGAL_SHA_W(i + 9), FRUGAL_SHA_W(i + 10), FRUGAL_SHA_W(i + 11),
                   FRUGAL_SHA_W(i + 12), FRUGAL_SHA_W(i + 13), FRUGAL_SHA_W(i + 14), FRUGAL_SHA_W(i + 15));
    }
#undef FRUGAL_SHA_8
#undef FRUGAL_SHA_W
#undef FRUGAL_SHA_ROUND
    h[0] += a; h[1] += b; h[2] += c; h[3] += d; h[4] += e; h[5] += f; h[6] += g; h[7] += hh;
  }
}

void sha256_blocks_generic(uint32_t* h, const uint8_t* p, size_t n) { sha256_blocks_impl(h, p, n); }
#if defined(__x86_64__) && defined(__GNUC__)
__attribute__((target("bmi2"))) void sha256_blocks_bmi2(uint32_t* h, const uint8_t* p, size_t n) {
  sha256_blocks_impl(h, p, n);
}
#endif

using BlocksFn = void (*)(uint32_t*, const uint8_t*, size_t);
BlocksFn pick_sha256_blocks() {
#if defined(__x86_64__) && defined(__GNUC__)
  if (__builtin_cpu_supports("bmi2")) return sha256_blocks_bmi2;
#endif
  return sha256_blocks_generic;
}

struct Sha256 {
  uint32_t h[8] = {0x6a09e667, 0xbb67ae85, 0x3c6ef372, 0xa54ff53a, 0x510e527f, 0x9b05688c, 0x1f83d9ab, 0x5be0cd19};
  uint8_t buf[64];
  size_t buflen = 0;
  uint64_t total = 0;
  BlocksFn blocks = pick_sha256_blocks();

  void update(const void* data, size_t n) {
    auto* p = static_cast<const uint8_t*>(data);
    total += n;
    if (buflen) {  // top up the partial block first
      const size_t take = std::min(n, 64 - buflen);
      std::memcpy(buf + buflen, p, take);
      buflen += take; p += take; n -= take;
      if (buflen < 64) return;
      blocks(h, buf, 1);
      buflen = 0;
    }
    if (n >= 64) {
      blocks(h, p, n / 64);
      p += n / 64 * 64;
      n %= 64;
    }
    std::memcpy(buf, p, n);
    buflen = n;
  }

  std::string hex() {
    const uint64_t bits = total * 8;
    uint8_t tail[128] = {};
    std::memcpy(tail, buf, buflen);
    tail[buflen] = 0x80;
    const size_t len = buflen + 1 + 8 <= 64 ? 64 : 128;
    for (int i = 0; i < 8; ++i) tail[len - 8 + i] = static_cast<uint8_t>(bits >> (56 - 8 * i));
    blocks(h, tail, len / 64);
    static const char* digits = "0123456789abcdef";
    std::string out;
    for (uint32_t v : h)
      for (int i = 28; i >= 0; i -= 4) out += digits[(v >> i) & 0xF];
    return out;
  }
};

}  // namespace

std::string sha256_hex(const void* data, size_t size) {
  Sha256 s;
  s.update(data, size);
  return s.hex();
}

StatusOr<std::string> sha256_file(const fs::path& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) return IoError("cannot read '" + path.string() + "'");
  Sha256 s;
  std::vector<char> buf(size_t{1} << 20);
  while (in) {
    in.read(buf.data(), static_cast<std::streamsize>(buf.size()));
    s.update(buf.data(), static_cast<size_t>(in.gcount()));
  }
  if (in.bad()) return IoError("read error in '" + path.string() + "'");
  return s.hex();
}

}  // namespace frugal
