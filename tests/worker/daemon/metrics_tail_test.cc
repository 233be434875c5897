#include "worker/daemon/metrics_tail.h"

#include <cmath>
#include <fstream>
#include <string>

#include "gtest/gtest.h"
#include "tests/support/test_support.h"
#include "worker/daemon/log_tail.h"

namespace d2lora::worker {
namespace {

using d2lora::testing::TempDir;

void Append(const std::string& path, const std::string& text) {
  std::ofstream out(path, std::ios::app | std::ios::binary);
  out << text;
}

TEST(LineTailTest, ReadsOnlyCompleteLines) {
  TempDir dir;
  const std::string path = dir.file("rank.log");
  LineTail tail(path);
  EXPECT_TRUE(tail.Read().empty());  // no file yet
  Append(path, "one\ntw");
  EXPECT_EQ(tail.Read(), std::vector<std::string>({"one"}));
  EXPECT_TRUE(tail.Read().empty());
  Append(path, "o\nthree\n");
  EXPECT_EQ(tail.Read(), std::vector<std::string>({"two", "three"}));
  Append(path, "last, no newline");
  EXPECT_TRUE(tail.Read().empty());
  EXPECT_EQ(tail.Read(SIZE_MAX, /*to_end=*/true), std::vector<std::string>({"last, no newline"}));
  EXPECT_TRUE(tail.Read(SIZE_MAX, true).empty());
}

TEST(LineTailTest, MaxLinesLeavesTheRestForLater) {
  TempDir dir;
  const std::string path = dir.file("rank.log");
  std::string text;
  for (int i = 0; i < 10; ++i) text += std::to_string(i) + "\n";
  Append(path, text);
  LineTail tail(path);
  EXPECT_EQ(tail.Read(3), std::vector<std::string>({"0", "1", "2"}));
  EXPECT_EQ(tail.Read(3), std::vector<std::string>({"3", "4", "5"}));
  EXPECT_EQ(tail.Read().size(), 4u);
}

TEST(LineTailTest, LongLinesComeInPieces) {
  TempDir dir;
  const std::string path = dir.file("rank.log");
  Append(path, std::string(10, 'a'));
  LineTail tail(path, /*max_line_bytes=*/4);
  EXPECT_EQ(tail.Read(), std::vector<std::string>({"aaaa", "aaaa"}));  // "aa" waits for more
  Append(path, "\nbb\n");
  EXPECT_EQ(tail.Read(), std::vector<std::string>({"aa", "bb"}));
}

TEST(LineTailTest, ManyChunks) {
  TempDir dir;
  const std::string path = dir.file("big.log");
  std::string text;
  for (int i = 0; i < 50000; ++i) text += "line " + std::to_string(i) + "\n";
  Append(path, text);
  LineTail tail(path);
  auto lines = tail.Read();
  ASSERT_EQ(lines.size(), 50000u);
  EXPECT_EQ(lines.back(), "line 49999");
  EXPECT_EQ(tail.offset(), static_cast<int64_t>(text.size()));
}

TEST(CleanLogLineTest, CutsAtFourKibOnACharacterBoundary) {
  EXPECT_EQ(CleanLogLine("plain\r"), "plain");
  const std::string long_line(5000, 'x');
  EXPECT_EQ(CleanLogLine(long_line).size(), kMaxLogLineBytes);
  // "é" is two bytes: 4095 x's and an é do not fit in 4096 bytes.
  const std::string accented = std::string(4095, 'x') + "\xC3\xA9";
  EXPECT_EQ(CleanLogLine(accented), std::string(4095, 'x'));
  EXPECT_EQ(CleanLogLine("caf\xC3\xA9"), "caf\xC3\xA9");
}

TEST(CleanLogLineTest, ReplacesInvalidUtf8) {
  EXPECT_EQ(CleanLogLine("a\xFF" "b"), "a\xEF\xBF\xBD" "b");
  EXPECT_EQ(CleanLogLine("\xC3"), "\xEF\xBF\xBD");         // truncated sequence
  EXPECT_EQ(CleanLogLine("\xED\xA0\x80"), "\xEF\xBF\xBD\xEF\xBF\xBD\xEF\xBF\xBD");  // a surrogate
}

TEST(LogFileTest, LastLinesAndLastErrorLine) {
  TempDir dir;
  const std::string path = dir.file("rank.log");
  std::string text;
  for (int i = 0; i < 100; ++i) text += "line " + std::to_string(i) + "\n";
  text += "d2lora train: error: first\n";
  text += "d2lora train: error: data.train: /x.jsonl: No such file or directory\n";
  text += "trailing noise";
  Append(path, text);
  const auto last = LastLines(path, 3);
  ASSERT_EQ(last.size(), 3u);
  EXPECT_EQ(last[0], "d2lora train: error: first");
  EXPECT_EQ(last[2], "trailing noise");
  EXPECT_EQ(LastErrorLine(path), "d2lora train: error: data.train: /x.jsonl: No such file or directory");
  EXPECT_EQ(LastErrorLine(dir.file("missing")), "");
  EXPECT_TRUE(LastLines(dir.file("missing"), 40).empty());
  // Only the final bytes are read, from a line start.
  const auto tail = LastLines(path, 1000, 64);
  EXPECT_LT(tail.size(), 10u);
  EXPECT_EQ(tail.back(), "trailing noise");
}

constexpr char kStep1[] =
    R"({"event":"step","time":1.0,"step":1,"total_steps":10,"epoch":0,"loss":2.5,"lr":0.0001,"grad_norm":1.5,)"
    R"("tokens":100,"tokens_per_second":1000.0,"step_seconds":0.1,"elapsed_seconds":0.1,"spikes_in_window":0,)"
    R"("spikes_total":0,"window_steps":1,"skipped":false,"eta_seconds":0.9,"loss_ema":2.5,"tau_mean":0.5,)"
    R"("tau_min":0.4,"tau_max":0.6})";
constexpr char kStep2Skipped[] =
    R"({"event":"step","time":2.0,"step":2,"total_steps":10,"epoch":0,"loss":null,"lr":0.0002,"grad_norm":null,)"
    R"("tokens":100,"tokens_per_second":900.0,"elapsed_seconds":0.2,"spikes_total":1,"skipped":true})";
constexpr char kEval[] =
    R"({"event":"eval","time":3.0,"step":2,"final":false,"examples":8,"seconds":0.5,"loss":1.25,)"
    R"("perplexity":3.49,"accuracy":0.75,"scoring":"mean"})";
constexpr char kStep3[] =
    R"({"event":"step","time":4.0,"step":3,"total_steps":10,"epoch":1,"loss":2.0,"lr":0.0003,"grad_norm":1.0,)"
    R"("tokens_per_second":800.0,"elapsed_seconds":0.3,"spikes_total":1,"skipped":false,"volatility":0.1,"loss_cv":0.2})";
constexpr char kCheckpoint[] = R"({"event":"checkpoint","time":5.0,"step":3,"path":"/w/out/checkpoints/step-3"})";

TEST(MetricsTailTest, StepEvalCheckpointIntoProtos) {
  TempDir dir;
  const std::string path = dir.file("metrics.jsonl");
  MetricsTail tail(path);
  EXPECT_FALSE(tail.Read().has_metrics);

  Append(path, std::string(R"({"event":"start","time":0.5,"name":"x","total_steps":10})") + "\n" + kStep1 + "\n");
  MetricsUpdate u = tail.Read();
  ASSERT_TRUE(u.has_metrics);
  EXPECT_EQ(u.metrics.step(), 1);
  EXPECT_EQ(u.metrics.total_steps(), 10);
  EXPECT_DOUBLE_EQ(u.metrics.loss(), 2.5);
  EXPECT_DOUBLE_EQ(u.metrics.lr(), 0.0001);
  EXPECT_DOUBLE_EQ(u.metrics.grad_norm(), 1.5);
  EXPECT_DOUBLE_EQ(u.metrics.tokens_per_second(), 1000.0);
  EXPECT_TRUE(u.metrics.has_eta_seconds());
  EXPECT_DOUBLE_EQ(u.metrics.loss_ema(), 2.5);
  EXPECT_DOUBLE_EQ(u.metrics.tau_mean(), 0.5);
  EXPECT_FALSE(u.metrics.has_volatility());
  EXPECT_FALSE(u.metrics.has_eval_loss());
  EXPECT_EQ(u.metrics.skipped_steps(), 0);
  EXPECT_EQ(u.metrics.tokens_total(), 100);

  // A partial line waits; the skipped step is counted; null is NaN.
  const std::string step2 = kStep2Skipped;
  Append(path, step2.substr(0, 40));
  EXPECT_FALSE(tail.Read().has_metrics);
  Append(path, step2.substr(40) + "\n" + kEval + "\n");
  u = tail.Read();
  ASSERT_TRUE(u.has_metrics);
  EXPECT_EQ(u.metrics.step(), 2);
  EXPECT_TRUE(std::isnan(u.metrics.loss()));
  EXPECT_EQ(u.metrics.skipped_steps(), 1);
  EXPECT_EQ(u.metrics.spikes_total(), 1);
  EXPECT_EQ(u.metrics.tokens_total(), 200);  // the step records' tokens, summed
  EXPECT_FALSE(u.metrics.has_tau_mean());
  // The evaluation is an EvalResult, and its figures ride along.
  ASSERT_EQ(u.evals.size(), 1u);
  EXPECT_EQ(u.evals[0].step(), 2);
  EXPECT_FALSE(u.evals[0].final());
  EXPECT_DOUBLE_EQ(u.evals[0].loss(), 1.25);
  EXPECT_DOUBLE_EQ(u.evals[0].perplexity(), 3.49);
  EXPECT_DOUBLE_EQ(u.evals[0].accuracy(), 0.75);
  EXPECT_EQ(u.evals[0].scoring(), "mean");
  EXPECT_FALSE(u.evals[0].has_rouge_l());
  EXPECT_DOUBLE_EQ(u.metrics.eval_loss(), 1.25);
  EXPECT_DOUBLE_EQ(u.metrics.eval_accuracy(), 0.75);

  Append(path, std::string(kStep3) + "\n" + kCheckpoint + "\n" + "not json\n" +
                   R"({"event":"end","time":6.0})" + "\n");
  u = tail.Read();
  ASSERT_TRUE(u.has_metrics);
  EXPECT_EQ(u.metrics.step(), 3);
  EXPECT_EQ(u.metrics.epoch(), 1);
  EXPECT_EQ(u.metrics.skipped_steps(), 1);
  EXPECT_EQ(u.metrics.tokens_total(), 200);  // a record without tokens adds none
  EXPECT_DOUBLE_EQ(u.metrics.volatility(), 0.1);
  EXPECT_DOUBLE_EQ(u.metrics.loss_cv(), 0.2);
  EXPECT_DOUBLE_EQ(u.metrics.eval_loss(), 1.25);  // later steps keep the latest evaluation
  EXPECT_DOUBLE_EQ(u.metrics.eval_accuracy(), 0.75);
  EXPECT_TRUE(u.evals.empty());
  ASSERT_EQ(u.checkpoints.size(), 1u);
  EXPECT_EQ(u.checkpoints[0].step, 3);
  EXPECT_EQ(u.checkpoints[0].path, "/w/out/checkpoints/step-3");
  EXPECT_TRUE(u.ended);
  EXPECT_TRUE(tail.has_latest());
}

// The line JsonlMetricsWriter::OnRollback writes (metrics_json.cc ToJson(RollbackInfo)).
constexpr char kRollback[] =
    R"({"event":"rollback","time":7.0,"step":38,"restored_step":32,"reason":"loss spike at step 38: loss 9 > )"
    R"(guard.spike_factor 2 x EMA 1","rollbacks":1,"max_rollbacks":3,"lr_scale":0.5,"first_skipped_batch":37,)"
    R"("last_skipped_batch":38})";

