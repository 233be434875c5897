// Starting a run's adapters from earlier work (spec init.adapter): a PEFT
// LoRA or DoRA adapter, or one this trainer wrote (D2-LoRA, LoRA, DoRA).
//
// The run's own adapter options rule (method, r, alpha, target modules); the
// saved adapter supplies starting values, converted so that its update is
// kept: B is rescaled by s_saved / s_run, and a saved rank r' < r fills the
// first r' rows of A and columns of B (the rest keep their fresh init: A
// Kaiming-uniform, B = 0, which adds nothing). Per run method:
//   lora    from LoRA: A, B (the run starts at W0 + dW, the saved model);
//           from DoRA: A, B (the magnitude is left out, and noted).
//   dora    from LoRA: A, B, and m = ||W0 + dW|| per row (the saved model);
//           from DoRA: A, B, m.
//   d2lora  from LoRA or DoRA: the positive branch (A+, B+); the negative
//           branch starts fresh (B- = 0). The run's form W* + dW is not the
//           saved W0 + dW: the projection and the residual apply from step 0.
//           From D2-LoRA: both branches; tau is the saved one when the run
//           learns tau, else the run's tau_init (a difference is noted).
// A D2-LoRA adapter cannot start a lora or dora run (its update is not one
// low-rank pair; its exact rank-2r DoRA form, adapter-peft/, can).
//
// Every module the saved adapter covers must be adapted by the run (else its
// update would be lost); modules the run adapts beyond it start fresh.
#pragma once

#include <torch/nn/module.h>

#include <cstdint>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "absl/status/statusor.h"
#include "worker/engine/spec_types.h"

namespace d2lora::engine {

struct AdapterInitResult {
  std::string dir;  // the adapter directory read
  AdapterMethod saved_method = AdapterMethod::kLora;
  int64_t saved_r = 0;
  int64_t modules = 0;        // adapted modules that started from it
  int64_t fresh_modules = 0;  // adapted modules it does not cover
  std::vector<std::string> notes;  // what was not carried over as it was
};

// `path` when it holds adapter_config.json; else its adapter/ (a checkpoint
// or an output directory). NotFound naming both places otherwise.
absl::StatusOr<std::string> FindAdapterDirectory(const std::string& path);

// Starts the adapters hosted in `root` (injected for the run) from the adapter
// at `path` (FindAdapterDirectory). Errors start "init.adapter PATH: " and
// name the module or key; on error nothing in `root` has changed.
absl::StatusOr<AdapterInitResult> InitAdaptersFrom(torch::nn::Module& root, const std::string& path);

nlohmann::json ToJson(const AdapterInitResult& result);

}  // namespace d2lora::engine
