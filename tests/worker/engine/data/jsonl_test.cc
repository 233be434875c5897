#include "worker/engine/data/jsonl.h"

#include <string>

#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "tests/support/test_support.h"

namespace d2lora::engine {
namespace {

using ::d2lora::testing::TempDir;
using ::d2lora::testing::WriteFile;
using ::testing::HasSubstr;

// The error for `contents` read as `format` from "d.jsonl".
std::string ErrorOf(const std::string& contents, DataFormat format, int64_t vocab = 0) {
  JsonlOptions o;
  o.format = format;
  o.vocab_size = vocab;
  absl::StatusOr<Dataset> d = ParseJsonl(contents, "d.jsonl", o);
  EXPECT_FALSE(d.ok()) << contents;
  return d.ok() ? "" : std::string(d.status().message());
}

TEST(DataFormatTest, NamesRoundTrip) {
  for (DataFormat f : {DataFormat::kText, DataFormat::kInstruction, DataFormat::kMultipleChoice}) {
    EXPECT_EQ(*ParseDataFormat(DataFormatName(f)), f);
  }
  EXPECT_EQ(DataFormatName(DataFormat::kText), "lm");
  EXPECT_THAT(ParseDataFormat("text").status().message(), HasSubstr("unknown data format 'text'"));
}

TEST(JsonlTest, ReadsEachKindWithLineNumbers) {
  TempDir dir;
  WriteFile(dir.file("lm.jsonl"),
            "{\"text\": \"hello\"}\n\n   \n{\"input_ids\": [1, 2, 3], \"id\": 7}\r\n");
  JsonlOptions o;
  o.format = DataFormat::kText;
  absl::StatusOr<Dataset> lm = ReadJsonl(dir.file("lm.jsonl"), o);
  D2_ASSERT_OK(lm.status());
  ASSERT_EQ(lm->records.size(), 2u);
  EXPECT_EQ(lm->records[0].text, "hello");
  EXPECT_EQ(lm->records[0].line, 1);
  EXPECT_FALSE(lm->records[0].has_input_ids);
  EXPECT_TRUE(lm->records[1].has_input_ids);
  EXPECT_EQ(lm->records[1].input_ids, (std::vector<int64_t>{1, 2, 3}));
  EXPECT_EQ(lm->records[1].line, 4);
  EXPECT_EQ(lm->SkipReport(), "");

  o.format = DataFormat::kInstruction;
  absl::StatusOr<Dataset> inst =
      ParseJsonl("{\"prompt\": \"\", \"completion\": \"b\"}\n", "i.jsonl", o);
  D2_ASSERT_OK(inst.status());
  EXPECT_EQ(inst->records[0].prompt, "");
  EXPECT_EQ(inst->records[0].completion, "b");

  o.format = DataFormat::kMultipleChoice;
  absl::StatusOr<Dataset> mc = ParseJsonl(
      "{\"question\": \"q\", \"choices\": [\"x\", \"y\", \"z\"], \"label\": 2, \"context\": \"c\"}",
      "m.jsonl", o);
  D2_ASSERT_OK(mc.status());
  EXPECT_EQ(mc->records[0].question, "q");
  EXPECT_EQ(mc->records[0].choices, (std::vector<std::string>{"x", "y", "z"}));
  EXPECT_EQ(mc->records[0].label, 2);
  EXPECT_EQ(mc->records[0].context, "c");
}

TEST(JsonlTest, BadLinesNameFileLineAndReason) {
  const std::string ok = "{\"text\": \"a\"}\n";
  const DataFormat lm = DataFormat::kText;
  EXPECT_THAT(ErrorOf(ok + "{\"text\": \"a\"\n", lm), HasSubstr("d.jsonl:2: not valid JSON"));
  EXPECT_THAT(ErrorOf(ok + "[1, 2]\n", lm), HasSubstr("d.jsonl:2: not a JSON object"));
  EXPECT_THAT(ErrorOf(ok + ok + "{\"text\": \"\"}\n", lm), HasSubstr("d.jsonl:3: \"text\" is empty"));
  EXPECT_THAT(ErrorOf("{\"text\": 5}", lm),
              HasSubstr("d.jsonl:1: \"text\" must be a string, not an integer"));
  EXPECT_THAT(ErrorOf("{\"text\": \"a\", \"input_ids\": [1]}", lm),
              HasSubstr("d.jsonl:1: has both \"text\" and \"input_ids\""));
  EXPECT_THAT(ErrorOf("{\"prompt\": \"p\", \"completion\": \"c\"}", lm),
              HasSubstr("d.jsonl:1: missing \"text\" or \"input_ids\" (format lm) (this line "
                        "looks like instruction)"));
  EXPECT_THAT(ErrorOf("{\"input_ids\": []}", lm), HasSubstr("d.jsonl:1: \"input_ids\" is empty"));
  EXPECT_THAT(ErrorOf("{\"input_ids\": [1, -2]}", lm),
              HasSubstr("d.jsonl:1: input_ids[1] = -2: negative"));
  EXPECT_THAT(ErrorOf("{\"input_ids\": [1, 2.5]}", lm),
              HasSubstr("d.jsonl:1: input_ids[1] must be an integer, not a number"));
  EXPECT_THAT(ErrorOf("{\"input_ids\": [1, 100]}", lm, 100),
              HasSubstr("d.jsonl:1: input_ids[1] = 100: not below the vocabulary size 100"));
  EXPECT_THAT(ErrorOf("{\"input_ids\": \"1 2\"}", lm),
              HasSubstr("\"input_ids\" must be an array of integers, not string"));

  const DataFormat inst = DataFormat::kInstruction;
  EXPECT_THAT(ErrorOf("{\"prompt\": \"p\"}", inst), HasSubstr("d.jsonl:1: missing \"completion\""));
  EXPECT_THAT(ErrorOf("{\"prompt\": \"p\", \"completion\": \"\"}", inst),
              HasSubstr("d.jsonl:1: \"completion\" is empty"));
  EXPECT_THAT(ErrorOf("{\"prompt\": [\"p\"], \"completion\": \"c\"}", inst),
              HasSubstr("\"prompt\" must be a string, not array"));
  EXPECT_THAT(ErrorOf("{\"text\": \"t\"}", inst),
              HasSubstr("missing \"prompt\" (this line looks like lm)"));

  const DataFormat mc = DataFormat::kMultipleChoice;
  EXPECT_THAT(ErrorOf("{\"question\": \"q\", \"choices\": [\"a\", \"b\"], \"label\": 2}", mc),
              HasSubstr("d.jsonl:1: \"label\" = 2: out of range [0, 2)"));
  EXPECT_THAT(ErrorOf("{\"question\": \"q\", \"choices\": [\"a\", \"b\"], \"label\": -1}", mc),
              HasSubstr("\"label\" = -1: out of range [0, 2)"));
  EXPECT_THAT(ErrorOf("{\"question\": \"q\", \"choices\": [\"a\", \"b\"], \"label\": \"1\"}", mc),
              HasSubstr("\"label\" must be an integer, not string"));
  EXPECT_THAT(ErrorOf("{\"question\": \"q\", \"choices\": [\"a\", \"b\"]}", mc),
              HasSubstr("missing \"label\""));
  EXPECT_THAT(ErrorOf("{\"question\": \"q\", \"choices\": [\"a\"], \"label\": 0}", mc),
              HasSubstr("\"choices\" has 1, needs at least 2"));
  EXPECT_THAT(ErrorOf("{\"question\": \"q\", \"choices\": [\"a\", 3], \"label\": 0}", mc),
              HasSubstr("choices[1] must be a string, not an integer"));
  EXPECT_THAT(ErrorOf("{\"question\": \"q\", \"choices\": [\"a\", \"\"], \"label\": 0}", mc),
              HasSubstr("choices[1] is empty"));
  EXPECT_THAT(ErrorOf("{\"question\": \"\", \"choices\": [\"a\", \"b\"], \"label\": 0}", mc),
              HasSubstr("\"question\" is empty"));
  EXPECT_THAT(
      ErrorOf("{\"question\": \"q\", \"choices\": [\"a\", \"b\"], \"label\": 0, \"context\": 1}", mc),
      HasSubstr("\"context\" must be a string"));
  EXPECT_THAT(ErrorOf("{\"prompt\": \"p\", \"completion\": \"c\"}", mc),
              HasSubstr("d.jsonl:1: missing \"question\" (this line looks like instruction)"));
}

TEST(JsonlTest, EmptyFileIsAnErrorNamingIt) {
  TempDir dir;
  WriteFile(dir.file("empty.jsonl"), "\n  \n");
  JsonlOptions o;
  absl::StatusOr<Dataset> d = ReadJsonl(dir.file("empty.jsonl"), o);
  ASSERT_FALSE(d.ok());
  EXPECT_THAT(d.status().message(), HasSubstr(dir.file("empty.jsonl") + ": no records"));
  EXPECT_FALSE(ReadJsonl(dir.file("missing.jsonl"), o).ok());
}

TEST(JsonlTest, SkipInvalidCountsAndReports) {
  JsonlOptions o;
  o.format = DataFormat::kText;
  o.skip_invalid = true;
  o.max_reasons = 2;
  absl::StatusOr<Dataset> d = ParseJsonl(
      "{\"text\": \"a\"}\nnot json\n{\"text\": \"\"}\n{\"text\": \"b\"}\n{\"input_ids\": [-1]}\n",
      "d.jsonl", o);
  D2_ASSERT_OK(d.status());
  ASSERT_EQ(d->records.size(), 2u);
  EXPECT_EQ(d->records[1].line, 4);
  EXPECT_EQ(d->skipped, 3);
  ASSERT_EQ(d->skip_reasons.size(), 2u);
  EXPECT_THAT(d->skip_reasons[0], HasSubstr("d.jsonl:2: not valid JSON"));
  EXPECT_THAT(d->skip_reasons[1], HasSubstr("d.jsonl:3: \"text\" is empty"));
  EXPECT_THAT(d->SkipReport(), HasSubstr("skipped 3 invalid lines of d.jsonl; first: d.jsonl:2:"));

  absl::StatusOr<Dataset> none = ParseJsonl("x\ny\n", "d.jsonl", o);
  ASSERT_FALSE(none.ok());
  EXPECT_THAT(none.status().message(), HasSubstr("d.jsonl: no valid records (skipped 2"));
}

}  // namespace
}  // namespace d2lora::engine
