// Pre-tokenisation must split exactly as Hugging Face tokenizers does (it runs
// the patterns with Oniguruma, as we do); the expected splits below were worked
// out by hand from the patterns' leftmost-first semantics, including the
// `\s+(?!\S)` lookahead. Ids against a reference implementation's published
// outputs: reference_fixtures_test.cc.
#include <string>
#include <vector>

#include "gtest/gtest.h"
#include "tests/support/test_support.h"
#include "worker/engine/tokenizer/byte_level.h"
#include "worker/engine/tokenizer/regex_splitter.h"

namespace d2lora::engine {
namespace {

using Pieces = std::vector<std::string>;

Pieces SplitWith(absl::string_view pattern, const std::string& text) {
  auto splitter = RegexSplitter::Create(pattern);
  EXPECT_TRUE(splitter.ok()) << splitter.status();
  if (!splitter.ok()) return {};
  std::vector<absl::string_view> parts;
  (*splitter)->Split(text, &parts);
  Pieces out;
  std::string joined;
  for (absl::string_view p : parts) {
    out.emplace_back(p);
    joined += std::string(p);
  }
  EXPECT_EQ(joined, text) << "pieces must cover the text";
  return out;
}

TEST(Gpt2PatternTest, WhitespaceRunsGiveTheirLastCharacterToTheNextWord) {
  EXPECT_EQ(SplitWith(kGpt2Pattern, "Hello  world"), (Pieces{"Hello", " ", " world"}));
  EXPECT_EQ(SplitWith(kGpt2Pattern, "Hello world"), (Pieces{"Hello", " world"}));
  EXPECT_EQ(SplitWith(kGpt2Pattern, "   leading"), (Pieces{"  ", " leading"}));
  EXPECT_EQ(SplitWith(kGpt2Pattern, "a   b"), (Pieces{"a", "  ", " b"}));
}

TEST(Gpt2PatternTest, NewlinesAndTrailingWhitespace) {
  // " \n\n" is followed by "b": the lookahead keeps " \n", then "\n" alone.
  EXPECT_EQ(SplitWith(kGpt2Pattern, "a \n\nb"), (Pieces{"a", " \n", "\n", "b"}));
  EXPECT_EQ(SplitWith(kGpt2Pattern, "a\n\nb"), (Pieces{"a", "\n", "\n", "b"}));
  EXPECT_EQ(SplitWith(kGpt2Pattern, "hi\n"), (Pieces{"hi", "\n"}));
  EXPECT_EQ(SplitWith(kGpt2Pattern, "\n\n\n"), (Pieces{"\n\n\n"}));
  EXPECT_EQ(SplitWith(kGpt2Pattern, "Hello world  "), (Pieces{"Hello", " world", "  "}));
  EXPECT_EQ(SplitWith(kGpt2Pattern, "end.  \n"), (Pieces{"end", ".", "  \n"}));
  EXPECT_EQ(SplitWith(kGpt2Pattern, "x\t\ty"), (Pieces{"x", "\t", "\t", "y"}));
  EXPECT_EQ(SplitWith(kGpt2Pattern, "hi\n the"), (Pieces{"hi", "\n", " the"}));
}

TEST(Gpt2PatternTest, UnicodeWhitespaceCountsAsWhitespace) {
  // U+3000 IDEOGRAPHIC SPACE and U+00A0 NO-BREAK SPACE are \s for Python's
  // `regex` and Oniguruma (not for RE2's ASCII \s).
  EXPECT_EQ(SplitWith(kGpt2Pattern, "a\u3000\u3000b"), (Pieces{"a", "\u3000", "\u3000", "b"}));
  EXPECT_EQ(SplitWith(kGpt2Pattern, "a \u00a0b"), (Pieces{"a", " ", "\u00a0", "b"}));
}

TEST(Gpt2PatternTest, ContractionsDigitsPunctuationLetters) {
  EXPECT_EQ(SplitWith(kGpt2Pattern, "I'm here's"), (Pieces{"I", "'m", " here", "'s"}));
  EXPECT_EQ(SplitWith(kGpt2Pattern, "price: $100.50!"),
            (Pieces{"price", ":", " $", "100", ".", "50", "!"}));
  EXPECT_EQ(SplitWith(kGpt2Pattern, "café au lait"), (Pieces{"café", " au", " lait"}));
  EXPECT_EQ(SplitWith(kGpt2Pattern, "abc123def"), (Pieces{"abc", "123", "def"}));
  EXPECT_EQ(SplitWith(kGpt2Pattern, ""), (Pieces{}));
}

TEST(Llama3PatternTest, MatchesTheOriginal) {
  EXPECT_EQ(SplitWith(kLlama3Pattern, "Hello  world"), (Pieces{"Hello", " ", " world"}));
  EXPECT_EQ(SplitWith(kLlama3Pattern, "12345"), (Pieces{"123", "45"}));
  // `\s*[\r\n]+` comes before the lookahead alternative and takes the whole run.
  EXPECT_EQ(SplitWith(kLlama3Pattern, "a \n\nb"), (Pieces{"a", " \n\n", "b"}));
  EXPECT_EQ(SplitWith(kLlama3Pattern, "x\tfoo"), (Pieces{"x", "\tfoo"}));
  EXPECT_EQ(SplitWith(kLlama3Pattern, "I'M ok"), (Pieces{"I", "'M", " ok"}));
  EXPECT_EQ(SplitWith(kLlama3Pattern, "hi!\n\nyo"), (Pieces{"hi", "!\n\n", "yo"}));
  EXPECT_EQ(SplitWith(kLlama3Pattern, "a  "), (Pieces{"a", "  "}));
  EXPECT_EQ(SplitWith(kLlama3Pattern, "(x)"), (Pieces{"(x", ")"}));
}

TEST(Qwen2PatternTest, SplitsDigitsOneByOne) {
  EXPECT_EQ(SplitWith(kQwen2Pattern, "12345"), (Pieces{"1", "2", "3", "4", "5"}));
  EXPECT_EQ(SplitWith(kQwen2Pattern, "Hello  world"), (Pieces{"Hello", " ", " world"}));
}

TEST(RegexSplitterTest, KeepsGapsBetweenMatches) {
  EXPECT_EQ(SplitWith(R"(\d+)", "ab12cd3"), (Pieces{"ab", "12", "cd", "3"}));
  EXPECT_EQ(SplitWith(R"(x*)", "abx"), (Pieces{"ab", "x"}));  // empty matches vanish
}

TEST(RegexSplitterTest, LookaroundRunsAsWritten) {
  EXPECT_EQ(SplitWith(R"(foo(?=bar))", "foobar foo"), (Pieces{"foo", "bar foo"}));
  EXPECT_EQ(SplitWith(R"((?<=a)b)", "abcb"), (Pieces{"a", "b", "cb"}));
}

TEST(RegexSplitterTest, InvalidPatternsFailClearly) {
  for (const char* pattern : {"foo(", "\\p{NoSuchProperty}", "[z-a]"}) {
    auto splitter = RegexSplitter::Create(pattern);
    ASSERT_FALSE(splitter.ok()) << pattern;
    EXPECT_EQ(splitter.status().code(), absl::StatusCode::kInvalidArgument);
    EXPECT_NE(splitter.status().message().find(pattern), absl::string_view::npos) << splitter.status();
    EXPECT_NE(splitter.status().message().find("Oniguruma: "), absl::string_view::npos)
        << splitter.status();
  }
  EXPECT_FALSE(RegexSplitter::Create("a\xff").ok());
}

TEST(RegexSplitterTest, InvalidUtf8BytesArePiecesOfTheirOwn) {
  // Every byte still reaches byte-level BPE; the valid runs split as usual.
  EXPECT_EQ(SplitWith(kGpt2Pattern, "ab\xff cd"), (Pieces{"ab", "\xff", " cd"}));
  EXPECT_EQ(SplitWith(kGpt2Pattern, "\xc3(x \xed\xa0\x80"),  // truncated; a surrogate
            (Pieces{"\xc3", "(", "x", " ", "\xed", "\xa0", "\x80"}));
  std::vector<absl::string_view> parts;
  RegexSplitter::Create(R"(\d)").value()->Split("1\xff" "2", &parts, /*keep_matches=*/false);
  EXPECT_EQ(Pieces(parts.begin(), parts.end()), (Pieces{"\xff"}));
}

TEST(RegexSplitterTest, QuotedLiteralsMatchThemselves) {
  for (const std::string literal : {"a.b", "(x)|[y]*", "\\d+", "?.^$", "é+"}) {
    const std::string text = "0" + literal + "1" + literal;
    EXPECT_EQ(SplitWith(QuoteRegexLiteral(literal), text), (Pieces{"0", literal, "1", literal}))
        << literal;
  }
  EXPECT_EQ(SplitWith(QuoteRegexLiteral(std::string("\0", 1)), std::string("a\0b", 3)),
            (Pieces{"a", std::string("\0", 1), "b"}));
}

TEST(ByteLevelTest, Gpt2Table) {
  EXPECT_EQ(ByteToUnicode('a'), "a");
  EXPECT_EQ(ByteToUnicode(' '), "\u0120");   // Ġ
  EXPECT_EQ(ByteToUnicode('\n'), "\u010a");  // Ċ
  EXPECT_EQ(ByteToUnicode(0xC3), "\u00c3");  // Ã
  EXPECT_EQ(ByteToUnicode(0xA9), "\u00a9");  // ©
  EXPECT_EQ(ByteToUnicode(0xAD), "\u0143");  // the last remapped byte: 256 + 67
  std::string all;
  for (int b = 0; b < 256; ++b) all.push_back(static_cast<char>(b));
  EXPECT_EQ(UnicodeStringToBytes(BytesToUnicodeString(all)), all);
  EXPECT_FALSE(UnicodeStringToBytes("\u4e2d").has_value());
}

}  // namespace
}  // namespace d2lora::engine
