#include "worker/engine/formats/safetensors.h"

#include <fcntl.h>
#include <stdlib.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <torch/torch.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <filesystem>
#include <limits>
#include <set>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "common/file_util.h"
#include "nlohmann/json.hpp"
#include "worker/engine/torch_guard.h"

namespace d2lora::engine {
namespace {

static_assert(__BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__, "safetensors is little-endian; so must the host be");

constexpr char kMetadataKey[] = "__metadata__";

struct DtypeInfo {
  const char* name;
  c10::ScalarType type;
  uint64_t size;
};

constexpr DtypeInfo kDtypes[] = {
    {"F32", c10::ScalarType::Float, 4},  {"F16", c10::ScalarType::Half, 2},
    {"BF16", c10::ScalarType::BFloat16, 2}, {"F64", c10::ScalarType::Double, 8},
    {"I64", c10::ScalarType::Long, 8},   {"I32", c10::ScalarType::Int, 4},
    {"U8", c10::ScalarType::Byte, 1},    {"BOOL", c10::ScalarType::Bool, 1},
};

const DtypeInfo* DtypeByName(const std::string& name) {
  for (const DtypeInfo& d : kDtypes) {
    if (name == d.name) return &d;
  }
  return nullptr;
}

const DtypeInfo* DtypeByType(c10::ScalarType type) {
  for (const DtypeInfo& d : kDtypes) {
    if (type == d.type) return &d;
  }
  return nullptr;
}

std::string ShapeString(const std::vector<int64_t>& shape) {
  return absl::StrCat("[", absl::StrJoin(shape, ", "), "]");
}

// Errors while reading: "<path>: <what>" or "<path>: tensor '<name>': <what>".
absl::Status Bad(const std::string& path, absl::string_view what) {
  return absl::InvalidArgumentError(absl::StrCat(path, ": ", what));
}
absl::Status BadTensor(const std::string& path, const std::string& name, absl::string_view what) {
  return absl::InvalidArgumentError(absl::StrCat(path, ": tensor '", name, "': ", what));
}

std::string ErrnoText() { return std::strerror(errno); }

// A short rendering of a JSON value for error messages.
std::string Snippet(const nlohmann::json& j) {
  std::string s = j.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace);
  if (s.size() > 60) s = s.substr(0, 57) + "...";
  return s;
}

// A non-negative JSON integer that fits `max`, or nullopt-like false.
bool NonNegativeInteger(const nlohmann::json& j, uint64_t max, uint64_t* out) {
  if (j.is_number_unsigned()) {
    uint64_t v = j.get<uint64_t>();
    if (v > max) return false;
    *out = v;
    return true;
  }
  if (j.is_number_integer()) {  // signed: only reached for negative values
    int64_t v = j.get<int64_t>();
    if (v < 0 || static_cast<uint64_t>(v) > max) return false;
    *out = static_cast<uint64_t>(v);
    return true;
  }
  return false;
}

absl::StatusOr<SafetensorsEntry> ParseEntry(const std::string& path, const std::string& name,
                                            const nlohmann::json& j, uint64_t data_size) {
  if (!j.is_object()) return BadTensor(path, name, absl::StrCat("entry is not a JSON object: ", Snippet(j)));
  for (const auto& [key, value] : j.items()) {
    (void)value;
    if (key != "dtype" && key != "shape" && key != "data_offsets") {
      return BadTensor(path, name, absl::StrCat("unknown field '", key, "'"));
    }
  }
  for (const char* field : {"dtype", "shape", "data_offsets"}) {
    if (!j.contains(field)) return BadTensor(path, name, absl::StrCat("missing field '", field, "'"));
  }

  SafetensorsEntry e;
  e.name = name;

  const nlohmann::json& dtype = j["dtype"];
  if (!dtype.is_string()) return BadTensor(path, name, absl::StrCat("dtype is not a string: ", Snippet(dtype)));
  const DtypeInfo* info = DtypeByName(dtype.get<std::string>());
  if (info == nullptr) {
    return BadTensor(path, name,
                     absl::StrCat("unsupported dtype ", Snippet(dtype),
                                  " (supported: F32 F16 BF16 F64 I64 I32 U8 BOOL)"));
  }
  e.dtype = info->type;

  const nlohmann::json& shape = j["shape"];
  if (!shape.is_array()) return BadTensor(path, name, absl::StrCat("shape is not an array: ", Snippet(shape)));
  uint64_t numel = 1;
  bool numel_overflow = false;
  for (const nlohmann::json& d : shape) {
    uint64_t v = 0;
    if (!NonNegativeInteger(d, static_cast<uint64_t>(std::numeric_limits<int64_t>::max()), &v)) {
      return BadTensor(path, name,
                       absl::StrCat("shape ", Snippet(shape), " has an entry that is not a non-negative integer: ",
                                    Snippet(d)));
    }
    e.shape.push_back(static_cast<int64_t>(v));
    if (__builtin_mul_overflow(numel, v, &numel)) numel_overflow = true;
  }
  // A zero dimension makes the product zero whatever overflowed before it.
  if (std::find(e.shape.begin(), e.shape.end(), 0) != e.shape.end()) {
    numel = 0;
    numel_overflow = false;
  }

  const nlohmann::json& offsets = j["data_offsets"];
  if (!offsets.is_array() || offsets.size() != 2 ||
      !NonNegativeInteger(offsets[0], std::numeric_limits<uint64_t>::max(), &e.begin) ||
      !NonNegativeInteger(offsets[1], std::numeric_limits<uint64_t>::max(), &e.end)) {
    return BadTensor(path, name,
                     absl::StrCat("data_offsets must be [begin, end] of non-negative integers, got ",
                                  Snippet(offsets)));
  }
  if (e.begin > e.end) {
    return BadTensor(path, name, absl::StrCat("data_offsets [", e.begin, ", ", e.end, "] end before they begin"));
  }

  uint64_t needed = 0;
  if (numel_overflow || numel > static_cast<uint64_t>(std::numeric_limits<int64_t>::max()) ||
      __builtin_mul_overflow(numel, info->size, &needed)) {
    return BadTensor(path, name, absl::StrCat("shape ", ShapeString(e.shape), " is too large"));
  }
  const uint64_t held = e.end - e.begin;
  if (held != needed) {
    return BadTensor(path, name,
                     absl::StrCat("data_offsets [", e.begin, ", ", e.end, "] hold ", held, " bytes but ", info->name,
                                  " ", ShapeString(e.shape), " needs ", needed));
  }
  if (e.end > data_size) {
    return BadTensor(path, name,
                     absl::StrCat("data_offsets [", e.begin, ", ", e.end, "] run past the end of the data area (",
                                  data_size, " bytes)"));
  }
  return e;
}

// Closes a file descriptor and removes a temporary file unless released.
class TempFile {
 public:
  TempFile(int fd, std::string path) : fd_(fd), path_(std::move(path)) {}
  ~TempFile() {
    if (fd_ >= 0) ::close(fd_);
    if (!path_.empty()) ::unlink(path_.c_str());
  }
  TempFile(const TempFile&) = delete;
  TempFile& operator=(const TempFile&) = delete;
  int fd() const { return fd_; }
  const std::string& path() const { return path_; }
  int Close() {
    int rc = ::close(fd_);
    fd_ = -1;
    return rc;
  }
  void Release() { path_.clear(); }

