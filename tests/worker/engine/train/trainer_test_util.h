// Shared by the trainer's tests: a tiny LLaMA, a counting task it learns in a
// few dozen steps, and a trainer session over them.
#pragma once

#include <torch/torch.h>

#include <gtest/gtest.h>

#include <atomic>
#include <memory>
#include <random>
#include <string>
#include <vector>

#include "tests/worker/engine/model/tiny_model.h"
#include "worker/engine/adapters/inject.h"
#include "worker/engine/train/trainer.h"

namespace d2lora::engine {

constexpr int64_t kVocab = 61;

// The synthetic task: count upwards, token t+1 = next(token t) over ids 3..60.
inline std::vector<Example> CountingExamples(int n, int64_t len, uint64_t seed) {
  std::mt19937_64 rng(seed);
  std::vector<Example> out;
  for (int i = 0; i < n; ++i) {
    Example e;
    const int64_t l = len - static_cast<int64_t>(rng() % 4);
    int64_t tok = 3 + static_cast<int64_t>(rng() % (kVocab - 3));
    for (int64_t t = 0; t < l; ++t) {
      e.ids.push_back(tok);
      e.loss_mask.push_back(t == 0 ? 0 : 1);
      tok = 3 + (tok - 3 + 1) % (kVocab - 3);
    }
    out.push_back(std::move(e));
  }
  return out;
}

inline JobSpec TinySpec(TrainingMethod method) {
  JobSpec spec;
  spec.name = "tiny";
  spec.model = "unused";
  spec.data.train = "unused";
  spec.data.format = "lm";
  spec.method = method;
  spec.adapter.method = method == TrainingMethod::kLora ? AdapterMethod::kLora
                        : method == TrainingMethod::kDora ? AdapterMethod::kDora
                                                          : AdapterMethod::kD2Lora;
  spec.adapter.r = 4;
  spec.adapter.alpha = 8;
  spec.adapter.target_modules = {"all-linear"};
  spec.train.epochs = 0;
  spec.train.max_steps = 20;
  spec.train.batch_size = 8;
  spec.train.micro_batch_size = 2;
  spec.train.lr = 1e-2;
  spec.train.warmup_steps = 2;
  spec.train.checkpoint_every = 0;
  spec.eval.every = 0;
  spec.metrics.volatility_window = 10;
  return spec;
}

inline CausalLM TinyModel(const JobSpec& spec) {
  CausalLM model = testing::RandomTinyModel(testing::ConfigFrom(testing::TinyLlamaJson()), 11);
  if (spec.full_finetune()) {
    for (auto& p : model->parameters()) p.requires_grad_(true);
  } else {
    auto report = InjectAdapters(*model, spec.adapter);
    EXPECT_TRUE(report.ok()) << report.status();
  }
  return model;
}

struct Session {
  CausalLM model{nullptr};
  std::unique_ptr<Trainer> trainer;
};

// `model` (default: a fresh TinyModel) must be built outside the rank threads:
// RandomTinyModel draws from LibTorch's global generator.
inline Session MakeSession(const JobSpec& spec, ProcessGroup* group, const std::string& checkpoints_dir = "",
                    ValidationSet validation = {}, std::vector<TrainingCallback*> callbacks = {},
                    const std::atomic<bool>* stop = nullptr, CausalLM model = nullptr,
                    std::shared_ptr<const std::vector<Example>> train = nullptr) {
  Session s;
  s.model = model ? model : TinyModel(spec);
  TrainerOptions o;
  o.checkpoints_dir = checkpoints_dir;
  o.fingerprint = {{"test", 1}};
  o.callbacks = std::move(callbacks);
  o.stop = stop;
  if (!train) train = std::make_shared<const std::vector<Example>>(CountingExamples(64, 12, 5));
  auto valid = ValidJobSpec::Check(spec);
  EXPECT_TRUE(valid.ok()) << valid.status();
  if (!valid.ok()) return s;
  auto t = Trainer::Create(s.model, train, std::move(validation), *valid, std::move(o), group);
  EXPECT_TRUE(t.ok()) << t.status();
  if (t.ok()) s.trainer = std::move(*t);
  return s;
}

inline double MaxParamDiff(const Trainer& a, const Trainer& b) {
  double diff = 0;
  for (size_t i = 0; i < a.parameters().size(); ++i) {
    EXPECT_EQ(a.parameters()[i].name, b.parameters()[i].name);
    diff = std::max(diff, (a.parameters()[i].param - b.parameters()[i].param).abs().max().item<double>());
  }
  return diff;
}

}  // namespace d2lora::engine
