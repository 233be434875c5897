#include "bench/sim_client.h"

#include <algorithm>

#include <grpc/grpc.h>
#include <grpcpp/client_context.h>
#include <grpcpp/create_channel.h>
#include <grpcpp/security/credentials.h>
#include <grpcpp/support/channel_arguments.h>

#include "absl/strings/str_cat.h"
#include "common/rpc/status_convert.h"
#include "common/sha256.h"

namespace d2lora::bench {
namespace {

constexpr absl::Duration kCallTimeout = absl::Seconds(30);

// Runs `call` (a grpc::Status-returning lambda), records it under `op`.
template <typename Call>
absl::Status Timed(RpcStats* stats, const char* op, Call call) {
  const absl::Time start = absl::Now();
  const absl::Status status = rpc::FromGrpcStatus(call());
  if (stats != nullptr) stats->Record(op, absl::Now() - start, status);
  return status;
}

}  // namespace

std::shared_ptr<grpc::Channel> NewConnection(const rpc::ClientOptions& options) {
  grpc::ChannelArguments args;
  args.SetMaxReceiveMessageSize(16 << 20);
  args.SetMaxSendMessageSize(16 << 20);
  args.SetInt(GRPC_ARG_USE_LOCAL_SUBCHANNEL_POOL, 1);
  return grpc::CreateCustomChannel(options.endpoint, grpc::InsecureChannelCredentials(), args);
}

JobClient::JobClient(const rpc::ClientOptions& options, RpcStats* stats)
    : options_(options), stats_(stats), stub_(v1::JobService::NewStub(NewConnection(options))) {}

void JobClient::Prepare(grpc::ClientContext& context) const { rpc::PrepareContext(context, options_, kCallTimeout); }

absl::StatusOr<v1::Job> JobClient::Submit(const v1::SubmitJobRequest& request) {
  v1::Job job;
  grpc::ClientContext context;
  Prepare(context);
  absl::Status s = Timed(stats_, "SubmitJob", [&] { return stub_->SubmitJob(&context, request, &job); });
  if (!s.ok()) return s;
  return job;
}

absl::StatusOr<v1::Job> JobClient::Get(const std::string& id) {
  v1::GetJobRequest request;
  request.set_id(id);
  v1::Job job;
  grpc::ClientContext context;
  Prepare(context);
  absl::Status s = Timed(stats_, "GetJob", [&] { return stub_->GetJob(&context, request, &job); });
  if (!s.ok()) return s;
  return job;
}

absl::StatusOr<v1::ListJobsResponse> JobClient::List(const v1::ListJobsRequest& request) {
  v1::ListJobsResponse response;
  grpc::ClientContext context;
  Prepare(context);
  absl::Status s = Timed(stats_, "ListJobs", [&] { return stub_->ListJobs(&context, request, &response); });
  if (!s.ok()) return s;
  return response;
}

absl::StatusOr<v1::Job> JobClient::Cancel(const std::string& id, const std::string& reason) {
  v1::CancelJobRequest request;
  request.set_id(id);
  request.set_reason(reason);
  v1::Job job;
  grpc::ClientContext context;
  Prepare(context);
  absl::Status s = Timed(stats_, "CancelJob", [&] { return stub_->CancelJob(&context, request, &job); });
  if (!s.ok()) return s;
  return job;
}

absl::StatusOr<int64_t> JobClient::Watch(const std::string& id, int64_t after_seq) {
  v1::WatchJobRequest request;
  request.set_id(id);
  request.set_after_seq(after_seq);
  request.set_follow(false);
  int64_t events = 0;
  grpc::ClientContext context;
  Prepare(context);
  absl::Status s = Timed(stats_, "WatchJob", [&] {
    auto reader = stub_->WatchJob(&context, request);
    v1::JobEvent event;
    while (reader->Read(&event)) ++events;
    return reader->Finish();
  });
  if (!s.ok()) return s;
  return events;
}

absl::StatusOr<v1::UploadFileResponse> JobClient::Upload(const std::string& upload_id, const std::string& name,
                                                         const std::string& data) {
  v1::UploadFileResponse response;
  grpc::ClientContext context;
  Prepare(context);
  Sha256Hasher hasher;
  hasher.Update(data);
  const std::string digest = hasher.HexDigest();
  absl::Status s = Timed(stats_, "UploadFile", [&] {
    auto writer = stub_->UploadFile(&context, &response);
    v1::UploadFileRequest header;
    header.mutable_header()->set_name(name);
    header.mutable_header()->set_upload_id(upload_id);
    header.mutable_header()->set_size(static_cast<int64_t>(data.size()));
    header.mutable_header()->set_sha256(digest);
    v1::UploadFileRequest body;
    body.set_data(data);
    if (writer->Write(header) && !data.empty()) writer->Write(body);
    writer->WritesDone();
    return writer->Finish();
  });
  if (!s.ok()) return s;
  return response;
}

absl::StatusOr<BenchInputs> UploadBenchInputs(JobClient& client) {
  // The workers fetch these files (DownloadInput) and check their size and
  // digest; the simulated ranks train nothing. The coordinator reads the
  // config.json at every submission for the job's memory plan.
  auto model = client.Upload("", "config.json",
                             R"({"architectures": ["LlamaForCausalLM"], "model_type": "llama", "vocab_size": 64,)"
                             R"( "hidden_size": 32, "intermediate_size": 48, "num_hidden_layers": 2,)"
                             R"( "num_attention_heads": 4, "num_key_value_heads": 2})");
  if (!model.ok()) return absl::Status(model.status().code(), absl::StrCat("uploading the model: ", model.status().message()));
  auto train = client.Upload("", "train.jsonl", "{\"text\": \"a tiny line of training text\"}\n");
  if (!train.ok()) return absl::Status(train.status().code(), absl::StrCat("uploading the data: ", train.status().message()));
  return BenchInputs{absl::StrCat("upload:", model->upload_id()), train->reference()};
}

v1::SubmitJobRequest BenchJobRequest(const BenchInputs& inputs, int world_size,
                                     const std::map<std::string, std::string>& labels) {
  v1::SubmitJobRequest r;
  v1::JobSpec& spec = *r.mutable_spec();
  spec.set_name("bench");
  spec.set_model(inputs.model);
  spec.set_method("d2lora");
  spec.mutable_data()->set_train(inputs.train);
  spec.mutable_train()->set_max_steps(10);
  spec.mutable_train()->set_batch_size(4 * std::max(1, world_size));
  spec.mutable_train()->set_micro_batch_size(1);
  spec.mutable_resources()->set_device("cpu");
  r.set_world_size(world_size);
  r.set_max_retries(0);
  for (const auto& [k, v] : labels) (*r.mutable_labels())[k] = v;
  return r;
}

}  // namespace d2lora::bench
