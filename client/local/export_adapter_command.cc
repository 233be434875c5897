// d2lora export-adapter --model DIR --adapter DIR --format peft-dora|peft-lora --out DIR
#include <CLI/CLI.hpp>

#include <iostream>
#include <memory>

#include "client/cli_util.h"
#include "worker/engine/runtime.h"
#include "worker/engine/tasks/export_adapter.h"

namespace d2lora::cli {

void AddExportAdapterCommand(CLI::App& app, int* exit_code) {
  auto opts = std::make_shared<engine::ExportAdapterOptions>();
  auto format = std::make_shared<std::string>("peft-dora");
  CLI::App* cmd = app.add_subcommand(
      "export-adapter",
      "Write an adapter as a PEFT adapter that any DoRA/LoRA-capable stack loads unchanged (exact: D2-LoRA "
      "becomes a rank-2r DoRA adapter; peft-lora only where the update is exactly low-rank)");
  cmd->add_option("--model", opts->model_dir, "Base model directory")->required();
  cmd->add_option("--adapter", opts->adapter_dir, "Adapter directory (adapter_config.json + weights)")->required();
  cmd->add_option("--format", *format, "peft-dora (default) or peft-lora")
      ->check(CLI::IsMember({"peft-dora", "peft-lora"}));
  cmd->add_option("--out", opts->out_dir, "Output directory (replaced atomically)")->required();
  cmd->callback([opts, format, exit_code]() {
    engine::SetUpRuntime(0);
    opts->format = *engine::ParsePeftFormat(*format);
    auto adapter = engine::ExportAdapter(*opts);
    if (!adapter.ok()) {
      *exit_code = Fail("export-adapter", adapter.status());
      return;
    }
    std::cout << "exported " << engine::MethodName(adapter->method) << " adapter as " << *format << " to "
              << opts->out_dir << std::endl;
  });
}

}  // namespace d2lora::cli
