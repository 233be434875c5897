// The metrics.jsonl codec: what the writer writes, the reader reads back,
// field for field (common/trainer/metrics_events.h).
#include "common/trainer/metrics_events.h"

#include <cmath>
#include <limits>

#include "gtest/gtest.h"

namespace d2lora::trainer {
namespace {

constexpr double kNaN = std::numeric_limits<double>::quiet_NaN();

template <typename T>
T RoundTrip(const T& body, double time = 1700000000.25) {
  MetricsEvent event;
  event.time = time;
  event.body = body;
  const std::string line = EventLine(event);
  EXPECT_EQ(line.find('\n'), std::string::npos) << line;
  std::optional<MetricsEvent> back = ParseEventLine(line);
  EXPECT_TRUE(back.has_value()) << line;
  if (!back.has_value()) return T{};
  EXPECT_EQ(back->time, time);
  EXPECT_EQ(std::string(EventName(*back)), std::string(EventName(event)));
  const T* out = std::get_if<T>(&back->body);
  EXPECT_NE(out, nullptr) << line;
  return out != nullptr ? *out : T{};
}

TEST(MetricsEventsTest, StartRoundTrips) {
  RunInfo r{"job", "d2lora", 100, 20, 10, 2, 1234, 99999, "/out/dir"};
  const RunInfo b = RoundTrip(r);
  EXPECT_EQ(b.name, r.name);
  EXPECT_EQ(b.method, r.method);
  EXPECT_EQ(b.total_steps, r.total_steps);
  EXPECT_EQ(b.start_step, r.start_step);
  EXPECT_EQ(b.steps_per_epoch, r.steps_per_epoch);
  EXPECT_EQ(b.world_size, r.world_size);
  EXPECT_EQ(b.trainable_parameters, r.trainable_parameters);
  EXPECT_EQ(b.total_parameters, r.total_parameters);
  EXPECT_EQ(b.output_dir, r.output_dir);
}

StepMetrics FullStep() {
  StepMetrics m;
  m.step = 12;
  m.total_steps = 40;
  m.epoch = 1;
  m.loss = 2.5;
  m.lr = 3e-4;
  m.grad_norm = 1.25;
  m.tokens = 4096;
  m.tokens_per_second = 812.5;
  m.step_seconds = 0.5;
  m.compute_seconds = 0.375;
  m.allreduce_seconds = 0.0625;
  m.elapsed_seconds = 6.5;
  m.eta_seconds = 14.0;
  m.tau = TauStats{0.75, 0.5, 1.5};
  m.volatility.volatility = 0.125;
  m.volatility.loss_cv = 0.03125;
  m.volatility.loss_ema = 2.75;
  m.volatility.spikes_in_window = 1;
  m.volatility.spikes_total = 3;
  m.volatility.window_steps = 12;
  m.skipped = true;
  m.rollbacks = 2;
  return m;
}

TEST(MetricsEventsTest, StepRoundTripsEveryField) {
  const StepMetrics m = FullStep();
  const StepMetrics b = RoundTrip(m);
  EXPECT_EQ(b.step, m.step);
  EXPECT_EQ(b.total_steps, m.total_steps);
  EXPECT_EQ(b.epoch, m.epoch);
  EXPECT_EQ(b.loss, m.loss);
  EXPECT_EQ(b.lr, m.lr);
  EXPECT_EQ(b.grad_norm, m.grad_norm);
  EXPECT_EQ(b.tokens, m.tokens);
  EXPECT_EQ(b.tokens_per_second, m.tokens_per_second);
  EXPECT_EQ(b.step_seconds, m.step_seconds);
  EXPECT_EQ(b.compute_seconds, m.compute_seconds);
  EXPECT_EQ(b.allreduce_seconds, m.allreduce_seconds);
  EXPECT_EQ(b.elapsed_seconds, m.elapsed_seconds);
  EXPECT_EQ(b.eta_seconds, m.eta_seconds);
  ASSERT_TRUE(b.tau.has_value());
  EXPECT_EQ(b.tau->mean, m.tau->mean);
  EXPECT_EQ(b.tau->min, m.tau->min);
  EXPECT_EQ(b.tau->max, m.tau->max);
  EXPECT_EQ(b.volatility.volatility, m.volatility.volatility);
  EXPECT_EQ(b.volatility.loss_cv, m.volatility.loss_cv);
  EXPECT_EQ(b.volatility.loss_ema, m.volatility.loss_ema);
  EXPECT_EQ(b.volatility.spikes_in_window, m.volatility.spikes_in_window);
  EXPECT_EQ(b.volatility.spikes_total, m.volatility.spikes_total);
  EXPECT_EQ(b.volatility.window_steps, m.volatility.window_steps);
  EXPECT_EQ(b.skipped, m.skipped);
  EXPECT_EQ(b.rollbacks, m.rollbacks);
}

TEST(MetricsEventsTest, NonFiniteFiguresTravelAsNull) {
  StepMetrics m = FullStep();
  m.loss = kNaN;
  m.grad_norm = std::numeric_limits<double>::infinity();
  m.volatility.volatility = kNaN;
  MetricsEvent event{1.0, m};
  const std::string line = EventLine(event);
  EXPECT_NE(line.find("\"loss\":null"), std::string::npos) << line;
  EXPECT_NE(line.find("\"grad_norm\":null"), std::string::npos) << line;
  const StepMetrics b = RoundTrip(m);
  EXPECT_TRUE(std::isnan(b.loss));       // a plain figure: NaN
  EXPECT_TRUE(std::isnan(b.grad_norm));
  EXPECT_FALSE(b.volatility.volatility.has_value());  // an optional one: unset
  StepMetrics bare;
  const StepMetrics none = RoundTrip(bare);
  EXPECT_FALSE(none.tau.has_value());
  EXPECT_FALSE(none.eta_seconds.has_value());
  EXPECT_FALSE(none.volatility.loss_ema.has_value());
}

TEST(MetricsEventsTest, EvalCheckpointRollbackAndEndRoundTrip) {
  EvalMetrics e;
  e.step = 20;
  e.final = true;
  e.loss = 1.5;
  e.perplexity = 4.5;
  e.accuracy = 0.625;
  e.scoring = "letter";
  e.rouge_l = 0.25;
  e.examples = 64;
  e.seconds = 2.5;
  const EvalMetrics eb = RoundTrip(e);
  EXPECT_EQ(eb.step, e.step);
  EXPECT_EQ(eb.final, e.final);
  EXPECT_EQ(eb.loss, e.loss);
  EXPECT_EQ(eb.perplexity, e.perplexity);
  EXPECT_EQ(eb.accuracy, e.accuracy);
  EXPECT_EQ(eb.scoring, e.scoring);
  EXPECT_EQ(eb.rouge_l, e.rouge_l);
  EXPECT_EQ(eb.examples, e.examples);
  EXPECT_EQ(eb.seconds, e.seconds);

  const CheckpointInfo cb = RoundTrip(CheckpointInfo{30, "/out/checkpoints/step-30"});
  EXPECT_EQ(cb.step, 30);
  EXPECT_EQ(cb.path, "/out/checkpoints/step-30");

  RollbackInfo r{43, 40, "loss spike at step 43: loss 9.1 > guard.spike_factor 3 x EMA 1.2", 2, 3, 0.25, 42, 43};
  const RollbackInfo rb = RoundTrip(r);
  EXPECT_EQ(rb.step, r.step);
  EXPECT_EQ(rb.restored_step, r.restored_step);
  EXPECT_EQ(rb.reason, r.reason);
  EXPECT_EQ(rb.rollbacks, r.rollbacks);
  EXPECT_EQ(rb.max_rollbacks, r.max_rollbacks);
  EXPECT_EQ(rb.lr_scale, r.lr_scale);
  EXPECT_EQ(rb.first_skipped_batch, r.first_skipped_batch);
  EXPECT_EQ(rb.last_skipped_batch, r.last_skipped_batch);

  const EndInfo end = RoundTrip(EndInfo{nlohmann::json{{"status", "completed"}, {"steps", 40}}});
  EXPECT_EQ(end.summary["status"], "completed");
  EXPECT_EQ(end.summary["steps"], 40);
}

TEST(MetricsEventsTest, CheckpointMetricsRoundTripAndReadLeniently) {
  StepMetrics step;
  step.step = 50;
  step.loss = 1.25;
  step.volatility.volatility = 0.125;
  EvalMetrics eval;
  eval.step = 40;
  eval.accuracy = 0.5;
  const CheckpointMetrics back = CheckpointMetricsFromJson(ToJson(CheckpointMetrics{step, eval}));
  ASSERT_TRUE(back.train.has_value());
  EXPECT_EQ(back.train->step, 50);
  EXPECT_EQ(back.train->loss, 1.25);
  EXPECT_EQ(back.train->volatility.volatility, 0.125);
  ASSERT_TRUE(back.eval.has_value());
  EXPECT_EQ(back.eval->step, 40);
  EXPECT_EQ(back.eval->accuracy, 0.5);
  EXPECT_FALSE(back.eval->loss.has_value());

  const CheckpointMetrics train_only = CheckpointMetricsFromJson(ToJson(CheckpointMetrics{step, std::nullopt}));
  EXPECT_TRUE(train_only.train.has_value());
  EXPECT_FALSE(train_only.eval.has_value());
  for (const char* text : {"null", "[]", "{\"train\": 3}", "{}"}) {
    const CheckpointMetrics none = CheckpointMetricsFromJson(nlohmann::json::parse(text));
    EXPECT_FALSE(none.train.has_value()) << text;
    EXPECT_FALSE(none.eval.has_value()) << text;
  }
}

TEST(MetricsEventsTest, TheReaderSkipsWhatIsNotAnEventAndFillsDefaults) {
  EXPECT_FALSE(ParseEventLine("").has_value());
  EXPECT_FALSE(ParseEventLine("not json").has_value());
  EXPECT_FALSE(ParseEventLine("[1,2]").has_value());
  EXPECT_FALSE(ParseEventLine("{\"step\": 3}").has_value());            // no event
  EXPECT_FALSE(ParseEventLine("{\"event\": \"party\"}").has_value());  // one it does not know
  EXPECT_FALSE(ParseEventLine("{\"event\": 7}").has_value());
  // An older or terser writer: absent fields read as their defaults.
  std::optional<MetricsEvent> e = ParseEventLine("{\"event\":\"step\",\"step\":2,\"loss\":\"high\"}");
  ASSERT_TRUE(e.has_value());
  const StepMetrics& m = std::get<StepMetrics>(e->body);
  EXPECT_EQ(m.step, 2);
  EXPECT_EQ(m.loss, 0);  // not a number: the default
  EXPECT_FALSE(m.skipped);
  EXPECT_EQ(m.rollbacks, 0);
  e = ParseEventLine("{\"event\":\"rollback\",\"step\":5}");
  ASSERT_TRUE(e.has_value());
  EXPECT_EQ(std::get<RollbackInfo>(e->body).lr_scale, 1);
  e = ParseEventLine("{\"event\":\"start\"}");
  ASSERT_TRUE(e.has_value());
  EXPECT_EQ(std::get<RunInfo>(e->body).world_size, 1);
}

TEST(MetricsEventsTest, InvalidUtf8IsReplacedNotThrown) {
  RunInfo r;
  r.name = std::string("bad \xff name");
  MetricsEvent event{0, r};
  const std::string line = EventLine(event);
  std::optional<MetricsEvent> back = ParseEventLine(line);
  ASSERT_TRUE(back.has_value()) << line;
  EXPECT_NE(std::get<RunInfo>(back->body).name.find("bad "), std::string::npos);
}

}  // namespace
}  // namespace d2lora::trainer
