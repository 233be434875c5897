// What the checks of gpu_checks share: tiny LLaMA-family models with random
// weights, the synthetic counting data they train on, and a free loopback port
// for a one-rank rendezvous.
#pragma once

#include <torch/torch.h>

#include <cstdint>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "worker/engine/data/examples.h"
#include "worker/engine/model/llama.h"
#include "common/model/model_config.h"

namespace d2lora::gpucheck {

struct TinyShape {
  int64_t vocab = 128;
  int64_t hidden = 64;
  int64_t intermediate = 128;
  int64_t layers = 2;
  int64_t heads = 4;
  int64_t kv_heads = 2;  // grouped-query attention, as in Llama 3 / Mistral
};

// A Llama config of that shape (untied, no biases, rope 10000, max 512 positions).
absl::StatusOr<model::ModelConfig> TinyConfig(const TinyShape& shape);

// A model in `dtype` (on the CPU) whose every parameter is random: norms near 1,
// embeddings N(0, 1), projections N(0, 1.5^2 / in). The values are drawn in fp32
// from `seed` and rounded to bf16 first, so that an fp32 and a bf16 model built
// from the same seed hold exactly the same weights.
absl::StatusOr<engine::CausalLM> RandomModel(const model::ModelConfig& config, torch::ScalarType dtype,
                                             uint64_t seed);

// The synthetic task the trainer tests use: count upwards, token t+1 follows
// token t over ids [3, vocab); lengths in (len - 4, len]; loss on all but the
// first token.
std::vector<engine::Example> CountingExamples(int n, int64_t len, int64_t vocab, uint64_t seed);

// A TCP port on 127.0.0.1 that was free a moment ago (bound to port 0, then
// released), or 0 when no socket could be bound.
int FreeLoopbackPort();

// "fp32", "bf16", "fp16", "fp64" (else LibTorch's name).
std::string DtypeName(torch::ScalarType dtype);

// max |a - b| in fp64, on the CPU.
double MaxAbsDiff(const torch::Tensor& a, const torch::Tensor& b);

}  // namespace d2lora::gpucheck
