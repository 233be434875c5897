#include "client/remote/remote_commands.h"

namespace d2lora::cli {

void AddRemoteCommands(CLI::App& app, int* exit_code) {
  AddSubmitCommand(app, exit_code);
  AddJobCommands(app, exit_code);
  AddWatchCommands(app, exit_code);
  AddArtifactCommands(app, exit_code);
}

}  // namespace d2lora::cli
