#include "worker/engine/eval/evaluate.h"

#include <torch/torch.h>

#include <algorithm>
#include <cmath>
#include <numeric>

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

// Log p(target) per row, fp64 on the CPU: logits [N, V] (any float dtype),
// targets [N] int64 on the logits' device. Through logsumexp rather than a
// whole log_softmax tensor; gather refuses an id outside [0, V).
torch::Tensor PickedLogProbs(const torch::Tensor& logits, const torch::Tensor& targets) {
  torch::Tensor l = logits.to(torch::kFloat32);
  torch::Tensor picked = l.gather(1, targets.unsqueeze(1)).squeeze(1) - l.logsumexp(1);
  return picked.to(torch::kFloat64).cpu();
}

// A pass over continuations holds at most this many per prompt of a batch
// (four choices in one pass), each with a copy of its prompt's cached keys and
// values: its cache is at most this many times the prompt pass's.
constexpr int64_t kContinuationsPerPrompt = 4;

// The cache's rows `rows` [N] (int64, on the cache's device), in that order.
KvCache SelectRows(const KvCache& cache, const torch::Tensor& rows) {
  KvCache out;
  for (const torch::Tensor& k : cache.keys) out.keys.push_back(k.index_select(0, rows));
  for (const torch::Tensor& v : cache.values) out.values.push_back(v.index_select(0, rows));
  out.attention_mask = cache.attention_mask.index_select(0, rows);
  out.next_positions = cache.next_positions.index_select(0, rows);
  return out;
}

}  // namespace


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

absl::StatusOr<std::vector<std::vector<double>>> PromptContinuationLogProbs(
    CausalLMImpl& model, const std::vector<PromptContinuations>& items, int64_t batch_size) {
  if (batch_size < 1) return absl::InvalidArgumentError("batch size must be >= 1");
  for (const PromptContinuations& item : items) {
    if (item.prompt.empty()) return absl::InvalidArgumentError("a continuation needs a non-empty prefix");
  }
  return GuardTorch("scoring continuations", [&]() -> absl::StatusOr<std::vector<std::vector<double>>> {
    torch::NoGradGuard no_grad;
    EvalModeScope eval(model);
    const auto device = model.output_weight().device();
    const auto long_opts = torch::TensorOptions().dtype(torch::kInt64);
    std::vector<std::vector<double>> out(items.size());
    for (size_t i = 0; i < items.size(); ++i) out[i].assign(items[i].continuations.size(), 0.0);
    // Batches of prompts of similar length (little padding to compute); the
    // scores go back to the items' own order.
    std::vector<size_t> order(items.size());
    std::iota(order.begin(), order.end(), size_t{0});
    std::stable_sort(order.begin(), order.end(),
                     [&](size_t x, size_t y) { return items[x].prompt.size() < items[y].prompt.size(); });
    for (size_t start = 0; start < items.size(); start += batch_size) {
      const size_t end = std::min(items.size(), start + static_cast<size_t>(batch_size));
      const int64_t b = static_cast<int64_t>(end - start);
      // Prompts left-padded: each one's last token sits in the last column, and
      // its continuations follow it without a gap, so that key distances (a
      // sliding window) are those of the unpadded sequence.
      int64_t tp = 0;
      for (size_t j = start; j < end; ++j) {
        tp = std::max<int64_t>(tp, static_cast<int64_t>(items[order[j]].prompt.size()));
      }
      torch::Tensor ids = torch::zeros({b, tp}, long_opts);
      torch::Tensor mask = torch::zeros({b, tp}, long_opts);
      auto ids_a = ids.accessor<int64_t, 2>();
      auto mask_a = mask.accessor<int64_t, 2>();
      // First tokens (scored from the prompt's last position) and the
      // continuations with more tokens (scored in a second pass).
      std::vector<int64_t> first_row, first_token, rest_row;
      std::vector<std::pair<size_t, size_t>> first_at, rest_at;  // (item, continuation)
      for (size_t j = start; j < end; ++j) {
        const size_t i = order[j];
        const int64_t row = static_cast<int64_t>(j - start);
        const auto& prompt = items[i].prompt;
        const int64_t offset = tp - static_cast<int64_t>(prompt.size());
        for (size_t t = 0; t < prompt.size(); ++t) {
          ids_a[row][offset + static_cast<int64_t>(t)] = prompt[t];
          mask_a[row][offset + static_cast<int64_t>(t)] = 1;
        }
        for (size_t c = 0; c < items[i].continuations.size(); ++c) {
          const auto& cont = items[i].continuations[c];
          if (cont.empty()) continue;
          first_row.push_back(row);
          first_token.push_back(cont[0]);
          first_at.emplace_back(i, c);
          if (cont.size() < 2) continue;
          rest_row.push_back(row);
          rest_at.emplace_back(i, c);
        }
      }
      if (first_row.empty()) continue;
      KvCache cache;
      torch::Tensor first;
      {
        KvCache* keep = rest_row.empty() ? nullptr : &cache;  // needed only for a second pass
        torch::Tensor hidden = model.hidden_states(ids.to(device), mask.to(device), keep);
        torch::Tensor last_logits = model.logits(hidden.select(1, tp - 1));  // [b, V]: the LM head on one position
        first = PickedLogProbs(last_logits.index_select(0, torch::tensor(first_row, long_opts).to(device)),
                               torch::tensor(first_token, long_opts).to(device));
      }
      auto first_a = first.accessor<double, 1>();
      for (size_t k = 0; k < first_at.size(); ++k) out[first_at[k].first][first_at[k].second] += first_a[k];
      if (rest_row.empty()) continue;

      // The continuations of two or more tokens, at most kContinuationsPerPrompt
      // * batch_size per pass: each one's tokens but the last as input,
      // right-padded, against its own copy of its prompt's keys and values; the
      // targets are its tokens from the second on.
      const torch::Tensor rest_rows = torch::tensor(rest_row, long_opts);
      const size_t per_pass = static_cast<size_t>(kContinuationsPerPrompt * batch_size);
      for (size_t c0 = 0; c0 < rest_row.size(); c0 += per_pass) {
        const size_t c1 = std::min(rest_row.size(), c0 + per_pass);
        const int64_t n = static_cast<int64_t>(c1 - c0);
        int64_t len = 0;
        for (size_t k = c0; k < c1; ++k) {
          const auto& at = rest_at[k];
          len = std::max<int64_t>(len, static_cast<int64_t>(items[at.first].continuations[at.second].size()) - 1);
        }
        torch::Tensor in = torch::zeros({n, len}, long_opts);
        torch::Tensor in_mask = torch::zeros({n, len}, long_opts);
        torch::Tensor targets = torch::zeros({n, len}, long_opts);
        torch::Tensor weights = torch::zeros({n, len}, torch::kFloat64);
        auto in_a = in.accessor<int64_t, 2>();
        auto in_mask_a = in_mask.accessor<int64_t, 2>();
        auto targets_a = targets.accessor<int64_t, 2>();
        auto weights_a = weights.accessor<double, 2>();
        for (int64_t k = 0; k < n; ++k) {
          const auto& at = rest_at[c0 + static_cast<size_t>(k)];
          const auto& cont = items[at.first].continuations[at.second];
          for (size_t t = 0; t + 1 < cont.size(); ++t) {
            in_a[k][static_cast<int64_t>(t)] = cont[t];
            in_mask_a[k][static_cast<int64_t>(t)] = 1;
            targets_a[k][static_cast<int64_t>(t)] = cont[t + 1];
            weights_a[k][static_cast<int64_t>(t)] = 1.0;
          }
        }
        KvCache expanded = SelectRows(cache, rest_rows.narrow(0, static_cast<int64_t>(c0), n).to(device));
        if (c1 == rest_row.size()) cache.clear();  // the last pass needs only its copy
        torch::Tensor logits = model.forward(in.to(device), in_mask.to(device), &expanded);  // [n, len, V]
        torch::Tensor picked = PickedLogProbs(logits.reshape({n * len, -1}), targets.to(device).reshape({-1}));
        torch::Tensor sums = (picked.view({n, len}) * weights).sum(1);
        auto sums_a = sums.accessor<double, 1>();
        for (int64_t k = 0; k < n; ++k) {
          const auto& at = rest_at[c0 + static_cast<size_t>(k)];
          out[at.first][at.second] += sums_a[k];
        }
      }
    }
    return out;
  });
}

