// Reading zip archives as numpy writes them (.npz; private to lib/exec).
//
// numpy's np.savez writes stored entries and np.savez_compressed deflated ones, both through Python's
// zipfile with zip64 extras forced on every entry. This reader takes exactly that format family:
// one-disk archives, any archive comment, zip64 end records and extras, entries stored or deflated
// (zlib, raw), data descriptors (sizes are taken from the central directory). Encrypted entries and
// other compression methods are refused with the method named.
//
// Every offset and size read from the file is checked against the file before it is used, so a cut
// or damaged archive fails with a message, never with a read outside it. An entry's CRC-32 is
// checked as soon as its bytes have been read contiguously from the start to the end, whatever the
// order of the calls that got them there (re-reads and seeks back do not disturb the running CRC; a
// skip forward stops it until the skipped bytes are read).
//
// A ZipEntryReader keeps the archive's file open (shared) and, for a deflated entry, one zlib state
// and a 64 KiB input buffer. Neither class is thread-safe.
#pragma once

#include <cstdint>
#include <filesystem>
#include <memory>
#include <string>
#include <vector>

#include "frugal/status.h"

namespace frugal {

struct ZipEntry {
  std::string name;
  uint16_t method = 0;  // 0 stored, 8 deflated; others are refused when opened
  uint16_t flags = 0;   // general-purpose bits (bit 0: encrypted)
  uint32_t crc = 0;
  uint64_t compressed_size = 0;
  uint64_t size = 0;           // uncompressed bytes
  uint64_t header_offset = 0;  // of the entry's local header
};

class ZipEntryReader;

class ZipArchive {
 public:
  // NotFound when `path` does not exist; InvalidData "'PATH' is not a valid .npz (zip) archive (why)"
  // when its end records or central directory are missing or inconsistent.
  static StatusOr<std::unique_ptr<ZipArchive>> open(const std::filesystem::path& path);
  ~ZipArchive();
  ZipArchive(const ZipArchive&) = delete;
  ZipArchive& operator=(const ZipArchive&) = delete;

  const std::vector<ZipEntry>& entries() const { return entries_; }
  // A reader at byte 0 of entry i's uncompressed data. Unsupported for an encrypted entry or a
  // compression method other than stored and deflated; InvalidData for a bad local header or data
  // that runs past the central directory.
  StatusOr<std::unique_ptr<ZipEntryReader>> open_entry(size_t i) const;

  struct File;  // the open file, shared with the readers

 private:
  ZipArchive() = default;
  std::shared_ptr<File> file_;
  std::vector<ZipEntry> entries_;
  uint64_t data_end_ = 0;  // where entry data must end: the start of the central directory
};

class ZipEntryReader {
 public:
  ~ZipEntryReader();
  ZipEntryReader(const ZipEntryReader&) = delete;
  ZipEntryReader& operator=(const ZipEntryReader&) = delete;

  const ZipEntry& entry() const { return entry_; }
  uint64_t pos() const { return pos_; }  // read position in the uncompressed bytes
  // Reads exactly n bytes at pos(). InvalidData "PATH: entry 'NAME' is truncated or corrupt (why)"
  // for a read past the entry's end, damaged compressed data, a CRC mismatch, or a deflate stream
  // whose length disagrees with the recorded size.
  Status read_exact(void* dst, size_t n);
  // Moves to uncompressed byte `target` (<= size). Stored entries jump, except that forward gaps up
  // to 1 MiB are read through so the CRC keeps running; deflated ones inflate forward, restarting
  // the stream when target is behind.
  Status seek(uint64_t target);

 private:
  friend class ZipArchive;
  ZipEntryReader(std::shared_ptr<ZipArchive::File> file, ZipEntry entry, uint64_t data_start);
  Status fail(const std::string& why) const;
  Status refill();
  StatusOr<size_t> inflate_step(unsigned char* dst, size_t n);
  Status inflate_into(unsigned char* dst, size_t n);
  Status restart();
  Status account(const unsigned char* p, size_t n);  // CRC bookkeeping for bytes [pos_, pos_ + n)
  Status check_stream_end();

  std::shared_ptr<ZipArchive::File> file_;
  ZipEntry entry_;
  uint64_t data_start_ = 0;  // file offset of the entry's (compressed) data
  uint64_t pos_ = 0;
  uint64_t crc_pos_ = 0;  // bytes [0, crc_pos_) are in crc_
  uint32_t crc_ = 0;
  // deflated entries
  struct Inflater;
  std::unique_ptr<Inflater> z_;
};

}  // namespace frugal
