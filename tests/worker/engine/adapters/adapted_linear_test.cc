#include "worker/engine/adapters/adapted_linear.h"

#include <gtest/gtest.h>
#include <torch/torch.h>

#include <tuple>

#include "tests/support/test_support.h"
#include "tests/worker/engine/adapters/adapter_test_util.h"
#include "worker/engine/adapters/adapted_linear_d2lora.h"
#include "worker/engine/adapters/linear.h"
#include "worker/engine/adapters/merge.h"

#include <cmath>
#include <functional>
#include <map>

namespace d2lora::engine {
namespace {

using testing::RandomizeAdapter;
using testing::ReferenceD2LoraWeight;

AdapterOptions Options(AdapterMethod method, NormGrad norm_grad = NormGrad::kFull,
                       AdapterDtype dtype = AdapterDtype::kFp32) {
  AdapterOptions o;
  o.method = method;
  o.r = 2;
  o.alpha = 4;
  o.norm_grad = norm_grad;
  o.dtype = dtype;
  o.seed = 7;
  return o;
}

std::shared_ptr<AdaptedLinearImpl> Adapt(Linear& host, const AdapterOptions& o) {
  auto adapter = CreateAdaptedLinear(*host, o, "layer");
  EXPECT_TRUE(adapter.ok()) << adapter.status();
  host->set_adapter(*adapter);
  return *adapter;
}

// Central finite differences of `loss` in each element of `t` (fp64), under no grad.
torch::Tensor NumericGradient(const std::function<torch::Tensor()>& loss, const torch::Tensor& t,
                              double eps = 1e-6) {
  torch::NoGradGuard no_grad;
  torch::Tensor flat = t.view(-1);
  torch::Tensor numeric = torch::zeros_like(flat);
  for (int64_t k = 0; k < flat.numel(); ++k) {
    const double orig = flat[k].item<double>();
    flat[k] = orig + eps;
    const double up = loss().item<double>();
    flat[k] = orig - eps;
    const double down = loss().item<double>();
    flat[k] = orig;
    numeric[k] = (up - down) / (2 * eps);
  }
  return numeric;
}

class AdapterGradTest : public ::testing::TestWithParam<std::tuple<AdapterMethod, NormGrad>> {};

// Analytic gradients of the memory-efficient forward against central finite
// differences in double, for every trainable tensor and the input.
TEST_P(AdapterGradTest, GradientsMatchFiniteDifferences) {
  auto [method, norm_grad] = GetParam();
  torch::manual_seed(3);
  auto opts = torch::TensorOptions().dtype(torch::kFloat64);
  Linear host(5, 4, true, opts);
  auto adapter = Adapt(host, Options(method, norm_grad, AdapterDtype::kFp64));
  RandomizeAdapter(*adapter);
  torch::Tensor x = torch::randn({3, 5}, opts).requires_grad_(true);
  torch::Tensor g = torch::randn({3, 4}, opts);
  auto loss_fn = [&]() { return (host->forward(x) * g).sum(); };

  std::vector<torch::Tensor> inputs = {x};
  for (auto& p : adapter->parameters()) inputs.push_back(p);
  ASSERT_GE(inputs.size(), 3u);
  auto grads = torch::autograd::grad({loss_fn()}, inputs);

  // With detached norms the analytic gradient treats ||W'|| as a constant, so it
  // is not the derivative of the loss: compare it with the dense reference path
  // instead (and see DetachedNormMatchesFrozenNormFiniteDifferences).
  for (size_t i = 0; i < inputs.size(); ++i) {
    if (norm_grad == NormGrad::kFull || method == AdapterMethod::kLora) {
      torch::Tensor numeric = NumericGradient(loss_fn, inputs[i]);
      EXPECT_TRUE(torch::allclose(grads[i].reshape(-1), numeric, 1e-5, 1e-7))
          << "input " << i << "\nanalytic " << grads[i].reshape(-1) << "\nnumeric " << numeric;
    }
  }
  if (norm_grad == NormGrad::kDetached && method != AdapterMethod::kLora) {
    // Detached: equal to the dense reference path's gradients (norm detached there too).
    torch::AutoGradMode enable(true);
    auto ref = torch::autograd::grad({(DenseReferenceForward(*adapter, x) * g).sum()}, inputs);
    for (size_t i = 0; i < inputs.size(); ++i) {
      EXPECT_TRUE(torch::allclose(grads[i], ref[i], 1e-9, 1e-11)) << "input " << i;
    }
  }
}

INSTANTIATE_TEST_SUITE_P(AllMethods, AdapterGradTest,
                         ::testing::Combine(::testing::Values(AdapterMethod::kD2Lora, AdapterMethod::kLora,
                                                              AdapterMethod::kDora),
                                            ::testing::Values(NormGrad::kFull, NormGrad::kDetached)));

// Detached-norm gradients against finite differences of a loss whose row norm
// is frozen at the current point (what "detached" means).
TEST(AdapterGrad, DetachedNormMatchesFrozenNormFiniteDifferences) {
  torch::manual_seed(5);
  auto opts = torch::TensorOptions().dtype(torch::kFloat64);
  Linear host(4, 3, false, opts);
  auto adapter = std::dynamic_pointer_cast<D2LoraLinearImpl>(
      Adapt(host, Options(AdapterMethod::kD2Lora, NormGrad::kDetached, AdapterDtype::kFp64)));
  ASSERT_TRUE(adapter);
  RandomizeAdapter(*adapter);
  torch::Tensor x = torch::randn({2, 4}, opts);
  torch::Tensor g = torch::randn({2, 3}, opts);
  torch::Tensor frozen_scale;
  {
    torch::NoGradGuard ng;
    frozen_scale = adapter->RowScale().clone();
  }
  // Loss with the scale held constant: y = scale ⊙ (x W'^T) + x dW^T.
  auto frozen_loss = [&]() {
    torch::Tensor dw = adapter->options().scaling() *
                       (torch::matmul(adapter->named_parameters()["lora_B"], adapter->named_parameters()["lora_A"]) -
                        adapter->tau() * torch::matmul(adapter->named_parameters()["lora_B_neg"],
                                                       adapter->named_parameters()["lora_A_neg"]));
    torch::Tensor w = adapter->base_weight() + dw;
    return ((torch::matmul(x, w.t()) * frozen_scale + torch::matmul(x, dw.t())) * g).sum();
  };
  std::vector<torch::Tensor> params;
  for (auto& p : adapter->parameters()) params.push_back(p);
  auto grads = torch::autograd::grad({(host->forward(x) * g).sum()}, params);
  for (size_t i = 0; i < params.size(); ++i) {
    torch::Tensor numeric = NumericGradient(frozen_loss, params[i]);
    EXPECT_TRUE(torch::allclose(grads[i].reshape(-1), numeric, 1e-5, 1e-7))
        << "param " << i << "\nanalytic " << grads[i].reshape(-1) << "\nnumeric " << numeric;
  }
}

TEST(LowRankNorms, EqualDenseNorms) {
  torch::manual_seed(11);
  for (auto dtype : {torch::kFloat64, torch::kFloat32}) {
    auto o = torch::TensorOptions().dtype(dtype);
    torch::Tensor w0 = torch::randn({33, 17}, o);
    LowRankUpdate u{torch::randn({6, 17}, o), 0.2 * torch::randn({33, 6}, o), 1.7};
    torch::Tensor fast = RowNormsSquaredLowRank(w0, w0.pow(2).sum(1), u);
    torch::Tensor dense = RowNormsSquaredDense(w0, u);
    const double tol = dtype == torch::kFloat64 ? 1e-12 : 1e-5;
    EXPECT_TRUE(torch::allclose(fast, dense.to(fast.scalar_type()), tol, tol)) << fast - dense;
  }
}

class PerMethodTest : public ::testing::TestWithParam<AdapterMethod> {};

TEST_P(PerMethodTest, ZeroInitReproducesBaseExactly) {
  torch::manual_seed(2);
  Linear host(16, 8, true);
  torch::Tensor x = torch::randn({2, 5, 16});
  torch::Tensor before = host->forward(x);
  Adapt(host, Options(GetParam()));
  host->train();
  torch::Tensor after = host->forward(x);
  EXPECT_TRUE(torch::equal(before, after)) << (before - after).abs().max();
}

TEST_P(PerMethodTest, ForwardEqualsDenseReference) {
  torch::manual_seed(4);
  Linear host(12, 10, true);
  auto adapter = Adapt(host, Options(GetParam()));
  RandomizeAdapter(*adapter);
  torch::Tensor x = torch::randn({3, 4, 12});
  torch::Tensor fast = host->forward(x);
  torch::Tensor dense = DenseReferenceForward(*adapter, x);
  EXPECT_TRUE(torch::allclose(fast, dense, 1e-5, 1e-5)) << (fast - dense).abs().max();
}

TEST_P(PerMethodTest, MergedMatchesUnmergedWithin1e5) {
  torch::manual_seed(6);
  Linear host(64, 48, true);
  auto adapter = Adapt(host, Options(GetParam()));
  RandomizeAdapter(*adapter, 0.5);
  host->eval();
  torch::Tensor x = torch::randn({8, 64});
  torch::Tensor unmerged = host->forward(x).detach();
  host->merge_adapter();
  EXPECT_FALSE(host->adapter());
  torch::Tensor merged = host->forward(x);
  const double rel = ((merged - unmerged).abs().max() / unmerged.abs().max()).item<double>();
  EXPECT_LE(rel, 1e-5);
}

TEST_P(PerMethodTest, BaseIsFrozenAndAdapterTrainable) {
  Linear host(8, 8, true);
  auto adapter = Adapt(host, Options(GetParam()));
  EXPECT_FALSE(host->weight().requires_grad());
  EXPECT_FALSE(host->bias().requires_grad());
  for (const auto& p : adapter->parameters()) EXPECT_TRUE(p.requires_grad());
  // The base tensors are the host's, not copies.
  EXPECT_TRUE(adapter->base_weight().is_same(host->weight()));
}

INSTANTIATE_TEST_SUITE_P(AllMethods, PerMethodTest,
                         ::testing::Values(AdapterMethod::kD2Lora, AdapterMethod::kLora, AdapterMethod::kDora));

struct D2Case {
  double lambda;
  bool residual;
  bool rslora;
  bool tau_learnable;
};

class D2LoraFormTest : public ::testing::TestWithParam<D2Case> {
 protected:
  std::shared_ptr<D2LoraLinearImpl> Make(Linear& host) {
    const D2Case c = GetParam();
    AdapterOptions o = Options(AdapterMethod::kD2Lora, NormGrad::kFull, AdapterDtype::kFp64);
    o.r = 3;
    o.alpha = 5;
    o.projection_strength = c.lambda;
    o.residual = c.residual;
    o.use_rslora = c.rslora;
    o.tau_learnable = c.tau_learnable;
    o.tau_init = 0.7;
    auto adapter = std::dynamic_pointer_cast<D2LoraLinearImpl>(Adapt(host, o));
    RandomizeAdapter(*adapter, 0.4);
    return adapter;
  }
};

// The training forward against the reference weight: y = x W_hat^T + b.
TEST_P(D2LoraFormTest, ForwardEqualsIndependentReference) {
  torch::manual_seed(21);
  auto opts = torch::TensorOptions().dtype(torch::kFloat64);
  Linear host(9, 7, true, opts);
  auto adapter = Make(host);
  torch::Tensor x = torch::randn({2, 3, 9}, opts);
  torch::Tensor expect = torch::matmul(x, ReferenceD2LoraWeight(*adapter).t()) + host->bias();
  torch::Tensor got = host->forward(x);
  EXPECT_TRUE(torch::allclose(got, expect, 1e-12, 1e-12)) << (got - expect).abs().max();
}

// The merge is the same W_hat, and the merged layer gives the training form's output.
TEST_P(D2LoraFormTest, MergeEqualsIndependentReference) {
  torch::manual_seed(22);
  auto opts = torch::TensorOptions().dtype(torch::kFloat64);
  Linear host(9, 7, false, opts);
  auto adapter = Make(host);
  const MergedWeight merged = adapter->MergeWeight();
  torch::Tensor expect = ReferenceD2LoraWeight(*adapter);
  EXPECT_TRUE(torch::allclose(merged.weight, expect, 1e-12, 1e-12)) << (merged.weight - expect).abs().max();
  if (GetParam().lambda == 0.0) {
    EXPECT_LT(merged.row_norm_deviation, 0);  // no projection, nothing to check
  } else {
    EXPECT_GE(merged.row_norm_deviation, 0);
    EXPECT_LT(merged.row_norm_deviation, 1e-12);
  }
}

// Gradients of the training form against central finite differences (fp64).
TEST_P(D2LoraFormTest, GradientsMatchFiniteDifferences) {
  torch::manual_seed(23);
  auto opts = torch::TensorOptions().dtype(torch::kFloat64);
  Linear host(5, 4, true, opts);
  auto adapter = Make(host);
  torch::Tensor x = torch::randn({3, 5}, opts);
  torch::Tensor g = torch::randn({3, 4}, opts);
  auto loss_fn = [&]() { return (host->forward(x) * g).sum(); };
  std::vector<torch::Tensor> params;
  for (auto& p : adapter->parameters()) params.push_back(p);
  auto grads = torch::autograd::grad({loss_fn()}, params);
  for (size_t i = 0; i < params.size(); ++i) {
    torch::Tensor numeric = NumericGradient(loss_fn, params[i]);
    EXPECT_TRUE(torch::allclose(grads[i].reshape(-1), numeric, 1e-5, 1e-7))
        << "param " << i << "\nanalytic " << grads[i].reshape(-1) << "\nnumeric " << numeric;
  }
}

INSTANTIATE_TEST_SUITE_P(Forms, D2LoraFormTest,
                         ::testing::Values(D2Case{1.0, true, false, false}, D2Case{1.0, false, false, false},
                                           D2Case{0.5, true, false, false}, D2Case{0.5, false, true, true},
                                           D2Case{0.0, true, false, false}, D2Case{0.0, false, false, false},
                                           D2Case{1.0, true, true, true}));

// W* keeps every row at ||W0||; the paper's W_hat = W* + dW does not, and
// differs from W* by exactly dW.
TEST(D2Lora, ProjectionKeepsEveryRowNormBeforeTheResidual) {
  torch::manual_seed(8);
  Linear host(20, 12, false);
  AdapterOptions o = Options(AdapterMethod::kD2Lora);
  o.residual = false;
  auto projected = std::dynamic_pointer_cast<D2LoraLinearImpl>(Adapt(host, o));
  RandomizeAdapter(*projected, 1.0);
  torch::Tensor m0 = host->weight().norm(2, {1});
  torch::Tensor w_star = projected->effective_weight().detach();
  EXPECT_TRUE(torch::allclose(w_star.norm(2, {1}), m0, 1e-6, 1e-6));
  EXPECT_GT((w_star - host->weight()).abs().max().item<double>(), 1e-2);  // the update did turn the rows

  o.residual = true;
  auto tensors = projected->ExportTensors();
  Linear host2(20, 12, false);
  {
    torch::NoGradGuard ng;
    host2->weight().copy_(host->weight());
  }
  auto paper = std::dynamic_pointer_cast<D2LoraLinearImpl>(Adapt(host2, o));
  std::map<std::string, torch::Tensor> by_name(tensors.begin(), tensors.end());
  D2_ASSERT_OK(paper->ImportTensors(by_name, "layer"));
  torch::Tensor w_hat = paper->effective_weight().detach();
  auto p = paper->named_parameters();
  torch::Tensor dw = o.scaling() * (torch::matmul(p["lora_B"], p["lora_A"]) -
                                    paper->tau() * torch::matmul(p["lora_B_neg"], p["lora_A_neg"]));
  EXPECT_TRUE(torch::allclose(w_hat, w_star + dw, 1e-5, 1e-6));
  EXPECT_FALSE(torch::allclose(w_hat.norm(2, {1}), m0, 1e-3, 1e-3));
  EXPECT_LT(paper->MergeWeight().row_norm_deviation, 1e-5);  // W* inside the merge still keeps m0
}

TEST(D2Lora, TauFixedByDefaultLearnableAsAnOption) {
  EXPECT_FALSE(AdapterOptions().tau_learnable);
  EXPECT_EQ(AdapterOptions().tau_init, 0.5);
  EXPECT_TRUE(AdapterOptions().residual);
  Linear host(6, 5, false);
  AdapterOptions o = Options(AdapterMethod::kD2Lora);
  auto fixed = std::dynamic_pointer_cast<D2LoraLinearImpl>(Adapt(host, o));
  EXPECT_EQ(fixed->tau().item<double>(), 0.5);
  EXPECT_EQ(fixed->named_parameters().find("tau_raw"), nullptr);
  EXPECT_FALSE(fixed->tau().requires_grad());

  Linear host2(6, 5, false);
  o.tau_learnable = true;
  o.tau_init = 0.25;
  auto learnable = std::dynamic_pointer_cast<D2LoraLinearImpl>(Adapt(host2, o));
  EXPECT_NEAR(learnable->tau().item<double>(), 0.25, 1e-6);
  ASSERT_NE(learnable->named_parameters().find("tau_raw"), nullptr);
  EXPECT_TRUE(learnable->tau().requires_grad());
}

// PEFT's DoRA forward with dropout (peft/tuners/lora/dora.py, DoraLinearLayer),
// written out: x_d = dropout(x); scale = m / ||W0 + s B A|| (detached);
//   y = x W0^T + b + (scale - 1) ⊙ (x_d W0^T) + scale ⊙ s (x_d A^T) B^T.
TEST(Dora, DropoutMatchesPeftsFormula) {
  torch::manual_seed(31);
  Linear host(16, 12, true);
  AdapterOptions o = Options(AdapterMethod::kDora, NormGrad::kDetached);
  o.dropout = 0.3;
  auto adapter = Adapt(host, o);
  RandomizeAdapter(*adapter);
  host->train();
  torch::Tensor x = torch::randn({5, 16});
  torch::manual_seed(99);
  torch::Tensor got = host->forward(x);
  torch::manual_seed(99);
  torch::Tensor x_d = torch::dropout(x, 0.3, /*train=*/true);
  auto p = adapter->named_parameters();
  torch::NoGradGuard ng;
  torch::Tensor w0 = host->weight();
  const double s = o.alpha / o.r;
  torch::Tensor scale = p["magnitude"] / (w0 + s * torch::matmul(p["lora_B"], p["lora_A"])).norm(2, {1});
  torch::Tensor expect = torch::matmul(x, w0.t()) + host->bias() + (scale - 1) * torch::matmul(x_d, w0.t()) +
                         scale * s * torch::matmul(torch::matmul(x_d, p["lora_A"].t()), p["lora_B"].t());
  EXPECT_TRUE(torch::allclose(got, expect, 1e-5, 1e-5)) << (got - expect).abs().max();
  EXPECT_FALSE(torch::allclose(got, host->forward(x), 1e-5, 1e-5));  // dropout did act
}

// DoRA's learnt magnitude may cross zero (it did at lr 1e-2 in the fidelity
// study): the row then points the other way with norm |m|, and the merge is
// as exact as ever. The gate's row-norm check must measure against |m| (it
// reported a deviation of 1.8e10 and refused an exact merge).
TEST(Dora, ANegativeMagnitudeMergesExactlyWithRowNormsOfItsAbsoluteValue) {
  torch::manual_seed(51);
  Linear host(16, 12, true);
  auto adapter = Adapt(host, Options(AdapterMethod::kDora, NormGrad::kDetached));
  RandomizeAdapter(*adapter);
  {
    torch::NoGradGuard ng;
    torch::Tensor m = adapter->named_parameters()["magnitude"];
    m.index_put_({0}, -0.7);
    m.index_put_({5}, -1e-3);
  }
  host->eval();
  torch::Tensor x = torch::randn({6, 16});
  torch::Tensor unmerged = host->forward(x).detach();
  const MergedWeight w = adapter->MergeWeight();
  EXPECT_GE(w.row_norm_deviation, 0);
  EXPECT_LT(w.row_norm_deviation, 1e-5);
  EXPECT_NEAR(w.weight[0].norm().item<double>(), 0.7, 1e-5);
  host->merge_adapter();
  torch::Tensor merged = host->forward(x);
  EXPECT_TRUE(torch::allclose(merged, unmerged, 1e-5, 1e-5)) << (merged - unmerged).abs().max();
}

// A bf16 base under fp32 adapters: the row norms keep fp32 precision (W0 A^T
// is not computed with A rounded to bf16), and the training form agrees with
// the fp32 merge to about one bf16 rounding of the output.
TEST(D2Lora, Bf16BaseAgreesWithTheFp32MergeToOneRounding) {
  torch::manual_seed(41);
  Linear host(64, 48, true, torch::TensorOptions().dtype(torch::kBFloat16));
  auto adapter = std::dynamic_pointer_cast<D2LoraLinearImpl>(Adapt(host, Options(AdapterMethod::kD2Lora)));
  RandomizeAdapter(*adapter, 0.2);
  const LowRankUpdate u = adapter->Update();
  torch::Tensor w0 = host->weight().to(torch::kFloat64);  // bf16 values, exactly
  torch::Tensor norms = RowNormsSquaredLowRank(host->weight(), w0.pow(2).sum(1).to(torch::kFloat32), u);
  torch::Tensor dense = (w0 + u.scaling * torch::matmul(u.B.to(torch::kFloat64), u.A.to(torch::kFloat64)))
                            .pow(2).sum(1);
  const double norm_err = ((norms.to(torch::kFloat64) - dense).abs() / dense).max().item<double>();
  EXPECT_LT(norm_err, 1e-5) << "row norms of a bf16 base lost fp32 precision";

  host->eval();
  torch::Tensor x = torch::randn({6, 64}).to(torch::kBFloat16);
  torch::Tensor y = host->forward(x).to(torch::kFloat64);
  torch::Tensor w_hat = ReferenceD2LoraWeight(*adapter);
  torch::Tensor ref = torch::matmul(x.to(torch::kFloat64), w_hat.t()) + host->bias().to(torch::kFloat64);
  const double rel = ((y - ref).abs().max() / ref.abs().max()).item<double>();
  EXPECT_LT(rel, std::ldexp(1.0, -7)) << "training form vs fp32 merge, relative to the largest output";
}

TEST(D2Lora, DropoutOnlyInTraining) {
  Linear host(32, 16, false);
  AdapterOptions o = Options(AdapterMethod::kD2Lora);
  o.dropout = 0.5;
  auto adapter = Adapt(host, o);
  RandomizeAdapter(*adapter);
  torch::Tensor x = torch::randn({4, 32});
  host->eval();
  EXPECT_TRUE(torch::equal(host->forward(x), host->forward(x)));
  host->train();
  EXPECT_FALSE(torch::equal(host->forward(x), host->forward(x)));
}

TEST(AdapterOptions, ValidateNamesTheField) {
  AdapterOptions o;
  o.r = 0;
  EXPECT_NE(std::string(o.Validate().message()).find("adapter.r"), std::string::npos);
  o = AdapterOptions();
  o.projection_strength = 1.5;
  EXPECT_NE(std::string(o.Validate().message()).find("adapter.projection_strength"), std::string::npos);
  o = AdapterOptions();
  o.tau_init = -1;
  EXPECT_NE(std::string(o.Validate().message()).find("adapter.tau_init"), std::string::npos);
  o = AdapterOptions();
  o.dropout = 1.0;
  EXPECT_NE(std::string(o.Validate().message()).find("adapter.dropout"), std::string::npos);
  EXPECT_TRUE(AdapterOptions().Validate().ok());
}

}  // namespace
}  // namespace d2lora::engine
