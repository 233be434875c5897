// Everything `d2lora-coordinator` runs, wired together: the job store and the
// artifact store under the data directory, the coordinator, both gRPC services
// (with health checking, reflection, RPC metrics, token and TLS).
#pragma once

#include <memory>
#include <string>
#include <vector>

#include <grpcpp/server.h>
#include <prometheus/registry.h>

#include "absl/status/statusor.h"
#include "common/path_roots.h"
#include "common/rpc/channel.h"
#include "server/artifact_store.h"
#include "server/auth.h"
#include "server/coordinator.h"
#include "server/coordinator_metrics.h"
#include "server/job_service.h"
#include "server/job_store.h"
#include "server/worker_service.h"

namespace d2lora::server {

struct CoordinatorServerOptions {
  std::string listen = "127.0.0.1:50051";  // port 0 picks a free one
  std::string data_dir;                    // jobs.db and artifacts/
  std::string token;                       // the full token; "" = no authentication
  std::string read_token;                  // a read-only token (list, get, watch, download); "" = none
  std::string tls_cert_file, tls_key_file;  // both or neither
  // Directories spec paths (model, data) must lie in; empty = anywhere (absolute, no "..").
  std::vector<std::string> allowed_path_roots;
  int max_message_bytes = rpc::kMaxMessageBytes;  // one gRPC message, either way
  CoordinatorOptions coordinator;
};

class CoordinatorServer {
 public:
  static absl::StatusOr<std::unique_ptr<CoordinatorServer>> Start(const CoordinatorServerOptions& options,
                                                                  std::shared_ptr<prometheus::Registry> registry);
  ~CoordinatorServer();

  int port() const { return port_; }
  // Stops accepting calls, lets running ones finish (streams up to `grace`).
  void Shutdown(absl::Duration grace);
  void Wait();

 private:
  CoordinatorServer() = default;

  std::shared_ptr<prometheus::Registry> registry_;
  std::unique_ptr<JobStore> jobs_;
  std::unique_ptr<ArtifactStore> artifacts_;
  std::unique_ptr<TokenAuth> auth_;
  PathRoots roots_;
  std::unique_ptr<CoordinatorMetrics> metrics_;  // outlives coordinator_
  std::unique_ptr<Coordinator> coordinator_;
  std::unique_ptr<JobServiceImpl> job_service_;
  std::unique_ptr<WorkerServiceImpl> worker_service_;
  std::unique_ptr<grpc::Server> server_;
  int port_ = 0;
};

}  // namespace d2lora::server
