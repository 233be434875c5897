// Prometheus' /metrics endpoint (prometheus-cpp's Exposer) on HOST:PORT. Port 0
// picks a free port (civetweb cannot): one is found by binding a socket to
// port 0, and the Exposer takes it over; a race with another process taking it
// in between is retried.
#pragma once

#include <memory>
#include <string>

#include <prometheus/exposer.h>
#include <prometheus/registry.h>

#include "absl/status/statusor.h"

namespace d2lora::rpc {

struct MetricsEndpoint {
  std::unique_ptr<prometheus::Exposer> exposer;
  std::string address;  // HOST:PORT actually bound
};

absl::StatusOr<MetricsEndpoint> StartMetricsEndpoint(const std::string& listen,
                                                     std::shared_ptr<prometheus::Registry> registry);

}  // namespace d2lora::rpc
