// Merging is a pure function over weights (DESIGN §1): no modules, no state.
// Every function computes in fp32 (fp64 stays fp64) and returns the base dtype.
#pragma once

#include <ATen/Tensor.h>

namespace d2lora::engine {

// The low-rank factors of one layer, stacked: dW = scaling * B A with
// A [k, in] and B [out, k].
struct LowRankUpdate {
  at::Tensor A;
  at::Tensor B;
  double scaling = 1.0;
};

// D2-LoRA's stacked factors: A = [A+; A-], B = [B+, -tau B-].
LowRankUpdate StackD2Lora(const at::Tensor& a_pos, const at::Tensor& b_pos, const at::Tensor& a_neg,
                          const at::Tensor& b_neg, const at::Tensor& tau, double scaling);

// ||W0 + dW||^2 per output row without forming dW (DESIGN §1):
//   ||W0||^2 + 2 s rowsum(B ⊙ (W0 A^T)) + s^2 rowsum((B (A A^T)) ⊙ B).
// `w0_sq_norms` is ||W0||^2 per row in the compute dtype. Differentiable in A, B.
// W0 A^T is computed in the compute dtype even when W0 is bf16/fp16 (row blocks
// of W0 widened one at a time: no weight-sized fp32 copy, A not rounded).
at::Tensor RowNormsSquaredLowRank(const at::Tensor& w0, const at::Tensor& w0_sq_norms,
                                  const LowRankUpdate& update);
// w a^T for a frozen w [out, in] and a differentiable a [k, in], in a's dtype:
// a narrower w (bf16/fp16 under an fp32 a) is widened one row block at a time.
at::Tensor WidenedMatmulT(const at::Tensor& w, const at::Tensor& a);
// The same from the dense matrix, for reference.
at::Tensor RowNormsSquaredDense(const at::Tensor& w0, const LowRankUpdate& update);

// Row norms are clamped below at this value, so that a zero row divides to a
// finite scale instead of inf/NaN.
inline constexpr double kMinRowNorm = 1e-12;
// ||W0 + dW|| per row through RowNormsSquaredLowRank, clamped (the training form).
at::Tensor RowNormsLowRank(const at::Tensor& w0, const at::Tensor& w0_sq_norms, const LowRankUpdate& update);
// ||W|| per row of a dense matrix, clamped.
at::Tensor RowNorms(const at::Tensor& w);

// A merged weight in the compute dtype (MergeComputeDtype of W0's), before it
// is cast to a checkpoint dtype, and what the merge gate checks of it.
struct MergedWeight {
  at::Tensor weight;  // W_hat [out, in], fp32 (fp64 stays fp64)
  // Projection methods: the largest relative deviation of the projected rows'
  // norms ||W*_i|| from their target (m0 for D2-LoRA at lambda = 1,
  // m0^lambda ||W'_i||^(1-lambda) below it, the magnitude m for DoRA); < 0
  // when the method has no projection (LoRA, lambda = 0).
  double row_norm_deviation = -1.0;
};

// W0 + s B A (LoRA).
MergedWeight MergeLora(const at::Tensor& w0, const LowRankUpdate& update);
// D2-LoRA: W* = diag((m0 / ||W'||)^lambda) W' with W' = W0 + dW and m0 = ||W0||;
// W_hat = W* + dW (the paper's form, `residual`) or W* alone (the ablation).
MergedWeight MergeProjected(const at::Tensor& w0, const LowRankUpdate& update, double lambda, bool residual);
// diag(m / ||W'||) W' (DoRA, trained magnitude m [out]).
MergedWeight MergeDora(const at::Tensor& w0, const LowRankUpdate& update, const at::Tensor& magnitude);

// The dtype merges and norms are computed in: fp64 stays fp64, all else fp32.
c10::ScalarType MergeComputeDtype(c10::ScalarType dtype);

}  // namespace d2lora::engine
