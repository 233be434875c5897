#include "worker/engine/eval/evaluate.h"

#include <torch/torch.h>

#include <cmath>

#include "absl/strings/str_cat.h"
#include "common/status_macros.h"
#include "worker/engine/torch_guard.h"

namespace d2lora::engine {

namespace {

// Restores the module's training flag on scope exit.
class EvalModeScope {
 public:
  explicit EvalModeScope(torch::nn::Module& m) : module_(m), was_training_(m.is_training()) { m.eval(); }
  ~EvalModeScope() { module_.train(was_training_); }

 private:
  torch::nn::Module& module_;
  bool was_training_;
};

// Sequences right-padded into [B, T] ids and mask, plus per-position target
// weights [B, T-1] (1 where token t+1 is scored).
struct Padded {
  torch::Tensor ids, mask, targets, weights;
};

Padded Pad(const std::vector<const std::vector<int64_t>*>& seqs,
           const std::vector<std::vector<uint8_t>>& scored) {
  int64_t t_max = 0;
  for (auto* s : seqs) t_max = std::max<int64_t>(t_max, static_cast<int64_t>(s->size()));
  const int64_t b = static_cast<int64_t>(seqs.size());
  torch::Tensor ids = torch::zeros({b, t_max}, torch::kInt64);
  torch::Tensor mask = torch::zeros({b, t_max}, torch::kInt64);
  torch::Tensor weights = torch::zeros({b, std::max<int64_t>(t_max - 1, 0)}, torch::kFloat64);
  auto ids_a = ids.accessor<int64_t, 2>();
  auto mask_a = mask.accessor<int64_t, 2>();
  auto w_a = weights.accessor<double, 2>();
  for (int64_t i = 0; i < b; ++i) {
    const auto& s = *seqs[i];
    for (size_t t = 0; t < s.size(); ++t) {
      ids_a[i][t] = s[t];
      mask_a[i][t] = 1;
      if (t > 0 && scored[i][t]) w_a[i][t - 1] = 1.0;
    }
  }
  torch::Tensor targets = ids.narrow(1, 1, std::max<int64_t>(t_max - 1, 0));
  return {ids, mask, targets, weights};
}

// Per-sequence sum of log p(target) over weighted positions, in fp64.
torch::Tensor ScoredLogProbs(CausalLMImpl& model, const Padded& p) {
  const auto device = model.output_weight().device();
  torch::Tensor logits = model.forward(p.ids.to(device), p.mask.to(device));
  const int64_t t = logits.size(1);
  if (t < 2) return torch::zeros({logits.size(0)}, torch::kFloat64);
  torch::Tensor logp = torch::log_softmax(logits.narrow(1, 0, t - 1).to(torch::kFloat32), -1);
  torch::Tensor picked = logp.gather(2, p.targets.to(device).unsqueeze(2)).squeeze(2).to(torch::kFloat64).cpu();
  return (picked * p.weights).sum(1);
}

}  // namespace

absl::StatusOr<Scoring> ParseScoring(const std::string& name) {
  if (name == "sum") return Scoring::kSum;
  if (name == "mean") return Scoring::kMean;
  if (name == "byte") return Scoring::kByte;
  if (name == "letter") return Scoring::kLetter;
  return absl::InvalidArgumentError(absl::StrCat("unknown scoring '", name, "' (expected sum, mean, byte or letter)"));
}

std::string ScoringName(Scoring scoring) {
  switch (scoring) {
    case Scoring::kSum:
      return "sum";
    case Scoring::kMean:
      return "mean";
    case Scoring::kByte:
      return "byte";
    case Scoring::kLetter:
      return "letter";
  }
  return "?";
}

absl::StatusOr<LmEvalResult> EvaluateLm(CausalLMImpl& model, const std::vector<Example>& examples,
                                        int64_t batch_size) {
  if (batch_size < 1) return absl::InvalidArgumentError("batch size must be >= 1");
  if (examples.empty()) return absl::InvalidArgumentError("no examples to evaluate");
  return GuardTorch("evaluating language-modelling loss", [&]() -> absl::StatusOr<LmEvalResult> {
    torch::NoGradGuard no_grad;
    EvalModeScope eval(model);
    double nll = 0;
    LmEvalResult r;
    for (size_t start = 0; start < examples.size(); start += batch_size) {
      const size_t end = std::min(examples.size(), start + static_cast<size_t>(batch_size));
      std::vector<const std::vector<int64_t>*> seqs;
      std::vector<std::vector<uint8_t>> scored;
      for (size_t i = start; i < end; ++i) {
        seqs.push_back(&examples[i].ids);
        scored.push_back(examples[i].loss_mask);
        r.tokens += examples[i].num_targets();
      }
      nll -= ScoredLogProbs(model, Pad(seqs, scored)).sum().item<double>();
      r.sequences += static_cast<int64_t>(end - start);
    }
    if (r.tokens == 0) return absl::InvalidArgumentError("the examples hold no target token");
    r.loss = nll / static_cast<double>(r.tokens);
    r.perplexity = std::exp(r.loss);
    return r;
  });
}

absl::StatusOr<std::vector<double>> ContinuationLogProbs(
    CausalLMImpl& model, const std::vector<std::pair<std::vector<int64_t>, std::vector<int64_t>>>& pairs,
    int64_t batch_size) {
  if (batch_size < 1) return absl::InvalidArgumentError("batch size must be >= 1");
  return GuardTorch("scoring continuations", [&]() -> absl::StatusOr<std::vector<double>> {
    torch::NoGradGuard no_grad;
    EvalModeScope eval(model);
    std::vector<double> out;
    out.reserve(pairs.size());
    for (size_t start = 0; start < pairs.size(); start += batch_size) {
      const size_t end = std::min(pairs.size(), start + static_cast<size_t>(batch_size));
      std::vector<std::vector<int64_t>> joined;
      std::vector<std::vector<uint8_t>> scored;
      for (size_t i = start; i < end; ++i) {
        const auto& [prefix, cont] = pairs[i];
        if (prefix.empty()) return absl::InvalidArgumentError("a continuation needs a non-empty prefix");
        std::vector<int64_t> seq = prefix;
        seq.insert(seq.end(), cont.begin(), cont.end());
        std::vector<uint8_t> mask(seq.size(), 0);
        std::fill(mask.begin() + static_cast<int64_t>(prefix.size()), mask.end(), 1);
        joined.push_back(std::move(seq));
        scored.push_back(std::move(mask));
      }
      std::vector<const std::vector<int64_t>*> seqs;
      for (const auto& s : joined) seqs.push_back(&s);
      torch::Tensor sums = ScoredLogProbs(model, Pad(seqs, scored));
      for (int64_t i = 0; i < sums.size(0); ++i) out.push_back(sums[i].item<double>());
    }
    return out;
  });
}

absl::StatusOr<std::vector<McEvalResult>> EvaluateMultipleChoiceScorings(
    CausalLMImpl& model, const std::vector<ChoiceExample>& items, const std::vector<Scoring>& scorings,
    int64_t batch_size) {
  if (items.empty()) return absl::InvalidArgumentError("no multiple-choice items to evaluate");
  // At most two passes: the choice texts (sum, mean, byte) and the letters.
  std::vector<double> choice_sums, letter_sums;
  for (bool letters : {false, true}) {
    bool needed = false;
    for (Scoring s : scorings) needed = needed || ((s == Scoring::kLetter) == letters);
    if (!needed) continue;
    std::vector<std::pair<std::vector<int64_t>, std::vector<int64_t>>> pairs;
    for (const ChoiceExample& item : items) {
      for (const auto& c : letters ? item.letter_ids : item.choice_ids) pairs.emplace_back(item.prompt_ids, c);
    }
    std::vector<double>& sums = letters ? letter_sums : choice_sums;
    D2_ASSIGN_OR_RETURN(sums, ContinuationLogProbs(model, pairs, batch_size));
  }
  std::vector<McEvalResult> results;
  for (Scoring scoring : scorings) {
    const std::vector<double>& sums = scoring == Scoring::kLetter ? letter_sums : choice_sums;
    McEvalResult r;
    size_t k = 0;
    for (const ChoiceExample& item : items) {
      const auto& continuations = scoring == Scoring::kLetter ? item.letter_ids : item.choice_ids;
      int64_t best = -1;
      double best_score = -INFINITY;
      for (size_t c = 0; c < continuations.size(); ++c, ++k) {
        double score = sums[k];
        if (scoring == Scoring::kMean) score /= std::max<double>(1.0, static_cast<double>(continuations[c].size()));
        if (scoring == Scoring::kByte) score /= std::max<double>(1.0, static_cast<double>(item.choice_bytes[c]));
        if (best < 0 || score > best_score) {
          best = static_cast<int64_t>(c);
          best_score = score;
        }
      }
      r.predictions.push_back(best);
      r.correct += best == item.label ? 1 : 0;
    }
    r.n = static_cast<int64_t>(items.size());
    r.accuracy = static_cast<double>(r.correct) / static_cast<double>(r.n);
    results.push_back(std::move(r));
  }
  return results;
}

absl::StatusOr<McEvalResult> EvaluateMultipleChoice(CausalLMImpl& model, const std::vector<ChoiceExample>& items,
                                                    Scoring scoring, int64_t batch_size) {
  D2_ASSIGN_OR_RETURN(std::vector<McEvalResult> results,
                      EvaluateMultipleChoiceScorings(model, items, {scoring}, batch_size));
  return std::move(results.front());
}

}  // namespace d2lora::engine
