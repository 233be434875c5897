#include "worker/engine/eval/rouge.h"

#include <string>
#include <vector>

#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace d2lora::engine {
namespace {

using ::testing::ElementsAre;
using ::testing::HasSubstr;

TEST(RougeTest, TokensLikeRougeScore) {
  EXPECT_THAT(RougeTokens("Hello, World! It's 2024-05."),
              ElementsAre("hello", "world", "it", "s", "2024", "05"));
  EXPECT_THAT(RougeTokens("  \t\n"), ElementsAre());
  EXPECT_THAT(RougeTokens("caf\xc3\xa9 ok"), ElementsAre("caf", "ok"));  // non-ASCII dropped
  EXPECT_THAT(RougeTokens("running runs"), ElementsAre("running", "runs"));  // no stemming
}

TEST(RougeTest, Lcs) {
  using V = std::vector<std::string>;
  EXPECT_EQ(LcsLength(V{}, V{"a"}), 0u);
  EXPECT_EQ(LcsLength(V{"a", "b", "c", "d"}, V{"a", "c", "d"}), 3u);
  EXPECT_EQ(LcsLength(V{"a", "c", "d"}, V{"a", "b", "c", "d"}), 3u);
  // Classic: ABCBDAB vs BDCABA -> 4 (BCBA).
  EXPECT_EQ(LcsLength(V{"a", "b", "c", "b", "d", "a", "b"}, V{"b", "d", "c", "a", "b", "a"}), 4u);
  EXPECT_EQ(LcsLength(V{"x", "y"}, V{"y", "x"}), 1u);
}

TEST(RougeTest, ClassicExample) {
  // LCS "police the gunman" = 3 of 4 tokens on both sides.
  const RougeScore s = RougeL("police killed the gunman", "police kill the gunman");
  EXPECT_DOUBLE_EQ(s.precision, 0.75);
  EXPECT_DOUBLE_EQ(s.recall, 0.75);
  EXPECT_DOUBLE_EQ(s.f1, 0.75);
}

TEST(RougeTest, PrecisionRecallDiffer) {
  // candidate 2 tokens, reference 4, LCS 2: P = 1, R = 0.5, F = 2 * 0.5 / 1.5 = 2/3.
  const RougeScore s = RougeL("the cat", "the black cat sat");
  EXPECT_DOUBLE_EQ(s.precision, 1.0);
  EXPECT_DOUBLE_EQ(s.recall, 0.5);
  EXPECT_DOUBLE_EQ(s.f1, 2.0 / 3.0);
}

TEST(RougeTest, CaseAndPunctuationDoNotMatter) {
  const RougeScore s = RougeL("The CAT, sat!", "the cat sat");
  EXPECT_DOUBLE_EQ(s.f1, 1.0);
}

TEST(RougeTest, EmptyOrNoCommonTokensScoresZero) {
  for (const auto& [c, r] : std::vector<std::pair<std::string, std::string>>{
           {"", ""}, {"", "a b"}, {"a b", ""}, {"!!!", "..."}, {"a b", "c d"}}) {
    const RougeScore s = RougeL(c, r);
    EXPECT_EQ(s.precision, 0.0) << c << " | " << r;
    EXPECT_EQ(s.recall, 0.0) << c << " | " << r;
    EXPECT_EQ(s.f1, 0.0) << c << " | " << r;
  }
}

TEST(RougeTest, MeanF1) {
  absl::StatusOr<double> m = MeanRougeLF1({"police killed the gunman", "a b", ""},
                                          {"police kill the gunman", "a b", "x"});
  ASSERT_TRUE(m.ok()) << m.status();
  EXPECT_DOUBLE_EQ(*m, (0.75 + 1.0 + 0.0) / 3);
  EXPECT_EQ(*MeanRougeLF1({}, {}), 0.0);
  absl::StatusOr<double> bad = MeanRougeLF1({"a"}, {});
  ASSERT_FALSE(bad.ok());
  EXPECT_THAT(std::string(bad.status().message()), HasSubstr("1 candidates but 0 references"));
}

}  // namespace
}  // namespace d2lora::engine
