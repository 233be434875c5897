// d2lora-coordinator: accepts fine-tuning jobs over gRPC and schedules them
// onto worker daemons. `d2lora-coordinator --help` lists the flags.
#include <csignal>
#include <iostream>
#include <thread>

#include <CLI/CLI.hpp>

#include "common/rpc/channel.h"
#include "common/rpc/metrics_exposer.h"
#include "common/version.h"
#include "server/coordinator_server.h"

int main(int argc, char** argv) {
  using namespace d2lora;
  CLI::App app{"d2lora-coordinator: the d2lora job API, scheduler and artifact store"};
  app.set_version_flag("--version", [] { return d2lora::VersionText("d2lora-coordinator"); });
  server::CoordinatorServerOptions options;
  std::string metrics_listen = "127.0.0.1:9090";
  std::string token_file, read_token_file;
  double heartbeat_timeout = 20, heartbeat_interval = 2;
  int default_retries = 2;
  app.add_option("--listen", options.listen, "HOST:PORT for the gRPC API (port 0: any free port)")
      ->capture_default_str();
  app.add_option("--metrics-listen", metrics_listen, "HOST:PORT for Prometheus' /metrics (port 0: any)")
      ->capture_default_str();
  app.add_option("--data-dir", options.data_dir, "job store (jobs.db) and artifacts (artifacts/)")->required();
  app.add_option("--token-file", token_file, "require this bearer token on every call (the full token)");
  app.add_option("--read-token-file", read_token_file,
                 "also accept this read-only token: list, get, watch and download, but not submit, cancel or upload");
  app.add_option("--allowed-path-root", options.allowed_path_roots,
                 "directory a job spec's paths must lie in (repeatable; symlinks are followed); default: anywhere");
  app.add_option("--tls-cert", options.tls_cert_file, "serve TLS with this certificate (PEM)");
  app.add_option("--tls-key", options.tls_key_file, "... and this private key (PEM)");
  app.add_option("--heartbeat-timeout", heartbeat_timeout, "seconds without a heartbeat before a worker is lost")
      ->capture_default_str()->check(CLI::Range(0.5, 86400.0));
  app.add_option("--heartbeat-interval", heartbeat_interval, "seconds between a worker's heartbeats")
      ->capture_default_str()->check(CLI::Range(0.1, 3600.0));
  app.add_option("--max-retries", default_retries, "retries of a job whose submit does not say")
      ->capture_default_str()->check(CLI::Range(0, 100));
  app.add_option("--max-upload-bytes", options.coordinator.max_upload_bytes, "largest file one upload may send")
      ->capture_default_str();
  app.add_option("--max-message-bytes", options.max_message_bytes, "largest gRPC message received or sent")
      ->capture_default_str();
  CLI11_PARSE(app, argc, argv);

  auto fail = [](const absl::Status& s) {
    std::cerr << "d2lora-coordinator: error: " << s.message() << std::endl;
    return 1;
  };
  if (heartbeat_interval * 2 > heartbeat_timeout) {
    return fail(absl::InvalidArgumentError("--heartbeat-timeout must be at least twice --heartbeat-interval"));
  }
  options.coordinator.heartbeat_timeout = absl::Seconds(heartbeat_timeout);
  options.coordinator.heartbeat_interval = absl::Seconds(heartbeat_interval);
  options.coordinator.default_max_retries = default_retries;
  if (!token_file.empty()) {
    auto token = rpc::ReadSecretFile(token_file);
    if (!token.ok()) return fail(token.status());
    options.token = *token;
  }
  if (!read_token_file.empty()) {
    auto token = rpc::ReadSecretFile(read_token_file);
    if (!token.ok()) return fail(token.status());
    options.read_token = *token;
  }

  // SIGINT/SIGTERM are waited for by one thread; block them before any other thread starts.
  sigset_t signals;
  sigemptyset(&signals);
  sigaddset(&signals, SIGINT);
  sigaddset(&signals, SIGTERM);
  pthread_sigmask(SIG_BLOCK, &signals, nullptr);

  auto registry = std::make_shared<prometheus::Registry>();
  auto metrics = rpc::StartMetricsEndpoint(metrics_listen, registry);
  if (!metrics.ok()) return fail(metrics.status());
  auto server = server::CoordinatorServer::Start(options, registry);
  if (!server.ok()) return fail(server.status());
  const std::string host = options.listen.substr(0, options.listen.rfind(':'));
  std::cout << "d2lora-coordinator: listening on " << host << ":" << (*server)->port() << std::endl;
  std::cout << "d2lora-coordinator: metrics on " << metrics->address << std::endl;

  int signal = 0;
  sigwait(&signals, &signal);
  std::cout << "d2lora-coordinator: " << (signal == SIGINT ? "SIGINT" : "SIGTERM") << ", shutting down" << std::endl;
  (*server)->Shutdown(absl::Seconds(5));
  (*server)->Wait();
  return 0;
}
