#include "bench/rpc_timing.h"

#include <string>
#include <utility>
#include <vector>

#include <grpcpp/create_channel.h>
#include <grpcpp/security/credentials.h>
#include <grpcpp/support/client_interceptor.h>

#include "absl/time/clock.h"
#include "common/rpc/status_convert.h"

namespace d2lora::bench {
namespace {

using grpc::experimental::ClientRpcInfo;
using grpc::experimental::InterceptionHookPoints;
using grpc::experimental::InterceptorBatchMethods;

class TimingInterceptor : public grpc::experimental::Interceptor {
 public:
  TimingInterceptor(ClientRpcInfo* info, RpcStats* stats) : stats_(stats) {
    const std::string method = info->method() != nullptr ? info->method() : "";
    op_ = method.substr(method.rfind('/') + 1);  // "/d2lora.v1.WorkerService/Heartbeat" -> "Heartbeat"
  }

  void Intercept(InterceptorBatchMethods* methods) override {
    if (methods->QueryInterceptionHookPoint(InterceptionHookPoints::PRE_SEND_INITIAL_METADATA)) {
      start_ = absl::Now();
    }
    if (methods->QueryInterceptionHookPoint(InterceptionHookPoints::POST_RECV_STATUS)) {
      stats_->Record(op_, absl::Now() - start_, rpc::FromGrpcStatus(*methods->GetRecvStatus()));
    }
    methods->Proceed();
  }

 private:
  RpcStats* stats_;
  std::string op_;
  absl::Time start_ = absl::Now();
};

class TimingFactory : public grpc::experimental::ClientInterceptorFactoryInterface {
 public:
  explicit TimingFactory(RpcStats* stats) : stats_(stats) {}
  grpc::experimental::Interceptor* CreateClientInterceptor(ClientRpcInfo* info) override {
    return new TimingInterceptor(info, stats_);
  }

 private:
  RpcStats* stats_;
};

}  // namespace

std::shared_ptr<grpc::Channel> NewTimedConnection(const rpc::ClientOptions& options, RpcStats* stats) {
  grpc::ChannelArguments args;
  args.SetMaxReceiveMessageSize(options.max_message_bytes);
  args.SetMaxSendMessageSize(options.max_message_bytes);
  args.SetInt(GRPC_ARG_USE_LOCAL_SUBCHANNEL_POOL, 1);
  std::vector<std::unique_ptr<grpc::experimental::ClientInterceptorFactoryInterface>> factories;
  if (stats != nullptr) factories.push_back(std::make_unique<TimingFactory>(stats));
  return grpc::experimental::CreateCustomChannelWithInterceptors(options.endpoint, grpc::InsecureChannelCredentials(),
                                                                 args, std::move(factories));
}

}  // namespace d2lora::bench