TEST(MetricsTailTest, ARollbackBecomesAnEventAndCountsInTheMetrics) {
  MetricsTail tail("/nonexistent/metrics.jsonl");
  MetricsUpdate u;
  tail.Apply(kStep1, u);
  EXPECT_EQ(u.metrics.rollbacks_total(), 0);
  MetricsUpdate v;
  tail.Apply(kRollback, v);
  ASSERT_EQ(v.rollbacks.size(), 1u);
  const v1::Rollback& r = v.rollbacks[0];
  EXPECT_EQ(r.step(), 38);
  EXPECT_EQ(r.restored_step(), 32);
  EXPECT_EQ(r.reason(), "loss spike at step 38: loss 9 > guard.spike_factor 2 x EMA 1");
  EXPECT_EQ(r.rollbacks(), 1);
  EXPECT_EQ(r.max_rollbacks(), 3);
  EXPECT_DOUBLE_EQ(r.lr_scale(), 0.5);
  EXPECT_EQ(r.first_skipped_batch(), 37);
  EXPECT_EQ(r.last_skipped_batch(), 38);
  ASSERT_TRUE(v.has_metrics);  // the count goes out at once, before the next step
  EXPECT_EQ(v.metrics.rollbacks_total(), 1);
  MetricsUpdate w;
  tail.Apply(R"({"event":"step","step":33,"loss":1.0,"rollbacks_total":1})", w);
  EXPECT_EQ(w.metrics.rollbacks_total(), 1);
}

TEST(MetricsTailTest, FinalEvalAfterTheLastStepResendsTheMetrics) {
  MetricsTail tail("/nonexistent/metrics.jsonl");
  MetricsUpdate u;
  tail.Apply(R"({"event":"eval","step":0,"final":false,"loss":3.0})", u);
  EXPECT_FALSE(u.has_metrics);  // no step yet
  EXPECT_EQ(u.evals.size(), 1u);
  MetricsUpdate v;
  tail.Apply(kStep1, v);
  EXPECT_DOUBLE_EQ(v.metrics.eval_loss(), 3.0);
  MetricsUpdate w;
  tail.Apply(R"({"event":"eval","step":1,"final":true,"loss":1.0,"rouge_l":0.5})", w);
  ASSERT_TRUE(w.has_metrics);
  EXPECT_EQ(w.metrics.step(), 1);
  EXPECT_DOUBLE_EQ(w.metrics.eval_loss(), 1.0);
  EXPECT_DOUBLE_EQ(w.metrics.eval_rouge_l(), 0.5);
  EXPECT_FALSE(w.metrics.has_eval_accuracy());
  EXPECT_TRUE(w.evals[0].final());
}

}  // namespace
}  // namespace d2lora::worker
