// The tokenizer.json normalizers (utf8proc): Unicode's own conformance file
// NormalizationTest.txt (Debian's unicode-data, which tests/run.sh installs),
// and how a tokenizer.json's normalizer reaches the ids.
#include <cstdio>
#include <memory>
#include <string>
#include <vector>

#include "absl/strings/numbers.h"
#include "absl/strings/str_split.h"
#include "absl/strings/strip.h"
#include "gtest/gtest.h"
#include "tests/support/test_support.h"
#include "worker/engine/tokenizer/byte_level.h"
#include "worker/engine/tokenizer/normalizer.h"
#include "worker/engine/tokenizer/tokenizer.h"

namespace d2lora::engine {
namespace {

constexpr char kNormalizationTest[] = "/usr/share/unicode/NormalizationTest.txt.bz2";

// "0044 0307" -> the UTF-8 of U+0044 U+0307.
std::string FromCodePoints(absl::string_view column) {
  std::string out;
  for (absl::string_view hex : absl::StrSplit(column, ' ', absl::SkipEmpty())) {
    uint32_t cp = 0;
    EXPECT_TRUE(absl::SimpleHexAtoi(hex, &cp)) << hex;
    AppendUtf8(static_cast<char32_t>(cp), &out);
  }
  return out;
}

TEST(NormalizerTest, UnicodeConformanceFile) {
  std::unique_ptr<FILE, int (*)(FILE*)> in(popen(absl::StrCat("bzcat ", kNormalizationTest, " 2>/dev/null").c_str(), "r"),
                                          pclose);
  ASSERT_NE(in, nullptr);
  std::string text;
  char buffer[1 << 16];
  for (size_t n; (n = fread(buffer, 1, sizeof(buffer), in.get())) > 0;) text.append(buffer, n);
  if (text.empty()) GTEST_SKIP() << kNormalizationTest << " is missing (Debian package unicode-data)";
  int lines = 0, failures = 0;
  for (absl::string_view line : absl::StrSplit(text, '\n')) {
    if (line.empty() || line[0] == '#' || line[0] == '@') continue;
    std::vector<absl::string_view> cols = absl::StrSplit(line, ';');
    ASSERT_GE(cols.size(), 5u) << line;
    std::string c[5];
    for (int i = 0; i < 5; ++i) c[i] = FromCodePoints(cols[i]);
    ++lines;
    // The file's invariants: c2 == NFC(c1..c3), c4 == NFC(c4..c5), c3 == NFD(c1..c3),
    // c5 == NFD(c4..c5), c4 == NFKC(any), c5 == NFKD(any).
    auto expect = [&](UnicodeForm form, int source, int want) {
      if (NormalizeUnicode(c[source], form) != c[want] && ++failures <= 10) {
        ADD_FAILURE() << "line '" << line << "': form " << static_cast<int>(form) << " of c" << source + 1
                      << " is not c" << want + 1;
      }
    };
    for (int i = 0; i < 3; ++i) expect(UnicodeForm::kNFC, i, 1), expect(UnicodeForm::kNFD, i, 2);
    for (int i = 3; i < 5; ++i) expect(UnicodeForm::kNFC, i, 3), expect(UnicodeForm::kNFD, i, 4);
    for (int i = 0; i < 5; ++i) expect(UnicodeForm::kNFKC, i, 3), expect(UnicodeForm::kNFKD, i, 4);
  }
  EXPECT_GT(lines, 15000) << "the conformance file was not read whole";
  EXPECT_EQ(failures, 0);
}

TEST(NormalizerTest, FormsAndSequences) {
  EXPECT_EQ(NormalizeUnicode("Cafe\u0301", UnicodeForm::kNFC), "Caf\u00e9");
  EXPECT_EQ(NormalizeUnicode("Caf\u00e9", UnicodeForm::kNFD), "Cafe\u0301");
  EXPECT_EQ(NormalizeUnicode("\ufb01 \u2460", UnicodeForm::kNFC), "\ufb01 \u2460");  // compatibility kept
  EXPECT_EQ(NormalizeUnicode("\ufb01 \u2460", UnicodeForm::kNFKC), "fi 1");
  EXPECT_EQ(NormalizeUnicode("\u1100\u1161", UnicodeForm::kNFC), "\uac00");  // Hangul jamo
  Normalizer sequence;
  EXPECT_TRUE(sequence.empty());
  sequence.Add(UnicodeForm::kNFKD);
  sequence.Add(UnicodeForm::kNFC);
  EXPECT_EQ(sequence.Apply("\ufb01e\u0301"), "fi\u00e9");
  UnicodeForm form;
  EXPECT_TRUE(ParseUnicodeForm("NFKC", &form));
  EXPECT_EQ(form, UnicodeForm::kNFKC);
  EXPECT_FALSE(ParseUnicodeForm("Lowercase", &form));
}

TEST(NormalizerTest, InvalidBytesPassThroughAndValidRunsAreNormalized) {
  EXPECT_EQ(NormalizeUnicode("e\u0301\xff" "e\u0301\xc3", UnicodeForm::kNFC), "\u00e9\xff\u00e9\xc3");
  EXPECT_EQ(NormalizeUnicode("\xed\xa0\x80", UnicodeForm::kNFC), "\xed\xa0\x80");  // a surrogate
  EXPECT_EQ(ValidUtf8Length("ab\xe2\x82"), 2u);
  EXPECT_EQ(ValidUtf8Length("\xc0\xaf"), 0u);  // overlong '/'
  EXPECT_EQ(ValidUtf8Length("\xf4\x90\x80\x80"), 0u);  // past U+10FFFF
  EXPECT_EQ(ValidUtf8Length("\xf0\x9f\x91\x8d!"), 5u);
}

// A byte-level tokenizer whose vocabulary has "é" (as one precomposed character)
// and a merge for it: with an NFC normalizer a decomposed "é" reaches the same id.
std::string TinyTokenizerJson(const std::string& normalizer) {
  const std::string e = BytesToUnicodeString("\u00e9");          // "Ã©"
  const std::string a = e.substr(0, 2), b = e.substr(2);        // its two byte symbols
  const std::string acute = BytesToUnicodeString("\u0301");
  return absl::StrCat(R"({"normalizer": )", normalizer, R"(, "pre_tokenizer": {"type": "ByteLevel",
      "add_prefix_space": false, "use_regex": true}, "model": {"type": "BPE", "vocab": {"e": 0, ")", a,
                      R"(": 1, ")", b, R"(": 2, ")", e, R"(": 3, ")", acute.substr(0, 2), R"(": 4, ")",
                      acute.substr(2), R"(": 5}, "merges": [")", a, " ", b, R"("]}})");
}

