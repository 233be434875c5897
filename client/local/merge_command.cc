// d2lora merge --model DIR --adapter DIR --out DIR [--dtype bf16|fp16|fp32]
#include <CLI/CLI.hpp>

#include <iostream>
#include <memory>

#include "client/cli_util.h"
#include "worker/engine/adapters/adapter_options.h"
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
  cmd->callback([opts, dtype, exit_code]() {
    SetUpRuntime(0);
    if (!dtype->empty()) opts->dtype = *engine::ParseDtypeFlag(*dtype);
    auto result = engine::MergeModel(*opts);
    if (!result.ok()) {
      *exit_code = Fail("merge", result.status());
      return;
    }
    std::cout << "merged " << engine::MethodName(result->adapter.method) << " adapter (" << result->merged_layers
              << " layers) into " << opts->out_dir << " as "
              << engine::ModelDtypeName(result->dtype).value_or("?") << std::endl;
  });
}

}  // namespace d2lora::cli
