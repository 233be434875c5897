// The subcommands that talk to a d2lora coordinator over gRPC (JobService):
// submit, list, get, cancel, pause, resume, watch, logs, artifacts,
// checkpoints, download, upload.
// client_config.h says how they find it. Exit codes: cli_util.h (3 when the
// coordinator refuses or cannot be reached, 4 when a waited-for job fails).
#pragma once

#include <string>

#include "absl/status/status.h"
#include "client/remote/client_config.h"

namespace CLI {
class App;
}

namespace d2lora::cli {

void AddRemoteCommands(CLI::App& app, int* exit_code);

// The parts, each in its own file.
void AddSubmitCommand(CLI::App& app, int* exit_code);     // submit_command.cc
void AddJobCommands(CLI::App& app, int* exit_code);       // job_commands.cc: list, get, cancel
void AddWatchCommands(CLI::App& app, int* exit_code);     // watch_command.cc: watch, logs
void AddArtifactCommands(CLI::App& app, int* exit_code);  // artifact_commands.cc: artifacts, checkpoints, download, upload

// Downloads the artifact `name` of job `job_id` to `path` (artifact_commands.cc;
// `d2lora plot JOB_ID` uses it). A coordinator's refusal is a server error.
absl::Status DownloadJobArtifact(const ConnectionFlags& flags, const std::string& job_id, const std::string& name,
                                 const std::string& path);

}  // namespace d2lora::cli
