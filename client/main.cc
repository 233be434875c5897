// d2lora: the command-line client. `d2lora --help` lists the subcommands.
#include <CLI/CLI.hpp>

#include <cstring>

#include "client/cli_util.h"
#include "client/completion.h"
#include "common/trainer/error_file.h"
#include "common/version.h"
#include "worker/engine/runtime.h"
#ifdef D2LORA_WITH_REMOTE
#include "client/remote/remote_commands.h"
#endif

namespace {

// The subcommands that run LibTorch in this process.
bool RunsEngine(int argc, char** argv) {
  if (argc < 2) return false;
  for (const char* name : {"init-model", "train", "merge", "export-adapter", "eval", "generate"}) {
    if (std::strcmp(argv[1], name) == 0) return true;
  }
  return false;
}

}  // namespace

int main(int argc, char** argv) {
  using namespace d2lora::cli;
  if (RunsEngine(argc, argv)) d2lora::engine::ReexecWithThreadingDefaults(argv);
  CLI::App app{"d2lora: D2-LoRA fine-tuning, locally or through the d2lora service"};
  app.require_subcommand(1);
  app.set_version_flag("--version", [] {
    return d2lora::VersionText("d2lora", {d2lora::engine::LibTorchDescription()});
  });
  int exit_code = kExitOk;
  AddInitModelCommand(app, &exit_code);
  AddTrainCommand(app, &exit_code);
  AddPlanCommand(app, &exit_code);
  AddMergeCommand(app, &exit_code);
  AddExportAdapterCommand(app, &exit_code);
  AddEvalCommand(app, &exit_code);
  AddGenerateCommand(app, &exit_code);
  AddPrepareWordNetCommand(app, &exit_code);
#ifdef D2LORA_WITH_PLOT
  AddPlotCommand(app, &exit_code);
#endif
#ifdef D2LORA_WITH_REMOTE
  AddRemoteCommands(app, &exit_code);
#endif
  AddCompletionCommand(app, &exit_code);  // last: its script lists every command above
  try {
    app.parse(argc, argv);
  } catch (const CLI::CallForHelp& e) {
    return app.exit(e);
  } catch (const CLI::CallForAllHelp& e) {
    return app.exit(e);
  } catch (const CLI::CallForVersion& e) {
    return app.exit(e);
  } catch (const CLI::ParseError& e) {
    app.exit(e);
    // A rank process launched with a command line this binary does not
    // take: the same every time (common/trainer/error_file.h).
    d2lora::trainer::TrainerError error;
    error.code = absl::StatusCode::kInvalidArgument;
    error.message = e.what();
    error.reason = d2lora::trainer::FailureReason::kUsage;
    error.retryable = false;
    (void)d2lora::trainer::WriteErrorFileFromEnvironment(error);
    return kExitUsage;
  }
  return exit_code;
}
