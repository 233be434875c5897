// The worker's connection to the coordinator: the WorkerService stub with the
// token and TLS settings every call needs, the calls' deadlines, and the retry
// rules (which errors mean "unreachable, try again").
#pragma once

#include <memory>
#include <string>

#include <grpcpp/client_context.h>

#include "absl/status/status.h"
#include "absl/time/time.h"
#include "common/rpc/channel.h"
#include "d2lora/v1/worker_service.grpc.pb.h"

namespace d2lora::worker {

inline constexpr absl::Duration kCallTimeout = absl::Seconds(30);

struct CoordinatorClient {
  std::shared_ptr<v1::WorkerService::StubInterface> stub;
  rpc::ClientOptions options;

  // Token and deadline.
  void Prepare(grpc::ClientContext& context, absl::Duration timeout = kCallTimeout) const;
};

// The coordinator could not be reached or did not answer in time (it may be
// restarting): UNAVAILABLE, DEADLINE_EXCEEDED.
bool IsUnreachable(const absl::Status& status);

// Exponential backoff with jitter: `initial`, doubling, capped at `max`.
class Backoff {
 public:
  Backoff(absl::Duration initial, absl::Duration max) : initial_(initial), max_(max), next_(initial) {}
  absl::Duration Next();
  void Reset() { next_ = initial_; }

 private:
  absl::Duration initial_, max_, next_;
};

// A deadline for moving `bytes` over the wire: generous (10 minutes plus a
// second per MiB), so that only a stalled connection trips it.
absl::Duration TransferTimeout(int64_t bytes);

}  // namespace d2lora::worker
