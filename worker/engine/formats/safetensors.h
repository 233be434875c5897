// safetensors (https://huggingface.co/docs/safetensors): a little-endian u64
// header length N, N bytes of JSON {name: {dtype, shape, data_offsets}, ...,
// "__metadata__": {str: str}}, then the raw tensor bytes.
//
// The reader memory-maps the file and validates the whole header before it
// hands out any tensor; every violation is an error naming the file and, where
// there is one, the tensor.
#pragma once

#include <ATen/Tensor.h>
#include <c10/core/ScalarType.h>

#include <cstdint>
#include <map>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "absl/status/statusor.h"

namespace d2lora::engine {

// Headers larger than this are refused (the reference implementation uses 100 MB).
inline constexpr uint64_t kMaxSafetensorsHeaderBytes = 100ull * 1000 * 1000;

struct SafetensorsEntry {
  std::string name;
  c10::ScalarType dtype;
  std::vector<int64_t> shape;
  uint64_t begin = 0;  // byte offsets into the data area
  uint64_t end = 0;
};

class SafetensorsFile {
 public:
  // Maps and validates `path`.
  static absl::StatusOr<std::shared_ptr<const SafetensorsFile>> Open(const std::string& path);

  ~SafetensorsFile();
  SafetensorsFile(const SafetensorsFile&) = delete;
  SafetensorsFile& operator=(const SafetensorsFile&) = delete;

  const std::string& path() const { return path_; }
  const std::map<std::string, std::string>& metadata() const { return metadata_; }
  // Entries in data order.
  const std::vector<SafetensorsEntry>& entries() const { return entries_; }
  const SafetensorsEntry* Find(const std::string& name) const;
  bool Contains(const std::string& name) const { return Find(name) != nullptr; }

  // A CPU tensor over the mapped bytes (no copy when the data is aligned for
  // its dtype); the mapping stays alive as long as any tensor from it does.
  // Writes to the tensor never reach the file (private mapping).
  absl::StatusOr<at::Tensor> Get(const std::string& name) const;

 private:
  SafetensorsFile() = default;
  std::string path_;
  std::map<std::string, std::string> metadata_;
  std::vector<SafetensorsEntry> entries_;
  std::map<std::string, size_t> index_;
  std::shared_ptr<void> mapping_;  // owns the mmap
  const uint8_t* data_ = nullptr;  // start of the data area
  uint64_t data_size_ = 0;
};

using NamedTensors = std::vector<std::pair<std::string, at::Tensor>>;

// Writes `tensors` (any device, made contiguous, in the given order) to
// `path` atomically: a temporary file in the same directory, fsync, rename.
// Names must be unique and non-empty; dtypes must be one of F32 F16 BF16 F64 I64
// I32 U8 BOOL.
absl::Status WriteSafetensors(const std::string& path, const NamedTensors& tensors,
                              const std::map<std::string, std::string>& metadata = {});

// The safetensors dtype string for a ScalarType ("F32", ...), or an error.
absl::StatusOr<std::string> SafetensorsDtypeName(c10::ScalarType dtype);

}  // namespace d2lora::engine
