// d2lora watch ID [--from-seq N]
// d2lora logs ID [--follow] [--rank R]
#include <CLI/CLI.hpp>
#include <iostream>
#include <memory>

#include "client/cli_util.h"
#include "client/remote/job_watch.h"
#include "client/remote/remote_commands.h"
#include "client/remote/remote_util.h"
#include "common/status_macros.h"

namespace d2lora::cli {
namespace {

struct WatchFlags {
  ConnectionFlags connection;
  std::string id;
  int64_t from_seq = 0;
  bool follow = false;
  int rank = -1;
};

absl::StatusOr<int> RunWatch(const WatchFlags& f) {
  D2_ASSIGN_OR_RETURN(Remote remote, Connect(f.connection));
  return WatchUntilEnd(remote, f.id, f.from_seq);
}

absl::StatusOr<int> RunLogs(const WatchFlags& f) {
  D2_ASSIGN_OR_RETURN(Remote remote, Connect(f.connection));
  int64_t after_seq = 0;
  D2_RETURN_IF_ERROR(StreamEvents(remote, f.id, f.follow, &after_seq, [&](const v1::JobEvent& event) {
    if (event.kind_case() != v1::JobEvent::kLog) return;
    if (f.rank >= 0 && event.log().rank() != f.rank) return;
    if (remote.json) {
      std::cout << MessageToJson(event) << std::endl;
      return;
    }
    std::string text = event.log().text();
    while (!text.empty() && (text.back() == '\n' || text.back() == '\r')) text.pop_back();
    std::cout << "[rank " << event.log().rank() << "] " << text << '\n';
    if (f.follow) std::cout << std::flush;
  }));
  std::cout << std::flush;
  return kExitOk;
}

}  // namespace

void AddWatchCommands(CLI::App& app, int* exit_code) {
  auto watch = std::make_shared<WatchFlags>();
  CLI::App* cmd =
      app.add_subcommand("watch", "Follow a job until it ends: state changes, evaluations, checkpoints, live progress");
  cmd->add_option("id", watch->id, "Job id")->required();
  cmd->add_option("--from-seq", watch->from_seq, "Only events after this sequence number (default: all)")
      ->check(NonNegativeValidator());
  AddConnectionFlags(cmd, &watch->connection);
  cmd->callback([watch, exit_code]() { RunCommand("watch", exit_code, [&watch]() { return RunWatch(*watch); }); });

  auto logs = std::make_shared<WatchFlags>();
  cmd = app.add_subcommand("logs", "Print a job's log lines as \"[rank R] text\"");
  cmd->add_option("id", logs->id, "Job id")->required();
  cmd->add_flag("--follow,-f", logs->follow, "Keep printing new lines until the job ends");
  cmd->add_option("--rank", logs->rank, "Only this rank's lines")->check(NonNegativeValidator());
  AddConnectionFlags(cmd, &logs->connection);
  cmd->callback([logs, exit_code]() { RunCommand("logs", exit_code, [&logs]() { return RunLogs(*logs); }); });
}

}  // namespace d2lora::cli
