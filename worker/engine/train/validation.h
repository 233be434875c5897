// Evaluation during and after training, sharded over the ranks of the group:
// rank k scores items k, k + W, k + 2W, ...; the sums are all-reduced, so every
// rank returns the same numbers for the whole validation set.
//
//   all formats       validation loss (token mean over every target) and perplexity
//   multiple_choice   accuracy by `eval.scoring`; the final evaluation reports all
//                     four scoring functions (sum, mean, byte, letter)
//   instruction       ROUGE-L F1 of greedy generations against the reference
//                     completions (final evaluation only: generation is slow)
#pragma once

#include <cstdint>
#include <functional>
#include <map>
#include <string>
#include <utility>
#include <vector>

#include <nlohmann/json.hpp>

#include "absl/status/statusor.h"
#include "worker/engine/data/examples.h"
#include "worker/engine/distributed/process_group.h"
#include "worker/engine/metrics/callbacks.h"
#include "worker/engine/model/llama.h"
#include "worker/engine/spec_types.h"

namespace d2lora::engine {

struct GenerationItem {
  std::vector<int64_t> prompt_ids;
  std::string reference;
};

struct ValidationSet {
  std::vector<Example> examples;     // loss
  std::vector<ChoiceExample> choices;  // multiple choice
  std::vector<GenerationItem> generation;  // instruction
  bool empty() const { return examples.empty() && choices.empty() && generation.empty(); }
};

struct ValidationOptions {
  EvalSpec eval;
  int64_t batch_size = 8;
  std::vector<int64_t> eos_token_ids;  // stop generation
  std::function<std::string(const std::vector<int64_t>&)> decode;  // for ROUGE-L; unset skips it
};

struct ValidationResult {
  EvalMetrics metrics;  // what the callbacks receive
  // Every number, for summary.json: loss, perplexity, accuracy per scoring, rouge_l.
  nlohmann::json details;
  // Multiple choice: each scored item's chosen index by scoring name, and its
  // label, in the validation set's order (the first eval.max_examples items),
  // gathered from every rank: what predictions.json holds.
  std::map<std::string, std::vector<int64_t>> predictions;
  std::vector<int64_t> labels;
};

// Collective when `group` has more than one rank. `final` adds all scorings and ROUGE-L.
absl::StatusOr<ValidationResult> Validate(CausalLMImpl& model, const ValidationSet& data,
                                          const ValidationOptions& options, ProcessGroup& group, int64_t step,
                                          bool final);

}  // namespace d2lora::engine
