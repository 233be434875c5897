// Every call on a channel timed into RpcStats under its RPC's name
// ("Heartbeat", "LeaseAssignment"), by a gRPC client interceptor: the bench
// observes the real worker daemon's calls without code of its own in them.
#pragma once

#include <memory>

#include <grpcpp/channel.h>

#include "bench/latency_stats.h"
#include "common/rpc/channel.h"

namespace d2lora::bench {

// A plaintext connection of its own (no shared subchannel) to
// `options.endpoint`; each call's latency and status go to `stats` (may be null).
std::shared_ptr<grpc::Channel> NewTimedConnection(const rpc::ClientOptions& options, RpcStats* stats);

}  // namespace d2lora::bench
