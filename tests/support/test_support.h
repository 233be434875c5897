// Small helpers every test binary may use.
#pragma once

#include <string>

#include "absl/status/status.h"
#include "gtest/gtest.h"

namespace d2lora::testing {

// A fresh empty directory under $TMPDIR (or /tmp), removed when the object dies.
class TempDir {
 public:
  TempDir();
  ~TempDir();
  TempDir(const TempDir&) = delete;
  TempDir& operator=(const TempDir&) = delete;
  const std::string& path() const { return path_; }
  std::string file(const std::string& name) const { return path_ + "/" + name; }

 private:
  std::string path_;
};

// Writes `contents` to `path`, replacing it.
void WriteFile(const std::string& path, const std::string& contents);
std::string ReadFile(const std::string& path);

}  // namespace d2lora::testing

#define D2_ASSERT_OK(expr)                               \
  do {                                                   \
    const ::absl::Status d2_st_ = ::absl::Status(expr);  \
    ASSERT_TRUE(d2_st_.ok()) << d2_st_;                  \
  } while (0)
#define D2_EXPECT_OK(expr)                               \
  do {                                                   \
    const ::absl::Status d2_st_ = ::absl::Status(expr);  \
    EXPECT_TRUE(d2_st_.ok()) << d2_st_;                  \
  } while (0)
