#include "bench/flop_count.h"

namespace d2lora::bench {
namespace {

double Gemm(double m, double k, double n) { return 2.0 * m * k * n; }

struct Projection {
  int64_t in, out;
  bool first_layer_input_grad;  // with a frozen base: does layer 0's copy get an input gradient?
};

}  // namespace

std::string StepMethodName(StepMethod method) {
  switch (method) {
    case StepMethod::kLora: return "lora";
    case StepMethod::kD2Lora: return "d2lora";
    case StepMethod::kDora: return "dora";
    case StepMethod::kFull: return "full";
  }
  return "?";
}

FlopSplit BaseLinearFlops(int64_t tokens, int64_t in, int64_t out, bool trainable, bool input_grad) {
  const double g = Gemm(tokens, in, out);
  return {g, (input_grad ? g : 0.0) + (trainable ? g : 0.0)};
}

FlopSplit AttentionFlops(int64_t batch, int64_t seq, int64_t heads, int64_t head_dim) {
  const double one = Gemm(static_cast<double>(batch) * heads * seq, head_dim, seq);  // QK^T, and PV alike
  return {2 * one, 4 * one};
}

FlopSplit AdapterLinearFlops(StepMethod method, int64_t tokens, int64_t in, int64_t out, int64_t r, bool input_grad) {
  if (method == StepMethod::kFull) return {};
  const double k = method == StepMethod::kD2Lora ? 2.0 * r : static_cast<double>(r);
  const double n = static_cast<double>(tokens);
  FlopSplit f;
  // xa = x A^T [n, k]; y += xa B^T.
  f.forward = Gemm(n, in, k) + Gemm(n, k, out);
  // dB = g^T xa, d(xa) = g B, dA = d(xa)^T x, dx = d(xa) A.
  f.backward = 2 * Gemm(n, k, out) + Gemm(n, in, k) + (input_grad ? Gemm(n, in, k) : 0.0);
  if (method == StepMethod::kD2Lora || method == StepMethod::kDora) {
    // ||W0 + dW||^2 per row: W0 A^T [out, k], A A^T [k, k], B (A A^T) [out, k].
    f.forward += Gemm(out, in, k) + Gemm(k, in, k) + Gemm(out, k, k);
    // dA from W0 A^T (W0 frozen); dA twice from A A^T; dB and d(A A^T) from B (A A^T).
    f.backward += Gemm(out, in, k) + 2 * Gemm(k, in, k) + 2 * Gemm(out, k, k);
  }
  return f;
}

StepFlops CountTrainStepFlops(const model::ModelConfig& config, StepMethod method, const StepShape& shape) {
  const int64_t tokens = shape.batch * shape.seq;
  const int64_t hidden = config.hidden_size, inter = config.intermediate_size;
  const int64_t heads = config.num_attention_heads;
  const int64_t kv_heads = config.num_key_value_heads > 0 ? config.num_key_value_heads : heads;
  const int64_t head_dim = config.head_dim > 0 ? config.head_dim : hidden / heads;
  const int64_t q_size = heads * head_dim, kv_size = kv_heads * head_dim;
  const bool full = method == StepMethod::kFull;
  const Projection projections[] = {
      {hidden, q_size, false}, {hidden, kv_size, false}, {hidden, kv_size, false}, {q_size, hidden, true},
      {hidden, inter, true},   {hidden, inter, true},    {inter, hidden, true},
  };
  StepFlops s;
  double layer_forward = 0;  // model + adapter forward of all decoder layers, for recompute
  for (int64_t layer = 0; layer < config.num_hidden_layers; ++layer) {
    for (const Projection& p : projections) {
      // Full fine-tuning trains the embeddings, so every input needs a gradient.
      const bool input_grad = full || layer > 0 || p.first_layer_input_grad;
      const FlopSplit base = BaseLinearFlops(tokens, p.in, p.out, full, input_grad);
      const FlopSplit adapter = AdapterLinearFlops(method, tokens, p.in, p.out, shape.r, input_grad);
      s.linears += base;
      s.adapters += adapter;
      layer_forward += base.forward + adapter.forward;
    }
    const FlopSplit attention = AttentionFlops(shape.batch, shape.seq, heads, head_dim);
    s.attention += attention;
    layer_forward += attention.forward;
  }
  s.lm_head = BaseLinearFlops(tokens, hidden, config.vocab_size, full, /*input_grad=*/true);
  if (shape.activation_checkpointing) s.recompute = layer_forward;
  return s;
}

}  // namespace d2lora::bench
