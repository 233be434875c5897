// An in-memory FILE* (open_memstream) for tests of code that prints to one.
#pragma once

#include <cstdio>
#include <cstdlib>
#include <string>

namespace d2lora::testing {

class CapturedFile {
 public:
  CapturedFile() : out_(::open_memstream(&buf_, &size_)) {}
  ~CapturedFile() {
    if (out_ != nullptr) std::fclose(out_);
    std::free(buf_);
  }
  CapturedFile(const CapturedFile&) = delete;
  CapturedFile& operator=(const CapturedFile&) = delete;

  FILE* file() { return out_; }
  // Everything written so far.
  std::string text() {
    std::fflush(out_);
    return std::string(buf_, size_);
  }

 private:
  char* buf_ = nullptr;
  size_t size_ = 0;
  FILE* out_;
};

}  // namespace d2lora::testing
