// d2lora prepare-wordnet --out DIR [--wordnet-dir DIR] [--tasks definition,hypernym,antonym,pos,category]
//                        [--seed N] [--val-fraction F] [--choices N] [--max-train N] [--max-val N]
//                        [--overwrite]
#include <CLI/CLI.hpp>

#include <iostream>
#include <memory>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "client/cli_util.h"
#include "datasets/wordnet/wordnet.h"
#include "datasets/wordnet/wordnet_tasks.h"

namespace d2lora::cli {

namespace wn = datasets::wordnet;

void AddPrepareWordNetCommand(CLI::App& app, int* exit_code) {
  auto request = std::make_shared<wn::DatasetRequest>();
  std::vector<std::string> all_tasks;
  for (wn::Task t : wn::kAllTasks) all_tasks.emplace_back(wn::TaskName(t));
  auto tasks = std::make_shared<std::vector<std::string>>(all_tasks);
  request->wordnet_dir = "/usr/share/wordnet";
  CLI::App* cmd = app.add_subcommand(
      "prepare-wordnet",
      "Build a gloss corpus and multiple-choice tasks (definition, hypernym, antonym, pos, category) from WordNet 3.0, "
      "split into train and validation by word");
  cmd->add_option("--wordnet-dir", request->wordnet_dir,
                  "Directory with data.noun, data.verb, data.adj and data.adv (Debian: wordnet-base)")
      ->capture_default_str();
  cmd->add_option("--out", request->out_dir,
                  "Output directory: corpus.jsonl, TASK/train.jsonl, TASK/validation.jsonl, stats.json")
      ->required();
  cmd->add_option("--tasks", *tasks, "Comma-separated tasks")
      ->delimiter(',')
      ->check(CLI::IsMember(all_tasks))
      ->capture_default_str();
  cmd->add_option("--seed", request->options.seed, "Seed of the word split, the distractors and the labels")
      ->capture_default_str();
  cmd->add_option("--val-fraction", request->options.val_fraction, "Share of words that are validation words")
      ->check(CLI::Range(0.0, 1.0))
      ->capture_default_str();
  cmd->add_option("--choices", request->options.choices, "Choices per question (the answer included)")
      ->check(CLI::Range(2, 26))
      ->capture_default_str();
  cmd->add_option("--max-train", request->options.max_train,
                  "At most this many training questions per task, a seeded sample (0: all)")
      ->check(CLI::NonNegativeNumber)
      ->capture_default_str();
  cmd->add_option("--max-val", request->options.max_val,
                  "At most this many validation questions per task, a seeded sample (0: all)")
      ->check(CLI::NonNegativeNumber)
      ->capture_default_str();
  cmd->add_flag("--overwrite", request->overwrite, "Replace a non-empty output directory");
  cmd->callback([request, tasks, exit_code]() {
    request->tasks.clear();
    for (const std::string& name : *tasks) {
      auto task = wn::ParseTask(name);
      if (!task.ok()) {
        *exit_code =
            Fail("prepare-wordnet", absl::InvalidArgumentError(absl::StrCat("--tasks: ", task.status().message())));
        return;
      }
      request->tasks.push_back(*task);
    }
    auto wordnet = wn::LoadWordNet(request->wordnet_dir);
    if (!wordnet.ok()) {
      *exit_code = Fail("prepare-wordnet", wordnet.status());
      return;
    }
    auto written = wn::WriteDataset(*wordnet, *request);
    if (!written.ok()) {
      *exit_code = Fail("prepare-wordnet", written.status());
      return;
    }
    for (const wn::WrittenFile& f : *written) std::cout << "wrote " << f.path << ": " << f.summary << std::endl;
  });
}

}  // namespace d2lora::cli
