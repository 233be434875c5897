// Evaluation of a causal LM: language-modelling loss and multiple-choice
// accuracy by continuation likelihood. Runs in eval mode without gradients;
// the model's training flag is restored.
#pragma once

#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "worker/engine/data/examples.h"
#include "worker/engine/model/llama.h"

namespace d2lora::engine {

struct LmEvalResult {
  double loss = 0;        // mean next-token negative log-likelihood over all targets
  double perplexity = 0;  // exp(loss)
  int64_t tokens = 0;     // targets counted
  int64_t sequences = 0;
};

// Mean NLL over every target token (Example::loss_mask) of every example;
// batches of `batch_size` sequences, right-padded.
absl::StatusOr<LmEvalResult> EvaluateLm(CausalLMImpl& model, const std::vector<Example>& examples,
                                        int64_t batch_size);

// How a choice's continuation is scored (higher wins; ties go to the first):
//   sum    sum of the continuation tokens' log-probabilities
//   mean   that sum over the number of continuation tokens
//   byte   that sum over the choice text's UTF-8 bytes
//   letter the log-probability of " A", " B", ... after the prompt, which lists the choices
enum class Scoring { kSum, kMean, kByte, kLetter };
absl::StatusOr<Scoring> ParseScoring(const std::string& name);
std::string ScoringName(Scoring scoring);

struct McEvalResult {
  double accuracy = 0;
  int64_t n = 0;
  int64_t correct = 0;
  std::vector<int64_t> predictions;  // chosen index per item
};

absl::StatusOr<McEvalResult> EvaluateMultipleChoice(CausalLMImpl& model, const std::vector<ChoiceExample>& items,
                                                    Scoring scoring, int64_t batch_size);

// The same for several scoring functions at once, sharing the forward passes
// (one over the choice texts for sum/mean/byte, one over the letters); results
// in the order of `scorings`.
absl::StatusOr<std::vector<McEvalResult>> EvaluateMultipleChoiceScorings(
    CausalLMImpl& model, const std::vector<ChoiceExample>& items, const std::vector<Scoring>& scorings,
    int64_t batch_size);

// Log-probabilities of `continuation` after `prefix` for each pair, summed per
// pair (the building block of both evaluations; batches of `batch_size`).
absl::StatusOr<std::vector<double>> ContinuationLogProbs(
    CausalLMImpl& model, const std::vector<std::pair<std::vector<int64_t>, std::vector<int64_t>>>& pairs,
    int64_t batch_size);

}  // namespace d2lora::engine
