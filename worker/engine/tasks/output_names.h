// The layout of a training job's output directory, and the marker of a merge
// the gate stopped: one list for the engine that writes them and the worker
// daemon and coordinator that move them (header only, no LibTorch).
#pragma once

namespace d2lora::engine {

inline constexpr char kSummaryFile[] = "summary.json";
inline constexpr char kMetricsFile[] = "metrics.jsonl";
inline constexpr char kSpecFile[] = "spec.yaml";
inline constexpr char kAdapterDir[] = "adapter";
// A D2-LoRA job's exact rank-2r PEFT DoRA export, beside adapter/.
inline constexpr char kPeftAdapterDir[] = "adapter-peft";
inline constexpr char kMergedDir[] = "merged";
inline constexpr char kMergeReportFile[] = "merge_report.json";
// The prefix of the error of a merge the gate stopped.
inline constexpr char kMergeCheckFailed[] = "MERGE_CHECK_FAILED";

}  // namespace d2lora::engine