TEST(NormalizerTest, NfcNormalizerReachesTheIds) {
  d2lora::testing::TempDir nfc, none, bad;
  d2lora::testing::WriteFile(nfc.file("tokenizer.json"), TinyTokenizerJson(R"({"type": "NFC"})"));
  d2lora::testing::WriteFile(none.file("tokenizer.json"), TinyTokenizerJson("null"));
  d2lora::testing::WriteFile(bad.file("tokenizer.json"),
                             TinyTokenizerJson(R"({"type": "Sequence", "normalizers": [{"type": "NFC"}, {"type": "Lowercase"}]})"));
  auto with_nfc = LoadTokenizer(nfc.path());
  auto without = LoadTokenizer(none.path());
  ASSERT_TRUE(with_nfc.ok()) << with_nfc.status();
  ASSERT_TRUE(without.ok()) << without.status();
  EXPECT_EQ((*with_nfc)->Encode("e\u0301", false), (std::vector<int64_t>{3}));
  EXPECT_EQ((*with_nfc)->Encode("\u00e9", false), (std::vector<int64_t>{3}));
  EXPECT_EQ((*without)->Encode("e\u0301", false), (std::vector<int64_t>{0, 4, 5}));
  auto refused = LoadTokenizer(bad.path());
  ASSERT_FALSE(refused.ok());
  EXPECT_NE(refused.status().message().find("normalizer.normalizers[1]"), absl::string_view::npos)
      << refused.status();
  EXPECT_NE(refused.status().message().find("Lowercase"), absl::string_view::npos) << refused.status();
}

}  // namespace
}  // namespace d2lora::engine
