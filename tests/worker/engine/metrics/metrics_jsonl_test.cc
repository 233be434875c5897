#include "worker/engine/metrics/metrics_jsonl.h"

#include <limits>
#include <sstream>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "tests/support/test_support.h"
#include "tests/worker/engine/metrics/sample_events.h"
#include "worker/engine/metrics/metrics_json.h"

namespace d2lora::engine {
namespace {

using ::d2lora::testing::ReadFile;
using ::d2lora::testing::TempDir;
using ::d2lora::testing::WriteFile;
using ::testing::HasSubstr;
using json = nlohmann::json;

std::vector<json> Lines(const std::string& path) {
  std::vector<json> out;
  std::istringstream in(ReadFile(path));
  std::string line;
  while (std::getline(in, line)) out.push_back(json::parse(line));
  return out;
}

std::vector<std::string> Events(const std::vector<json>& lines) {
  std::vector<std::string> out;
  for (const json& j : lines) out.push_back(j.at("event").get<std::string>());
  return out;
}

StepMetrics Step(int64_t step) {
  StepMetrics m;
  m.step = step;
  m.total_steps = 4;
  m.loss = 2.5 - 0.25 * static_cast<double>(step);
  m.lr = 2e-4;
  m.tokens = 1000;
  return m;
}

// A fake clock: 100, 101, 102, ...
std::function<double()> Counter() {
  auto t = std::make_shared<double>(99);
  return [t] { return *t += 1; };
}

TEST(MetricsJsonTest, FlatSnakeCaseOmitsUnsetAndNullsNonFinite) {
  StepMetrics m = Step(3);
  m.grad_norm = std::numeric_limits<double>::infinity();
  m.tau = TauStats{0.5, 0.25, 1.0};
  m.volatility.volatility = 0.125;
  m.volatility.spikes_total = 2;
  const json j = ToJson(m);
  EXPECT_EQ(j.at("step"), 3);
  EXPECT_EQ(j.at("loss"), 1.75);
  EXPECT_TRUE(j.at("grad_norm").is_null());
  EXPECT_EQ(j.at("tau_min"), 0.25);
  EXPECT_EQ(j.at("volatility"), 0.125);
  EXPECT_EQ(j.at("spikes_total"), 2);
  EXPECT_FALSE(j.contains("loss_cv"));
  EXPECT_FALSE(j.contains("eta_seconds"));
  EXPECT_EQ(j.at("skipped"), false);
  EXPECT_EQ(j.at("rollbacks_total"), 0);
  for (const auto& [k, v] : j.items()) EXPECT_FALSE(v.is_object()) << k;

  EvalMetrics e;
  e.step = 4;
  e.accuracy = 0.5;
  e.loss = std::numeric_limits<double>::quiet_NaN();
  const json je = ToJson(e);
  EXPECT_EQ(je.at("accuracy"), 0.5);
  EXPECT_TRUE(je.at("loss").is_null());
  EXPECT_FALSE(je.contains("perplexity"));
  EXPECT_FALSE(je.contains("scoring"));
  EXPECT_FALSE(je.contains("rouge_l"));

  EXPECT_EQ(ToJson(SampleRollback()),
            (json{{"step", 38},
                  {"restored_step", 32},
                  {"reason", "loss spike at step 38: loss 5.6 > guard.spike_factor 2 x EMA 1.42"},
                  {"rollbacks", 1},
                  {"max_rollbacks", 3},
                  {"lr_scale", 0.5},
                  {"first_skipped_batch", 37},
                  {"last_skipped_batch", 38}}));

  RunVolatility rv;
  rv.steps = 1;
  rv.loss_first = 2.0;
  const json jr = ToJson(rv);
  EXPECT_EQ(jr.at("loss_first"), 2.0);
  EXPECT_FALSE(jr.contains("volatility"));
}

TEST(JsonlMetricsWriterTest, WritesOneParsableLinePerEventInOrder) {
  TempDir dir;
  const std::string path = dir.file("metrics.jsonl");
  {
    absl::StatusOr<std::unique_ptr<JsonlMetricsWriter>> w =
        JsonlMetricsWriter::Create(path, false, Counter());
    ASSERT_TRUE(w.ok()) << w.status();
    RunInfo info;
    info.name = "run";
    info.method = "d2lora";
    info.total_steps = 4;
    (*w)->OnStart(info);
    (*w)->OnStep(Step(1));
    (*w)->OnStep(Step(2));
    EvalMetrics e;
    e.step = 2;
    e.loss = 1.5;
    (*w)->OnEval(e);
    (*w)->OnCheckpoint(CheckpointInfo{2, dir.file("ckpt-2")});
    (*w)->OnEnd(json{{"final_loss", 1.5}, {"steps", 2}});
    D2_EXPECT_OK((*w)->status());
  }
  const std::string text = ReadFile(path);
  ASSERT_FALSE(text.empty());
  EXPECT_EQ(text.back(), '\n');
  const std::vector<json> lines = Lines(path);
  EXPECT_EQ(Events(lines), (std::vector<std::string>{"start", "step", "step", "eval", "checkpoint", "end"}));
  for (size_t i = 0; i < lines.size(); ++i) EXPECT_EQ(lines[i].at("time"), 100.0 + static_cast<double>(i));
  EXPECT_EQ(lines[0].at("method"), "d2lora");
  EXPECT_EQ(lines[2].at("step"), 2);
  EXPECT_EQ(lines[2].at("loss"), 2.0);
  EXPECT_EQ(lines[3].at("loss"), 1.5);
  EXPECT_EQ(lines[4].at("path"), dir.file("ckpt-2"));
  EXPECT_EQ(lines[5].at("summary").at("final_loss"), 1.5);
}

TEST(JsonlMetricsWriterTest, AppendKeepsLinesAndTruncateReplaces) {
  TempDir dir;
  const std::string path = dir.file("metrics.jsonl");
  {
    auto w = JsonlMetricsWriter::Create(path, false, Counter());
    ASSERT_TRUE(w.ok()) << w.status();
    (*w)->OnStep(Step(1));
    (*w)->OnStep(Step(2));
  }
  {
    auto w = JsonlMetricsWriter::Create(path, true, Counter());
    ASSERT_TRUE(w.ok()) << w.status();
    RunInfo info;
    info.start_step = 2;
    (*w)->OnStart(info);
    (*w)->OnStep(Step(3));
  }
  std::vector<json> lines = Lines(path);
  EXPECT_EQ(Events(lines), (std::vector<std::string>{"step", "step", "start", "step"}));
  EXPECT_EQ(lines[2].at("start_step"), 2);
  EXPECT_EQ(lines[3].at("step"), 3);
  {
    auto w = JsonlMetricsWriter::Create(path, false, Counter());
    ASSERT_TRUE(w.ok()) << w.status();
    (*w)->OnStep(Step(1));
  }
  EXPECT_EQ(Events(Lines(path)), (std::vector<std::string>{"step"}));
}

TEST(JsonlMetricsWriterTest, AppendCutsAnIncompleteLastLine) {
  TempDir dir;
  const std::string path = dir.file("metrics.jsonl");
  WriteFile(path, "{\"event\":\"step\",\"step\":1}\n{\"event\":\"st");
  {
    auto w = JsonlMetricsWriter::Create(path, true, Counter());
    ASSERT_TRUE(w.ok()) << w.status();
    (*w)->OnStep(Step(2));
  }
  std::vector<json> lines = Lines(path);
  ASSERT_EQ(lines.size(), 2u);
  EXPECT_EQ(lines[0].at("step"), 1);
  EXPECT_EQ(lines[1].at("step"), 2);

  // A file of one incomplete line is emptied.
  WriteFile(path, "{\"event\":");
  {
    auto w = JsonlMetricsWriter::Create(path, true, Counter());
    ASSERT_TRUE(w.ok()) << w.status();
  }
  EXPECT_EQ(ReadFile(path), "");
}

TEST(JsonlMetricsWriterTest, UnwritablePathIsAnErrorNamingIt) {
  TempDir dir;
  const std::string path = dir.file("no/such/dir/metrics.jsonl");
  absl::StatusOr<std::unique_ptr<JsonlMetricsWriter>> w = JsonlMetricsWriter::Create(path, false);
  ASSERT_FALSE(w.ok());
  EXPECT_THAT(std::string(w.status().message()), HasSubstr(path));
  // A directory in the file's place.
  w = JsonlMetricsWriter::Create(dir.path(), true);
  ASSERT_FALSE(w.ok());
  EXPECT_THAT(std::string(w.status().message()), HasSubstr(dir.path()));
}

TEST(JsonlMetricsWriterTest, InvalidUtf8IsReplacedNotThrown) {
  TempDir dir;
  const std::string path = dir.file("metrics.jsonl");
  {
    auto w = JsonlMetricsWriter::Create(path, false, Counter());
    ASSERT_TRUE(w.ok()) << w.status();
    (*w)->OnCheckpoint(CheckpointInfo{1, "bad\xff name"});
    D2_EXPECT_OK((*w)->status());
  }
  EXPECT_EQ(Lines(path).at(0).at("event"), "checkpoint");
}

}  // namespace
}  // namespace d2lora::engine
