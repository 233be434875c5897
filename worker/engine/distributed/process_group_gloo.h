// ProcessGroup over c10d's ProcessGroupGloo (CPU tensors), with a TCPStore
// rendezvous: rank 0 hosts the store at master_addr:master_port, the other
// ranks connect to it. The Gloo objects stay behind a pointer so that users of
// this header need no Gloo headers (only c10d's Store, for the shared helpers).
//
// Every wait is bounded by options.timeout. After a collective fails (a peer
// died, timed out or left) the group is broken: every later call fails at once.
#pragma once

#include <memory>
#include <string>

#include <torch/csrc/distributed/c10d/Store.hpp>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "worker/engine/distributed/distributed_options.h"
#include "worker/engine/distributed/process_group.h"

namespace d2lora::engine {

class GlooProcessGroup : public ProcessGroup {
 public:
  // Blocks until every rank has joined (or the timeout passes).
  static absl::StatusOr<std::unique_ptr<GlooProcessGroup>> Create(const DistributedOptions& options);
  ~GlooProcessGroup() override;

  int64_t rank() const override { return options_.rank; }
  int64_t world_size() const override { return options_.world_size; }
  std::string backend() const override { return "gloo"; }
  torch::Device device() const override { return torch::kCPU; }

  absl::Status AllReduceSum(torch::Tensor& tensor) override;
  absl::Status Broadcast(torch::Tensor& tensor, int64_t root) override;
  absl::Status Barrier() override;

 private:
  struct Impl;
  GlooProcessGroup(const DistributedOptions& options, std::unique_ptr<Impl> impl);
  // "gloo AllReduceSum on rank 0 of 2", the prefix of every error.
  std::string Describe(absl::string_view op) const;
  // Checks a tensor argument before any peer is involved.
  absl::Status CheckTensor(const torch::Tensor& tensor, absl::string_view op) const;
  // Starts a c10d collective with `start(ProcessGroupGloo&)` and waits for it.
  template <typename Fn>
  absl::Status Run(absl::string_view op, Fn&& start);

  DistributedOptions options_;
  std::unique_ptr<Impl> impl_;
};

// Shared by the c10d backends (Gloo, NCCL).

// The rendezvous store: a TCPStore (server on rank 0) under a PrefixStore named
// after `backend`; returns once all world_size ranks have joined it, or
// DeadlineExceeded after options.timeout. Errors name master_addr:master_port.
absl::StatusOr<c10::intrusive_ptr<c10d::Store>> ConnectRendezvousStore(const DistributedOptions& options,
                                                                      absl::string_view backend);

// Turns a failure caught from c10d (already a Status via
// StatusFromCurrentException) into DeadlineExceeded when it reports a timeout
// and Unavailable otherwise, keeping the message.
absl::Status C10dFailure(const absl::Status& caught);

}  // namespace d2lora::engine
