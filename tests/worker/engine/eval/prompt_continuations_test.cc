// Multiple-choice scoring that encodes each prompt once (KV cache) against the
// per-pair path that runs prompt + continuation as one sequence.
#include <gtest/gtest.h>
#include <torch/torch.h>

#include <algorithm>
#include <random>

#include "tests/worker/engine/model/tiny_model.h"
#include "worker/engine/adapters/adapted_linear.h"
#include "worker/engine/adapters/inject.h"
#include "worker/engine/adapters/linear.h"
#include "worker/engine/eval/evaluate.h"

namespace d2lora::engine {
namespace {

using Pairs = std::vector<std::pair<std::vector<int64_t>, std::vector<int64_t>>>;

std::vector<int64_t> RandomIds(std::mt19937& rng, int64_t vocab, size_t n) {
  std::uniform_int_distribution<int64_t> token(0, vocab - 1);
  std::vector<int64_t> ids(n);
  for (auto& id : ids) id = token(rng);
  return ids;
}

// `n` items: prompts of 1 to 13 tokens, 1 to 6 continuations of 1 to 5 tokens
// (the first item's are 1 and 5 tokens, so both kinds are always there; the
// second has 6 of 2 or more tokens, more than one pass holds at batch size 1).
std::vector<PromptContinuations> RandomItems(int64_t vocab, int n, uint32_t seed) {
  std::mt19937 rng(seed);
  std::vector<PromptContinuations> items;
  for (int i = 0; i < n; ++i) {
    PromptContinuations item;
    item.prompt = RandomIds(rng, vocab, i == 0 ? 1 : 1 + rng() % 13);
    const size_t choices = i == 0 ? 2 : i == 1 ? 6 : 1 + rng() % 6;
    for (size_t c = 0; c < choices; ++c) {
      const size_t len = i == 0 ? (c == 0 ? 1 : 5) : i == 1 ? 2 + rng() % 4 : 1 + rng() % 5;
      item.continuations.push_back(RandomIds(rng, vocab, len));
    }
    items.push_back(std::move(item));
  }
  return items;
}

// The reference: every (prompt, continuation) pair as one sequence.
std::vector<std::vector<double>> PerPair(CausalLMImpl& model, const std::vector<PromptContinuations>& items,
                                         int64_t batch_size) {
  Pairs pairs;
  for (const auto& item : items) {
    for (const auto& c : item.continuations) pairs.emplace_back(item.prompt, c);
  }
  auto sums = ContinuationLogProbs(model, pairs, batch_size);
  EXPECT_TRUE(sums.ok()) << sums.status();
  std::vector<std::vector<double>> out;
  size_t k = 0;
  for (const auto& item : items) {
    out.emplace_back(sums->begin() + static_cast<std::ptrdiff_t>(k),
                     sums->begin() + static_cast<std::ptrdiff_t>(k + item.continuations.size()));
    k += item.continuations.size();
  }
  return out;
}

void ExpectSameScores(CausalLMImpl& model, const std::vector<PromptContinuations>& items, const std::string& what) {
  const auto expected = PerPair(model, items, 5);
  for (int64_t batch : {1, 2, 3, 16}) {
    auto got = PromptContinuationLogProbs(model, items, batch);
    ASSERT_TRUE(got.ok()) << got.status();
    ASSERT_EQ(got->size(), items.size());
    for (size_t i = 0; i < items.size(); ++i) {
      ASSERT_EQ((*got)[i].size(), items[i].continuations.size());
      for (size_t c = 0; c < items[i].continuations.size(); ++c) {
        EXPECT_NEAR((*got)[i][c], expected[i][c], 1e-4)
            << what << ", batch " << batch << ", item " << i << ", continuation " << c;
      }
    }
  }
}

class PromptContinuationsTest : public ::testing::TestWithParam<const char*> {};

nlohmann::json ConfigJson(const std::string& name) {
  if (name == "qwen2") return testing::TinyQwen2Json();      // tied embeddings, q/k/v bias, one KV head
  if (name == "mistral") return testing::TinyMistralJson();  // sliding window of 4 < prompt + continuation
  if (name == "llama3") return testing::TinyLlama3Json();
  return testing::TinyLlamaJson();
}

// 7 items: not a multiple of the batch sizes 2 and 3; batch 16 holds them all.
TEST_P(PromptContinuationsTest, SameScoresAsOneSequencePerPair) {
  CausalLM model = testing::RandomTinyModel(testing::ConfigFrom(ConfigJson(GetParam())), 11);
  auto items = RandomItems(model->config().vocab_size, 7, 3);
  ExpectSameScores(*model, items, GetParam());
  EXPECT_TRUE(model->is_training());  // restored
}

INSTANTIATE_TEST_SUITE_P(Architectures, PromptContinuationsTest,
                         ::testing::Values("llama", "qwen2", "mistral", "llama3"));

// Training-time validation scores the unmerged adapted model the same way.
TEST(PromptContinuations, SameScoresWithAnAdapterInTrainingForm) {
  CausalLM model = testing::RandomTinyModel(testing::ConfigFrom(testing::TinyLlamaJson()), 5);
  AdapterOptions o;
  o.r = 2;
  o.target_modules = {"all-linear"};
  ASSERT_TRUE(InjectAdapters(*model, o).ok());
  torch::manual_seed(2);
  {
    torch::NoGradGuard ng;
    for (auto& [path, linear] : LinearLayers(*model)) {
      if (!linear->adapter()) continue;
      for (auto& p : linear->adapter()->named_parameters()) {
        if (p.key() != "tau_raw") p.value().copy_(0.3 * torch::randn_like(p.value()));
      }
    }
  }
  ExpectSameScores(*model, RandomItems(model->config().vocab_size, 5, 8), "d2lora");
}

TEST(PromptContinuations, EmptyContinuationsAndItemsWithoutAny) {
  CausalLM model = testing::RandomTinyModel(testing::ConfigFrom(testing::TinyLlamaJson()), 4);
  std::vector<PromptContinuations> items = {{{1, 2, 3}, {{}, {4}, {}}}, {{5}, {}}, {{6, 7}, {{8, 9, 10}, {}}}};
  auto got = PromptContinuationLogProbs(*model, items, 2);
  ASSERT_TRUE(got.ok()) << got.status();
  ASSERT_EQ(got->size(), 3u);
  EXPECT_EQ((*got)[0][0], 0.0);
  EXPECT_EQ((*got)[0][2], 0.0);
  EXPECT_TRUE((*got)[1].empty());
  EXPECT_EQ((*got)[2][1], 0.0);
  const auto expected = PerPair(*model, items, 2);
  EXPECT_NEAR((*got)[0][1], expected[0][1], 1e-4);
  EXPECT_NEAR((*got)[2][0], expected[2][0], 1e-4);
  // Only empty continuations: no forward pass at all, every score 0.
  auto none = PromptContinuationLogProbs(*model, {{{1, 2}, {{}, {}}}}, 4);
  ASSERT_TRUE(none.ok()) << none.status();
  EXPECT_EQ((*none)[0], (std::vector<double>{0.0, 0.0}));
}

TEST(PromptContinuations, Errors) {
  CausalLM model = testing::RandomTinyModel(testing::ConfigFrom(testing::TinyLlamaJson()), 4);
  const int64_t vocab = model->config().vocab_size;
  EXPECT_FALSE(PromptContinuationLogProbs(*model, {{{1, 2}, {{3}}}}, 0).ok());
  EXPECT_FALSE(PromptContinuationLogProbs(*model, {{{}, {{3}}}}, 1).ok());
  // Ids outside the vocabulary, in the prompt, as a first continuation token
  // (scored from the prompt's logits) and later on: errors, not crashes.
  EXPECT_FALSE(PromptContinuationLogProbs(*model, {{{1, vocab}, {{3}}}}, 1).ok());
  EXPECT_FALSE(PromptContinuationLogProbs(*model, {{{1, 2}, {{vocab}}}}, 1).ok());
  EXPECT_FALSE(PromptContinuationLogProbs(*model, {{{1, 2}, {{-1}}}}, 1).ok());
  EXPECT_FALSE(PromptContinuationLogProbs(*model, {{{1, 2}, {{3, vocab}}}}, 1).ok());
  EXPECT_FALSE(PromptContinuationLogProbs(*model, {{{1, 2}, {{3, 4, -2}}}}, 1).ok());
  EXPECT_TRUE(PromptContinuationLogProbs(*model, {}, 1).ok());
}

// The evaluation's predictions under every scoring are those the per-pair
// sums give, for items whose prompts, choices and letters differ in length.
TEST(EvaluateMultipleChoice, SharedPromptPredictionsMatchPerPairScores) {
  CausalLM model = testing::RandomTinyModel(testing::ConfigFrom(testing::TinyLlamaJson()), 9);
  const int64_t vocab = model->config().vocab_size;
  std::mt19937 rng(17);
  std::vector<ChoiceExample> items;
  for (int i = 0; i < 7; ++i) {
    ChoiceExample item;
    item.prompt_ids = RandomIds(rng, vocab, 2 + rng() % 12);
    for (int c = 0; c < 4; ++c) {
      item.choice_ids.push_back(RandomIds(rng, vocab, 1 + rng() % 4));
      item.choice_bytes.push_back(1 + static_cast<int64_t>(rng() % 20));
      item.letter_ids.push_back(RandomIds(rng, vocab, c == 3 ? 2 : 1));  // a two-token letter too
    }
    item.label = i % 4;
    items.push_back(std::move(item));
  }
  std::vector<std::vector<double>> choice_sums, letter_sums;
  for (const auto& item : items) {
    choice_sums.push_back(PerPair(*model, {{item.prompt_ids, item.choice_ids}}, 4)[0]);
    letter_sums.push_back(PerPair(*model, {{item.prompt_ids, item.letter_ids}}, 4)[0]);
  }
  const std::vector<ChoiceScoring> scorings = {ChoiceScoring::kSum, ChoiceScoring::kMean, ChoiceScoring::kByte, ChoiceScoring::kLetter};
  for (int64_t batch : {1, 3, 8}) {
    auto results = EvaluateMultipleChoiceScorings(*model, items, scorings, batch);
    ASSERT_TRUE(results.ok()) << results.status();
    ASSERT_EQ(results->size(), scorings.size());
    for (size_t s = 0; s < scorings.size(); ++s) {
      std::vector<int64_t> expected;
      int64_t correct = 0;
      for (size_t i = 0; i < items.size(); ++i) {
        std::vector<double> score = scorings[s] == ChoiceScoring::kLetter ? letter_sums[i] : choice_sums[i];
        for (size_t c = 0; c < score.size(); ++c) {
          if (scorings[s] == ChoiceScoring::kMean) score[c] /= static_cast<double>(items[i].choice_ids[c].size());
          if (scorings[s] == ChoiceScoring::kByte) score[c] /= static_cast<double>(items[i].choice_bytes[c]);
        }
        expected.push_back(std::max_element(score.begin(), score.end()) - score.begin());
        correct += expected.back() == items[i].label ? 1 : 0;
      }
      const McEvalResult& r = (*results)[s];
      EXPECT_EQ(r.predictions, expected) << ChoiceScoringName(scorings[s]) << ", batch " << batch;
      EXPECT_EQ(r.correct, correct);
      EXPECT_EQ(r.n, 7);
    }
    // One scoring alone gives the same as in the set.
    auto letter = EvaluateMultipleChoice(*model, items, ChoiceScoring::kLetter, batch);
    ASSERT_TRUE(letter.ok()) << letter.status();
    EXPECT_EQ(letter->predictions, (*results)[3].predictions);
  }
}

}  // namespace
}  // namespace d2lora::engine
