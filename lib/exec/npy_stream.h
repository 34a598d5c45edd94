// Streaming access to the arrays of one .npy or .npz file (private to lib/exec).
//
// Opening reads the headers only and checks them (dtype, C order, data size against the file or the
// archive entry), so a bad file fails early; read() then fetches any byte range of an array's data,
// which lets a dataset read one sample's rows of a stacked array without loading the rest:
//   - .npy: a seek to data_offset + offset;
//   - .npz entry stored (np.savez): a read at the entry's data offset (zip_reader.h);
//   - .npz entry deflated (np.savez_compressed): one open decompression stream per array, read
//     forward; a range before the stream's position reopens the entry and skips forward.
// An entry's CRC is checked once its bytes have been read from start to end (see zip_reader.h).
// Memory is the headers plus one zlib state per deflated array; not thread-safe.
#pragma once

#include <filesystem>
#include <memory>
#include <string>
#include <vector>

#include "frugal/dataset.h"

namespace frugal {

class ArrayFile {
 public:
  struct Array {
    std::string name;  // .npz: the entry name without ".npy"; .npy: ""
    NpyHeader header;
    size_t nbytes = 0;  // bytes of data: storage_bytes(dtype, numel(shape))
  };
  // Opens `path` as an .npz when its extension is ".npz", else as an .npy.
  static StatusOr<std::unique_ptr<ArrayFile>> open(const std::filesystem::path& path);
  virtual ~ArrayFile() = default;
  const std::vector<Array>& arrays() const { return arrays_; }
  const std::filesystem::path& path() const { return path_; }
  // Copies bytes [offset, offset + size) of array k's data (offset 0 = the first element) into dst.
  virtual Status read(size_t k, size_t offset, size_t size, void* dst) = 0;

 protected:
  std::filesystem::path path_;
  std::vector<Array> arrays_;
};

}  // namespace frugal