 private:
  int fd_;
  std::string path_;
};

absl::Status WriteAll(int fd, const void* data, size_t size, const std::string& path) {
  const char* p = static_cast<const char*>(data);
  while (size > 0) {
    // Linux writes at most ~2 GiB per call; ask for no more than 1 GiB at a time.
    ssize_t n = ::write(fd, p, std::min<size_t>(size, size_t{1} << 30));
    if (n < 0) {
      if (errno == EINTR) continue;
      return ErrnoError("cannot write", path);
    }
    p += n;
    size -= static_cast<size_t>(n);
  }
  return absl::OkStatus();
}

}  // namespace

absl::StatusOr<std::string> SafetensorsDtypeName(c10::ScalarType dtype) {
  const DtypeInfo* info = DtypeByType(dtype);
  if (info == nullptr) {
    return absl::InvalidArgumentError(absl::StrCat("dtype ", c10::toString(dtype),
                                                   " cannot be stored in safetensors here (supported: F32 F16 "
                                                   "BF16 F64 I64 I32 U8 BOOL)"));
  }
  return std::string(info->name);
}

SafetensorsFile::~SafetensorsFile() = default;

absl::StatusOr<std::shared_ptr<const SafetensorsFile>> SafetensorsFile::Open(const std::string& path) {
  int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) {
    if (errno == ENOENT) return absl::NotFoundError(absl::StrCat(path, ": no such file"));
    return Bad(path, absl::StrCat("cannot open: ", ErrnoText()));
  }
  struct stat st;
  if (::fstat(fd, &st) != 0) {
    absl::Status s = Bad(path, absl::StrCat("cannot stat: ", ErrnoText()));
    ::close(fd);
    return s;
  }
  if (!S_ISREG(st.st_mode)) {
    ::close(fd);
    return Bad(path, "not a regular file");
  }
  const uint64_t file_size = static_cast<uint64_t>(st.st_size);
  if (file_size < 8) {
    ::close(fd);
    return Bad(path, absl::StrCat("file is ", file_size, " bytes, too short for the 8-byte header length"));
  }
  // Private and writable: in-place ops on returned tensors copy pages, never reach the file.
  void* addr = ::mmap(nullptr, file_size, PROT_READ | PROT_WRITE, MAP_PRIVATE, fd, 0);
  int map_errno = errno;
  ::close(fd);
  if (addr == MAP_FAILED) {
    errno = map_errno;
    return Bad(path, absl::StrCat("cannot map: ", ErrnoText()));
  }
  std::shared_ptr<void> mapping(addr, [file_size](void* p) { ::munmap(p, file_size); });
  const uint8_t* base = static_cast<const uint8_t*>(addr);

  uint64_t header_len = 0;
  for (int i = 7; i >= 0; --i) header_len = (header_len << 8) | base[i];
  if (header_len > kMaxSafetensorsHeaderBytes) {
    return Bad(path, absl::StrCat("header length ", header_len, " exceeds the limit of ", kMaxSafetensorsHeaderBytes,
                                  " bytes"));
  }
  if (8 + header_len > file_size) {
    return Bad(path, absl::StrCat("header length ", header_len, " runs past the end of the file (", file_size,
                                  " bytes)"));
  }

  nlohmann::json header;
  try {
    const char* begin = reinterpret_cast<const char*>(base + 8);
    header = nlohmann::json::parse(begin, begin + header_len);
  } catch (const nlohmann::json::exception& e) {
    return Bad(path, absl::StrCat("header is not valid JSON: ", e.what()));
  } catch (const std::bad_alloc&) {
    return absl::ResourceExhaustedError(absl::StrCat(path, ": out of memory parsing the header"));
  }
  if (!header.is_object()) {
    return Bad(path, absl::StrCat("header is not a JSON object: ", Snippet(header)));
  }

  auto file = std::shared_ptr<SafetensorsFile>(new SafetensorsFile());
  file->path_ = path;
  file->data_ = base + 8 + header_len;
  file->data_size_ = file_size - 8 - header_len;

  for (const auto& [key, value] : header.items()) {
    if (key == kMetadataKey) {
      if (!value.is_object()) return Bad(path, absl::StrCat("__metadata__ is not a JSON object: ", Snippet(value)));
      for (const auto& [mkey, mvalue] : value.items()) {
        if (!mvalue.is_string()) {
          return Bad(path, absl::StrCat("__metadata__ value for '", mkey, "' is not a string: ", Snippet(mvalue)));
        }
        file->metadata_[mkey] = mvalue.get<std::string>();
      }
      continue;
    }
    if (key.empty()) return Bad(path, "a tensor has an empty name");
    absl::StatusOr<SafetensorsEntry> entry = ParseEntry(path, key, value, file->data_size_);
    if (!entry.ok()) return entry.status();
    file->entries_.push_back(*std::move(entry));
  }

  std::sort(file->entries_.begin(), file->entries_.end(), [](const SafetensorsEntry& a, const SafetensorsEntry& b) {
    if (a.begin != b.begin) return a.begin < b.begin;
    if (a.end != b.end) return a.end < b.end;
    return a.name < b.name;
  });
  // Non-empty byte ranges must not intersect; empty tensors occupy no bytes.
  const SafetensorsEntry* last = nullptr;
  for (const SafetensorsEntry& e : file->entries_) {
    if (e.begin == e.end) continue;
    if (last != nullptr && e.begin < last->end) {
      return BadTensor(path, e.name,
                       absl::StrCat("data_offsets [", e.begin, ", ", e.end, "] overlap tensor '", last->name, "' [",
                                    last->begin, ", ", last->end, "]"));
    }
    if (last == nullptr || e.end > last->end) last = &e;
  }
  for (size_t i = 0; i < file->entries_.size(); ++i) file->index_[file->entries_[i].name] = i;
  file->mapping_ = std::move(mapping);
  return std::shared_ptr<const SafetensorsFile>(std::move(file));
}

