// Token roles on every RPC, over real gRPC against an in-process coordinator:
// every method of JobService and WorkerService has an access policy (a new RPC
// without one fails here), refuses a call without a token (UNAUTHENTICATED),
// and refuses the read-only token exactly where its policy says
// (PERMISSION_DENIED naming the RPC); the health service stays open.
#include "server/auth.h"

#include <gtest/gtest.h>

#include <google/protobuf/descriptor.h>

#include "d2lora/v1/job_service.grpc.pb.h"
#include "d2lora/v1/worker_service.grpc.pb.h"
#include "server/coordinator_server.h"
#include "tests/server/grpc_test_util.h"
#include "tests/support/test_support.h"

namespace d2lora::server {
namespace {

using testing::GenericCall;
using testing::Serving;

constexpr char kFull[] = "full-token-5b1f0c";
constexpr char kRead[] = "read-token-9e2d47";

std::vector<const google::protobuf::MethodDescriptor*> AllMethods() {
  std::vector<const google::protobuf::MethodDescriptor*> methods;
  for (const char* name : {v1::JobService::service_full_name(), v1::WorkerService::service_full_name()}) {
    const google::protobuf::ServiceDescriptor* service =
        google::protobuf::DescriptorPool::generated_pool()->FindServiceByName(name);
    EXPECT_NE(service, nullptr) << name;
    if (!service) continue;
    for (int i = 0; i < service->method_count(); ++i) methods.push_back(service->method(i));
  }
  return methods;
}

std::string FullName(const google::protobuf::MethodDescriptor* m) {
  return m->service()->full_name() + "/" + m->name();
}

TEST(AuthTest, EveryMethodOfOurServicesHasAPolicy) {
  const auto methods = AllMethods();
  ASSERT_EQ(methods.size(), 20u);
  for (const auto* m : methods) EXPECT_TRUE(RpcRole(FullName(m)).has_value()) << FullName(m) << " has no policy";
  EXPECT_FALSE(RpcRole("d2lora.v1.JobService/NoSuchMethod").has_value());
  // What the read-only token may do, spelled out.
  for (const char* read : {"GetJob", "ListJobs", "WatchJob", "ListArtifacts", "ListCheckpoints", "DownloadArtifact"}) {
    EXPECT_EQ(RpcRole(std::string("d2lora.v1.JobService/") + read), Role::kReadOnly) << read;
  }
  for (const char* write : {"SubmitJob", "CancelJob", "PauseJob", "ResumeJob", "UploadFile"}) {
    EXPECT_EQ(RpcRole(std::string("d2lora.v1.JobService/") + write), Role::kFull) << write;
  }
  for (const auto* m : methods) {
    if (m->service()->name() == "WorkerService") {
      EXPECT_EQ(RpcRole(FullName(m)), Role::kFull) << FullName(m);
    }
  }
}

TEST(AuthTest, OptionsAreChecked) {
  EXPECT_EQ(TokenAuth::Create({"", "r"}).status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(TokenAuth::Create({"same", "same"}).status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_TRUE(TokenAuth::Create({"a", "b"}).ok());
  EXPECT_TRUE(TokenAuth::Create({"", ""}).ok());
}

class AuthServerTest : public ::testing::Test {
 protected:
  void SetUp() override {
    CoordinatorServerOptions options;
    options.listen = "127.0.0.1:0";
    options.data_dir = dir_.file("data");
    options.token = kFull;
    options.read_token = kRead;
    options.coordinator.scheduler_thread = false;
    auto server = CoordinatorServer::Start(options, std::make_shared<prometheus::Registry>());
    ASSERT_TRUE(server.ok()) << server.status();
    server_ = *std::move(server);
    channel_ = grpc::CreateChannel("127.0.0.1:" + std::to_string(server_->port()), grpc::InsecureChannelCredentials());
  }

  d2lora::testing::TempDir dir_;
  std::unique_ptr<CoordinatorServer> server_;
  std::shared_ptr<grpc::Channel> channel_;
};

TEST_F(AuthServerTest, EveryRpcChecksTheTokenAndItsRole) {
  ASSERT_TRUE(Serving(channel_));  // no token needed
  for (const auto* m : AllMethods()) {
    SCOPED_TRACE(FullName(m));
    const std::string path = "/" + FullName(m);
    const std::optional<Role> role = RpcRole(FullName(m));
    ASSERT_TRUE(role.has_value());
    EXPECT_EQ(GenericCall(channel_, path, "").error_code(), grpc::StatusCode::UNAUTHENTICATED);
    EXPECT_EQ(GenericCall(channel_, path, "", "wrong").error_code(), grpc::StatusCode::UNAUTHENTICATED);
    // A prefix of the real token, and the token without "Bearer ", are no token.
    EXPECT_EQ(GenericCall(channel_, path, "", std::string(kFull).substr(0, 8)).error_code(),
              grpc::StatusCode::UNAUTHENTICATED);
    const grpc::Status read = GenericCall(channel_, path, "", kRead);
    if (*role == Role::kFull) {
      EXPECT_EQ(read.error_code(), grpc::StatusCode::PERMISSION_DENIED) << read.error_message();
      EXPECT_NE(read.error_message().find(m->service()->name() + "/" + m->name()), std::string::npos)
          << read.error_message();
      EXPECT_EQ(read.error_message().find(kRead), std::string::npos);
    } else {
      EXPECT_NE(read.error_code(), grpc::StatusCode::PERMISSION_DENIED) << read.error_message();
      EXPECT_NE(read.error_code(), grpc::StatusCode::UNAUTHENTICATED) << read.error_message();
    }
    const grpc::Status full = GenericCall(channel_, path, "", kFull);
    EXPECT_NE(full.error_code(), grpc::StatusCode::PERMISSION_DENIED) << full.error_message();
    EXPECT_NE(full.error_code(), grpc::StatusCode::UNAUTHENTICATED) << full.error_message();
    EXPECT_NE(full.error_code(), grpc::StatusCode::INTERNAL) << full.error_message();  // a policy name mismatch
  }
  ASSERT_TRUE(Serving(channel_));
}

TEST_F(AuthServerTest, ReadOnlyTokenListsButCannotSubmitOrCancel) {
  auto stub = v1::JobService::NewStub(channel_);
  v1::ListJobsResponse list;
  {
    grpc::ClientContext context;
    context.AddMetadata("authorization", std::string("Bearer ") + kRead);
    EXPECT_TRUE(stub->ListJobs(&context, {}, &list).ok());
  }
  v1::SubmitJobRequest submit;
  submit.mutable_spec()->set_name("t");
  submit.mutable_spec()->set_model("/m");
  submit.mutable_spec()->mutable_data()->set_train("/t.jsonl");
  v1::Job job;
  {
    grpc::ClientContext context;
    context.AddMetadata("authorization", std::string("Bearer ") + kRead);
    const grpc::Status s = stub->SubmitJob(&context, submit, &job);
    EXPECT_EQ(s.error_code(), grpc::StatusCode::PERMISSION_DENIED);
    EXPECT_NE(s.error_message().find("JobService/SubmitJob"), std::string::npos) << s.error_message();
  }
  {
    grpc::ClientContext context;
    context.AddMetadata("authorization", std::string("Bearer ") + kFull);
    ASSERT_TRUE(stub->SubmitJob(&context, submit, &job).ok());
  }
  v1::CancelJobRequest cancel;
  cancel.set_id(job.id());
  v1::Job cancelled;
  {
    grpc::ClientContext context;
    context.AddMetadata("authorization", std::string("Bearer ") + kRead);
    EXPECT_EQ(stub->CancelJob(&context, cancel, &cancelled).error_code(), grpc::StatusCode::PERMISSION_DENIED);
  }
  {
    grpc::ClientContext context;
    context.AddMetadata("authorization", std::string("Bearer ") + kRead);
    v1::PauseJobRequest pause;
    pause.set_id(job.id());
    EXPECT_EQ(stub->PauseJob(&context, pause, &cancelled).error_code(), grpc::StatusCode::PERMISSION_DENIED);
  }
  {
    grpc::ClientContext context;
    context.AddMetadata("authorization", std::string("Bearer ") + kRead);
    v1::GetJobRequest get;
    get.set_id(job.id());
    v1::Job got;
    ASSERT_TRUE(stub->GetJob(&context, get, &got).ok());
    EXPECT_EQ(got.state(), v1::QUEUED);  // the refused cancel and pause changed nothing
  }
}

}  // namespace
}  // namespace d2lora::server
