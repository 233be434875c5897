#include "server/coordinator_server.h"

#include <filesystem>

#include <grpcpp/ext/proto_server_reflection_plugin.h>
#include <grpcpp/health_check_service_interface.h>
#include <grpcpp/security/server_credentials.h>
#include <grpcpp/server_builder.h>

#include "absl/strings/str_cat.h"
#include "common/file_util.h"
#include "server/artifact_store_local.h"
#include "server/job_store_sqlite.h"
#include "server/rpc_metrics.h"

namespace d2lora::server {

absl::StatusOr<std::unique_ptr<CoordinatorServer>> CoordinatorServer::Start(
    const CoordinatorServerOptions& options, std::shared_ptr<prometheus::Registry> registry) {
  if (options.data_dir.empty()) return absl::InvalidArgumentError("--data-dir: required");
  if (options.tls_cert_file.empty() != options.tls_key_file.empty()) {
    return absl::InvalidArgumentError("--tls-cert and --tls-key: give both or neither");
  }
  if (options.max_message_bytes < (2 << 20)) {
    return absl::InvalidArgumentError(absl::StrCat("--max-message-bytes = ", options.max_message_bytes,
                                                   ": must be at least 2 MiB (file chunks are 1 MiB)"));
  }
  auto roots = PathRoots::Create(options.allowed_path_roots);
  if (!roots.ok()) return roots.status();
  auto auth = TokenAuth::Create({options.token, options.read_token});
  if (!auth.ok()) return auth.status();
  std::error_code ec;
  std::filesystem::create_directories(options.data_dir, ec);
  if (ec) return absl::PermissionDeniedError(absl::StrCat("--data-dir ", options.data_dir, ": ", ec.message()));

  std::unique_ptr<CoordinatorServer> s(new CoordinatorServer());
  s->registry_ = std::move(registry);
  auto jobs = SqliteJobStore::Create(options.data_dir + "/jobs.db");
  if (!jobs.ok()) return jobs.status();
  s->jobs_ = *std::move(jobs);
  auto artifacts = LocalArtifactStore::Create({options.data_dir + "/artifacts"});
  if (!artifacts.ok()) return artifacts.status();
  s->artifacts_ = *std::move(artifacts);
  s->auth_ = *std::move(auth);
  s->roots_ = *std::move(roots);
  s->metrics_ = std::make_unique<CoordinatorMetrics>(*s->registry_);
  auto coordinator = Coordinator::Create(options.coordinator, s->jobs_.get(), s->artifacts_.get(), s->metrics_.get());
  if (!coordinator.ok()) return coordinator.status();
  s->coordinator_ = *std::move(coordinator);
  s->job_service_ = std::make_unique<JobServiceImpl>(s->coordinator_.get(), s->artifacts_.get(), s->auth_.get(),
                                                      &s->roots_);
  s->worker_service_ = std::make_unique<WorkerServiceImpl>(s->coordinator_.get(), s->artifacts_.get(), s->auth_.get());

  std::shared_ptr<grpc::ServerCredentials> credentials = grpc::InsecureServerCredentials();
  if (!options.tls_cert_file.empty()) {
    auto cert = ReadFileToString(options.tls_cert_file);
    if (!cert.ok()) return absl::InvalidArgumentError(absl::StrCat("--tls-cert: ", cert.status().message()));
    auto key = ReadFileToString(options.tls_key_file);
    if (!key.ok()) return absl::InvalidArgumentError(absl::StrCat("--tls-key: ", key.status().message()));
    grpc::SslServerCredentialsOptions ssl;
    ssl.pem_key_cert_pairs.push_back({*key, *cert});
    credentials = grpc::SslServerCredentials(ssl);
  }
  grpc::EnableDefaultHealthCheckService(true);
  grpc::reflection::InitProtoReflectionServerBuilderPlugin();
  grpc::ServerBuilder builder;
  builder.AddListeningPort(options.listen, credentials, &s->port_);
  builder.RegisterService(s->job_service_.get());
  builder.RegisterService(s->worker_service_.get());
  builder.SetMaxReceiveMessageSize(options.max_message_bytes);
  builder.SetMaxSendMessageSize(options.max_message_bytes);
  // Handler threads stay for the next call rather than exit after each one
  // (gRPC's default keeps 2 idle): under load, creating and unmapping a thread
  // per call cost more CPU than the calls (coordinator_bench --mode load).
  builder.SetSyncServerOption(grpc::ServerBuilder::SyncServerOption::MAX_POLLERS, 64);
  std::vector<std::unique_ptr<grpc::experimental::ServerInterceptorFactoryInterface>> interceptors;
  interceptors.push_back(MakeRpcMetricsInterceptorFactory(*s->registry_));
  builder.experimental().SetInterceptorCreators(std::move(interceptors));
  s->server_ = builder.BuildAndStart();
  if (!s->server_ || s->port_ == 0) {
    return absl::UnavailableError(absl::StrCat("--listen ", options.listen, ": cannot listen there (in use, or not an address of this host)"));
  }
  s->server_->GetHealthCheckService()->SetServingStatus(true);
  return s;
}

CoordinatorServer::~CoordinatorServer() {
  if (server_) server_->Shutdown(std::chrono::system_clock::now());
}

void CoordinatorServer::Shutdown(absl::Duration grace) {
  if (!server_) return;
  server_->GetHealthCheckService()->SetServingStatus(false);
  server_->Shutdown(absl::ToChronoTime(absl::Now() + grace));
}

void CoordinatorServer::Wait() {
  if (server_) server_->Wait();
}

}  // namespace d2lora::server
