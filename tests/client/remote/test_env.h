// A scratch folder as $HOME with the d2lora settings variables cleared, put
// back as they were afterwards.
#pragma once

#include <gtest/gtest.h>

#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <map>
#include <optional>
#include <string>

namespace d2lora::cli::remote_test {

class ScratchEnv : public ::testing::Test {
 protected:
  void SetUp() override {
    char pattern[] = "/tmp/d2lora-remote-test-XXXXXX";
    ASSERT_NE(::mkdtemp(pattern), nullptr);
    dir_ = pattern;
    for (const char* name :
         {"HOME", "XDG_CONFIG_HOME", "D2LORA_CONFIG", "D2LORA_ENDPOINT", "D2LORA_TOKEN", "D2LORA_TLS_CA"}) {
      const char* value = std::getenv(name);
      saved_[name] = value ? std::optional<std::string>(value) : std::nullopt;
      ::unsetenv(name);
    }
    ::setenv("HOME", dir_.c_str(), 1);
  }

  void TearDown() override {
    for (const auto& [name, value] : saved_) {
      if (value) {
        ::setenv(name.c_str(), value->c_str(), 1);
      } else {
        ::unsetenv(name.c_str());
      }
    }
    std::error_code ec;
    std::filesystem::remove_all(dir_, ec);
  }

  // Writes `text` to `rel` under the scratch folder; returns the full path.
  std::string Write(const std::string& rel, const std::string& text) {
    const std::filesystem::path path = std::filesystem::path(dir_) / rel;
    std::filesystem::create_directories(path.parent_path());
    std::ofstream(path) << text;
    return path.string();
  }

  const std::string& dir() const { return dir_; }

 private:
  std::string dir_;
  std::map<std::string, std::optional<std::string>> saved_;
};

}  // namespace d2lora::cli::remote_test
