// The per-job training series (server/training_series.h): gauges follow the
// latest figures, counters hold the attempt's cumulative counts (a new
// attempt is a counter reset), and a job's series go when it ends.
#include "server/training_series.h"

#include <prometheus/text_serializer.h>

#include <string>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "gtest/gtest.h"

namespace d2lora::server {
namespace {

std::string Text(prometheus::Registry& registry) {
  prometheus::TextSerializer serializer;
  return "\n" + serializer.Serialize(registry.Collect());
}

void ExpectLine(const std::string& text, const std::string& line) {
  EXPECT_TRUE(absl::StrContains(text, "\n" + line + "\n")) << "no line \"" << line << "\" in\n" << text;
}

v1::TrainingMetrics Step(int64_t step, int64_t tokens_total) {
  v1::TrainingMetrics m;
  m.set_step(step);
  m.set_total_steps(100);
  m.set_loss(2.5);
  m.set_lr(1e-3);
  m.set_grad_norm(0.5);
  m.set_tokens_per_second(1234);
  m.set_tokens_total(tokens_total);
  m.set_spikes_total(step / 10);
  m.set_skipped_steps(1);
  m.set_rollbacks_total(0);
  return m;
}

TEST(TrainingSeriesTest, GaugesAndCountersPerJob) {
  prometheus::Registry registry;
  TrainingSeries series(registry);
  v1::TrainingMetrics m = Step(20, 4096);
  m.set_volatility(0.125);
  series.Set("job-a", m);
  series.Set("job-a", Step(30, 6144));  // no volatility now: its series goes
  const std::string text = Text(registry);
  ExpectLine(text, "d2lora_train_step{job_id=\"job-a\"} 30");
  ExpectLine(text, "d2lora_train_loss{job_id=\"job-a\"} 2.5");
  ExpectLine(text, "d2lora_train_tokens_total{job_id=\"job-a\"} 6144");
  ExpectLine(text, "d2lora_train_spikes_total{job_id=\"job-a\"} 3");
  ExpectLine(text, "d2lora_train_skipped_steps_total{job_id=\"job-a\"} 1");
  ExpectLine(text, "d2lora_train_rollbacks_total{job_id=\"job-a\"} 0");
  EXPECT_FALSE(absl::StrContains(text, "d2lora_train_volatility{")) << text;
  // Throughput is a rate over the token counter: no gauge of its own.
  EXPECT_FALSE(absl::StrContains(text, "tokens_per_second")) << text;
  EXPECT_TRUE(absl::StrContains(text, "# TYPE d2lora_train_tokens_total counter")) << text;
  EXPECT_TRUE(absl::StrContains(text, "# TYPE d2lora_train_loss gauge")) << text;
}

TEST(TrainingSeriesTest, ANewAttemptIsACounterReset) {
  prometheus::Registry registry;
  TrainingSeries series(registry);
  series.Set("job-a", Step(40, 8192));
  series.Set("job-a", Step(5, 1024));  // the next attempt counts from zero again
  ExpectLine(Text(registry), "d2lora_train_tokens_total{job_id=\"job-a\"} 1024");
  series.Set("job-a", Step(6, 1536));
  ExpectLine(Text(registry), "d2lora_train_tokens_total{job_id=\"job-a\"} 1536");
}

TEST(TrainingSeriesTest, RemoveDropsOneJobsSeries) {
  prometheus::Registry registry;
  TrainingSeries series(registry);
  series.Set("job-a", Step(1, 10));
  v1::TrainingMetrics every = Step(2, 20);  // every optional figure too
  every.set_loss_ema(2.4);
  every.set_volatility(0.1);
  every.set_loss_cv(0.05);
  every.set_tau_mean(0.9);
  every.set_eval_accuracy(0.5);
  every.set_eval_loss(1.5);
  series.Set("job-b", every);
  series.Remove("job-a");
  const std::string text = Text(registry);
  EXPECT_FALSE(absl::StrContains(text, "job-a")) << text;
  ExpectLine(text, "d2lora_train_tokens_total{job_id=\"job-b\"} 20");
  for (const std::string& name : TrainingSeries::Names()) {
    EXPECT_TRUE(absl::StrContains(text, absl::StrCat("# TYPE ", name, " "))) << name;
  }
}

}  // namespace
}  // namespace d2lora::server
