#include "client/remote/job_format.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include "absl/strings/match.h"
#include "absl/strings/str_split.h"

namespace d2lora::cli {
namespace {

using ::testing::ElementsAre;
using ::testing::HasSubstr;
using ::testing::Not;

const absl::Time kNow = absl::FromUnixSeconds(1'800'000'000);

void SetTime(google::protobuf::Timestamp* ts, absl::Time t) { ts->set_seconds(absl::ToUnixSeconds(t)); }

v1::Job RunningJob() {
  v1::Job job;
  job.set_id("job-0002");
  job.set_name("wordnet-d2lora");
  job.set_state(v1::RUNNING);
  job.set_attempt(1);
  job.set_max_retries(2);
  job.set_world_size(2);
  SetTime(job.mutable_create_time(), kNow - absl::Minutes(12));
  v1::TrainingMetrics* m = job.mutable_metrics();
  m->set_step(120);
  m->set_total_steps(400);
  m->set_loss(1.23456);
  m->set_volatility(0.0561);
  m->set_tokens_per_second(1234.4);
  m->set_eta_seconds(192);
  return job;
}

TEST(FormatTableTest, AlignsColumns) {
  EXPECT_EQ(FormatTable({{"A", "BB", "C"}, {"long", "x", "yyy"}}), "A     BB  C\nlong  x   yyy\n");
}

TEST(FormatTest, Durations) {
  EXPECT_EQ(FormatDuration(45), "45s");
  EXPECT_EQ(FormatDuration(192), "3m12s");
  EXPECT_EQ(FormatDuration(3720), "1h02m");
  EXPECT_EQ(FormatDuration(-1), "?");
  EXPECT_EQ(FormatAge(kNow - absl::Seconds(30), kNow), "30s");
  EXPECT_EQ(FormatAge(kNow - absl::Minutes(12), kNow), "12m");
  EXPECT_EQ(FormatAge(kNow - absl::Hours(5), kNow), "5h");
  EXPECT_EQ(FormatAge(kNow - absl::Hours(50), kNow), "2d");
  EXPECT_EQ(FormatAge(absl::InfinitePast(), kNow), "-");
  EXPECT_EQ(FormatCount(1234567), "1,234,567");
  EXPECT_EQ(FormatBytes(512), "512 B");
  EXPECT_EQ(FormatBytes(1536), "1.5 KiB");
  EXPECT_EQ(FormatBytes(5 << 20), "5.0 MiB");
}

TEST(FormatJobTableTest, RowsNewestFirst) {
  v1::Job old;
  old.set_id("job-0001");
  old.set_name("first");
  old.set_state(v1::SUCCEEDED);
  old.set_attempt(2);
  old.set_max_retries(2);
  SetTime(old.mutable_create_time(), kNow - absl::Hours(3));
  old.mutable_metrics()->set_step(10);
  old.mutable_metrics()->set_total_steps(10);
  old.mutable_metrics()->set_loss(0.5);
  v1::Job queued;
  queued.set_id("job-0003");
  queued.set_name("later");
  queued.set_state(v1::QUEUED);
  queued.set_max_retries(0);
  SetTime(queued.mutable_create_time(), kNow - absl::Seconds(5));

  const std::string table = FormatJobTable({old, RunningJob(), queued}, kNow);
  std::vector<std::string> lines = absl::StrSplit(table, '\n', absl::SkipEmpty());
  EXPECT_THAT(lines, ElementsAre("ID        NAME            STATE      ATTEMPT  STEP/TOTAL  LOSS   AGE",
                                 "job-0003  later           QUEUED     -        -           -      5s",
                                 "job-0002  wordnet-d2lora  RUNNING    1/3      120/400     1.235  12m",
                                 "job-0001  first           SUCCEEDED  2/3      10/10       0.5    3h"));
}

TEST(FormatProgressLineTest, AllFigures) {
  EXPECT_EQ(FormatProgressLine(RunningJob().metrics()),
            "step 120/400 (30%) loss 1.235 vol 0.0561 1,234 tok/s ETA 3m12s");
}

TEST(FormatProgressLineTest, OnlyWhatIsKnown) {
  v1::TrainingMetrics m;
  m.set_step(7);
  m.set_loss(2.5);
  EXPECT_EQ(FormatProgressLine(m), "step 7 loss 2.5");
  m.set_total_steps(7);
  m.set_skipped_steps(1);
  EXPECT_EQ(FormatProgressLine(m), "step 7/7 (100%) loss 2.5 skipped 1");
  m.set_rollbacks_total(2);
  EXPECT_EQ(FormatProgressLine(m), "step 7/7 (100%) loss 2.5 skipped 1 rollbacks 2");
}

TEST(FormatEventLinesTest, EvalAndState) {
  v1::EvalResult eval;
  eval.set_step(50);
  eval.set_loss(1.5);
  eval.set_accuracy(0.75);
  eval.set_scoring("mean");
  EXPECT_EQ(FormatEvalLine(eval), "eval at step 50: loss 1.5, accuracy 0.75 (mean)");
  eval.set_final(true);
  EXPECT_THAT(FormatEvalLine(eval), ::testing::StartsWith("final eval at step 50:"));
  v1::StateChange state;
  state.set_state(v1::QUEUED);
  state.set_attempt(2);
  state.set_message("retrying after worker loss");
  EXPECT_EQ(FormatStateLine(state), "QUEUED (attempt 2): retrying after worker loss");
}

TEST(FormatJobSummaryTest, RunningJob) {
  v1::Job job = RunningJob();
  job.add_workers("w-a");
  job.add_workers("w-b");
  (*job.mutable_labels())["team"] = "nlp";
  job.set_checkpoint_step(100);
  const std::string text = FormatJobSummary(job, kNow, absl::UTCTimeZone());
  EXPECT_THAT(text, HasSubstr("job-0002 (wordnet-d2lora)"));
  EXPECT_THAT(text, HasSubstr("state:      RUNNING\n"));
  EXPECT_THAT(text, HasSubstr("attempt:    1 of at most 3"));
  EXPECT_THAT(text, HasSubstr("labels:     team=nlp"));
  EXPECT_THAT(text, HasSubstr("(12m ago)"));
  EXPECT_THAT(text, HasSubstr("rank 0 w-a, rank 1 w-b"));
  EXPECT_THAT(text, HasSubstr("step 120/400 (30%)"));
  EXPECT_THAT(text, HasSubstr("checkpoint: step 100"));
  EXPECT_THAT(text, Not(HasSubstr("error")));
}

TEST(FormatJobSummaryTest, ElasticAttemptAndRollbacks) {
  v1::Job job = RunningJob();
  job.set_current_world_size(2);
  std::string text = FormatJobSummary(job, kNow, absl::UTCTimeZone());
  EXPECT_THAT(text, HasSubstr("resources:  world size 2, priority 0"));
  EXPECT_THAT(text, Not(HasSubstr("rollbacks")));
  job.set_current_world_size(1);
  job.mutable_metrics()->set_rollbacks_total(1);
  text = FormatJobSummary(job, kNow, absl::UTCTimeZone());
  EXPECT_THAT(text, HasSubstr("resources:  world size 2 (this attempt: 1 of 2 ranks, elastic), priority 0"));
  EXPECT_THAT(text, HasSubstr(", rollbacks 1"));
  job.set_memory_plan_bytes(int64_t{3} << 30);
  text = FormatJobSummary(job, kNow, absl::UTCTimeZone());
  EXPECT_THAT(text, HasSubstr("elastic), priority 0, memory plan 3.0 GiB per rank"));
}

TEST(FormatJobSummaryTest, FailedJobShowsErrorAndLogTail) {
  v1::Job job = RunningJob();
  job.set_state(v1::FAILED);
  job.mutable_error()->set_code("INVALID_ARGUMENT");
  job.mutable_error()->set_message("data.train: no such file");
  job.mutable_error()->set_log_tail("loading data\nerror: no such file\n");
  job.mutable_error()->set_attempt(1);
  job.mutable_error()->set_rank(0);
  const std::string text = FormatJobSummary(job, kNow, absl::UTCTimeZone());
  EXPECT_THAT(text, HasSubstr("error:      INVALID_ARGUMENT: data.train: no such file (attempt 1, rank 0)\n"
                              "log tail:\n  loading data\n  error: no such file\n"));
  EXPECT_EQ(text.substr(text.size() - 2), "e\n");
}

TEST(FormatJobSummaryTest, MergeGateHeadline) {
  v1::Job job = RunningJob();
  job.set_state(v1::FAILED);
  v1::MergeCheck* c = job.mutable_merge_check();
  c->set_passed(false);
  c->set_merged_dtype("float16");
  c->set_max_logit_diff(0.25);
  c->set_mean_kl(2e-4);
  c->set_max_row_norm_deviation(3e-7);
  c->set_max_row_norm_deviation_layer("model.layers.1.q_proj");
  c->set_max_cast_error(1e-3);
  c->set_max_cast_error_layer("model.layers.0.up_proj");
  c->set_nonfinite(12);
  c->add_breaches("model.layers.0.up_proj: 12 non-finite weights in float16");
  const std::string text = FormatJobSummary(job, kNow, absl::UTCTimeZone());
  EXPECT_THAT(text, HasSubstr("merge:      FAILED, float16, max logit diff 0.25, mean KL 2.00e-04\n"));
  EXPECT_THAT(text, HasSubstr("row-norm deviation 3.00e-07 (model.layers.1.q_proj), cast error 1.00e-03 "
                              "(model.layers.0.up_proj), 12 non-finite weights\n"));
  EXPECT_THAT(text, HasSubstr("over threshold: model.layers.0.up_proj: 12 non-finite weights in float16\n"));
  EXPECT_THAT(FormatJobSummary(RunningJob(), kNow, absl::UTCTimeZone()), Not(HasSubstr("merge:")));
}

TEST(FormatArtifactTableTest, Columns) {
  v1::Artifact a;
  a.set_name("summary.json");
  a.set_size(512);
  a.set_sha256("ab12");
  EXPECT_EQ(FormatArtifactTable({a}), "NAME          SIZE  SHA256\nsummary.json  512   ab12\n");
  v1::Artifact b = a;
  b.set_name("merged/config.json");
  b.set_damaged("changed on disk after it was stored");
  EXPECT_EQ(FormatArtifactTable({a, b}),
            "NAME                SIZE  SHA256  DAMAGED\n"
            "summary.json        512   ab12    -\n"
            "merged/config.json  512   ab12    changed on disk after it was stored\n");
}

TEST(FormatCheckpointTableTest, StepsStatesFiguresAndTheFinalAdapter) {
  v1::ListCheckpointsResponse r;
  v1::Checkpoint* ten = r.add_checkpoints();
  ten->set_step(10);
  ten->set_complete(true);
  ten->set_has_adapter(true);
  ten->set_bytes(1536);
  ten->mutable_metrics()->set_loss(2.5);
  ten->mutable_metrics()->set_volatility(0.25);
  ten->mutable_eval()->set_step(10);
  ten->mutable_eval()->set_loss(1.75);
  ten->mutable_eval()->set_accuracy(0.5);
  v1::Checkpoint* twenty = r.add_checkpoints();
  twenty->set_step(20);
  twenty->set_bytes(512);
  twenty->mutable_eval()->set_step(10);  // an evaluation from an earlier step says which
  twenty->mutable_eval()->set_accuracy(0.5);
  v1::Checkpoint* thirty = r.add_checkpoints();
  thirty->set_step(30);
  thirty->set_complete(true);
  thirty->set_damaged("checkpoints/step-30/x: changed");
  EXPECT_EQ(FormatCheckpointTable(r),
            "STEP  STATE                                    LOSS  VOLATILITY  EVAL               SIZE     ADAPTER\n"
            "10    complete                                 2.5   0.25        loss 1.75 acc 0.5  1.5 KiB  yes\n"
            "20    incomplete                               -     -           acc 0.5 @10        512 B    no\n"
            "30    damaged: checkpoints/step-30/x: changed  -     -           -                  0 B      no\n");
  r.set_final_adapter_step(30);
  EXPECT_TRUE(absl::EndsWith(FormatCheckpointTable(r), "\nfinal adapter: step 30\n"));
}

}  // namespace
}  // namespace d2lora::cli
