#include "worker/daemon/coordinator_client.h"

#include <algorithm>
#include <random>

namespace d2lora::worker {

void CoordinatorClient::Prepare(grpc::ClientContext& context, absl::Duration timeout) const {
  rpc::PrepareContext(context, options, timeout);
}

bool IsUnreachable(const absl::Status& status) {
  return status.code() == absl::StatusCode::kUnavailable || status.code() == absl::StatusCode::kDeadlineExceeded;
}

absl::Duration Backoff::Next() {
  thread_local std::mt19937_64 rng{std::random_device{}()};
  const absl::Duration base = next_;
  next_ = std::min(max_, next_ * 2);
  // +-20% so that many workers do not retry in step.
  std::uniform_real_distribution<double> jitter(0.8, 1.2);
  return base * jitter(rng);
}

absl::Duration TransferTimeout(int64_t bytes) {
  return absl::Minutes(10) + absl::Seconds(static_cast<double>(std::max<int64_t>(0, bytes)) / (1 << 20));
}

}  // namespace d2lora::worker
