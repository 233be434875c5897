// A hand-written tokenizer.json: the 256 byte tokens (id = byte value), ten
// merges, three added tokens, the GPT-2 regex as Llama 3 ships it, and a
// template that adds <|bos|>. Expected ids are worked out by hand below.
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "gtest/gtest.h"
#include "tests/support/test_support.h"
#include "worker/engine/tokenizer/byte_level.h"
#include "worker/engine/tokenizer/tokenizer.h"
#include "worker/engine/tokenizer/tokenizer_bpe.h"

namespace d2lora::engine {
namespace {

using Ids = std::vector<int64_t>;
using d2lora::testing::TempDir;
using d2lora::testing::WriteFile;

// Merge ids: 256 Ġt, 257 he, 258 Ġthe, 259 ll, 260 llo, 261 ĠĠ, 262 12,
// 263 Ã© (é), 264 ello, 265 Ġw. Added: 266 <|bos|>, 267 <|eos|>, 268 <sep>.
constexpr int64_t kGt = 256, kHe = 257, kGthe = 258, kLlo = 260, kGG = 261, k12 = 262,
                  kEacute = 263, kGw = 265, kBos = 266, kEos = 267, kSep = 268;

nlohmann::json TinyTokenizerJson() {
  nlohmann::json vocab = nlohmann::json::object();
  for (int b = 0; b < 256; ++b) vocab[ByteToUnicode(static_cast<unsigned char>(b))] = b;
  const std::vector<std::string> merged = {"Ġt", "he", "Ġthe", "ll", "llo", "ĠĠ", "12", "Ã©", "ello", "Ġw"};
  for (size_t i = 0; i < merged.size(); ++i) vocab[merged[i]] = 256 + i;
  nlohmann::json merges = {"Ġ t", "h e", "Ġt he", "l l", "ll o", "Ġ Ġ", "1 2", "Ã ©",
                           nlohmann::json::array({"e", "llo"}), nlohmann::json::array({"Ġ", "w"})};
  return {
      {"version", "1.0"},
      {"added_tokens",
       {{{"id", kBos}, {"content", "<|bos|>"}, {"special", true}},
        {{"id", kEos}, {"content", "<|eos|>"}, {"special", true}},
        {{"id", kSep}, {"content", "<sep>"}, {"special", false}}}},
      {"normalizer", nullptr},
      {"pre_tokenizer",
       {{"type", "Sequence"},
        {"pretokenizers",
         {{{"type", "Split"},
           {"pattern",
            {{"Regex", "'s|'t|'re|'ve|'m|'ll|'d| ?\\p{L}+| ?\\p{N}+| ?[^\\s\\p{L}\\p{N}]+|\\s+(?!\\S)|\\s+"}}},
           {"behavior", "Isolated"},
           {"invert", false}},
          {{"type", "ByteLevel"}, {"add_prefix_space", false}, {"use_regex", false}}}}}},
      {"post_processor",
       {{"type", "TemplateProcessing"},
        {"single",
         {{{"SpecialToken", {{"id", "<|bos|>"}, {"type_id", 0}}}}, {{"Sequence", {{"id", "A"}, {"type_id", 0}}}}}},
        {"special_tokens", {{"<|bos|>", {{"id", "<|bos|>"}, {"ids", {kBos}}, {"tokens", {"<|bos|>"}}}}}}}},
      {"decoder", {{"type", "ByteLevel"}}},
      {"model", {{"type", "BPE"}, {"vocab", vocab}, {"merges", merges}}}};
}

class TinyBpeTest : public ::testing::Test {
 protected:
  void SetUp() override {
    WriteFile(dir_.file("tokenizer.json"), TinyTokenizerJson().dump());
    auto tok = LoadTokenizer(dir_.path());
    ASSERT_TRUE(tok.ok()) << tok.status();
    tok_ = std::move(tok).value();
  }
  Ids Enc(const std::string& s) const { return tok_->Encode(s, /*add_special_tokens=*/false); }

