#include "server/job_summary.h"

#include <gtest/gtest.h>

namespace d2lora::server {
namespace {

TEST(JobSummary, MergeCheckBecomesTheTypedHeadline) {
  v1::Job job;
  const std::string summary = R"({"status": "merge_check_failed", "merge_check": {
      "passed": false, "merged_dtype": "bfloat16", "layers": 28, "max_logit_diff": 0.75, "mean_kl": 0.02,
      "accuracy_gap_pp": null, "loss_gap": 0.01, "max_row_norm_deviation": 2e-7,
      "max_row_norm_deviation_layer": "model.layers.0.q_proj", "max_cast_error": 0.002,
      "max_cast_error_layer": "model.layers.3.down_proj", "nonfinite": 0, "sequences": 8,
      "breaches": ["logits: max_abs_diff 0.75 > 0.5", "logits: mean_kl 0.02 > 0.01"]}})";
  SetJobSummary(job, summary);
  EXPECT_EQ(job.summary_json(), summary);
  ASSERT_TRUE(job.has_merge_check());
  const v1::MergeCheck& c = job.merge_check();
  EXPECT_FALSE(c.passed());
  EXPECT_EQ(c.merged_dtype(), "bfloat16");
  EXPECT_EQ(c.max_logit_diff(), 0.75);
  EXPECT_EQ(c.mean_kl(), 0.02);
  EXPECT_FALSE(c.has_accuracy_gap_pp());  // null: not measured
  EXPECT_EQ(c.max_row_norm_deviation_layer(), "model.layers.0.q_proj");
  EXPECT_EQ(c.max_cast_error(), 0.002);
  ASSERT_EQ(c.breaches_size(), 2);
  EXPECT_EQ(c.breaches(1), "logits: mean_kl 0.02 > 0.01");
}

TEST(JobSummary, NoMergeCheckOrNotJsonLeavesItUnset) {
  v1::Job job;
  job.mutable_merge_check()->set_passed(true);
  SetJobSummary(job, R"({"status": "completed"})");
  EXPECT_FALSE(job.has_merge_check());
  SetJobSummary(job, "not json");
  EXPECT_FALSE(job.has_merge_check());
  EXPECT_EQ(job.summary_json(), "not json");
}

}  // namespace
}  // namespace d2lora::server
