// Check (a): D2-LoRA training steps through the engine's Trainer on a real
// one-rank c10d process group: NCCL on cuda:N, Gloo on the CPU (the in-process
// threads group where this LibTorch has no Gloo).
//
// It builds a tiny Llama, injects D2-LoRA into every linear layer, trains a few
// optimizer steps on the counting task, and passes when every step ran (none
// skipped), every loss is finite, and the adapter weights (both B matrices,
// which start at zero, and tau) changed. The Trainer skips its all-reduce with
// one rank, so the check then sends one real gradient bucket (the trainer's
// layout: every gradient flattened to fp32) through the group's AllReduceSum,
// Broadcast and Barrier; with one rank each must return the bucket unchanged.
#pragma once

#include <torch/torch.h>

#include <cstdint>

#include <nlohmann/json.hpp>

#include "absl/status/statusor.h"

namespace d2lora::gpucheck {

struct TrainStepCheckOptions {
  torch::Device device = torch::kCPU;
  torch::ScalarType dtype = torch::kFloat32;  // the base model's; adapters stay fp32
  int64_t steps = 20;
  int master_port = 0;  // 0: a free loopback port
};

// The figures (backend, losses, how much the adapter moved, the collective
// results) with "passed" and, when it failed, "failures" (what did not hold).
// An error Status means the check could not run at all.
absl::StatusOr<nlohmann::json> RunTrainStepCheck(const TrainStepCheckOptions& options);

}  // namespace d2lora::gpucheck
