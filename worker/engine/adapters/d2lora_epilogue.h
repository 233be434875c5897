// The D2-LoRA layer's output after its base GEMM, as one autograd node (issue 23):
//
//   out = g ⊙ (base + u) + c·u + bias,   u = s · xa Bᵀ,   c = 1 with the paper's residual, else 0
//
// where base = x W0ᵀ (no bias), xa = x Aᵀ (rank r), g the row scale [out] and s
// the LoRA scaling. Against the unfused form (a GEMM for base + u, a pass for
// g ⊙ y + bias, a second rank-r GEMM for the residual into a new tensor), it
//  - forward: one pass `out = base ⊙ g + bias`, then one rank-r GEMM accumulated
//    into `out` in place, with the factor (g + c) folded into B's rows;
//  - backward: one pass over the gradient and the saved output that writes
//    grad_base = grad ⊙ g and sums, per output feature, grad·out and grad; the
//    two rank-r GEMMs LoRA also has (gradᵀ xa and grad B); the row scale's
//    gradient Σ_i grad·(base + u) then needs no u:
//        Σ_i grad_ij (base + u)_ij = (Σ_i grad_ij (out_ij − bias_j) − c·s·Σ_k B_jk (gradᵀ xa)_jk) / g_j
//  - saves the output only when g needs a gradient (norm_grad: full), and no
//    copy of it: a consumer that saves the layer's output (SiLU, the gate's
//    product, attention's value) shares it. The unfused form kept g ⊙ y + bias,
//    which the residual made a tensor of its own in every layer.
// On CPU, for contiguous fp32/fp64 tensors, the backward pass is one loop over
// rows (at::parallel_for, per-thread column sums); elsewhere (CUDA, bf16) the
// same arithmetic in tensor operations.
#pragma once

#include <ATen/Tensor.h>

namespace d2lora::engine {

// `base` [tokens, out]; `xa` [tokens, r] and `B` [out, r] in base's dtype;
// `scale` [out] (cast to base's dtype); `bias` [out] or undefined.
at::Tensor ProjectedLowRankOutput(const at::Tensor& base, const at::Tensor& xa, const at::Tensor& B,
                                  double scaling, const at::Tensor& scale, const at::Tensor& bias,
                                  bool residual);

// The backward's pass over [tokens, out]: grad_base = grad ⊙ scale and, per
// output feature j, dot_j = Σ_i grad_ij·out_ij (skipped when `out` is undefined)
// and sum_j = Σ_i grad_ij (skipped unless `want_sum`). The fused loop where it
// applies (CPU, contiguous fp32/fp64), tensor operations elsewhere; `fused`
// false forces the tensor operations (tests compare the two).
struct EpilogueGradients {
  at::Tensor grad_base, dot, sum;
};
EpilogueGradients EpilogueBackwardPass(const at::Tensor& grad, const at::Tensor& out, const at::Tensor& scale,
                                       bool want_sum, bool fused = true);

}  // namespace d2lora::engine
