#include "worker/engine/data/examples.h"

#include <string>
#include <vector>

#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "tests/support/test_support.h"
#include "tests/worker/engine/data/byte_tokenizer.h"

namespace d2lora::engine {
namespace {

using testing::ByteTokenizer;
using ::testing::ElementsAre;
using ::testing::HasSubstr;

constexpr int64_t kBos = 1;
constexpr int64_t kEos = 2;

std::vector<int64_t> Cat(std::vector<int64_t> a, const std::vector<int64_t>& b) {
  a.insert(a.end(), b.begin(), b.end());
  return a;
}
std::vector<int64_t> B(const std::string& s) { return ByteTokenizer::Ids(s); }

Record Lm(const std::string& text) {
  Record r;
  r.text = text;
  return r;
}
Record Ids(std::vector<int64_t> ids) {
  Record r;
  r.input_ids = std::move(ids);
  r.has_input_ids = true;
  return r;
}
Record Inst(const std::string& prompt, const std::string& completion) {
  Record r;
  r.prompt = prompt;
  r.completion = completion;
  return r;
}
Record Mc(const std::string& context, const std::string& question,
          std::vector<std::string> choices, int64_t label) {
  Record r;
  r.context = context;
  r.question = question;
  r.choices = std::move(choices);
  r.label = label;
  return r;
}

TEST(MultipleChoicePromptTest, TemplateByHand) {
  EXPECT_EQ(FormatMultipleChoicePrompt("The sky.", "What colour?", {"red", "blue", "green"}),
            "The sky.\n\nQuestion: What colour?\nA. red\nB. blue\nC. green\nAnswer:");
  EXPECT_EQ(FormatMultipleChoicePrompt("", "2+2?", {"3", "4"}), "Question: 2+2?\nA. 3\nB. 4\nAnswer:");
  EXPECT_EQ(ChoiceLetter(0), "A");
  EXPECT_EQ(ChoiceLetter(25), "Z");
}

TEST(ExamplesTest, LmTextLossOnAllButFirst) {
  ByteTokenizer tok;
  absl::StatusOr<Example> ex = MakeExample(Lm("abc"), DataFormat::kText, tok, 100);
  D2_ASSERT_OK(ex.status());
  EXPECT_EQ(ex->ids, Cat({kBos}, B("abc")));
  EXPECT_THAT(ex->loss_mask, ElementsAre(0, 1, 1, 1));
  EXPECT_EQ(ex->num_targets(), 3);

  ex = MakeExample(Ids({7, 8, 9}), DataFormat::kText, tok, 100);
  D2_ASSERT_OK(ex.status());
  EXPECT_THAT(ex->ids, ElementsAre(7, 8, 9));  // as given, nothing added
  EXPECT_THAT(ex->loss_mask, ElementsAre(0, 1, 1));
}

TEST(ExamplesTest, InstructionLossCoversExactlyTheCompletionAndEos) {
  ByteTokenizer tok;
  absl::StatusOr<Example> ex = MakeExample(Inst("ab", "cd"), DataFormat::kInstruction, tok, 100);
  D2_ASSERT_OK(ex.status());
  EXPECT_EQ(ex->ids, Cat(Cat({kBos}, B("abcd")), {kEos}));
  EXPECT_THAT(ex->loss_mask, ElementsAre(0, 0, 0, 1, 1, 1));

  ByteTokenizer no_specials(false, false);
  ex = MakeExample(Inst("ab", "cd"), DataFormat::kInstruction, no_specials, 100);
  D2_ASSERT_OK(ex.status());
  EXPECT_EQ(ex->ids, B("abcd"));
  EXPECT_THAT(ex->loss_mask, ElementsAre(0, 0, 1, 1));
}

TEST(ExamplesTest, MultipleChoiceTrainsOnTheCorrectChoiceText) {
  ByteTokenizer tok;
  absl::StatusOr<Example> ex =
      MakeExample(Mc("", "Q", {"x", "yz"}, 1), DataFormat::kMultipleChoice, tok, 1000);
  D2_ASSERT_OK(ex.status());
  const std::string prompt = "Question: Q\nA. x\nB. yz\nAnswer:";
  EXPECT_EQ(ex->ids, Cat(Cat(Cat({kBos}, B(prompt)), B(" yz")), {kEos}));
  std::vector<uint8_t> mask(1 + prompt.size(), 0);
  mask.insert(mask.end(), {1, 1, 1, 1});
  EXPECT_EQ(ex->loss_mask, mask);
}

TEST(ExamplesTest, TruncationLmKeepsTheLeft) {
  ByteTokenizer tok;
  bool truncated = false;
  absl::StatusOr<Example> ex = MakeExample(Lm("abcdef"), DataFormat::kText, tok, 4, &truncated);
  D2_ASSERT_OK(ex.status());
  EXPECT_TRUE(truncated);
  EXPECT_EQ(ex->ids, Cat({kBos}, B("abc")));
  EXPECT_THAT(ex->loss_mask, ElementsAre(0, 1, 1, 1));
}

TEST(ExamplesTest, TruncationInstructionKeepsBosAndTheEndOfThePrompt) {
  ByteTokenizer tok;
  bool truncated = false;
  absl::StatusOr<Example> ex =
      MakeExample(Inst("abcdef", "xy"), DataFormat::kInstruction, tok, 5, &truncated);
  D2_ASSERT_OK(ex.status());
  EXPECT_TRUE(truncated);
  EXPECT_EQ(ex->ids, Cat(Cat({kBos}, B("fxy")), {kEos}));
  EXPECT_THAT(ex->loss_mask, ElementsAre(0, 0, 1, 1, 1));

  // The completion alone is too long: no prompt, completion cut on the right.
  ex = MakeExample(Inst("ab", "wxyz"), DataFormat::kInstruction, tok, 4, &truncated);
  D2_ASSERT_OK(ex.status());
  EXPECT_EQ(ex->ids, Cat({kBos}, B("wxy")));
  EXPECT_THAT(ex->loss_mask, ElementsAre(0, 1, 1, 1));

  // Fits exactly: untouched.
  ex = MakeExample(Inst("ab", "c"), DataFormat::kInstruction, tok, 5, &truncated);
  D2_ASSERT_OK(ex.status());
  EXPECT_FALSE(truncated);
  EXPECT_EQ(ex->ids.size(), 5u);
}

TEST(ExamplesTest, ExamplesWithoutTargetsAreDroppedAndCounted) {
  ByteTokenizer tok;
  Dataset lm;
  lm.path = "d.jsonl";
  lm.format = DataFormat::kText;
  lm.records = {Lm("abc"), Ids({5}), Lm("abcdefgh"), Ids({5, 6})};
  for (size_t i = 0; i < lm.records.size(); ++i) lm.records[i].line = static_cast<int64_t>(i + 1);
  absl::StatusOr<ExampleSet> set = MakeExamples(lm, tok, 4);
  D2_ASSERT_OK(set.status());
  EXPECT_EQ(set->examples.size(), 3u);
  EXPECT_EQ(set->dropped, 1);
  EXPECT_EQ(set->truncated, 1);
  EXPECT_THAT(set->source_lines, ElementsAre(1, 3, 4));

  Dataset inst;
  inst.path = "i.jsonl";
  inst.format = DataFormat::kInstruction;
  inst.records = {Inst("p", "c")};
  set = MakeExamples(inst, tok, 1);  // only BOS fits
  D2_ASSERT_OK(set.status());
  EXPECT_TRUE(set->examples.empty());
  EXPECT_EQ(set->dropped, 1);
}

TEST(ExamplesTest, IdsOutsideTheVocabularyNameTheLine) {
  ByteTokenizer tok;
  Dataset lm;
  lm.path = "d.jsonl";
  lm.records = {Ids({5, 300})};
  lm.records[0].line = 7;
  absl::StatusOr<ExampleSet> set = MakeExamples(lm, tok, 16);
  ASSERT_FALSE(set.ok());
  EXPECT_THAT(set.status().message(), HasSubstr("d.jsonl:7: input_ids[1] = 300"));
  EXPECT_FALSE(MakeExample(Lm("a"), DataFormat::kText, tok, 0).ok());
}

TEST(ChoiceExampleTest, PromptContinuationsLettersByHand) {
  ByteTokenizer tok;
  Record r = Mc("ctx", "Q", {"x", "yy"}, 1);
  absl::StatusOr<ChoiceExample> ex = MakeChoiceExample(r, tok, 0);
  D2_ASSERT_OK(ex.status());
  EXPECT_EQ(ex->prompt_ids, Cat({kBos}, B("ctx\n\nQuestion: Q\nA. x\nB. yy\nAnswer:")));
  ASSERT_EQ(ex->choice_ids.size(), 2u);
  EXPECT_EQ(ex->choice_ids[0], B(" x"));
  EXPECT_EQ(ex->choice_ids[1], B(" yy"));
  EXPECT_THAT(ex->choice_bytes, ElementsAre(1, 2));
  EXPECT_EQ(ex->letter_ids[0], B(" A"));
  EXPECT_EQ(ex->letter_ids[1], B(" B"));
  EXPECT_EQ(ex->label, 1);
}

TEST(ChoiceExampleTest, TruncatesThePromptFromTheLeft) {
  ByteTokenizer tok;
  Record r = Mc("", "Q", {"x", "yy"}, 0);
  absl::StatusOr<ChoiceExample> ex = MakeChoiceExample(r, tok, 9);  // BOS + 5 + longest 3
  D2_ASSERT_OK(ex.status());
  EXPECT_EQ(ex->prompt_ids, Cat({kBos}, B("swer:")));
  EXPECT_FALSE(MakeChoiceExample(r, tok, 3).ok());
  EXPECT_FALSE(MakeChoiceExample(Lm("a"), tok, 0).ok());
}

}  // namespace
}  // namespace d2lora::engine
