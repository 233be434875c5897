// What every `d2lora` subcommand shares: exit codes and error reporting.
#pragma once

#include <string>

#include "absl/status/status.h"

namespace CLI {
class App;
}

namespace d2lora::cli {

// Exit codes: scripts can tell a usage error from a bad input or a failed job.
enum ExitCode : int {
  kExitOk = 0,
  kExitError = 1,      // bad input, I/O or engine error (message on stderr)
  kExitUsage = 2,      // unknown flag, missing argument (CLI11's parse errors)
  kExitServer = 3,     // the coordinator refused or could not be reached
  kExitJobFailed = 4,  // the job ended FAILED or CANCELLED
};

// Prints "d2lora COMMAND: error: MESSAGE" to stderr and returns kExitError.
int Fail(const std::string& command, const absl::Status& status);

// Local subcommands; each registers itself and writes its exit code.
void AddInitModelCommand(CLI::App& app, int* exit_code);
void AddMergeCommand(CLI::App& app, int* exit_code);
void AddExportAdapterCommand(CLI::App& app, int* exit_code);
void AddEvalCommand(CLI::App& app, int* exit_code);
void AddGenerateCommand(CLI::App& app, int* exit_code);
void AddTrainCommand(CLI::App& app, int* exit_code);
void AddPlanCommand(CLI::App& app, int* exit_code);
void AddPrepareWordNetCommand(CLI::App& app, int* exit_code);
void AddPlotCommand(CLI::App& app, int* exit_code);  // plot_command.cc

}  // namespace d2lora::cli