const SafetensorsEntry* SafetensorsFile::Find(const std::string& name) const {
  auto it = index_.find(name);
  return it == index_.end() ? nullptr : &entries_[it->second];
}

absl::StatusOr<at::Tensor> SafetensorsFile::Get(const std::string& name) const {
  const SafetensorsEntry* e = Find(name);
  if (e == nullptr) return absl::NotFoundError(absl::StrCat(path_, ": no tensor '", name, "'"));
  const uint64_t size = e->end - e->begin;
  const uint8_t* ptr = data_ + e->begin;
  if (e->dtype == c10::ScalarType::Bool) {
    // LibTorch assumes bools are 0 or 1; any other byte is undefined behaviour there.
    for (uint64_t i = 0; i < size; ++i) {
      if (ptr[i] > 1) {
        return BadTensor(path_, name, absl::StrCat("BOOL byte ", i, " is ", static_cast<int>(ptr[i]), ", not 0 or 1"));
      }
    }
  }
  return GuardTorch(absl::StrCat(path_, ": tensor '", name, "'"), [&]() -> absl::StatusOr<at::Tensor> {
    auto options = torch::TensorOptions().dtype(e->dtype).device(torch::kCPU);
    if (size == 0) return torch::empty(e->shape, options);
    void* data = const_cast<uint8_t*>(ptr);  // the private mapping is writable
    const uint64_t elem = c10::elementSize(e->dtype);
    if (reinterpret_cast<uintptr_t>(ptr) % elem == 0) {
      std::shared_ptr<void> keep = mapping_;
      return torch::from_blob(data, e->shape, [keep](void*) mutable { keep.reset(); }, options);
    }
    return torch::from_blob(data, e->shape, options).clone();
  });
}

