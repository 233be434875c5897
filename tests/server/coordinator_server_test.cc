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

// A CA and a server certificate it signs (EC keys: fast), made with the openssl CLI.
bool MakeCa(const std::string& dir, const std::string& name) {
  const std::string cmd = "cd " + dir + " && openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes "
                          "-days 1 -subj /CN=" + name + " -keyout " + name + ".key -out " + name + ".pem >/dev/null 2>&1";
  return std::system(cmd.c_str()) == 0;
}
bool MakeServerCert(const std::string& dir, const std::string& ca) {
  const std::string cmd =
      "cd " + dir + " && openssl req -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes -subj /CN=localhost "
      "-keyout server.key -out server.csr >/dev/null 2>&1 && printf 'subjectAltName=DNS:localhost\\n' >san.ext && "
      "openssl x509 -req -in server.csr -CA " + ca + ".pem -CAkey " + ca + ".key -CAcreateserial -days 1 "
      "-extfile san.ext -out server.pem >/dev/null 2>&1";
  return std::system(cmd.c_str()) == 0;
}

TEST(CoordinatorServerTest, ServesTlsWithTheGivenCertificate) {
  testing::TempDir dir;
  ASSERT_TRUE(MakeCa(dir.path(), "ca") && MakeCa(dir.path(), "other-ca") && MakeServerCert(dir.path(), "ca"))
      << "openssl (Debian package openssl) is needed";
  const std::string cert = dir.file("server.pem"), key = dir.file("server.key");
  auto server = StartServer(dir.file("data"), "tls-token", cert, key);
  ASSERT_NE(server, nullptr);
  const std::string endpoint = "127.0.0.1:" + std::to_string(server->port());
  auto list = [](const rpc::ClientOptions& options) {
    auto channel = rpc::MakeChannel(options);
    EXPECT_TRUE(channel.ok()) << channel.status();
    grpc::ClientContext context;
    rpc::PrepareContext(context, options, absl::Seconds(10));
    v1::ListJobsResponse response;
    return v1::JobService::NewStub(*channel)->ListJobs(&context, {}, &response);
  };
  // Trusting the CA that signed the server's certificate: served.
  const grpc::Status ok = list({endpoint, "tls-token", dir.file("ca.pem"), "localhost"});
  EXPECT_TRUE(ok.ok()) << ok.error_message();
  // Plaintext to a TLS port, and a client trusting another CA: no connection.
  EXPECT_EQ(list({endpoint, "tls-token", "", ""}).error_code(), grpc::StatusCode::UNAVAILABLE);
  EXPECT_EQ(list({endpoint, "tls-token", dir.file("other-ca.pem"), "localhost"}).error_code(),
            grpc::StatusCode::UNAVAILABLE);
  // The right CA but another name than the certificate's.
  EXPECT_EQ(list({endpoint, "tls-token", dir.file("ca.pem"), "not-the-server"}).error_code(),
            grpc::StatusCode::UNAVAILABLE);
  // TLS does not replace the token.
  EXPECT_EQ(list({endpoint, "", dir.file("ca.pem"), "localhost"}).error_code(), grpc::StatusCode::UNAUTHENTICATED);
  CoordinatorServerOptions half;  // a certificate without its key
  half.listen = "127.0.0.1:0";
  half.data_dir = dir.file("d2");
  half.tls_cert_file = cert;
  EXPECT_EQ(CoordinatorServer::Start(half, std::make_shared<prometheus::Registry>()).status().code(),
            absl::StatusCode::kInvalidArgument);
}

}  // namespace
}  // namespace d2lora::server
