#include "worker/engine/tokenizer/tokenizer_sentencepiece.h"

#include <string>
#include <vector>

#include "gtest/gtest.h"
#include "tests/support/test_support.h"
#include "worker/engine/tokenizer/sentencepiece_library.h"
#include "worker/engine/tokenizer/tokenizer.h"

namespace d2lora::engine {
namespace {

using d2lora::testing::TempDir;
using d2lora::testing::WriteFile;

// Trains a tiny BPE SentencePiece model as dir/tokenizer.model.
void TrainTinyModel(const TempDir& dir) {
  std::string text;
  const char* kLines[] = {"the quick brown fox jumps over the lazy dog",
                          "a model learns low rank adapters for every layer",
                          "hello world, hello tokens and hello bytes",
                          "numbers like 42 and 3.14 appear in the text",
                          "we merge the adapters into the weights when done"};
  for (int rep = 0; rep < 20; ++rep) {
    for (const char* line : kLines) text += std::string(line) + "\n";
  }
  WriteFile(dir.file("corpus.txt"), text);
  // SentencePieceTrainer::Train, run inside the shim (it cannot share a process
  // image with LibTorch's protobuf otherwise).
  D2_ASSERT_OK(TrainSentencePiece(
      "--input=" + dir.file("corpus.txt") + " --model_prefix=" + dir.file("tokenizer") +
      " --model_type=bpe --vocab_size=120 --character_coverage=1.0 --num_threads=1"
      " --minloglevel=2 --hard_vocab_limit=false"));
}

TEST(SentencePieceTokenizerTest, TrainLoadRoundTrip) {
  TempDir dir;
  ASSERT_NO_FATAL_FAILURE(TrainTinyModel(dir));
  auto tok = LoadTokenizer(dir.path());
  ASSERT_TRUE(tok.ok()) << tok.status();
  EXPECT_EQ((*tok)->bos_id(), 1);
  EXPECT_EQ((*tok)->eos_id(), 2);
  EXPECT_FALSE((*tok)->pad_id().has_value());
  EXPECT_EQ((*tok)->TokenToId("<s>"), 1);
  EXPECT_EQ((*tok)->TokenToId("<unk>"), 0);
  EXPECT_FALSE((*tok)->TokenToId("no-such-piece").has_value());
  EXPECT_LE((*tok)->vocab_size(), 120);

  for (const std::string s : {"the quick brown fox", "hello world, hello tokens", "numbers like 42 and 3.14",
                              "we merge the adapters"}) {
    const std::vector<int64_t> ids = (*tok)->Encode(s, true);
    ASSERT_GE(ids.size(), 2u);
    EXPECT_EQ(ids[0], 1) << "BOS by default";
    EXPECT_NE(ids.back(), 2) << "no EOS by default";
    EXPECT_LT(ids.size(), s.size());
    EXPECT_EQ((*tok)->Decode(ids), s);
    EXPECT_EQ((*tok)->Encode(s, false), std::vector<int64_t>(ids.begin() + 1, ids.end()));
  }
  EXPECT_EQ((*tok)->Decode({1, (*tok)->TokenToId("▁the").value_or(0)}, false), "<s>the");
}

TEST(SentencePieceTokenizerTest, ConfigControlsBosAndEos) {
  TempDir dir;
  ASSERT_NO_FATAL_FAILURE(TrainTinyModel(dir));
  WriteFile(dir.file("tokenizer_config.json"),
            R"({"add_bos_token": false, "add_eos_token": true, "pad_token": "<unk>"})");
  auto tok = LoadTokenizer(dir.path());
  ASSERT_TRUE(tok.ok()) << tok.status();
  const std::vector<int64_t> ids = (*tok)->Encode("hello world", true);
  ASSERT_FALSE(ids.empty());
  EXPECT_NE(ids.front(), 1);
  EXPECT_EQ(ids.back(), 2);
  EXPECT_EQ((*tok)->pad_id(), 0);
  EXPECT_EQ((*tok)->Decode(ids), "hello world");
}

TEST(SentencePieceTokenizerTest, NonByteLevelTokenizerJsonFallsBackToTheModel) {
  TempDir dir;
  ASSERT_NO_FATAL_FAILURE(TrainTinyModel(dir));
  // Llama 2 style: SentencePiece-like BPE with Metaspace, not byte-level.
  const std::string llama2_json = R"({
    "normalizer": {"type": "Sequence", "normalizers": [{"type": "Prepend", "prepend": "▁"}]},
    "pre_tokenizer": null,
    "model": {"type": "BPE", "byte_fallback": true, "vocab": {"a": 0}, "merges": []}})";
  WriteFile(dir.file("tokenizer.json"), llama2_json);
  auto tok = LoadTokenizer(dir.path());
  ASSERT_TRUE(tok.ok()) << tok.status();
  EXPECT_EQ((*tok)->Decode((*tok)->Encode("hello world", true)), "hello world");

  TempDir only_json;
  WriteFile(only_json.file("tokenizer.json"), llama2_json);
  auto refused = LoadTokenizer(only_json.path());
  ASSERT_FALSE(refused.ok());
  EXPECT_EQ(refused.status().code(), absl::StatusCode::kUnimplemented);
  EXPECT_NE(refused.status().message().find(only_json.file("tokenizer.json")), absl::string_view::npos)
      << refused.status();
}

TEST(SentencePieceTokenizerTest, GarbageModelNamesTheFile) {
  TempDir dir;
  WriteFile(dir.file("tokenizer.model"), "not a protobuf");
  auto tok = LoadTokenizer(dir.path());
  ASSERT_FALSE(tok.ok());
  EXPECT_NE(tok.status().message().find(dir.file("tokenizer.model")), absl::string_view::npos)
      << tok.status();
}

}  // namespace
}  // namespace d2lora::engine
