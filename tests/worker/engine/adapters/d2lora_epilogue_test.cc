#include "worker/engine/adapters/d2lora_epilogue.h"

#include <gtest/gtest.h>
#include <torch/torch.h>

#include <tuple>

namespace d2lora::engine {
namespace {

double MaxRelError(const torch::Tensor& got, const torch::Tensor& want) {
  return ((got.to(torch::kFloat64) - want.to(torch::kFloat64)).abs().max() /
          want.to(torch::kFloat64).abs().max().clamp_min(1e-30))
      .item<double>();
}

// dtype, with the residual, with a bias, the scale needing a gradient.
using Case = std::tuple<c10::ScalarType, bool, bool, bool>;
class EpilogueTest : public ::testing::TestWithParam<Case> {};

// The fused node against the same arithmetic composed of LibTorch operations:
// its output and the gradient of every input.
TEST_P(EpilogueTest, MatchesTheUnfusedComposition) {
  const auto [dtype, residual, with_bias, scale_grad] = GetParam();
  torch::manual_seed(7);
  const auto opts = torch::TensorOptions().dtype(dtype);
  const int64_t tokens = 300, out = 37, r = 6;  // 300 rows: several threads' worth
  const double s = 0.75;
  torch::Tensor base = torch::randn({tokens, out}, opts).requires_grad_();
  torch::Tensor xa = torch::randn({tokens, r}, opts).requires_grad_();
  torch::Tensor B = torch::randn({out, r}, opts).requires_grad_();
  torch::Tensor scale = (torch::rand({out}, opts) + 0.5).requires_grad_(scale_grad);
  torch::Tensor bias = with_bias ? torch::randn({out}, opts).requires_grad_() : torch::Tensor();
  torch::Tensor weight = torch::randn({tokens, out}, opts);  // a random upstream gradient

  torch::Tensor got = ProjectedLowRankOutput(base, xa, B, s, scale, bias, residual);
  torch::Tensor u = torch::mm(xa, B.t()) * s;
  torch::Tensor want = scale * (base + u) + (residual ? u : torch::zeros_like(u));
  if (with_bias) want = want + bias;
  const double tol = dtype == torch::kFloat64 ? 1e-12 : 2e-5;
  EXPECT_LT(MaxRelError(got, want), tol);

  std::vector<torch::Tensor> inputs = {base, xa, B};
  if (scale_grad) inputs.push_back(scale);
  if (with_bias) inputs.push_back(bias);
  auto got_grads = torch::autograd::grad({(got * weight).sum()}, inputs);
  auto want_grads = torch::autograd::grad({(want * weight).sum()}, inputs);
  const char* names[] = {"base", "xa", "B", scale_grad ? "scale" : "bias", "bias"};
  for (size_t i = 0; i < inputs.size(); ++i) {
    EXPECT_LT(MaxRelError(got_grads[i], want_grads[i]), dtype == torch::kFloat64 ? 1e-10 : 1e-4)
        << "gradient of " << names[i];
  }
}

INSTANTIATE_TEST_SUITE_P(Forms, EpilogueTest,
                         ::testing::Combine(::testing::Values(torch::kFloat32, torch::kFloat64),
                                            ::testing::Bool(), ::testing::Bool(), ::testing::Bool()));

// The fused CPU loop against the tensor operations it replaces, with more rows
// than one thread takes and a row length no vector width divides.
void ExpectFusedLoopEqualsTensorOperations(c10::ScalarType dtype) {
  const auto opts = torch::TensorOptions().dtype(dtype);
  torch::Tensor grad = torch::randn({517, 203}, opts), out = torch::randn({517, 203}, opts);
  torch::Tensor scale = torch::randn({203}, opts);
  const double tol = dtype == torch::kFloat64 ? 1e-12 : 1e-5;
  for (bool with_out : {true, false}) {
    for (bool want_sum : {true, false}) {
      auto fused = EpilogueBackwardPass(grad, with_out ? out : torch::Tensor(), scale, want_sum);
      auto ops = EpilogueBackwardPass(grad, with_out ? out : torch::Tensor(), scale, want_sum, /*fused=*/false);
      EXPECT_LT(MaxRelError(fused.grad_base, ops.grad_base), tol);
      ASSERT_EQ(fused.dot.defined(), with_out);
      ASSERT_EQ(fused.sum.defined(), want_sum);
      if (with_out) {
        EXPECT_LT(MaxRelError(fused.dot, ops.dot), tol);
      }
      if (want_sum) {
        EXPECT_LT(MaxRelError(fused.sum, ops.sum), tol);
      }
    }
  }
}

// On 1 and 3 threads: each thread sums its own rows, and the partial sums are added.
TEST(EpilogueBackwardPass, FusedLoopEqualsTensorOperations) {
  torch::manual_seed(3);
  const int threads_before = torch::get_num_threads();
  for (int threads : {1, 3}) {
    SCOPED_TRACE(threads);
    torch::set_num_threads(threads);
    ExpectFusedLoopEqualsTensorOperations(torch::kFloat32);
    ExpectFusedLoopEqualsTensorOperations(torch::kFloat64);
  }
  torch::set_num_threads(threads_before);
}

// The node keeps the output itself for the scale's gradient (no copy: a
// consumer that saves the output shares it), and nothing of that size when the
// scale is constant (norm_grad: detached). An in-place change to a saved
// output is what LibTorch's version check refuses at backward.
TEST(Epilogue, SavesItsOutputOnlyForTheScalesGradient) {
  for (bool scale_grad : {true, false}) {
    torch::Tensor base = torch::randn({8, 5}, torch::kFloat64).requires_grad_();
    torch::Tensor xa = torch::randn({8, 2}, torch::kFloat64).requires_grad_();
    torch::Tensor B = torch::randn({5, 2}, torch::kFloat64).requires_grad_();
    torch::Tensor scale = (torch::rand({5}, torch::kFloat64) + 0.5).requires_grad_(scale_grad);
    torch::Tensor out = ProjectedLowRankOutput(base, xa, B, 1.0, scale, torch::Tensor(), true);
    {
      torch::NoGradGuard no_grad;
      out.mul_(2);
    }
    if (scale_grad) {
      EXPECT_THROW(out.sum().backward(), c10::Error);
    } else {
      EXPECT_NO_THROW(out.sum().backward());
    }
  }
}

}  // namespace
}  // namespace d2lora::engine
