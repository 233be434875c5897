// d2lora plan --config FILE [--set key.path=value ...] [--json]
//
// The memory plan of a job spec (common/model/memory_plan.h): one rank's
// predicted peak memory, term by term, from the model's config.json and the
// spec, before anything is loaded; and whether it fits this machine's
// available memory. The data sets are not tokenized: their files' size bounds
// them (`d2lora train` prints the plan with the exact count).
#include <CLI/CLI.hpp>

#include <cstdio>
#include <iostream>
#include <memory>
#include <string>

#include "absl/strings/str_cat.h"
#include "client/cli_util.h"
#include "common/model/memory_plan.h"
#include "common/spec/job_spec.h"
#include "common/status_macros.h"
#include "common/text_format.h"

namespace d2lora::cli {
namespace {


struct PlanFlags {
  std::string config;
  std::vector<std::string> overrides;
  bool json = false;
};

absl::StatusOr<model::MemoryPlan> Plan(const PlanFlags& f) {
  D2_ASSIGN_OR_RETURN(spec::ValidJobSpec loaded, spec::LoadJobSpec(f.config, f.overrides));
  const spec::ValidJobSpec valid = spec::ResolveSpecPaths(loaded, spec::SpecDirectory(f.config));
  const spec::JobSpec& s = valid;
  D2_ASSIGN_OR_RETURN(model::ModelConfig config, model::LoadModelConfig(s.model));
  model::MemoryPlanInputs in;
  in.data_file_bytes =
      model::LocalBytes(s.data.train) + (s.data.validation.empty() ? 0 : model::LocalBytes(s.data.validation));
  in.checkpoint_bytes = model::LocalBytes(s.model, ".safetensors");
  return model::PlanMemory(config, s, in);
}

int RunPlan(const PlanFlags& f) {
  absl::StatusOr<model::MemoryPlan> plan = Plan(f);
  if (!plan.ok()) return Fail("plan", plan.status());
  const int64_t available = model::AvailableMemoryBytes();
  if (f.json) {
    nlohmann::json j = plan->ToJson();
    j["available_bytes"] = available > 0 ? nlohmann::json(available) : nlohmann::json(nullptr);
    std::cout << j.dump(2) << "\n";
    return kExitOk;
  }
  std::cout << plan->Format();
  if (available > 0 && plan->device == "cpu") {
    std::cout << "  this machine has " << FormatBytes(available) << " available: "
              << (plan->peak <= available ? "it fits" : "it does NOT fit") << "\n";
  }
  return kExitOk;
}

}  // namespace

void AddPlanCommand(CLI::App& app, int* exit_code) {
  auto f = std::make_shared<PlanFlags>();
  CLI::App* cmd = app.add_subcommand("plan", "Predict a job spec's peak memory per rank, term by term, before it runs");
  cmd->add_option("--config", f->config, "Job spec (YAML or JSON)")->required();
  cmd->add_option("--set", f->overrides, "Override a spec key: key.path=value (repeatable)");
  cmd->add_flag("--json", f->json, "Print the plan as JSON");
  cmd->callback([f, exit_code]() { *exit_code = RunPlan(*f); });
}

}  // namespace d2lora::cli
