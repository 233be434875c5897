#include "worker/engine/eval/evaluate.h"

#include <gtest/gtest.h>
#include <torch/torch.h>

#include "tests/worker/engine/model/tiny_model.h"
#include "worker/engine/model/checkpoint.h"
#include "common/model/model_config.h"

namespace d2lora::engine {
namespace {

CausalLM TinyModel() {
  auto config = model::ParseModelConfig(testing::TinyLlamaJson().dump(), "tiny");
  EXPECT_TRUE(config.ok()) << config.status();
  auto model = InitRandomModel(*config, 7);
  EXPECT_TRUE(model.ok()) << model.status();
  return *model;
}

Example Make(std::vector<int64_t> ids, std::vector<uint8_t> mask = {}) {
  Example e;
  e.ids = std::move(ids);
  e.loss_mask = mask.empty() ? std::vector<uint8_t>(e.ids.size(), 1) : std::move(mask);
  e.loss_mask[0] = 0;
  return e;
}

// log p(ids[t] | ids[<t]) for one unpadded sequence, straight from the logits.
double TokenLogProb(CausalLMImpl& model, const std::vector<int64_t>& ids, size_t t) {
  torch::NoGradGuard ng;
  torch::Tensor x = torch::tensor(std::vector<int64_t>(ids.begin(), ids.begin() + t)).unsqueeze(0);
  torch::Tensor logp = torch::log_softmax(model.forward(x)[0][-1], -1);
  return logp[ids[t]].item<double>();
}

TEST(EvaluateLm, MeanNllOverAllTargetsMatchesDirectComputation) {
  CausalLM model = TinyModel();
  std::vector<Example> examples = {Make({1, 5, 9, 12, 3}), Make({1, 7, 8}), Make({4, 4, 4, 4, 4, 4, 4}),
                                   Make({1, 20, 30, 40}, {0, 0, 1, 1})};  // instruction-style mask
  double nll = 0;
  int64_t n = 0;
  for (const Example& e : examples) {
    for (size_t t = 1; t < e.ids.size(); ++t) {
      if (!e.loss_mask[t]) continue;
      nll -= TokenLogProb(*model, e.ids, t);
      ++n;
    }
  }
  for (int64_t batch : {1, 2, 4}) {
    auto r = EvaluateLm(*model, examples, batch);
    ASSERT_TRUE(r.ok()) << r.status();
    EXPECT_EQ(r->tokens, n);
    EXPECT_EQ(r->sequences, 4);
    EXPECT_NEAR(r->loss, nll / n, 1e-5) << "batch " << batch;
    EXPECT_NEAR(r->perplexity, std::exp(nll / n), 1e-3);
  }
  EXPECT_TRUE(model->is_training());  // restored
}

TEST(EvaluateMultipleChoice, ScoringFunctions) {
  CausalLM model = TinyModel();
  ChoiceExample item;
  item.prompt_ids = {1, 10, 11, 12};
  item.choice_ids = {{20}, {21, 22, 23}, {24, 25}};
  item.choice_bytes = {1, 9, 2};
  item.letter_ids = {{30}, {31}, {32}};
  item.label = 1;
  std::vector<std::pair<std::vector<int64_t>, std::vector<int64_t>>> pairs;
  for (const auto& c : item.choice_ids) pairs.emplace_back(item.prompt_ids, c);
  for (const auto& c : item.letter_ids) pairs.emplace_back(item.prompt_ids, c);
  auto sums = ContinuationLogProbs(*model, pairs, 2);
  ASSERT_TRUE(sums.ok()) << sums.status();
  // Each pair's sum equals the token-by-token log-probabilities.
  for (size_t i = 0; i < pairs.size(); ++i) {
    std::vector<int64_t> seq = pairs[i].first;
    seq.insert(seq.end(), pairs[i].second.begin(), pairs[i].second.end());
    double expect = 0;
    for (size_t t = pairs[i].first.size(); t < seq.size(); ++t) expect += TokenLogProb(*model, seq, t);
    EXPECT_NEAR((*sums)[i], expect, 1e-5) << i;
  }
  auto argmax = [](std::vector<double> v) {
    return static_cast<int64_t>(std::max_element(v.begin(), v.end()) - v.begin());
  };
  const auto& s = *sums;
  const std::vector<std::pair<ChoiceScoring, int64_t>> expected = {
      {ChoiceScoring::kSum, argmax({s[0], s[1], s[2]})},
      {ChoiceScoring::kMean, argmax({s[0] / 1, s[1] / 3, s[2] / 2})},
      {ChoiceScoring::kByte, argmax({s[0] / 1, s[1] / 9, s[2] / 2})},
      {ChoiceScoring::kLetter, argmax({s[3], s[4], s[5]})},
  };
  for (const auto& [scoring, pick] : expected) {
    auto r = EvaluateMultipleChoice(*model, {item, item}, scoring, 3);
    ASSERT_TRUE(r.ok()) << r.status();
    EXPECT_EQ(r->n, 2);
    EXPECT_EQ(r->predictions, (std::vector<int64_t>{pick, pick})) << ChoiceScoringName(scoring);
    EXPECT_EQ(r->accuracy, pick == 1 ? 1.0 : 0.0);
  }
}

TEST(Evaluate, Errors) {
  CausalLM model = TinyModel();
  EXPECT_FALSE(EvaluateLm(*model, {}, 2).ok());
  EXPECT_FALSE(EvaluateLm(*model, {Make({1, 2})}, 0).ok());
  EXPECT_FALSE(ParseChoiceScoring("median").ok());
  // An id outside the vocabulary is an error, not a crash.
  auto bad = EvaluateLm(*model, {Make({1, 999})}, 1);
  EXPECT_FALSE(bad.ok());
}

}  // namespace
}  // namespace d2lora::engine
