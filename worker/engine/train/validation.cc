#include <torch/torch.h>

#include "worker/engine/train/validation.h"

#include <chrono>
#include <algorithm>
#include <cmath>

#include "absl/strings/str_cat.h"
#include "common/status_macros.h"
#include "worker/engine/eval/evaluate.h"
#include "worker/engine/eval/rouge.h"
#include "worker/engine/model/generate.h"
#include "worker/engine/torch_guard.h"

namespace d2lora::engine {
namespace {

// Items rank, rank + W, ... of the first `limit` (0 = all).
template <typename T>
std::vector<T> Shard(const std::vector<T>& items, int64_t limit, int64_t rank, int64_t world) {
  const int64_t n = limit > 0 ? std::min<int64_t>(limit, static_cast<int64_t>(items.size()))
                              : static_cast<int64_t>(items.size());
  std::vector<T> out;
  for (int64_t i = rank; i < n; i += world) out.push_back(items[static_cast<size_t>(i)]);
  return out;
}

// Slots of the all-reduced vector.
enum Slot { kLossSum, kLossTokens, kLossSequences, kCorrectSum, kCorrectMean, kCorrectByte, kCorrectLetter, kChoiceItems,
            kRougeSum, kRougeItems, kNumSlots };

constexpr ChoiceScoring kAllScorings[] = {ChoiceScoring::kSum, ChoiceScoring::kMean, ChoiceScoring::kByte,
                                          ChoiceScoring::kLetter};

Slot CorrectSlot(ChoiceScoring s) {
  switch (s) {
    case ChoiceScoring::kSum: return kCorrectSum;
    case ChoiceScoring::kMean: return kCorrectMean;
    case ChoiceScoring::kByte: return kCorrectByte;
    case ChoiceScoring::kLetter: return kCorrectLetter;
  }
  return kCorrectMean;
}

}  // namespace

absl::StatusOr<ValidationResult> Validate(CausalLMImpl& model, const ValidationSet& data,
                                          const ValidationOptions& options, ProcessGroup& group, int64_t step,
                                          bool final) {
  const auto start = std::chrono::steady_clock::now();
  const int64_t rank = group.rank(), world = group.world_size();
  const int64_t limit = options.eval.max_examples;
  std::vector<double> sums(kNumSlots, 0.0);

  std::vector<Example> examples = Shard(data.examples, limit, rank, world);
  if (!examples.empty()) {
    D2_ASSIGN_OR_RETURN(LmEvalResult lm, EvaluateLm(model, examples, options.batch_size));
    sums[kLossSum] = lm.loss * static_cast<double>(lm.tokens);
    sums[kLossTokens] = static_cast<double>(lm.tokens);
    sums[kLossSequences] = static_cast<double>(examples.size());
  }

  std::vector<ChoiceScoring> scorings = {options.eval.scoring};
  if (final) scorings.assign(std::begin(kAllScorings), std::end(kAllScorings));
  std::vector<ChoiceExample> choices = Shard(data.choices, limit, rank, world);
  // Each item's chosen index + 1 at its place in the whole set, per scoring;
  // zeros elsewhere, so that the all-reduced sum is every rank's answers.
  const int64_t all_items = limit > 0 ? std::min<int64_t>(limit, static_cast<int64_t>(data.choices.size()))
                                      : static_cast<int64_t>(data.choices.size());
  torch::Tensor chosen;
  if (all_items > 0) chosen = torch::zeros({static_cast<int64_t>(scorings.size()), all_items}, torch::kFloat64);
  if (!choices.empty()) {
    D2_ASSIGN_OR_RETURN(std::vector<McEvalResult> mc,
                        EvaluateMultipleChoiceScorings(model, choices, scorings, options.batch_size));
    auto at = chosen.accessor<double, 2>();
    for (size_t i = 0; i < scorings.size(); ++i) {
      sums[CorrectSlot(scorings[i])] = static_cast<double>(mc[i].correct);
      for (size_t k = 0; k < mc[i].predictions.size(); ++k) {
        at[static_cast<int64_t>(i)][rank + static_cast<int64_t>(k) * world] =
            static_cast<double>(mc[i].predictions[k] + 1);
      }
    }
    sums[kChoiceItems] = static_cast<double>(choices.size());
  }

  const bool rouge = final && options.decode && !data.generation.empty();
  if (rouge) {
    GenerationOptions gen;
    gen.max_new_tokens = options.eval.generate_max_new_tokens;
    gen.eos_token_ids = options.eos_token_ids;
    for (const GenerationItem& item : Shard(data.generation, limit, rank, world)) {
      D2_ASSIGN_OR_RETURN(std::vector<int64_t> ids, Generate(model, item.prompt_ids, gen));
      while (!ids.empty() && std::find(gen.eos_token_ids.begin(), gen.eos_token_ids.end(), ids.back()) !=
                                 gen.eos_token_ids.end()) {
        ids.pop_back();
      }
      sums[kRougeSum] += RougeL(options.decode(ids), item.reference).f1;
      sums[kRougeItems] += 1;
    }
  }

  if (world > 1) {
    torch::Tensor t = torch::tensor(sums, torch::kFloat64).to(group.device());
    D2_RETURN_IF_ERROR(group.AllReduceSum(t));
    t = t.cpu();
    auto acc = t.accessor<double, 1>();
    for (int i = 0; i < kNumSlots; ++i) sums[i] = acc[i];
    if (chosen.defined()) {
      torch::Tensor c = chosen.to(group.device());
      D2_RETURN_IF_ERROR(group.AllReduceSum(c));
      chosen = c.cpu();
    }
  }

  ValidationResult r;
  EvalMetrics& m = r.metrics;
  m.step = step;
  m.final = final;
  if (sums[kLossTokens] > 0) {
    m.loss = sums[kLossSum] / sums[kLossTokens];
    m.perplexity = std::exp(*m.loss);
    r.details["loss"] = *m.loss;
    r.details["perplexity"] = *m.perplexity;
    r.details["loss_tokens"] = static_cast<int64_t>(sums[kLossTokens]);
  }
  if (sums[kChoiceItems] > 0) {
    m.accuracy = sums[CorrectSlot(options.eval.scoring)] / sums[kChoiceItems];
    m.scoring = ChoiceScoringName(options.eval.scoring);
    nlohmann::json acc;
    for (ChoiceScoring s : scorings) acc[ChoiceScoringName(s)] = sums[CorrectSlot(s)] / sums[kChoiceItems];
    r.details["accuracy"] = acc;
    r.details["scoring"] = m.scoring;
    r.details["choice_items"] = static_cast<int64_t>(sums[kChoiceItems]);
    auto at = chosen.accessor<double, 2>();
    for (size_t i = 0; i < scorings.size(); ++i) {
      std::vector<int64_t>& p = r.predictions[std::string(ChoiceScoringName(scorings[i]))];
      p.reserve(static_cast<size_t>(all_items));
      for (int64_t k = 0; k < all_items; ++k) p.push_back(static_cast<int64_t>(at[static_cast<int64_t>(i)][k]) - 1);
    }
    for (int64_t k = 0; k < all_items; ++k) r.labels.push_back(data.choices[static_cast<size_t>(k)].label);
  }
  if (sums[kRougeItems] > 0) {
    m.rouge_l = sums[kRougeSum] / sums[kRougeItems];
    r.details["rouge_l"] = *m.rouge_l;
    r.details["generation_items"] = static_cast<int64_t>(sums[kRougeItems]);
  }
  m.examples = static_cast<int64_t>(std::max({sums[kLossSequences], sums[kChoiceItems], sums[kRougeItems]}));
  m.seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  r.details["step"] = step;
  r.details["seconds"] = m.seconds;
  return r;
}

}  // namespace d2lora::engine
