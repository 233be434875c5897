// SafetensorsFile::Open on arbitrary bytes. Open takes a path and maps it, so
// the bytes go to a memfd opened through /proc/self/fd (no disk, no temp files).
// When a file parses: every tensor's byte range lies within the file, ranges do
// not overlap, Find() finds every entry, and Get() returns exactly those bytes.
#include <sys/mman.h>
#include <unistd.h>

#include <cstdint>
#include <cstring>
#include <string>

#include <ATen/Tensor.h>

#include "tests/fuzz/fuzz_check.h"
#include "worker/engine/formats/safetensors.h"

namespace {

int MemFd() {
  static const int fd = [] {
    int f = memfd_create("safetensors_fuzzer", MFD_CLOEXEC);
    FUZZ_CHECK(f >= 0);
    return f;
  }();
  return fd;
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  using d2lora::engine::SafetensorsFile;
  const int fd = MemFd();
  FUZZ_CHECK(ftruncate(fd, 0) == 0);
  size_t done = 0;
  while (done < size) {
    ssize_t n = pwrite(fd, data + done, size - done, static_cast<off_t>(done));
    FUZZ_CHECK(n > 0);
    done += static_cast<size_t>(n);
  }
  const std::string path = "/proc/self/fd/" + std::to_string(fd);
  auto file = SafetensorsFile::Open(path);
  if (!file.ok()) {
    FUZZ_CHECK(!file.status().message().empty());
    return 0;
  }
  FUZZ_CHECK(size >= 8);
  uint64_t header_len = 0;
  for (int i = 7; i >= 0; --i) header_len = (header_len << 8) | data[i];
  FUZZ_CHECK(8 + header_len <= size);
  const uint8_t* area = data + 8 + header_len;
  const uint64_t area_size = size - 8 - header_len;

  uint64_t last_end = 0;
  for (const auto& e : (*file)->entries()) {
    FUZZ_CHECK(!e.name.empty());
    FUZZ_CHECK(e.begin <= e.end && e.end <= area_size);
    if (e.begin != e.end) {
      FUZZ_CHECK(e.begin >= last_end);  // entries come in data order, without overlap
      last_end = e.end;
    }
    FUZZ_CHECK((*file)->Find(e.name) == &e);
    auto tensor = (*file)->Get(e.name);
    if (!tensor.ok()) {
      // Only BOOL tensors holding bytes other than 0/1 are refused.
      FUZZ_CHECK(e.dtype == c10::ScalarType::Bool);
      continue;
    }
    FUZZ_CHECK(tensor->scalar_type() == e.dtype);
    FUZZ_CHECK(tensor->sizes().vec() == e.shape);
    const uint64_t bytes = static_cast<uint64_t>(tensor->numel()) * tensor->element_size();
    FUZZ_CHECK(bytes == e.end - e.begin);
    if (bytes > 0) {
      at::Tensor c = tensor->contiguous();
      FUZZ_CHECK(std::memcmp(c.data_ptr(), area + e.begin, bytes) == 0);
    }
  }
  return 0;
}
