// `d2lora completion bash`: a bash completion script generated from the
// CLI's own definitions (its CLI11 tree), so it cannot drift from the flags.
#pragma once

#include <string>

namespace CLI {
class App;
}

namespace d2lora::cli {

// The script for PROGRAM: subcommands after the program name, each
// subcommand's flags after it, file names for flag values and positionals.
// Hidden options (no group) are left out.
std::string BashCompletionScript(const CLI::App& app, const std::string& program);

// Registers `completion SHELL` (bash only); add it after every other
// subcommand, since the script is made from the tree as it is when it runs.
void AddCompletionCommand(CLI::App& app, int* exit_code);

}  // namespace d2lora::cli