  TempDir dir_;
  std::unique_ptr<Tokenizer> tok_;
};

TEST_F(TinyBpeTest, MergesApplyByRank) {
  EXPECT_EQ(Enc("the"), (Ids{'t', kHe}));         // no "t h" merge
  EXPECT_EQ(Enc(" the"), (Ids{kGthe}));           // Ġ t -> Ġt, h e -> he, Ġt he
  EXPECT_EQ(Enc("hello"), (Ids{kHe, kLlo}));      // h e (rank 1) beats l l; "e llo" never fires
  EXPECT_EQ(Enc("hello the"), (Ids{kHe, kLlo, kGthe}));
  EXPECT_EQ(Enc(" world"), (Ids{kGw, 'o', 'r', 'l', 'd'}));  // the ["Ġ","w"] merge
  EXPECT_EQ(Enc(" t"), (Ids{kGt}));
}

TEST_F(TinyBpeTest, Spaces) {
  EXPECT_EQ(Enc("a b"), (Ids{'a', ' ', 'b'}));          // " b": Ġ b has no merge
  EXPECT_EQ(Enc("a  b"), (Ids{'a', ' ', ' ', 'b'}));    // "a", " ", " b"
  EXPECT_EQ(Enc("a   b"), (Ids{'a', kGG, ' ', 'b'}));   // "a", "  ", " b"
  EXPECT_EQ(Enc("the  "), (Ids{'t', kHe, kGG}));        // a trailing run stays whole
}

TEST_F(TinyBpeTest, NewlinesDigitsPunctuationNonAscii) {
  EXPECT_EQ(Enc("x\n\ny"), (Ids{'x', '\n', '\n', 'y'}));
  EXPECT_EQ(Enc("hi\n the"), (Ids{'h', 'i', '\n', kGthe}));
  EXPECT_EQ(Enc("12345"), (Ids{k12, '3', '4', '5'}));
  EXPECT_EQ(Enc("hi!?"), (Ids{'h', 'i', '!', '?'}));
  EXPECT_EQ(Enc("café"), (Ids{'c', 'a', 'f', kEacute}));  // é = C3 A9 -> "Ã©"
  EXPECT_EQ(Enc("中"), (Ids{0xE4, 0xB8, 0xAD}));
}

TEST_F(TinyBpeTest, AddedTokensAreSplitOutFirst) {
  EXPECT_EQ(Enc("the<|eos|>the"), (Ids{'t', kHe, kEos, 't', kHe}));
  EXPECT_EQ(Enc("a<sep> the"), (Ids{'a', kSep, kGthe}));
  EXPECT_EQ(Enc("<|bos|><|eos|>"), (Ids{kBos, kEos}));
  EXPECT_EQ(Enc("<|bos"), (Ids{'<', '|', 'b', 'o', 's'}));
}

TEST_F(TinyBpeTest, TemplateAddsBos) {
  EXPECT_EQ(tok_->Encode("the", true), (Ids{kBos, 't', kHe}));
  EXPECT_EQ(tok_->Encode("", true), (Ids{kBos}));
  EXPECT_EQ(tok_->bos_id(), kBos);
  EXPECT_FALSE(tok_->eos_id().has_value());
  EXPECT_EQ(tok_->vocab_size(), 269);
  EXPECT_EQ(tok_->TokenToId("Ġthe"), kGthe);
  EXPECT_EQ(tok_->TokenToId("<|eos|>"), kEos);
  EXPECT_FALSE(tok_->TokenToId("nope").has_value());
}

TEST_F(TinyBpeTest, Decode) {
  EXPECT_EQ(tok_->Decode({kBos, 't', kHe, kEos, kSep}), "the<sep>");
  EXPECT_EQ(tok_->Decode({kBos, 't', kHe, kEos}, /*skip_special_tokens=*/false), "<|bos|>the<|eos|>");
  EXPECT_EQ(tok_->Decode({kGthe, 99999, -1}), " the");  // unknown ids are skipped
}

TEST_F(TinyBpeTest, RoundTrips) {
  for (const std::string s :
       {"", "the", "Hello  world", "a \n\nb", "  leading and trailing  ", "tabs\t\tand\r\nCRLF",
        "digits 1234567890 and 3.14", "punct!?.,;:()[]{}<>'\"", "café naïve 中文 日本語 🙂",
        "It's we're I'll they'd", "<sep> in the middle<sep>", "\xff\xfe broken utf8 \xc3"}) {
    EXPECT_EQ(tok_->Decode(Enc(s)), s) << s;
  }
}

TEST_F(TinyBpeTest, TokenizerConfigNamesSpecialTokens) {
  WriteFile(dir_.file("tokenizer_config.json"),
            R"({"bos_token": {"content": "<|bos|>", "lstrip": false}, "eos_token": "<|eos|>",
                "pad_token": "<|eos|>", "add_bos_token": true})");
  auto tok = LoadTokenizer(dir_.path());
  ASSERT_TRUE(tok.ok()) << tok.status();
  EXPECT_EQ((*tok)->bos_id(), kBos);
  EXPECT_EQ((*tok)->eos_id(), kEos);
  EXPECT_EQ((*tok)->pad_id(), kEos);
}

TEST(BpeNoTemplateTest, AddBosTokenFromConfigWhenPostProcessorIsSilent) {
  TempDir dir;
  nlohmann::json j = TinyTokenizerJson();
  j["post_processor"] = {{"type", "ByteLevel"}};
  WriteFile(dir.file("tokenizer.json"), j.dump());
  auto plain = LoadTokenizer(dir.path());
  ASSERT_TRUE(plain.ok()) << plain.status();
  EXPECT_EQ((*plain)->Encode("the", true), (Ids{'t', kHe}));

  WriteFile(dir.file("tokenizer_config.json"),
            R"({"bos_token": "<|bos|>", "eos_token": "<|eos|>", "add_bos_token": true, "add_eos_token": true})");
  auto tok = LoadTokenizer(dir.path());
  ASSERT_TRUE(tok.ok()) << tok.status();
  EXPECT_EQ((*tok)->Encode("the", true), (Ids{kBos, 't', kHe, kEos}));
  EXPECT_EQ((*tok)->Encode("the", false), (Ids{'t', kHe}));
}

TEST(BpeByteLevelPreTokenizerTest, Gpt2StyleWithPrefixSpace) {
  TempDir dir;
  nlohmann::json j = TinyTokenizerJson();
  j["pre_tokenizer"] = {{"type", "ByteLevel"}, {"add_prefix_space", true}, {"use_regex", true}};
  j["post_processor"] = nullptr;
  WriteFile(dir.file("tokenizer.json"), j.dump());
  auto tok = LoadTokenizer(dir.path());
  ASSERT_TRUE(tok.ok()) << tok.status();
  EXPECT_EQ((*tok)->Encode("the", true), (Ids{kGthe}));  // " the"
  EXPECT_EQ((*tok)->Encode("hello the", false), (Ids{' ', kHe, kLlo, kGthe}));
}

TEST(BpeIgnoreMergesTest, WholeWordsInTheVocabularyWin) {
  TempDir dir;
  nlohmann::json j = TinyTokenizerJson();
  j["model"]["vocab"]["hel"] = 269;  // reachable by no merge
  j["model"]["ignore_merges"] = true;
  WriteFile(dir.file("tokenizer.json"), j.dump());
  auto tok = LoadTokenizer(dir.path());
  ASSERT_TRUE(tok.ok()) << tok.status();
  EXPECT_EQ((*tok)->Encode("hel", false), (Ids{269}));
  EXPECT_EQ((*tok)->Encode("hello", false), (Ids{kHe, kLlo}));
}

}  // namespace
}  // namespace d2lora::engine
