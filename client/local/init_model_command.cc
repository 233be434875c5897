// d2lora init-model --preset tiny|small|base --out DIR [--seed N] [--corpus FILE]
#include <CLI/CLI.hpp>

#include <iostream>
#include <memory>

#include "client/cli_util.h"
#include "worker/engine/runtime.h"
#include "common/status_macros.h"
#include "worker/engine/tasks/init_model.h"

namespace d2lora::cli {

void AddInitModelCommand(CLI::App& app, int* exit_code) {
  auto opts = std::make_shared<engine::InitModelOptions>();
  auto corpus = std::make_shared<std::string>();
  CLI::App* cmd = app.add_subcommand(
      "init-model", "Write a random-initialised LLaMA-family model with a byte-level BPE tokenizer");
  cmd->add_option("--preset", opts->preset, "tiny (~0.3M parameters), small (~11M) or base (~96M)")
      ->check(CLI::IsMember({"tiny", "small", "base"}));
  cmd->add_option("--out", opts->out_dir, "Output directory (Hugging Face layout)")->required();
  cmd->add_option("--seed", opts->seed, "Initialisation seed");
  cmd->add_option("--corpus", *corpus,
                  "Text to learn the tokenizer's merges from (JSONL with text fields, or plain text)");
  cmd->add_flag("--overwrite", opts->overwrite, "Replace an existing output directory");
  cmd->callback([opts, corpus, exit_code]() {
    engine::SetUpRuntime(0);
    if (!corpus->empty()) {
      auto docs = engine::ReadCorpus(*corpus);
      if (!docs.ok()) {
        *exit_code = Fail("init-model", docs.status());
        return;
      }
      opts->corpus = std::move(*docs);
    }
    auto result = engine::InitModel(*opts);
    if (!result.ok()) {
      *exit_code = Fail("init-model", result.status());
      return;
    }
    std::cout << "wrote " << opts->out_dir << ": preset " << opts->preset << ", " << result->parameters
              << " parameters, " << result->config.num_hidden_layers << " layers, hidden "
              << result->config.hidden_size << ", tokenizer " << result->tokenizer_vocab << " tokens" << std::endl;
  });
}

}  // namespace d2lora::cli
