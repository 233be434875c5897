// d2lora-worker --coordinator HOST:PORT --slots N --device cpu|cuda --work-dir DIR
//               --metrics-listen HOST:PORT [--token-file F] [--tls-ca F] [--tls-server-name N]
//               [--advertise-host H] [--name NAME] [--rendezvous-ports FIRST-LAST]
//               [--trainer PATH] [--stop-grace-seconds S] [--report-interval-ms MS]
//               [--label KEY=VALUE ...] [--clean-work-dirs] [--slot-memory SIZE]
//
// The worker daemon (worker_daemon.h). Prints "d2lora-worker: metrics on
// HOST:PORT" and "d2lora-worker: registered as WORKER_ID" on stdout; its log
// goes to stderr. SIGINT/SIGTERM stop the ranks, report them ABORTED
// (retryable) and exit 0; a second signal (a second or more later) exits at
// once (the ranks die with the worker).
#include <CLI/CLI.hpp>

#include <pthread.h>
#include <signal.h>
#include <unistd.h>

#include <cstdlib>
#include <iostream>
#include <memory>
#include <string>
#include <thread>

#include <prometheus/registry.h>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "absl/time/clock.h"
#include "absl/time/time.h"
#include "common/rpc/channel.h"
#include "common/rpc/metrics_exposer.h"
#include "common/text_format.h"
#include "common/version.h"
#include "worker/daemon/daemon_log.h"
#include "worker/daemon/host_info.h"
#include "worker/daemon/worker_daemon.h"

namespace {

using d2lora::worker::WorkerDaemon;

int Fail(const std::string& message) {
  std::cerr << "d2lora-worker: error: " << message << std::endl;
  return 1;
}

bool ParsePortRange(const std::string& text, int* first, int* last) {
  std::vector<std::string> parts = absl::StrSplit(text, '-');
  return parts.size() == 2 && absl::SimpleAtoi(parts[0], first) && absl::SimpleAtoi(parts[1], last);
}

}  // namespace

