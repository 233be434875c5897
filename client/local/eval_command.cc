// d2lora eval --model DIR [--adapter DIR] --data FILE.jsonl --task lm|multiple_choice
//             [--scoring sum|mean|byte|letter] [--batch-size N] [--max-seq-len N] [--json]
#include <CLI/CLI.hpp>

#include <iostream>
#include <memory>
#include <cmath>

#include <nlohmann/json.hpp>

#include "client/cli_util.h"
#include "worker/engine/runtime.h"
#include "common/status_macros.h"
#include "worker/engine/data/examples.h"
#include "worker/engine/data/jsonl.h"
#include "worker/engine/eval/evaluate.h"
#include "worker/engine/tasks/merge_model.h"
#include "worker/engine/tokenizer/tokenizer.h"

namespace d2lora::cli {

namespace {

struct EvalFlags {
  std::string model, adapter, data, task = "lm", scoring = "mean";
  int64_t batch_size = 8;
  int64_t max_seq_len = 0;
  bool json = false;
  bool skip_invalid = false;
  int threads = 0;
};

absl::StatusOr<nlohmann::json> RunEval(const EvalFlags& f) {
  D2_ASSIGN_OR_RETURN(engine::LoadedModel loaded, engine::LoadMergedModel(f.model, f.adapter));
  D2_ASSIGN_OR_RETURN(std::unique_ptr<engine::Tokenizer> tokenizer, engine::LoadTokenizer(f.model));
  const int64_t max_len = f.max_seq_len > 0 ? f.max_seq_len : loaded.config.max_position_embeddings;
  engine::JsonlOptions jo;
  jo.skip_invalid = f.skip_invalid;
  jo.vocab_size = loaded.config.vocab_size;
  nlohmann::json out;
  if (f.task == "lm") {
    jo.format = engine::DataFormat::kText;
    D2_ASSIGN_OR_RETURN(engine::Dataset data, engine::ReadJsonl(f.data, jo));
    if (data.skipped) std::cerr << "d2lora eval: " << data.SkipReport() << std::endl;
    D2_ASSIGN_OR_RETURN(engine::ExampleSet set, engine::MakeExamples(data, *tokenizer, max_len));
    D2_ASSIGN_OR_RETURN(engine::LmEvalResult r, engine::EvaluateLm(*loaded.model, set.examples, f.batch_size));
    out = {{"loss", r.loss}, {"perplexity", r.perplexity}, {"tokens", r.tokens}};
  } else {
    jo.format = engine::DataFormat::kMultipleChoice;
    D2_ASSIGN_OR_RETURN(engine::ChoiceScoring scoring, engine::ParseChoiceScoring(f.scoring));
    D2_ASSIGN_OR_RETURN(engine::Dataset data, engine::ReadJsonl(f.data, jo));
    if (data.skipped) std::cerr << "d2lora eval: " << data.SkipReport() << std::endl;
    D2_ASSIGN_OR_RETURN(std::vector<engine::ChoiceExample> items,
                        engine::MakeChoiceExamples(data, *tokenizer, max_len));
    D2_ASSIGN_OR_RETURN(engine::McEvalResult r,
                        engine::EvaluateMultipleChoice(*loaded.model, items, scoring, f.batch_size));
    // The standard error of the accuracy (binomial), and each question's answer
    // and label, so that two models' results can be compared question by question.
    std::vector<int64_t> labels;
    labels.reserve(items.size());
    for (const engine::ChoiceExample& item : items) labels.push_back(item.label);
    const double se = r.n > 0 ? std::sqrt(r.accuracy * (1.0 - r.accuracy) / static_cast<double>(r.n)) : 0.0;
    out = {{"accuracy", r.accuracy}, {"n", r.n},        {"correct", r.correct},
           {"standard_error", se},   {"labels", labels}, {"predictions", r.predictions}};
  }
  return out;
}

}  // namespace

void AddEvalCommand(CLI::App& app, int* exit_code) {
  auto f = std::make_shared<EvalFlags>();
  CLI::App* cmd = app.add_subcommand("eval", "Evaluate a model (and adapter, merged at load) on a JSONL file");
  cmd->add_option("--model", f->model, "Model directory")->required();
  cmd->add_option("--adapter", f->adapter, "Adapter directory");
  cmd->add_option("--data", f->data, "JSONL file")->required();
  cmd->add_option("--task", f->task, "lm (loss, perplexity) or multiple_choice (accuracy)")
      ->check(CLI::IsMember({"lm", "multiple_choice"}));
  cmd->add_option("--scoring", f->scoring, "Multiple-choice scoring: sum, mean, byte or letter")
      ->check([](const std::string& name) {  // the spec's names (eval.scoring), one list
        absl::StatusOr<engine::ChoiceScoring> scoring = engine::ParseChoiceScoring(name);
        return scoring.ok() ? std::string() : std::string(scoring.status().message());
      });
  cmd->add_option("--batch-size", f->batch_size, "Sequences per forward pass (multiple choice: prompts per pass; each prompt is encoded once and its choices scored against its cached keys and values)")->check(CLI::Range(1, 1 << 16));
  cmd->add_option("--max-seq-len", f->max_seq_len, "Truncate to this many tokens (default: the model's context)")
      ->check(CLI::NonNegativeNumber);
  cmd->add_flag("--skip-invalid", f->skip_invalid, "Skip (and count) invalid JSONL lines instead of failing");
  cmd->add_flag("--json", f->json,
                "End with one JSON object on the last line of stdout (multiple choice: accuracy, n, correct, "
                "standard_error, and per question labels and predictions, the chosen choice's index)");
  cmd->add_option("--threads", f->threads, "LibTorch threads (0 = all available cores)");
  cmd->callback([f, exit_code]() {
    engine::SetUpRuntime(f->threads);
    auto result = RunEval(*f);
    if (!result.ok()) {
      *exit_code = Fail("eval", result.status());
      return;
    }
    if (f->json) {
      std::cout << result->dump() << std::endl;
    } else if (f->task == "lm") {
      std::cout << "loss " << (*result)["loss"].get<double>() << "  perplexity "
                << (*result)["perplexity"].get<double>() << "  tokens " << (*result)["tokens"] << std::endl;
    } else {
      std::cout << "accuracy " << (*result)["accuracy"].get<double>() << " (standard error "
                << (*result)["standard_error"].get<double>() << ")  n " << (*result)["n"] << "  scoring "
                << f->scoring << std::endl;
    }
  });
}

}  // namespace d2lora::cli