absl::Status WriteSafetensors(const std::string& path, const NamedTensors& tensors,
                              const std::map<std::string, std::string>& metadata) {
  nlohmann::ordered_json header = nlohmann::ordered_json::object();
  if (!metadata.empty()) {
    nlohmann::ordered_json meta = nlohmann::ordered_json::object();
    for (const auto& [k, v] : metadata) meta[k] = v;
    header[kMetadataKey] = std::move(meta);
  }
  std::set<std::string> seen;
  uint64_t offset = 0;
  for (const auto& [name, tensor] : tensors) {
    if (name.empty()) return absl::InvalidArgumentError(absl::StrCat(path, ": a tensor has an empty name"));
    if (name == kMetadataKey) {
      return absl::InvalidArgumentError(absl::StrCat(path, ": '", name, "' is reserved and cannot name a tensor"));
    }
    if (!seen.insert(name).second) {
      return absl::InvalidArgumentError(absl::StrCat(path, ": tensor '", name, "' appears twice"));
    }
    if (!tensor.defined()) {
      return absl::InvalidArgumentError(absl::StrCat(path, ": tensor '", name, "' is undefined"));
    }
    absl::StatusOr<std::string> dtype = SafetensorsDtypeName(tensor.scalar_type());
    if (!dtype.ok()) {
      return absl::InvalidArgumentError(absl::StrCat(path, ": tensor '", name, "': ", dtype.status().message()));
    }
    const uint64_t bytes = static_cast<uint64_t>(tensor.numel()) * c10::elementSize(tensor.scalar_type());
    std::vector<int64_t> shape(tensor.sizes().begin(), tensor.sizes().end());
    header[name] = {{"dtype", *dtype}, {"shape", shape}, {"data_offsets", {offset, offset + bytes}}};
    offset += bytes;
  }
  std::string json;
  try {
    json = header.dump();  // throws on names or metadata that are not valid UTF-8
  } catch (const nlohmann::json::exception& e) {
    return absl::InvalidArgumentError(absl::StrCat(path, ": cannot encode the header: ", e.what()));
  }
  // Pad with spaces so that the data area starts 8-byte aligned.
  json.append((8 - (8 + json.size()) % 8) % 8, ' ');
  std::string prefix(8, '\0');
  uint64_t n = json.size();
  for (int i = 0; i < 8; ++i) prefix[i] = static_cast<char>((n >> (8 * i)) & 0xff);
  prefix += json;

  std::string tmp_name = absl::StrCat(path, ".tmp-XXXXXX");
  int fd = ::mkstemp(tmp_name.data());
  if (fd < 0) return ErrnoError("cannot create a temporary file for", path);
  TempFile tmp(fd, tmp_name);
  if (absl::Status s = WriteAll(tmp.fd(), prefix.data(), prefix.size(), path); !s.ok()) return s;
  for (const auto& [name, bound_tensor] : tensors) {
    const at::Tensor& tensor = bound_tensor;  // C++17 lambdas cannot capture structured bindings (clang)
    // One tensor at a time on the host, so that a large model never needs a second full copy.
    absl::StatusOr<at::Tensor> host = GuardTorch(absl::StrCat(path, ": tensor '", name, "'"),
                                                 [&]() -> absl::StatusOr<at::Tensor> {
                                                   return tensor.detach().to(torch::kCPU).contiguous();
                                                 });
    if (!host.ok()) return host.status();
    const size_t bytes = static_cast<size_t>(host->numel()) * host->element_size();
    if (bytes == 0) continue;
    if (absl::Status s = WriteAll(tmp.fd(), host->data_ptr(), bytes, path); !s.ok()) return s;
  }
  if (::fchmod(tmp.fd(), 0644) != 0 || ::fsync(tmp.fd()) != 0) return ErrnoError("cannot fsync", path);
  if (tmp.Close() != 0) return ErrnoError("cannot close", path);
  if (::rename(tmp.path().c_str(), path.c_str()) != 0) return ErrnoError("cannot rename into", path);
  tmp.Release();
  std::string parent = std::filesystem::path(path).parent_path().string();
  return SyncPath(parent.empty() ? "." : parent);
}

}  // namespace d2lora::engine