int main(int argc, char** argv) {
  // SIGINT/SIGTERM go to one thread (below), never to a gRPC or rank thread;
  // the ranks get a clean mask (rank_process.cc).
  sigset_t stop_signals;
  sigemptyset(&stop_signals);
  sigaddset(&stop_signals, SIGINT);
  sigaddset(&stop_signals, SIGTERM);
  pthread_sigmask(SIG_BLOCK, &stop_signals, nullptr);
  signal(SIGPIPE, SIG_IGN);

  CLI::App app{"d2lora worker daemon: runs training ranks for a d2lora coordinator", "d2lora-worker"};
  app.set_version_flag("--version", [] {
    return d2lora::VersionText("d2lora-worker", {"LibTorch: not linked (ranks run the d2lora binary; see d2lora --version)"});
  });
  WorkerDaemon::Options options;
  std::string token_file, metrics_listen, rendezvous_ports = "29500-29999", trainer;
  double stop_grace_seconds = 30;
  int64_t report_interval_ms = 1000;
  double lease_wait_seconds = 10;
  std::vector<std::string> labels;
  std::string slot_memory;
  app.add_option("--coordinator", options.coordinator.endpoint, "Coordinator HOST:PORT")->required();
  app.add_option("--slots", options.slots, "Ranks this worker runs at once")->required();
  app.add_option("--device", options.device, "cpu or cuda (slot i is cuda:i)")->required();
  app.add_option("--work-dir", options.work_dir, "Where assignments run (jobs/JOB/attempt-K/rank-R)")->required();
  app.add_option("--metrics-listen", metrics_listen, "Prometheus endpoint HOST:PORT (port 0: any free port)")
      ->required();
  app.add_option("--token-file", token_file, "File whose first line is the bearer token");
  app.add_option("--tls-ca", options.coordinator.tls_ca_file, "PEM to trust (CA or the coordinator's certificate)");
  app.add_option("--tls-server-name", options.coordinator.tls_server_name, "Name checked against the certificate");
  app.add_option("--advertise-host", options.advertise_host,
                 "Address other workers reach this one at (default: 127.0.0.1 for a loopback coordinator, else the "
                 "host name)");
  app.add_option("--name", options.name, "Worker name (default: HOSTNAME-PID)");
  app.add_option("--rendezvous-ports", rendezvous_ports, "Ports rank 0 may listen on, FIRST-LAST")
      ->capture_default_str();
  app.add_option("--trainer", trainer, "The d2lora binary (default: next to d2lora-worker, ../client/d2lora, PATH)");
  app.add_option("--stop-grace-seconds", stop_grace_seconds, "SIGTERM to SIGKILL")->capture_default_str();
  app.add_option("--report-interval-ms", report_interval_ms, "Progress reports per rank")->capture_default_str();
  app.add_option("--label", labels, "KEY=VALUE label sent at registration (repeatable)");
  app.add_option("--slot-memory", slot_memory,
                 "Memory each slot advertises, e.g. 80GiB (default: this machine's memory over the slots on cpu, "
                 "each GPU's from nvidia-smi on cuda)");
  app.add_flag("--clean-work-dirs", options.clean_work_dirs, "Remove an assignment's directory once reported");
  app.add_option("--lease-wait-seconds", lease_wait_seconds,
                 "LeaseAssignment's long poll: an assignment starts as soon as it is placed (0: lease at heartbeats)")
      ->capture_default_str();
  try {
    app.parse(argc, argv);
  } catch (const CLI::CallForHelp& e) {
    return app.exit(e);
  } catch (const CLI::CallForVersion& e) {
    return app.exit(e);
  } catch (const CLI::ParseError& e) {
    app.exit(e);
    return 2;
  }

  if (!ParsePortRange(rendezvous_ports, &options.rendezvous_port_first, &options.rendezvous_port_last)) {
    std::cerr << "d2lora-worker: error: --rendezvous-ports " << rendezvous_ports << ": expected FIRST-LAST" << std::endl;
    return 2;
  }
  for (const std::string& label : labels) {
    const size_t eq = label.find('=');
    if (eq == std::string::npos || eq == 0) {
      std::cerr << "d2lora-worker: error: --label " << label << ": expected KEY=VALUE" << std::endl;
      return 2;
    }
    options.labels[label.substr(0, eq)] = label.substr(eq + 1);
  }
  if (stop_grace_seconds < 0 || report_interval_ms < 10 || !(lease_wait_seconds >= 0 && lease_wait_seconds <= 30)) {
    std::cerr << "d2lora-worker: error: --stop-grace-seconds must be >= 0, --report-interval-ms >= 10 and "
                 "--lease-wait-seconds in [0, 30]"
              << std::endl;
    return 2;
  }
  if (!slot_memory.empty()) {
    absl::StatusOr<int64_t> bytes = d2lora::ParseBytes(slot_memory);
    if (!bytes.ok()) {
      std::cerr << "d2lora-worker: error: --slot-memory " << bytes.status().message() << std::endl;
      return 2;
    }
    options.slot_memory_bytes = *bytes;
  }
  options.lease_wait = absl::Seconds(lease_wait_seconds);
  options.stop_grace = absl::Seconds(stop_grace_seconds);
  options.report_interval = absl::Milliseconds(report_interval_ms);
  if (!token_file.empty()) {
    absl::StatusOr<std::string> token = d2lora::rpc::ReadSecretFile(token_file);
    if (!token.ok()) return Fail(absl::StrCat("--token-file: ", token.status().message()));
    options.coordinator.token = *token;
  }
  absl::StatusOr<std::string> trainer_path = d2lora::worker::FindTrainer(trainer);
  if (!trainer_path.ok()) return Fail(std::string(trainer_path.status().message()));
  options.trainer = *trainer_path;

  auto registry = std::make_shared<prometheus::Registry>();
  auto metrics = d2lora::rpc::StartMetricsEndpoint(metrics_listen, registry);
  if (!metrics.ok()) return Fail(absl::StrCat("--metrics-listen: ", metrics.status().message()));

  absl::StatusOr<std::unique_ptr<WorkerDaemon>> daemon = WorkerDaemon::Create(options, *registry);
  if (!daemon.ok()) return Fail(std::string(daemon.status().message()));
  std::cout << "d2lora-worker: metrics on " << metrics->address << std::endl;
  d2lora::worker::Log(absl::StrCat("trainer ", options.trainer, ", work dir ", options.work_dir, ", coordinator ",
                                   options.coordinator.endpoint));

  WorkerDaemon* worker = daemon->get();
  std::thread([worker, stop_signals] {
    int signal_number = 0;
    absl::Time first = absl::InfinitePast();
    while (sigwait(&stop_signals, &signal_number) == 0) {
      if (first != absl::InfinitePast()) {
        // The same signal often comes twice at once (to the process and to its
        // group, as timeout(1) sends it): only a later one means "now".
        if (absl::Now() - first < absl::Seconds(1)) continue;
        d2lora::worker::Log("second signal: exiting now");
        std::_Exit(1);
      }
      first = absl::Now();
      d2lora::worker::Log(absl::StrCat(strsignal(signal_number), ": stopping the ranks"));
      worker->Shutdown();
    }
  }).detach();

  const absl::Status status = worker->Run([](const std::string& id) {
    std::cout << "d2lora-worker: registered as " << id << std::endl;
  });
  // The signal thread may still hold the daemon: it outlives main.
  (void)daemon->release();
  if (!status.ok()) return Fail(std::string(status.message()));
  return 0;
}
