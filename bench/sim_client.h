// The client side of the coordinator benches: a JobService client on a
// connection of its own (as a separate `d2lora` CLI process would have), every
// call timed into RpcStats; the tiny inputs every bench job names (uploaded
// once, as `d2lora submit --upload-inputs` does); and a valid job request.
#pragma once

#include <map>
#include <memory>
#include <string>

#include <grpcpp/channel.h>

#include "absl/status/statusor.h"
#include "bench/latency_stats.h"
#include "common/rpc/channel.h"
#include "d2lora/v1/job_service.grpc.pb.h"

namespace d2lora::bench {

// A channel with its own TCP connection (gRPC otherwise shares one connection
// among the channels of a process that go to the same address), plaintext.
std::shared_ptr<grpc::Channel> NewConnection(const rpc::ClientOptions& options);

class JobClient {
 public:
  // `stats` may be null; it must outlive the client.
  JobClient(const rpc::ClientOptions& options, RpcStats* stats);

  absl::StatusOr<v1::Job> Submit(const v1::SubmitJobRequest& request);
  absl::StatusOr<v1::Job> Get(const std::string& id);
  absl::StatusOr<v1::ListJobsResponse> List(const v1::ListJobsRequest& request);
  absl::StatusOr<v1::Job> Cancel(const std::string& id, const std::string& reason);
  // WatchJob without follow: the events after `after_seq` that exist now.
  absl::StatusOr<int64_t> Watch(const std::string& id, int64_t after_seq);
  // One file into an upload ("" = a new one).
  absl::StatusOr<v1::UploadFileResponse> Upload(const std::string& upload_id, const std::string& name,
                                                const std::string& data);

 private:
  void Prepare(grpc::ClientContext& context) const;

  rpc::ClientOptions options_;
  RpcStats* stats_;
  std::unique_ptr<v1::JobService::Stub> stub_;
};

// What the bench jobs train on: references a job spec may use.
struct BenchInputs {
  std::string model;  // "upload:ID" (a folder with config.json), or an absolute path
  std::string train;  // "upload:ID/train.jsonl", or an absolute path
};

// Uploads a tiny model folder (config.json) and a tiny train.jsonl.
absl::StatusOr<BenchInputs> UploadBenchInputs(JobClient& client);

// A valid D2-LoRA job of `world_size` ranks on `inputs`, labelled with `labels`.
v1::SubmitJobRequest BenchJobRequest(const BenchInputs& inputs, int world_size,
                                     const std::map<std::string, std::string>& labels = {});

}  // namespace d2lora::bench
