// Analytic FLOP count of one training step of the engine's LLaMA-family
// decoder (worker/engine/model/llama.h), for the model FLOP utilisation that
// train_step_bench reports. A FLOP is one multiply or one add: a GEMM
// [m, k] x [k, n] is 2·m·k·n. Only matrix products are counted (norms,
// softmax, rotary and element-wise work are not), and only those the
// implementation actually runs:
//
//  - Linear layers: forward 2·tokens·in·out. Backward: the input gradient
//    (1x forward) when the layer's input needs a gradient, plus the weight
//    gradient (1x) when the weight is trainable. With adapters the whole base
//    model is frozen, embeddings included, so layer 0's q/k/v (whose input is
//    the embeddings through a frozen norm) get no input gradient; every other
//    projection does (its input depends on an adapter below it).
//  - The output head (lm_head, or the tied embeddings): like a linear layer,
//    trainable only in full fine-tuning.
//  - Attention: QK^T and PV over the whole T x T square, 2·2·B·heads·T²·head_dim
//    forward. The model masks the upper triangle with a fill but computes it,
//    so the causal half is counted (it is executed). Backward: 2x forward
//    (dQ, dK, dP, dV).
//  - Adapters (the trainer's default targets: q, k, v, o, gate, up, down), counted
//    apart as "adapter FLOPs": the low-rank path (x A^T) B^T of rank k (r for
//    LoRA and DoRA, 2r for D2-LoRA's stacked branches): forward 2·tokens·k·(in
//    + out); backward dB, d(xA^T), dA, and dx when the input needs a gradient.
//    D2-LoRA and DoRA also compute the row norms of W0 + dW once per forward
//    through the low-rank identity (W0 A^T, A A^T, B (A A^T)), independent of
//    the token count; backward differentiates them into A and B.
//  - Activation checkpointing runs every decoder layer's forward again in
//    backward; that is counted apart as `recompute` (executed, not model, FLOPs).
#pragma once

#include <cstdint>
#include <string>

#include "common/model/model_config.h"

namespace d2lora::bench {

enum class StepMethod { kLora, kD2Lora, kDora, kFull };

// "lora" | "d2lora" | "dora" | "full".
std::string StepMethodName(StepMethod method);

struct FlopSplit {
  double forward = 0;
  double backward = 0;
  double total() const { return forward + backward; }
  FlopSplit& operator+=(const FlopSplit& o) {
    forward += o.forward;
    backward += o.backward;
    return *this;
  }
};

// A frozen (trainable = false) or trainable linear layer in -> out over `tokens` rows.
FlopSplit BaseLinearFlops(int64_t tokens, int64_t in, int64_t out, bool trainable, bool input_grad);

// Attention products QK^T and PV of one layer over the full seq x seq square.
FlopSplit AttentionFlops(int64_t batch, int64_t seq, int64_t heads, int64_t head_dim);

// The adapter's own GEMMs on one linear layer in -> out (zero for kFull).
FlopSplit AdapterLinearFlops(StepMethod method, int64_t tokens, int64_t in, int64_t out, int64_t r, bool input_grad);

struct StepShape {
  int64_t batch = 1;
  int64_t seq = 1;
  int64_t r = 8;
  bool activation_checkpointing = false;
};

struct StepFlops {
  FlopSplit linears;    // the decoder's projections (base weights)
  FlopSplit lm_head;    // the output head
  FlopSplit attention;  // QK^T and PV
  FlopSplit adapters;   // the adapters' own GEMMs
  double recompute = 0;  // activation checkpointing: decoder layers' forward again (model + adapter)

  double model() const { return linears.total() + lm_head.total() + attention.total(); }
  double adapter() const { return adapters.total(); }
  // Every counted GEMM FLOP the step executes.
  double executed() const { return model() + adapter() + recompute; }
};

// One training step (forward, loss, backward; the optimizer update has no
// GEMMs) of a model with `config`, adapters on every decoder projection
// unless method is kFull (everything trainable).
StepFlops CountTrainStepFlops(const model::ModelConfig& config, StepMethod method, const StepShape& shape);

}  // namespace d2lora::bench
