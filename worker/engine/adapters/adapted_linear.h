// An adapted linear layer (DESIGN §1): a frozen base `y = x W0^T + b` plus a
// trainable update. One interface, one implementation per method:
//   adapted_linear_d2lora.h  D2-LoRA (signed two-branch update + row-norm projection)
//   adapted_linear_lora.h    LoRA
//   adapted_linear_dora.h    DoRA (PEFT semantics)
// The adapter does not own the base weight: it holds the host Linear's tensors.
#pragma once

#include <torch/nn/module.h>

#include <map>
#include <memory>
#include <string>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "common/status_macros.h"
#include "worker/engine/spec_types.h"
#include "worker/engine/adapters/merge.h"
#include "worker/engine/formats/safetensors.h"

namespace d2lora::engine {

class LinearImpl;

class AdaptedLinearImpl : public torch::nn::Module {
 public:
  AdaptedLinearImpl(torch::Tensor base_weight, torch::Tensor base_bias, AdapterOptions options);

  // Training-form forward: never forms a dense [out, in] update.
  virtual torch::Tensor forward(const torch::Tensor& x) = 0;
  // The dense adapted weight in fp32, differentiable: the reference path for
  // tests (forward == linear(x, effective_weight(), bias) without dropout).
  virtual torch::Tensor effective_weight() const = 0;
  // The merged weight in the compute dtype (fp32; fp64 stays fp64), with what
  // the merge gate checks of it; no grad.
  virtual MergedWeight MergeWeight() const = 0;
  // The plain merged weight: MergeWeight() cast to the base dtype.
  torch::Tensor merge() const;
  // PEFT-named tensors relative to the module path ("lora_A.weight", ...).
  virtual NamedTensors ExportTensors() const = 0;
  // Loads tensors named as ExportTensors() names them; every one must be there
  // with the right shape. `where` prefixes error messages.
  virtual absl::Status ImportTensors(const std::map<std::string, torch::Tensor>& tensors,
                                     const std::string& where) = 0;

  const AdapterOptions& options() const { return options_; }
  AdapterMethod method() const { return options_.method; }
  const torch::Tensor& base_weight() const { return base_weight_; }
  const torch::Tensor& base_bias() const { return base_bias_; }

 protected:
  // The adapter input: dropout in training mode, cast to the adapter dtype.
  torch::Tensor AdapterInput(const torch::Tensor& x);
  // a A^T flattened to [tokens, k]: the low-rank path's narrow half, computed
  // once per forward; `a` is AdapterInput(x).
  static torch::Tensor LowRankInput(const torch::Tensor& a, const torch::Tensor& A);
  // x W0^T (+ `bias` when defined) + scaling xa B^T, flattened to [tokens, out]
  // in the base dtype; `xa` is LowRankInput(...). When the adapter and base
  // dtypes agree, the low-rank product accumulates into the base GEMM's output
  // inside one in-place addmm (scaling as its alpha): no full-size temporary
  // and no element-wise pass over the output, forward or backward. Otherwise
  // (bf16 base, fp32 adapter) the low-rank path runs in the adapter dtype and
  // is cast before the add.
  torch::Tensor BasePlusLowRank(const torch::Tensor& x, const torch::Tensor& xa, const torch::Tensor& B,
                                double scaling, const torch::Tensor& bias) const;
  // [tokens, out] back to x's leading shape.
  torch::Tensor UnflattenLike(const torch::Tensor& y, const torch::Tensor& x) const;
  // Copies `src` into `dst` after checking its shape; error names `where.key`.
  static absl::Status CopyChecked(torch::Tensor& dst, const std::map<std::string, torch::Tensor>& tensors,
                                  const std::string& key, const std::string& where);

  torch::Tensor base_weight_;  // [out, in], frozen
  torch::Tensor base_bias_;    // [out] or undefined, frozen
  AdapterOptions options_;
};

// Creates the adapter that options.method names for `host` (A Kaiming-uniform
// from a generator seeded by options.seed and `module_path`, B = 0).
absl::StatusOr<std::shared_ptr<AdaptedLinearImpl>> CreateAdaptedLinear(
    LinearImpl& host, const AdapterOptions& options, const std::string& module_path);

// LoRA's A initialisation, kaiming_uniform_(a=sqrt(5)) = U(-1/sqrt(in), 1/sqrt(in)),
// drawn in fp64 from a CPU generator seeded with `seed` (device-independent).
torch::Tensor KaimingUniformLoraA(int64_t rows, int64_t in_features, c10::ScalarType dtype, uint64_t seed);

// linear(x, effective_weight(), bias): the dense reference forward.
torch::Tensor DenseReferenceForward(const AdaptedLinearImpl& layer, const torch::Tensor& x);

}  // namespace d2lora::engine
