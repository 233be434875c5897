// d2lora generate --model DIR [--adapter DIR] --prompt TEXT [--max-new-tokens N]
//                 [--temperature T] [--top-k K] [--seed N]
#include <CLI/CLI.hpp>

#include <iostream>
#include <memory>

#include "client/cli_util.h"
#include "worker/engine/runtime.h"
#include "worker/engine/model/generate.h"
#include "worker/engine/tasks/merge_model.h"
#include "worker/engine/tokenizer/tokenizer.h"

namespace d2lora::cli {

namespace {
struct GenerateFlags {
  std::string model, adapter, prompt;
  int64_t max_new_tokens = 64;
  double temperature = 0.0;
  int64_t top_k = 0;
  uint64_t seed = 0;
  int threads = 0;
};
}  // namespace

void AddGenerateCommand(CLI::App& app, int* exit_code) {
  auto f = std::make_shared<GenerateFlags>();
  CLI::App* cmd = app.add_subcommand("generate", "Continue a prompt with a model (and adapter, merged at load)");
  cmd->add_option("--model", f->model, "Model directory")->required();
  cmd->add_option("--adapter", f->adapter, "Adapter directory");
  cmd->add_option("--prompt", f->prompt, "Prompt text")->required();
  cmd->add_option("--max-new-tokens", f->max_new_tokens, "Tokens to generate")->check(CLI::Range(1, 1 << 20));
  cmd->add_option("--temperature", f->temperature, "0 = greedy; > 0 samples")->check(CLI::Range(0.0, 100.0));
  cmd->add_option("--top-k", f->top_k, "Sample among the k most likely tokens (0 = all)")->check(CLI::NonNegativeNumber);
  cmd->add_option("--seed", f->seed, "Sampling seed");
  cmd->add_option("--threads", f->threads, "LibTorch threads (0 = all available cores)");
  cmd->callback([f, exit_code]() {
    engine::SetUpRuntime(f->threads);
    auto loaded = engine::LoadMergedModel(f->model, f->adapter);
    if (!loaded.ok()) {
      *exit_code = Fail("generate", loaded.status());
      return;
    }
    auto tokenizer = engine::LoadTokenizer(f->model);
    if (!tokenizer.ok()) {
      *exit_code = Fail("generate", tokenizer.status());
      return;
    }
    std::vector<int64_t> prompt = (*tokenizer)->Encode(f->prompt, /*add_special_tokens=*/true);
    engine::GenerationOptions g;
    g.max_new_tokens = f->max_new_tokens;
    g.temperature = f->temperature;
    if (f->top_k > 0) g.top_k = f->top_k;
    g.seed = f->seed;
    g.eos_token_ids = loaded->config.eos_token_ids;
    if ((*tokenizer)->eos_id()) g.eos_token_ids.push_back(*(*tokenizer)->eos_id());
    auto ids = engine::Generate(*loaded->model, prompt, g);
    if (!ids.ok()) {
      *exit_code = Fail("generate", ids.status());
      return;
    }
    std::cout << f->prompt << (*tokenizer)->Decode(*ids) << std::endl;
  });
}

}  // namespace d2lora::cli
