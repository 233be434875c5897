#include "worker/engine/tokenizer/bpe_trainer.h"

#include <cstdint>
#include <random>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "gtest/gtest.h"
#include "tests/support/test_support.h"
#include "worker/engine/tokenizer/tokenizer.h"

namespace d2lora::engine {
namespace {

using d2lora::testing::ReadFile;
using d2lora::testing::TempDir;

// Deterministic English-like text (raw mt19937 output is fixed by the standard).
std::vector<std::string> MakeCorpus(size_t approx_bytes) {
  static const char* kWords[] = {
      "the",    "a",      "model",   "learns", "low",    "rank",     "adapters", "for",   "every",
      "layer",  "and",    "merges",  "them",   "into",   "weights",  "when",     "done",  "tokens",
      "are",    "bytes",  "pairs",   "of",     "text",   "with",     "numbers",  "like",  "42",
      "3.14",   "naïve",  "café",    "über",   "it's",   "we're",    "(maybe)",  "yes!",  "no?",
      "quick",  "brown",  "fox",     "jumps",  "over",   "lazy",     "dog",      "in",    "2024"};
  std::mt19937 rng(1234);
  std::vector<std::string> corpus;
  size_t total = 0;
  while (total < approx_bytes) {
    std::string line;
    const int n = 5 + static_cast<int>(rng() % 15);
    for (int i = 0; i < n; ++i) {
      if (i > 0) line += (rng() % 17 == 0) ? "  " : " ";
      line += kWords[rng() % (sizeof(kWords) / sizeof(kWords[0]))];
    }
    line += (rng() % 3 == 0) ? ".\n\n" : ".\n";
    total += line.size();
    corpus.push_back(std::move(line));
  }
  return corpus;
}

TEST(BpeTrainerTest, TrainedTokenizerRoundTripsAndCompresses) {
  TempDir dir;
  const std::vector<std::string> corpus = MakeCorpus(50000);
  BpeTrainerOptions options;
  options.vocab_size = 400;
  D2_ASSERT_OK(TrainByteLevelBpe(corpus, options, dir.path()));

  auto tok = LoadTokenizer(dir.path());
  ASSERT_TRUE(tok.ok()) << tok.status();
  EXPECT_EQ((*tok)->vocab_size(), 400);
  EXPECT_EQ((*tok)->bos_id(), 397);
  EXPECT_EQ((*tok)->eos_id(), 398);
  EXPECT_EQ((*tok)->pad_id(), 399);
  EXPECT_EQ((*tok)->TokenToId("<|end_of_text|>"), 398);

  size_t bytes = 0, tokens = 0;
  for (size_t i = 0; i < 50; ++i) {
    const std::vector<int64_t> ids = (*tok)->Encode(corpus[i], false);
    EXPECT_EQ((*tok)->Decode(ids), corpus[i]);
    bytes += corpus[i].size();
    tokens += ids.size();
  }
  EXPECT_LT(tokens * 2, bytes) << "tokens " << tokens << " bytes " << bytes;

  for (const std::string s : {"unseen wörds 🙂 and   spaces\t\n", "x<|end_of_text|>y", ""}) {
    EXPECT_EQ((*tok)->Decode((*tok)->Encode(s, false), false), s);
  }
  const std::vector<int64_t> with_bos = (*tok)->Encode("the model", true);
  ASSERT_FALSE(with_bos.empty());
  EXPECT_EQ(with_bos[0], 397);
  EXPECT_EQ((*tok)->Encode("a<|end_of_text|>", false).back(), 398);
  EXPECT_EQ((*tok)->Decode(with_bos), "the model");

  const auto config = nlohmann::json::parse(ReadFile(dir.file("tokenizer_config.json")));
  EXPECT_EQ(config["bos_token"], "<|begin_of_text|>");
  EXPECT_EQ(config["add_bos_token"], true);
  const auto json = nlohmann::json::parse(ReadFile(dir.file("tokenizer.json")));
  EXPECT_EQ(json["model"]["merges"].size(), 400u - 256 - 3);
  EXPECT_EQ(json["pre_tokenizer"]["pretokenizers"][0]["type"], "Split");
}

TEST(BpeTrainerTest, Deterministic) {
  TempDir a, b;
  const std::vector<std::string> corpus = MakeCorpus(20000);
  D2_ASSERT_OK(TrainByteLevelBpe(corpus, {}, a.path()));
  D2_ASSERT_OK(TrainByteLevelBpe(corpus, {}, b.path()));
  EXPECT_EQ(ReadFile(a.file("tokenizer.json")), ReadFile(b.file("tokenizer.json")));
}

TEST(BpeTrainerTest, StopsWhenNoPairIsFrequentEnough) {
  TempDir dir;
  BpeTrainerOptions options;
  options.vocab_size = 1000;
  options.min_frequency = 2;
  D2_ASSERT_OK(TrainByteLevelBpe({"abab xyz"}, options, dir.path()));
  const auto json = nlohmann::json::parse(ReadFile(dir.file("tokenizer.json")));
  // "abab": (a,b) twice -> ab; then (ab,ab) once. "xyz": every pair once.
  ASSERT_EQ(json["model"]["merges"].size(), 1u);
  EXPECT_EQ(json["model"]["merges"][0], "a b");
  auto tok = LoadTokenizer(dir.path());
  ASSERT_TRUE(tok.ok()) << tok.status();
  EXPECT_EQ((*tok)->vocab_size(), 256 + 1 + 3);
  EXPECT_EQ((*tok)->Encode("abab", false), (std::vector<int64_t>{256, 256}));
}

TEST(BpeTrainerTest, MegabyteCorpus) {
  TempDir dir;
  const std::vector<std::string> corpus = MakeCorpus(1 << 20);
  BpeTrainerOptions options;
  options.vocab_size = 1024;
  D2_ASSERT_OK(TrainByteLevelBpe(corpus, options, dir.path()));
  auto tok = LoadTokenizer(dir.path());
  ASSERT_TRUE(tok.ok()) << tok.status();
  EXPECT_EQ((*tok)->Decode((*tok)->Encode(corpus[7], false)), corpus[7]);
}

TEST(BpeTrainerTest, RejectsBadOptions) {
  TempDir dir;
  BpeTrainerOptions options;
  options.vocab_size = 258;
  EXPECT_EQ(TrainByteLevelBpe({"x"}, options, dir.path()).code(), absl::StatusCode::kInvalidArgument);
  options.vocab_size = 512;
  options.special_tokens = {"<a>", "<a>"};
  EXPECT_EQ(TrainByteLevelBpe({"x"}, options, dir.path()).code(), absl::StatusCode::kInvalidArgument);
}

}  // namespace
}  // namespace d2lora::engine
