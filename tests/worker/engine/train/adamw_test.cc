#include <torch/torch.h>

#include "worker/engine/train/adamw.h"

#include <gtest/gtest.h>

#include <cmath>

#include "tests/support/test_support.h"

namespace d2lora::engine {
namespace {

struct Net : torch::nn::Module {
  Net() {
    w = register_parameter("w", torch::tensor({{1.0f, -2.0f}}));
    b = register_parameter("b", torch::tensor({0.5f}));
    frozen = register_parameter("frozen", torch::ones({2}), /*requires_grad=*/false);
  }
  torch::Tensor w, b, frozen;
};

TEST(AdamWTest, CollectsTrainableParametersAndExemptsVectorsFromDecay) {
  Net net;
  auto params = CollectTrainableParameters(net);
  ASSERT_EQ(params.size(), 2u);
  EXPECT_EQ(params[0].name, "w");
  EXPECT_TRUE(params[0].decay);
  EXPECT_EQ(params[1].name, "b");
  EXPECT_FALSE(params[1].decay);
}

// Two updates by hand with PyTorch's formulas.
TEST(AdamWTest, MatchesTheReferenceUpdate) {
  Net net;
  AdamWOptions o;
  o.weight_decay = 0.1;
  AdamW opt(CollectTrainableParameters(net), o);
  const double lr = 0.01;
  double w0 = 1.0, m = 0, v = 0;
  double b0 = 0.5, mb = 0, vb = 0;
  const double grads[2] = {0.3, -0.7};
  for (int t = 1; t <= 2; ++t) {
    net.w.mutable_grad() = torch::tensor({{static_cast<float>(grads[t - 1]), 0.0f}});
    net.b.mutable_grad() = torch::tensor({static_cast<float>(grads[t - 1])});
    opt.Step(lr);
    const double g = grads[t - 1];
    const double bc1 = 1 - std::pow(0.9, t), bc2 = 1 - std::pow(0.999, t);
    w0 *= 1 - lr * 0.1;
    m = 0.9 * m + 0.1 * g;
    v = 0.999 * v + 0.001 * g * g;
    w0 -= lr / bc1 * m / (std::sqrt(v) / std::sqrt(bc2) + 1e-8);
    mb = 0.9 * mb + 0.1 * g;
    vb = 0.999 * vb + 0.001 * g * g;
    b0 -= lr / bc1 * mb / (std::sqrt(vb) / std::sqrt(bc2) + 1e-8);  // no decay on a bias
  }
  EXPECT_NEAR(net.w[0][0].item<double>(), w0, 1e-6);
  EXPECT_NEAR(net.b[0].item<double>(), b0, 1e-6);
  EXPECT_EQ(opt.steps(), 2);
}

TEST(AdamWTest, StateRoundTripsAndContinuesIdentically) {
  Net a, b;
  AdamW opt_a(CollectTrainableParameters(a), {});
  for (int i = 0; i < 3; ++i) {
    a.w.mutable_grad() = torch::full({1, 2}, 0.1f * (i + 1));
    a.b.mutable_grad() = torch::full({1}, -0.2f);
    opt_a.Step(0.05);
  }
  {
    torch::NoGradGuard ng;
    b.w.copy_(a.w);
    b.b.copy_(a.b);
  }
  AdamW opt_b(CollectTrainableParameters(b), {});
  auto state = opt_a.StateTensors();
  ASSERT_EQ(state.size(), 4u);
  EXPECT_EQ(state[0].first, "w.exp_avg");
  D2_ASSERT_OK(opt_b.LoadState(std::map<std::string, torch::Tensor>(state.begin(), state.end()), opt_a.steps()));
  for (auto* n : {&a, &b}) {
    n->w.mutable_grad() = torch::full({1, 2}, 0.5f);
    n->b.mutable_grad() = torch::full({1}, 0.5f);
  }
  opt_a.Step(0.05);
  opt_b.Step(0.05);
  EXPECT_TRUE(torch::equal(a.w, b.w));
  EXPECT_TRUE(torch::equal(a.b, b.b));
}

TEST(AdamWTest, LoadStateNamesMissingAndMisshapenTensors) {
  Net net;
  AdamW opt(CollectTrainableParameters(net), {});
  std::map<std::string, torch::Tensor> state = {{"w.exp_avg", torch::zeros({1, 2})}};
  absl::Status s = opt.LoadState(state, 1);
  EXPECT_NE(s.message().find("w.exp_avg_sq"), std::string::npos) << s;
  state["w.exp_avg_sq"] = torch::zeros({2, 1});
  s = opt.LoadState(state, 1);
  EXPECT_NE(s.message().find("w.exp_avg_sq has shape [2, 1]"), std::string::npos) << s;
  state["w.exp_avg_sq"] = torch::zeros({1, 2});
  state["b.exp_avg"] = torch::zeros({1});
  state["b.exp_avg_sq"] = torch::zeros({1});
  state["x.exp_avg"] = torch::zeros({1});
  s = opt.LoadState(state, 1);
  EXPECT_NE(s.message().find("unknown tensor x.exp_avg"), std::string::npos) << s;
}

}  // namespace
}  // namespace d2lora::engine
