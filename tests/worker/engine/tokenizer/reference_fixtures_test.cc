// Our byte-level BPE against ids a reference implementation published: the
// GPT-2, Llama 3 and Qwen2 cases of llama.cpp's tokenizer tests (made with
// Hugging Face's AutoTokenizer), on trimmed copies of the original
// tokenizer.json files. Sources and the trimming rule: testdata/reference/README.md.
// The texts cover CJK, emoji with ZWJ sequences, combining signs, digit runs,
// mixed-case contractions, whitespace and newline runs; qwen2/nfc_cases.json
// (computed, not published) texts that NFC changes.
#include <cstdlib>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "common/file_util.h"
#include "gtest/gtest.h"
#include "worker/engine/tokenizer/tokenizer.h"

namespace d2lora::engine {
namespace {

std::string ReferenceDir(const std::string& name) {
  const char* root = std::getenv("D2LORA_SOURCE_DIR");
  return std::string(root != nullptr ? root : ".") + "/tests/worker/engine/tokenizer/testdata/reference/" + name;
}

// Encodes every case of `cases_file` with the tokenizer in `dir`; returns the
// number of cases.
int ExpectPublishedIds(const std::string& dir, const std::string& cases_file) {
  auto tokenizer = LoadTokenizer(dir);
  EXPECT_TRUE(tokenizer.ok()) << tokenizer.status();
  if (!tokenizer.ok()) return 0;
  auto text = ReadFileToString(dir + "/" + cases_file);
  EXPECT_TRUE(text.ok()) << text.status();
  if (!text.ok()) return 0;
  const nlohmann::json cases = nlohmann::json::parse(*text).at("cases");
  for (size_t i = 0; i < cases.size(); ++i) {
    const std::string input = cases[i].at("text").get<std::string>();
    const std::vector<int64_t> want = cases[i].at("ids").get<std::vector<int64_t>>();
    EXPECT_EQ((*tokenizer)->Encode(input, /*add_special_tokens=*/false), want)
        << dir << "/" << cases_file << " case " << i << ": '" << input << "'";
  }
  return static_cast<int>(cases.size());
}

TEST(ReferenceFixturesTest, Gpt2) { EXPECT_EQ(ExpectPublishedIds(ReferenceDir("gpt2"), "cases.json"), 46); }

TEST(ReferenceFixturesTest, Llama3) { EXPECT_EQ(ExpectPublishedIds(ReferenceDir("llama3"), "cases.json"), 46); }

TEST(ReferenceFixturesTest, Qwen2) { EXPECT_EQ(ExpectPublishedIds(ReferenceDir("qwen2"), "cases.json"), 46); }

TEST(ReferenceFixturesTest, Qwen2TextsThatNfcChanges) {
  EXPECT_EQ(ExpectPublishedIds(ReferenceDir("qwen2"), "nfc_cases.json"), 10);
}

}  // namespace
}  // namespace d2lora::engine
