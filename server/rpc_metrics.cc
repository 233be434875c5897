#include "server/rpc_metrics.h"

#include <chrono>
#include <map>
#include <mutex>
#include <string>
#include <utility>

#include <prometheus/counter.h>
#include <prometheus/histogram.h>

#include "absl/status/status.h"

namespace d2lora::server {
namespace {

class RpcMetrics {
 public:
  explicit RpcMetrics(prometheus::Registry& registry)
      : requests_(prometheus::BuildCounter().Name("d2lora_rpc_requests_total")
                      .Help("RPCs served, by method and status code").Register(registry)),
        latency_(prometheus::BuildHistogram().Name("d2lora_rpc_latency_seconds")
                     .Help("Time to serve an RPC (streams: their whole duration)").Register(registry)) {}

  void Record(const std::string& method, int code, double seconds) {
    std::lock_guard<std::mutex> lock(mu_);
    const std::string code_name = absl::StatusCodeToString(static_cast<absl::StatusCode>(code));
    auto key = std::make_pair(method, code_name);
    auto it = counters_.find(key);
    if (it == counters_.end()) {
      it = counters_.emplace(key, &requests_.Add({{"method", method}, {"code", code_name}})).first;
    }
    it->second->Increment();
    auto h = histograms_.find(method);
    if (h == histograms_.end()) {
      h = histograms_.emplace(method, &latency_.Add({{"method", method}},
                                                    prometheus::Histogram::BucketBoundaries{
                                                        0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25,
                                                        0.5, 1, 2.5, 5, 10, 60, 600}))
              .first;
    }
    h->second->Observe(seconds);
  }

 private:
  std::mutex mu_;
  prometheus::Family<prometheus::Counter>& requests_;
  prometheus::Family<prometheus::Histogram>& latency_;
  std::map<std::pair<std::string, std::string>, prometheus::Counter*> counters_;
  std::map<std::string, prometheus::Histogram*> histograms_;
};

class MetricsInterceptor : public grpc::experimental::Interceptor {
 public:
  MetricsInterceptor(RpcMetrics* metrics, std::string method)
      : metrics_(metrics), method_(std::move(method)), start_(std::chrono::steady_clock::now()) {}

  void Intercept(grpc::experimental::InterceptorBatchMethods* methods) override {
    if (methods->QueryInterceptionHookPoint(grpc::experimental::InterceptionHookPoints::PRE_SEND_STATUS)) {
      const double seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - start_).count();
      metrics_->Record(method_, methods->GetSendStatus().error_code(), seconds);
    }
    methods->Proceed();
  }

 private:
  RpcMetrics* metrics_;
  std::string method_;
  std::chrono::steady_clock::time_point start_;
};

class Factory : public grpc::experimental::ServerInterceptorFactoryInterface {
 public:
  explicit Factory(prometheus::Registry& registry) : metrics_(registry) {}
  grpc::experimental::Interceptor* CreateServerInterceptor(grpc::experimental::ServerRpcInfo* info) override {
    std::string method = info->method() ? info->method() : "unknown";
    if (!method.empty() && method[0] == '/') method.erase(0, 1);
    const size_t dot = method.rfind('.', method.find('/'));
    if (dot != std::string::npos) method.erase(0, dot + 1);  // "d2lora.v1.JobService/X" -> "JobService/X"
    return new MetricsInterceptor(&metrics_, std::move(method));
  }

 private:
  RpcMetrics metrics_;
};

}  // namespace

std::unique_ptr<grpc::experimental::ServerInterceptorFactoryInterface> MakeRpcMetricsInterceptorFactory(
    prometheus::Registry& registry) {
  return std::make_unique<Factory>(registry);
}

}  // namespace d2lora::server
