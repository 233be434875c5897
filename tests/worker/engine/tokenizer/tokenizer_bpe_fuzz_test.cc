// Regressions found by tests/fuzz/tokenizer_json_fuzzer: each input is reduced
// from a fuzzer crash (the full reproducer is in tests/fuzz/corpus/tokenizer_json/)
// and must now be a clean error naming the file and the field.
#include <string>

#include <nlohmann/json.hpp>

#include "gtest/gtest.h"
#include "worker/engine/tokenizer/tokenizer_bpe.h"

namespace d2lora::engine {
namespace {

// A byte-level tokenizer.json with vocab {a: 0, b: 1} and the given post-processor.
std::string WithPostProcessor(const nlohmann::json& post) {
  return nlohmann::json{{"model", {{"type", "BPE"}, {"vocab", {{"a", 0}, {"b", 1}}}, {"merges", nlohmann::json::array()}}},
                        {"added_tokens", {{{"id", 2}, {"content", "<s>"}, {"special", true}}}},
                        {"pre_tokenizer", {{"type", "ByteLevel"}}},
                        {"post_processor", post}}
      .dump();
}

// crash_post_processor_id: RobertaProcessing's sep id 262 was past the vocabulary,
// and Encode(text, true) returned it (an out-of-range embedding row later).
TEST(BpeTokenizerFuzzRegressionTest, PostProcessorIdOutsideTheVocabularyIsAnError) {
  auto tok = ParseBpeTokenizer(
      WithPostProcessor({{"type", "RobertaProcessing"}, {"cls", {"<s>", 2}}, {"sep", {"</s>", 262}}}),
      "tok.json", TokenizerConfig{});
  ASSERT_FALSE(tok.ok());
  EXPECT_EQ(tok.status().message(), "tok.json: post_processor.sep: id 262 is not in the vocabulary");

  tok = ParseBpeTokenizer(WithPostProcessor({{"type", "BertProcessing"}, {"cls", {"<s>", -1}}, {"sep", {"<s>", 2}}}),
                          "tok.json", TokenizerConfig{});
  ASSERT_FALSE(tok.ok());
  EXPECT_EQ(tok.status().message(), "tok.json: post_processor.cls: id -1 is not in the vocabulary");

  tok = ParseBpeTokenizer(
      WithPostProcessor({{"type", "TemplateProcessing"},
                         {"single", {{{"SpecialToken", {{"id", "<s>"}}}}, {{"Sequence", {{"id", "A"}}}}}},
                         {"special_tokens", {{"<s>", {{"id", "<s>"}, {"ids", {7}}}}}}}),
      "tok.json", TokenizerConfig{});
  ASSERT_FALSE(tok.ok());
  EXPECT_EQ(tok.status().message(),
            "tok.json: post_processor.special_tokens[\"<s>\"].ids: id 7 is not in the vocabulary");

  // Ids of model.vocab and of added_tokens are fine.
  tok = ParseBpeTokenizer(WithPostProcessor({{"type", "RobertaProcessing"}, {"cls", {"<s>", 2}}, {"sep", {"b", 1}}}),
                          "tok.json", TokenizerConfig{});
  ASSERT_TRUE(tok.ok()) << tok.status();
  EXPECT_EQ((*tok)->Encode("a", true), (std::vector<int64_t>{2, 0, 1}));
}

// crash_huge_vocab_id: a vocab id of 10^15 made the model allocate an array
// indexed by id (allocation-size-too-big); an added token with id INT64_MAX
// overflowed vocab_size().
TEST(BpeTokenizerFuzzRegressionTest, TokenIdsHaveALimit) {
  auto tok = ParseBpeTokenizer(
      R"({"model": {"type": "BPE", "vocab": {"a": 0, "b": 1000000000000000}, "merges": []},
          "pre_tokenizer": {"type": "ByteLevel"}})",
      "tok.json", TokenizerConfig{});
  ASSERT_FALSE(tok.ok());
  EXPECT_EQ(tok.status().message(),
            "tok.json: model.vocab: token 'b' has id 1000000000000000, not below the limit of 16777216");

  tok = ParseBpeTokenizer(
      R"({"model": {"type": "BPE", "vocab": {"a": 0}, "merges": []}, "pre_tokenizer": {"type": "ByteLevel"},
          "added_tokens": [{"id": 9223372036854775807, "content": "<s>"}]})",
      "tok.json", TokenizerConfig{});
  ASSERT_FALSE(tok.ok());
  EXPECT_EQ(tok.status().message(),
            "tok.json: added_tokens[0]: needs an integer 'id' in [0, 16777216) and a non-empty string 'content'");

  // The largest id allowed loads.
  tok = ParseBpeTokenizer(
      R"({"model": {"type": "BPE", "vocab": {"a": 0}, "merges": []}, "pre_tokenizer": {"type": "ByteLevel"},
          "added_tokens": [{"id": 16777215, "content": "<s>"}]})",
      "tok.json", TokenizerConfig{});
  ASSERT_TRUE(tok.ok()) << tok.status();
  EXPECT_EQ((*tok)->vocab_size(), 16777216);
}

}  // namespace
}  // namespace d2lora::engine
