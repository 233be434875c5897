// The coordinator's gRPC server in-process: health checking and reflection
// (what grpcurl-style tools and Kubernetes probes use), the bearer token on our
// services but not on health, and TLS with a certificate the test makes.
#include "server/coordinator_server.h"

#include <gtest/gtest.h>

#include <cstdlib>

#include <grpcpp/generic/generic_stub.h>
#include <grpcpp/grpcpp.h>

#include "common/rpc/channel.h"
#include "d2lora/v1/job_service.grpc.pb.h"
#include "tests/support/test_support.h"

namespace d2lora::server {
namespace {

std::unique_ptr<CoordinatorServer> StartServer(const std::string& dir, const std::string& token = "",
                                               const std::string& cert = "", const std::string& key = "") {
  CoordinatorServerOptions options;
  options.listen = "127.0.0.1:0";
  options.data_dir = dir;
  options.token = token;
  options.tls_cert_file = cert;
  options.tls_key_file = key;
  auto server = CoordinatorServer::Start(options, std::make_shared<prometheus::Registry>());
  EXPECT_TRUE(server.ok()) << server.status();
  return server.ok() ? *std::move(server) : nullptr;
}

// grpc.health.v1.Health/Check with an empty request; the answer's status
// field (1) is SERVING = 1, encoded 08 01.
grpc::Status HealthCheck(const std::shared_ptr<grpc::Channel>& channel, std::string* answer) {
  grpc::GenericStub stub(channel);
  grpc::ClientContext context;
  context.set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(10));
  grpc::ByteBuffer request, response;
  grpc::Slice empty("");
  request = grpc::ByteBuffer(&empty, 1);
  std::mutex mu;
  std::condition_variable cv;
  bool done = false;
  grpc::Status status;
  stub.UnaryCall(&context, "/grpc.health.v1.Health/Check", grpc::StubOptions(), &request, &response,
                 [&](grpc::Status s) {
                   std::lock_guard<std::mutex> lock(mu);
                   status = s;
                   done = true;
                   cv.notify_all();
                 });
  std::unique_lock<std::mutex> lock(mu);
  cv.wait(lock, [&] { return done; });
  std::vector<grpc::Slice> slices;
  if (status.ok() && response.Dump(&slices).ok()) {
    for (const auto& s : slices) answer->append(reinterpret_cast<const char*>(s.begin()), s.size());
  }
  return status;
}

// grpc.reflection.v1alpha.ServerReflection: list_services (field 7).
std::string ListServices(const std::shared_ptr<grpc::Channel>& channel) {
  grpc::GenericStub stub(channel);
  grpc::ClientContext context;
  context.set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(10));
  grpc::CompletionQueue cq;
  auto call = stub.PrepareCall(&context, "/grpc.reflection.v1alpha.ServerReflection/ServerReflectionInfo", &cq);
  void* tag;
  bool ok;
  call->StartCall(reinterpret_cast<void*>(1));
  cq.Next(&tag, &ok);
  const char request_bytes[] = {0x3a, 0x00};
  grpc::Slice slice(request_bytes, 2);
  grpc::ByteBuffer request(&slice, 1);
  call->WriteLast(request, grpc::WriteOptions(), reinterpret_cast<void*>(2));
  cq.Next(&tag, &ok);
  grpc::ByteBuffer response;
  call->Read(&response, reinterpret_cast<void*>(3));
  cq.Next(&tag, &ok);
  std::string out;
  std::vector<grpc::Slice> slices;
  if (ok && response.Dump(&slices).ok()) {
    for (const auto& s : slices) out.append(reinterpret_cast<const char*>(s.begin()), s.size());
  }
  grpc::Status status;
  call->Finish(&status, reinterpret_cast<void*>(4));
  cq.Next(&tag, &ok);
  cq.Shutdown();
  while (cq.Next(&tag, &ok)) {
  }
  return out;
}

TEST(CoordinatorServerTest, HealthAndReflectionAreOpenOurServicesNeedTheToken) {
  testing::TempDir dir;
  auto server = StartServer(dir.path(), "s3cret");
  ASSERT_NE(server, nullptr);
  auto channel = grpc::CreateChannel("127.0.0.1:" + std::to_string(server->port()), grpc::InsecureChannelCredentials());
  std::string health;
  ASSERT_TRUE(HealthCheck(channel, &health).ok());
  EXPECT_EQ(health, std::string("\x08\x01", 2));  // SERVING
  const std::string services = ListServices(channel);
  EXPECT_NE(services.find("d2lora.v1.JobService"), std::string::npos);
  EXPECT_NE(services.find("d2lora.v1.WorkerService"), std::string::npos);

  auto stub = v1::JobService::NewStub(channel);
  v1::ListJobsRequest request;
  v1::ListJobsResponse response;
  {
    grpc::ClientContext context;
    EXPECT_EQ(stub->ListJobs(&context, request, &response).error_code(), grpc::StatusCode::UNAUTHENTICATED);
  }
  {
    grpc::ClientContext context;
    context.AddMetadata("authorization", "Bearer wrong");
    EXPECT_EQ(stub->ListJobs(&context, request, &response).error_code(), grpc::StatusCode::UNAUTHENTICATED);
  }
  {
    grpc::ClientContext context;
    rpc::PrepareContext(context, {"", "s3cret", "", ""});
    EXPECT_TRUE(stub->ListJobs(&context, request, &response).ok());
  }
  server->Shutdown(absl::Seconds(1));
  health.clear();
  EXPECT_FALSE(HealthCheck(channel, &health).ok() && health == std::string("\x08\x01", 2));
}

TEST(CoordinatorServerTest, ServesTlsWithTheGivenCertificate) {
  testing::TempDir dir;
  const std::string cert = dir.file("cert.pem"), key = dir.file("key.pem");
  const std::string cmd = "openssl req -x509 -newkey rsa:2048 -nodes -days 1 -subj /CN=localhost "
                          "-addext subjectAltName=DNS:localhost -keyout " + key + " -out " + cert + " >/dev/null 2>&1";
  ASSERT_EQ(std::system(cmd.c_str()), 0) << "openssl (Debian package openssl) is needed";
  auto server = StartServer(dir.file("data"), "", cert, key);
  ASSERT_NE(server, nullptr);
  const std::string endpoint = "127.0.0.1:" + std::to_string(server->port());
  rpc::ClientOptions tls{endpoint, "", cert, "localhost"};
  auto channel = rpc::MakeChannel(tls);
  ASSERT_TRUE(channel.ok()) << channel.status();
  v1::ListJobsResponse response;
  {
    grpc::ClientContext context;
    rpc::PrepareContext(context, tls, absl::Seconds(10));
    EXPECT_TRUE(v1::JobService::NewStub(*channel)->ListJobs(&context, {}, &response).ok());
  }
  {
    auto plain = rpc::MakeChannel({endpoint, "", "", ""});
    grpc::ClientContext context;
    rpc::PrepareContext(context, tls, absl::Seconds(5));
    EXPECT_EQ(v1::JobService::NewStub(*plain)->ListJobs(&context, {}, &response).error_code(),
              grpc::StatusCode::UNAVAILABLE);
  }
  CoordinatorServerOptions half;  // a certificate without its key
  half.listen = "127.0.0.1:0";
  half.data_dir = dir.file("d2");
  half.tls_cert_file = cert;
  EXPECT_EQ(CoordinatorServer::Start(half, std::make_shared<prometheus::Registry>()).status().code(),
            absl::StatusCode::kInvalidArgument);
}

}  // namespace
}  // namespace d2lora::server
