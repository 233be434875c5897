// Evaluation of a causal LM: language-modelling loss and multiple-choice
// accuracy by continuation likelihood. Runs in eval mode without gradients;
// the model's training flag is restored.
#pragma once

#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "worker/engine/data/examples.h"
#include "worker/engine/model/llama.h"
#include "worker/engine/spec_types.h"

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
// The spec's eval.scoring (ChoiceScoring, ParseChoiceScoring, ChoiceScoringName).

struct McEvalResult {
  double accuracy = 0;
  int64_t n = 0;
  int64_t correct = 0;
  std::vector<int64_t> predictions;  // chosen index per item
};

// `batch_size` items (prompts) per forward pass; see PromptContinuationLogProbs.
absl::StatusOr<McEvalResult> EvaluateMultipleChoice(CausalLMImpl& model, const std::vector<ChoiceExample>& items,
                                                    ChoiceScoring scoring, int64_t batch_size);

// The same for several scoring functions at once, sharing the forward passes:
// each prompt is encoded once and both the choice texts (sum, mean, byte) and
// the letters are scored against it; results in the order of `scorings`.
absl::StatusOr<std::vector<McEvalResult>> EvaluateMultipleChoiceScorings(
    CausalLMImpl& model, const std::vector<ChoiceExample>& items, const std::vector<ChoiceScoring>& scorings,
    int64_t batch_size);

// Log-probabilities of `continuation` after `prefix` for each pair, summed per
// pair; every pair is one whole sequence (prefix + continuation) through the
// model, `batch_size` sequences per forward pass. The reference for
// PromptContinuationLogProbs, which multiple-choice evaluation uses.
absl::StatusOr<std::vector<double>> ContinuationLogProbs(
    CausalLMImpl& model, const std::vector<std::pair<std::vector<int64_t>, std::vector<int64_t>>>& pairs,
    int64_t batch_size);

// One prompt and the continuations scored after it.
struct PromptContinuations {
  std::vector<int64_t> prompt;                      // non-empty
  std::vector<std::vector<int64_t>> continuations;  // each may be empty (scores 0)
};

// Per item, per continuation: the summed log-probability of the continuation
// after the item's prompt, the values ContinuationLogProbs gives for the pairs
// (prompt, continuation) up to float rounding, with each prompt encoded once.
// `batch_size` prompts of similar length go through the model together
// (left-padded, keys and values kept in a KvCache; the LM head runs on their
// last position only, which scores every continuation's first token); then the
// continuations of two or more tokens of those prompts against the cached
// prompts (their tokens but the last as input, each with a copy of its prompt's
// cache rows), at most 4 * `batch_size` of them per pass.
absl::StatusOr<std::vector<std::vector<double>>> PromptContinuationLogProbs(
    CausalLMImpl& model, const std::vector<PromptContinuations>& items, int64_t batch_size);

}  // namespace d2lora::engine
