// d2lora merge --model DIR --adapter DIR --out DIR [--dtype bf16|fp16|fp32] [--force]
//               [--max-row-norm-deviation X] [--max-cast-error X] [--max-logit-diff X] [--max-kl X]
#include <CLI/CLI.hpp>

#include <iostream>
#include <memory>

#include "client/cli_util.h"
#include "worker/engine/runtime.h"
#include "common/spec/adapter_options.h"
#include "worker/engine/model/checkpoint.h"
#include "worker/engine/tasks/merge_model.h"

namespace d2lora::cli {

void AddMergeCommand(CLI::App& app, int* exit_code) {
  auto opts = std::make_shared<engine::MergeOptions>();
  auto dtype = std::make_shared<std::string>();
  CLI::App* cmd = app.add_subcommand("merge", "Fold an adapter into its base model and write the merged model");
  cmd->add_option("--model", opts->model_dir, "Base model directory")->required();
  cmd->add_option("--adapter", opts->adapter_dir, "Adapter directory (adapter_config.json + weights)")->required();
  cmd->add_option("--out", opts->out_dir, "Output directory")->required();
  cmd->add_option("--dtype", *dtype, "Weights dtype of the merged model (default: the base model's)")
      ->check(CLI::IsMember({"bf16", "fp16", "fp32"}));
  cmd->add_flag("--overwrite", opts->overwrite, "Replace an existing output directory");
  cmd->add_flag("--force", opts->force,
                "Write the merged model even when the merge gate finds a figure over its threshold "
                "(merge_report.json says which)");
  const char* zero = " (default 0: the merged dtype's threshold)";
  engine::MergeThresholds& t = opts->thresholds;
  cmd->add_option("--max-row-norm-deviation", t.max_row_norm_deviation,
                  std::string("Largest relative deviation of a projected row norm from its target") + zero)
      ->check(CLI::NonNegativeNumber);
  cmd->add_option("--max-cast-error", t.max_cast_error,
                  std::string("Largest relative error of a layer cast to the merged dtype") + zero)
      ->check(CLI::NonNegativeNumber);
  cmd->add_option("--max-logit-diff", t.max_logit_diff,
                  std::string("Largest |logit difference| merged vs training form on probe sequences") + zero)
      ->check(CLI::NonNegativeNumber);
  cmd->add_option("--max-kl", t.max_kl, std::string("Largest mean KL(training form || merged)") + zero)
      ->check(CLI::NonNegativeNumber);
  cmd->callback([opts, dtype, exit_code]() {
    engine::SetUpRuntime(0);
    if (!dtype->empty()) opts->dtype = *engine::ParseDtypeFlag(*dtype);
    auto result = engine::MergeModel(*opts);
    if (!result.ok()) {
      *exit_code = Fail("merge", result.status());
      return;
    }
    const nlohmann::json h = result->report.Headline();
    std::cout << "merged " << engine::MethodName(result->adapter.method) << " adapter (" << result->merged_layers
              << " layers) into " << opts->out_dir << " as " << result->report.merged_dtype << "\n"
              << "merge gate: " << (result->report.passed() ? "passed" : "FAILED (written anyway: --force)")
              << "; max logit diff " << h["max_logit_diff"].dump() << ", mean KL " << h["mean_kl"].dump()
              << ", max row-norm deviation " << h["max_row_norm_deviation"].dump() << ", max cast error "
              << h["max_cast_error"].dump() << " (" << opts->out_dir << "/" << trainer::kMergeReportFile << ")"
              << std::endl;
    for (const std::string& b : result->report.breaches) std::cout << "  over threshold: " << b << "\n";
  });
}

}  // namespace d2lora::cli
