// The memory plan: one rank's peak memory predicted from the model's
// config.json and the job spec, before anything is loaded. `d2lora plan SPEC`
// prints it, `d2lora train` prints it at the start and records it beside the
// measured peak in summary.json, and the coordinator refuses at submission a
// job that fits no worker's slot and never places a rank on a slot it does
// not fit (server/submit_memory.h).
//
// What it counts (bytes, one rank):
//   state     the base weights in the compute dtype; the adapters (parameters
//             and buffers); AdamW's two fp32 moments; the training guard's
//             in-memory copy; the tokenized data set;
//   step      what autograd keeps for one micro-batch's backward (counted per
//             tensor from the model's forward: see memory_plan.cc), plus the
//             larger of the loss's logits/log-probabilities/gradients at the
//             start of backward and one attention block's backward; the
//             gradients too when micro-batches accumulate;
//   after     the gradients and the flat fp32 copy the step reduces;
//   eval      an evaluation forward pass (no gradients, a KV cache), with the
//             last step's gradients still held;
//   merge     the merge gate: the training form's and the merged model's
//             logits on merge_check_sequences full sequences, one forward over
//             them, each layer merged in fp64 (only when the job merges);
//   load      the weights while the checkpoint file is mapped (CPU only: its
//             pages are resident while they are copied);
//   runtime   the process before the model (LibTorch, BLAS, allocator): a
//             constant measured on this project's CPU build; on CUDA the
//             context and cuBLAS workspace, an estimate not yet measured.
// peak = runtime + max(load, state + max(step, after, eval, merge)).
//
// The sequence length counted is data.max_seq_len: batches are padded to their
// longest example, so a data set of shorter examples peaks lower.
// bench/memory_plan_bench.sh checks the prediction against `d2lora train`'s
// measured peak on the tiny, small and base presets at 128 and 512 tokens.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "absl/status/statusor.h"
#include "common/model/model_config.h"
#include "common/spec/job_spec.h"

namespace d2lora::model {

// What the plan cannot read from config.json and the spec.
struct MemoryPlanInputs {
  // Tokens and examples of the tokenized data sets (train and validation) a
  // rank holds; -1: not known, bounded from data_file_bytes instead.
  int64_t data_tokens = -1;
  int64_t data_examples = 0;
  // Bytes of the data files: without data_tokens, each byte is counted as at
  // most one token (a bound: byte-level BPE never makes more).
  int64_t data_file_bytes = 0;
  // Bytes of the checkpoint's weight files (the load phase); 0: the
  // parameters at config.json's dtype (fp32 when it names none).
  int64_t checkpoint_bytes = 0;
  // Sequences the merge gate compares the training form and the merged model
  // on (the trainer's kMergeCheckSequences).
  int64_t merge_check_sequences = 8;
};

struct MemoryPlan {
  std::string device;         // "cpu" | "cuda"
  std::string compute_dtype;  // "fp32" | "bf16"
  int64_t micro_batch_tokens = 0;  // micro_batch_size x max_seq_len
  int64_t parameters = 0;          // the base model's
  int64_t trainable = 0;           // adapter parameters, or every parameter for method full

  // Bytes.
  int64_t runtime = 0;
  int64_t weights = 0;
  int64_t adapters = 0;
  int64_t optimizer = 0;
  int64_t guard = 0;
  int64_t data = 0;
  int64_t activations = 0;       // kept for backward, one micro-batch
  int64_t backward_transient = 0;  // the larger of the loss's and one attention block's
  int64_t gradients = 0;
  int64_t gradient_bucket = 0;
  int64_t evaluation = 0;
  int64_t merge_gate = 0;  // 0 when the job does not merge
  int64_t load = 0;
  bool data_is_bound = false;

  int64_t state() const { return weights + adapters + optimizer + guard + data; }
  int64_t step() const;       // activations + backward_transient (+ gradients when accumulating)
  int64_t peak = 0;
  std::string peak_phase;     // "step" | "after step" | "evaluation" | "merge gate" | "load"
  bool accumulates = false;   // more than one micro-batch per optimizer step

  std::vector<std::string> notes;

  nlohmann::json ToJson() const;
  // A table for people, one line per term, peak last.
  std::string Format() const;
};

// INVALID_ARGUMENT when the spec names a target module the model lacks.
absl::StatusOr<MemoryPlan> PlanMemory(const ModelConfig& config, const spec::JobSpec& spec,
                                      const MemoryPlanInputs& inputs = {});

// The process's resident memory now and its high-water mark (Linux
// /proc/self/status VmRSS, VmHWM); 0 where it cannot be read.
int64_t ResidentBytes();
int64_t PeakResidentBytes();
// Memory a new process could use now: MemAvailable (/proc/meminfo), capped by
// this process's cgroup limit (common/cgroup_limits.h); 0 where neither can be read.
int64_t AvailableMemoryBytes();

// A local path's bytes, for the plan's inputs: a file's size, or the sum of
// the sizes of a directory's files whose names end in `suffix` (a model's
// ".safetensors"); 0 when it cannot be read.
int64_t LocalBytes(const std::string& path, const std::string& suffix = "");

}  // namespace d2lora::model
