// LoadTokenizer's errors name the file and, where there is one, the field.
#include <string>

#include "gtest/gtest.h"
#include "tests/support/test_support.h"
#include "worker/engine/tokenizer/tokenizer.h"

namespace d2lora::engine {
namespace {

using d2lora::testing::TempDir;
using d2lora::testing::WriteFile;

// A minimal valid tokenizer.json with `model` spliced in.
std::string TokenizerJson(const std::string& model) {
  return R"({"pre_tokenizer": {"type": "ByteLevel", "add_prefix_space": false}, "model": )" + model + "}";
}

void ExpectError(const TempDir& dir, absl::StatusCode code, const std::string& file,
                 const std::string& detail) {
  auto tok = LoadTokenizer(dir.path());
  ASSERT_FALSE(tok.ok());
  EXPECT_EQ(tok.status().code(), code) << tok.status();
  EXPECT_NE(tok.status().message().find(dir.file(file)), absl::string_view::npos) << tok.status();
  EXPECT_NE(tok.status().message().find(detail), absl::string_view::npos) << tok.status();
}

TEST(LoadTokenizerTest, MissingFilesNameBoth) {
  TempDir dir;
  ExpectError(dir, absl::StatusCode::kNotFound, "tokenizer.json", "tokenizer.model");
}

TEST(LoadTokenizerTest, MalformedJson) {
  TempDir dir;
  WriteFile(dir.file("tokenizer.json"), "{\"model\": ");
  ExpectError(dir, absl::StatusCode::kInvalidArgument, "tokenizer.json", "malformed JSON");
}

TEST(LoadTokenizerTest, MissingModelVocabMerges) {
  TempDir dir;
  WriteFile(dir.file("tokenizer.json"), R"({"pre_tokenizer": {"type": "ByteLevel"}})");
  ExpectError(dir, absl::StatusCode::kInvalidArgument, "tokenizer.json", "model");
  WriteFile(dir.file("tokenizer.json"), TokenizerJson(R"({"type": "BPE", "merges": []})"));
  ExpectError(dir, absl::StatusCode::kInvalidArgument, "tokenizer.json", "model.vocab");
  WriteFile(dir.file("tokenizer.json"), TokenizerJson(R"({"type": "BPE", "vocab": {"a": 0}})"));
  ExpectError(dir, absl::StatusCode::kInvalidArgument, "tokenizer.json", "model.merges");
}

TEST(LoadTokenizerTest, MergeNamingAnUnknownToken) {
  TempDir dir;
  WriteFile(dir.file("tokenizer.json"),
            TokenizerJson(R"({"type": "BPE", "vocab": {"a": 0, "b": 1, "ab": 2}, "merges": ["a b", "a c"]})"));
  ExpectError(dir, absl::StatusCode::kInvalidArgument, "tokenizer.json", "model.merges[1]");
  WriteFile(dir.file("tokenizer.json"),
            TokenizerJson(R"({"type": "BPE", "vocab": {"a": 0, "b": 1}, "merges": [["a", "b"]]})"));
  ExpectError(dir, absl::StatusCode::kInvalidArgument, "tokenizer.json", "model.merges[0]");
  WriteFile(dir.file("tokenizer.json"),
            TokenizerJson(R"({"type": "BPE", "vocab": {"a": 0}, "merges": ["abc"]})"));
  ExpectError(dir, absl::StatusCode::kInvalidArgument, "tokenizer.json", "model.merges[0]");
}

TEST(LoadTokenizerTest, InvalidPattern) {
  TempDir dir;
  WriteFile(dir.file("tokenizer.json"), R"json({
    "pre_tokenizer": {"type": "Sequence", "pretokenizers": [
      {"type": "Split", "pattern": {"Regex": "a(?=b"}, "behavior": "Isolated"},
      {"type": "ByteLevel", "use_regex": false}]},
    "model": {"type": "BPE", "vocab": {"a": 0}, "merges": []}})json");
  ExpectError(dir, absl::StatusCode::kInvalidArgument, "tokenizer.json",
              "pre_tokenizer.pretokenizers[0].pattern");
}

TEST(LoadTokenizerTest, BadTokenizerConfig) {
  TempDir dir;
  WriteFile(dir.file("tokenizer.json"), TokenizerJson(R"({"type": "BPE", "vocab": {"a": 0}, "merges": []})"));
  WriteFile(dir.file("tokenizer_config.json"), "[1, 2");
  ExpectError(dir, absl::StatusCode::kInvalidArgument, "tokenizer_config.json", "malformed JSON");
  WriteFile(dir.file("tokenizer_config.json"), R"({"add_bos_token": "yes"})");
  ExpectError(dir, absl::StatusCode::kInvalidArgument, "tokenizer_config.json", "add_bos_token");
  WriteFile(dir.file("tokenizer_config.json"), R"({"bos_token": "<s>"})");
  ExpectError(dir, absl::StatusCode::kInvalidArgument, "tokenizer_config.json", "bos_token");
}

}  // namespace
}  // namespace d2lora::engine
