// RPC metrics for every call the coordinator serves, recorded by a gRPC server
// interceptor: d2lora_rpc_requests_total{method, code} and
// d2lora_rpc_latency_seconds{method} (histogram). method is "Service/Method".
#pragma once

#include <memory>

#include <grpcpp/support/server_interceptor.h>
#include <prometheus/registry.h>

namespace d2lora::server {

std::unique_ptr<grpc::experimental::ServerInterceptorFactoryInterface> MakeRpcMetricsInterceptorFactory(
    prometheus::Registry& registry);

}  // namespace d2lora::server