absl::StatusOr<std::vector<McEvalResult>> EvaluateMultipleChoiceScorings(
    CausalLMImpl& model, const std::vector<ChoiceExample>& items, const std::vector<ChoiceScoring>& scorings,
    int64_t batch_size) {
  if (items.empty()) return absl::InvalidArgumentError("no multiple-choice items to evaluate");
  bool need_choices = false, need_letters = false;
  for (ChoiceScoring s : scorings) (s == ChoiceScoring::kLetter ? need_letters : need_choices) = true;
  // One prompt pass for both: each item's continuations are its choice texts
  // (when sum, mean or byte is asked for), then its letters (when letter is).
  std::vector<PromptContinuations> work;
  work.reserve(items.size());
  for (const ChoiceExample& item : items) {
    PromptContinuations w;
    w.prompt = item.prompt_ids;
    if (need_choices) w.continuations = item.choice_ids;
    if (need_letters) w.continuations.insert(w.continuations.end(), item.letter_ids.begin(), item.letter_ids.end());
    work.push_back(std::move(w));
  }
  D2_ASSIGN_OR_RETURN(std::vector<std::vector<double>> scored, PromptContinuationLogProbs(model, work, batch_size));
  std::vector<double> choice_sums, letter_sums;
  for (size_t i = 0; i < items.size(); ++i) {
    auto it = scored[i].begin();
    if (need_choices) {
      const auto n = static_cast<std::ptrdiff_t>(items[i].choice_ids.size());
      choice_sums.insert(choice_sums.end(), it, it + n);
      it += n;
    }
    if (need_letters) letter_sums.insert(letter_sums.end(), it, scored[i].end());
  }
  std::vector<McEvalResult> results;
  for (ChoiceScoring scoring : scorings) {
    const std::vector<double>& sums = scoring == ChoiceScoring::kLetter ? letter_sums : choice_sums;
    McEvalResult r;
    size_t k = 0;
    for (const ChoiceExample& item : items) {
      const auto& continuations = scoring == ChoiceScoring::kLetter ? item.letter_ids : item.choice_ids;
      int64_t best = -1;
      double best_score = -INFINITY;
      for (size_t c = 0; c < continuations.size(); ++c, ++k) {
        double score = sums[k];
        if (scoring == ChoiceScoring::kMean) score /= std::max<double>(1.0, static_cast<double>(continuations[c].size()));
        if (scoring == ChoiceScoring::kByte) score /= std::max<double>(1.0, static_cast<double>(item.choice_bytes[c]));
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
                                                    ChoiceScoring scoring, int64_t batch_size) {
  D2_ASSIGN_OR_RETURN(std::vector<McEvalResult> results,
                      EvaluateMultipleChoiceScorings(model, items, {scoring}, batch_size));
  return std::move(results.front());
}

}  // namespace d2lora::engine
