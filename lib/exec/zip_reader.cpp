// The .npz (zip) reader: end records, central directory, local headers, stored and deflated data.
// Layouts follow PKWARE's APPNOTE (sections 4.3 and 4.5): little-endian fields, zip64 values in the
// 0x0001 extra field wherever the 32-bit field holds 0xFFFFFFFF (0xFFFF for counts and disks).
#include "zip_reader.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>
#include <zlib.h>

#include <algorithm>
#include <cerrno>
#include <cstring>

namespace frugal {

namespace {

constexpr uint32_t kLocalSig = 0x04034b50;
constexpr uint32_t kCentralSig = 0x02014b50;
constexpr uint32_t kEndSig = 0x06054b50;
constexpr uint32_t kEnd64Sig = 0x06064b50;
constexpr uint32_t kEnd64LocatorSig = 0x07064b50;
constexpr size_t kEndSize = 22, kEnd64Size = 56, kEnd64LocatorSize = 20, kCentralSize = 46, kLocalSize = 30;
constexpr size_t kMaxComment = 65535;
constexpr size_t kInBuf = size_t{64} << 10;
constexpr uint64_t kReadThrough = uint64_t{1} << 20;

uint16_t u16(const unsigned char* p) { return static_cast<uint16_t>(p[0] | (p[1] << 8)); }
uint32_t u32(const unsigned char* p) { return u16(p) | (static_cast<uint32_t>(u16(p + 2)) << 16); }
uint64_t u64(const unsigned char* p) { return u32(p) | (static_cast<uint64_t>(u32(p + 4)) << 32); }

}  // namespace

struct ZipArchive::File {
  int fd = -1;
  uint64_t size = 0;
  std::string path;
  ~File() {
    if (fd >= 0) ::close(fd);
  }
  // Reads exactly n bytes at `offset`; false on a short read or an I/O error.
  bool pread_exact(uint64_t offset, void* dst, size_t n) const {
    auto* p = static_cast<char*>(dst);
    while (n > 0) {
      const ssize_t got = ::pread(fd, p, n, static_cast<off_t>(offset));
      if (got < 0 && errno == EINTR) continue;
      if (got <= 0) return false;
      p += got;
      n -= static_cast<size_t>(got);
      offset += static_cast<uint64_t>(got);
    }
    return true;
  }
};

struct ZipEntryReader::Inflater {
  z_stream zs{};
  std::vector<unsigned char> in;
  uint64_t consumed = 0;  // compressed bytes handed to zlib so far
  bool ended = false;     // zlib reported the end of the deflate stream
  Inflater() : in(kInBuf) {}
  ~Inflater() { inflateEnd(&zs); }
};

// ---- archive ------------------------------------------------------------------------------------------

ZipArchive::~ZipArchive() = default;

StatusOr<std::unique_ptr<ZipArchive>> ZipArchive::open(const std::filesystem::path& path) {
  std::error_code ec;
  if (!std::filesystem::exists(path, ec)) return NotFound("array archive '" + path.string() + "' does not exist");
  auto file = std::make_shared<File>();
  file->path = path.string();
  file->fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (file->fd < 0) return IoError("array archive '" + path.string() + "' cannot be opened for reading");
  struct stat st{};
  if (::fstat(file->fd, &st) != 0 || !S_ISREG(st.st_mode))
    return IoError("array archive '" + path.string() + "' is not a readable file");
  file->size = static_cast<uint64_t>(st.st_size);
  auto bad = [&](const std::string& why) {
    return InvalidData("'" + path.string() + "' is not a valid .npz (zip) archive (" + why + ")");
  };

  // End of central directory record: the last 22 bytes plus up to 64 KiB of comment. Scan from the
  // back for a signature whose comment length reaches exactly to the end of the file.
  if (file->size < kEndSize) return bad("too short");
  const uint64_t tail_len = std::min<uint64_t>(file->size, kEndSize + kMaxComment);
  std::vector<unsigned char> tail(tail_len);
  const uint64_t tail_at = file->size - tail_len;
  if (!file->pread_exact(tail_at, tail.data(), tail.size())) return bad("read error");
  int64_t end_at = -1;
  for (int64_t i = static_cast<int64_t>(tail_len - kEndSize); i >= 0; --i) {
    const unsigned char* p = tail.data() + i;
    if (u32(p) == kEndSig && static_cast<uint64_t>(i) + kEndSize + u16(p + 20) == tail_len) {
      end_at = i;
      break;
    }
  }
  if (end_at < 0) return bad("no end of central directory record; the file may be cut short");
  const unsigned char* e = tail.data() + end_at;
  const uint64_t end_offset = tail_at + static_cast<uint64_t>(end_at);
  uint64_t disk = u16(e + 4), cd_disk = u16(e + 6), count = u16(e + 10), cd_size = u32(e + 12),
           cd_offset = u32(e + 16);
  uint64_t records_start = end_offset;  // the central directory must end before the end records
  if (count == 0xFFFF || cd_size == 0xFFFFFFFF || cd_offset == 0xFFFFFFFF) {
    // zip64: a locator just before the end record points at the zip64 end record.
    if (end_offset < kEnd64LocatorSize) return bad("zip64 end locator missing");
    unsigned char loc[kEnd64LocatorSize];
    if (!file->pread_exact(end_offset - kEnd64LocatorSize, loc, sizeof loc) || u32(loc) != kEnd64LocatorSig)
      return bad("zip64 end locator missing");
    const uint64_t end64 = u64(loc + 8);
    if (end64 > end_offset - kEnd64LocatorSize || end_offset - kEnd64LocatorSize - end64 < kEnd64Size)
      return bad("zip64 end record out of place");
    unsigned char r[kEnd64Size];
    if (!file->pread_exact(end64, r, sizeof r) || u32(r) != kEnd64Sig) return bad("zip64 end record missing");
    disk = u32(r + 16);
    cd_disk = u32(r + 20);
    count = u64(r + 32);
    cd_size = u64(r + 40);
    cd_offset = u64(r + 48);
    records_start = end64;
  }
  if (disk != 0 || cd_disk != 0) return Unsupported("'" + path.string() + "' is a multi-part zip archive");
  if (cd_offset > records_start || cd_size > records_start - cd_offset)
    return bad("central directory out of place");
  // Every entry needs at least a 46-byte record, so the count is bounded by the directory's size.
  if (count > cd_size / kCentralSize) return bad("central directory too small for its entry count");

  std::vector<unsigned char> cd(cd_size);
  if (!file->pread_exact(cd_offset, cd.data(), cd.size())) return bad("read error");
  std::unique_ptr<ZipArchive> z(new ZipArchive);
  z->file_ = file;
  z->data_end_ = cd_offset;
  z->entries_.reserve(count);
  size_t at = 0;
  for (uint64_t k = 0; k < count; ++k) {
    if (cd.size() - at < kCentralSize || u32(cd.data() + at) != kCentralSig)
      return bad("central directory record " + std::to_string(k) + " is damaged");
    const unsigned char* c = cd.data() + at;
    const size_t name_len = u16(c + 28), extra_len = u16(c + 30), comment_len = u16(c + 32);
    if (cd.size() - at - kCentralSize < name_len + extra_len + comment_len)
      return bad("central directory record " + std::to_string(k) + " is damaged");
    ZipEntry ent;
    ent.flags = u16(c + 8);
    ent.method = u16(c + 10);
    ent.crc = u32(c + 16);
    ent.compressed_size = u32(c + 20);
    ent.size = u32(c + 24);
    ent.header_offset = u32(c + 42);
    const uint32_t entry_disk = u16(c + 34);
    ent.name.assign(reinterpret_cast<const char*>(c + kCentralSize), name_len);
    // zip64 extra: the 64-bit values of the fields that hold their all-ones marker, in this order.
    const bool need_size = ent.size == 0xFFFFFFFF, need_csize = ent.compressed_size == 0xFFFFFFFF,
               need_offset = ent.header_offset == 0xFFFFFFFF;
    bool have64 = false;
    const unsigned char* x = c + kCentralSize + name_len;
    for (size_t xi = 0; xi + 4 <= extra_len;) {
      const uint16_t id = u16(x + xi), len = u16(x + xi + 2);
      if (xi + 4 + len > extra_len) break;  // a damaged extra block; the markers below then fail
      if (id == 0x0001) {
        const unsigned char* v = x + xi + 4;
        size_t left = len;
        auto take = [&](uint64_t& field) {
          if (left < 8) return false;
          field = u64(v);
          v += 8;
          left -= 8;
          return true;
        };
        if ((need_size && !take(ent.size)) || (need_csize && !take(ent.compressed_size)) ||
            (need_offset && !take(ent.header_offset)))
          return bad("entry '" + ent.name + "' has a short zip64 extra field");
        have64 = true;
      }
      xi += 4 + len;
    }
    if ((need_size || need_csize || need_offset) && !have64)
      return bad("entry '" + ent.name + "' lacks its zip64 extra field");
    if (entry_disk != 0 && entry_disk != 0xFFFF) return Unsupported("'" + path.string() + "' is a multi-part zip archive");
    if (ent.header_offset >= cd_offset) return bad("entry '" + ent.name + "' starts past the entry data");
    z->entries_.push_back(std::move(ent));
    at += kCentralSize + name_len + extra_len + comment_len;
  }
  return z;
}

StatusOr<std::unique_ptr<ZipEntryReader>> ZipArchive::open_entry(size_t i) const {
  const ZipEntry& ent = entries_.at(i);
  const std::string what = file_->path + ": entry '" + ent.name + "'";
  if (ent.flags & 1) return Unsupported(what + " is encrypted");
  if (ent.method != 0 && ent.method != 8)
    return Unsupported(what + " uses zip compression method " + std::to_string(ent.method) +
                       "; frugal reads stored and deflated entries (np.savez, np.savez_compressed)");
  unsigned char h[kLocalSize];
  if (data_end_ - ent.header_offset < kLocalSize || !file_->pread_exact(ent.header_offset, h, sizeof h) ||
      u32(h) != kLocalSig)
    return InvalidData(what + " is truncated or corrupt (no local header where the directory points)");
  const uint64_t data_start = ent.header_offset + kLocalSize + u16(h + 26) + u16(h + 28);
  if (data_start > data_end_ || ent.compressed_size > data_end_ - data_start)
    return InvalidData(what + " is truncated or corrupt (its data runs past the end of the entries)");
  if (ent.method == 0 && ent.compressed_size != ent.size)
    return InvalidData(what + " is truncated or corrupt (stored sizes disagree)");
  std::unique_ptr<ZipEntryReader> r(new ZipEntryReader(file_, ent, data_start));
  if (ent.method == 8) FRUGAL_RETURN_IF_ERROR(r->restart());
  FRUGAL_RETURN_IF_ERROR(r->account(nullptr, 0));  // an empty entry is complete already
  return r;
}

// ---- entry reader ---------------------------------------------------------------------------------------

ZipEntryReader::ZipEntryReader(std::shared_ptr<ZipArchive::File> file, ZipEntry entry, uint64_t data_start)
    : file_(std::move(file)), entry_(std::move(entry)), data_start_(data_start) {}

ZipEntryReader::~ZipEntryReader() = default;

Status ZipEntryReader::fail(const std::string& why) const {
  return InvalidData(file_->path + ": entry '" + entry_.name + "' is truncated or corrupt (" + why + ")");
}

Status ZipEntryReader::restart() {
  if (!z_) {
    z_ = std::make_unique<Inflater>();
    if (inflateInit2(&z_->zs, -MAX_WBITS) != Z_OK) {  // raw deflate, as zip stores it
      z_.reset();
      return OutOfMemory("cannot set up zlib to read '" + entry_.name + "'");
    }
  } else if (inflateReset(&z_->zs) != Z_OK) {
    return Internal("zlib could not restart '" + entry_.name + "'");
  }
  z_->zs.next_in = nullptr;
  z_->zs.avail_in = 0;
  z_->consumed = 0;
  z_->ended = false;
  pos_ = 0;
  return OkStatus();
}

// Hands zlib the next compressed bytes when it has none left and the entry has more.
Status ZipEntryReader::refill() {
  z_stream& zs = z_->zs;
  const uint64_t left = entry_.compressed_size - z_->consumed;
  if (zs.avail_in > 0 || left == 0) return OkStatus();
  const size_t take = static_cast<size_t>(std::min<uint64_t>(left, z_->in.size()));
  if (!file_->pread_exact(data_start_ + z_->consumed, z_->in.data(), take)) return fail("read error");
  z_->consumed += take;
  zs.next_in = z_->in.data();
  zs.avail_in = static_cast<uInt>(take);
  return OkStatus();
}

// One inflate call into [dst, dst + n); returns the bytes produced. zlib may still produce output
// after the last compressed byte went in (a match copy or bits it holds), so running out of input is
// an error only when a call makes no progress.
StatusOr<size_t> ZipEntryReader::inflate_step(unsigned char* dst, size_t n) {
  FRUGAL_RETURN_IF_ERROR(refill());
  z_stream& zs = z_->zs;
  zs.next_out = dst;
  zs.avail_out = static_cast<uInt>(n);
  const int rc = inflate(&zs, Z_NO_FLUSH);
  const size_t got = n - zs.avail_out;
  if (rc == Z_STREAM_END) {
    z_->ended = true;
  } else if (rc == Z_BUF_ERROR) {
    if (got == 0 && zs.avail_in == 0 && z_->consumed == entry_.compressed_size)
      return fail("the compressed data ends early");
  } else if (rc != Z_OK) {
    return fail(std::string("deflate data: ") + (zs.msg ? zs.msg : "error " + std::to_string(rc)));
  }
  return got;
}

Status ZipEntryReader::inflate_into(unsigned char* dst, size_t n) {
  while (n > 0) {
    if (z_->ended) return fail("the compressed stream ends before the recorded size");
    FRUGAL_ASSIGN_OR_RETURN(size_t got, inflate_step(dst, std::min<size_t>(n, 1u << 30)));
    dst += got;
    n -= got;
  }
  return OkStatus();
}

// Called after bytes [pos_, pos_ + n) were produced (p points at them) and before pos_ moves.
Status ZipEntryReader::account(const unsigned char* p, size_t n) {
  const uint64_t end = pos_ + n;
  bool reached_end = n == 0 && entry_.size == 0;  // an empty entry is complete when opened
  if (pos_ <= crc_pos_ && crc_pos_ < end) {
    const uint64_t skip = crc_pos_ - pos_;
    uLong c = crc_;
    for (uint64_t at = skip; at < n;) {  // crc32 takes uInt lengths
      const uInt len = static_cast<uInt>(std::min<uint64_t>(n - at, 1u << 30));
      c = crc32(c, p + at, len);
      at += len;
    }
    crc_ = static_cast<uint32_t>(c);
    crc_pos_ = end;
    reached_end = crc_pos_ == entry_.size;
  }
  if (reached_end && crc_ != entry_.crc) return fail("CRC mismatch");
  return OkStatus();
}

// At the entry's end a deflate stream must end too: nothing more may come out of it.
Status ZipEntryReader::check_stream_end() {
  unsigned char extra;
  while (z_ && !z_->ended) {
    FRUGAL_ASSIGN_OR_RETURN(size_t got, inflate_step(&extra, 1));
    if (got > 0) return fail("more data than its recorded size");
  }
  return OkStatus();
}

Status ZipEntryReader::read_exact(void* dst, size_t n) {
  if (n > entry_.size - pos_) return fail("a read past its recorded size");
  auto* p = static_cast<unsigned char*>(dst);
  if (z_) {
    FRUGAL_RETURN_IF_ERROR(inflate_into(p, n));
  } else if (n > 0 && !file_->pread_exact(data_start_ + pos_, p, n)) {
    return fail("read error");
  }
  FRUGAL_RETURN_IF_ERROR(account(p, n));
  pos_ += n;
  if (pos_ == entry_.size && n > 0) FRUGAL_RETURN_IF_ERROR(check_stream_end());
  return OkStatus();
}

Status ZipEntryReader::seek(uint64_t target) {
  if (target > entry_.size) return fail("a seek past its recorded size");
  if (target == pos_) return OkStatus();
  if (!z_ && (target < pos_ || target - pos_ > kReadThrough)) {
    pos_ = target;
    return OkStatus();
  }
  if (target < pos_) FRUGAL_RETURN_IF_ERROR(restart());
  std::vector<unsigned char> scratch(static_cast<size_t>(std::min<uint64_t>(target - pos_, kInBuf)));
  while (pos_ < target)
    FRUGAL_RETURN_IF_ERROR(read_exact(scratch.data(), static_cast<size_t>(std::min<uint64_t>(scratch.size(), target - pos_))));
  return OkStatus();
}

}  // namespace frugal
