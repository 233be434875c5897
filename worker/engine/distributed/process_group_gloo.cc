#include <torch/torch.h>

#include "worker/engine/distributed/process_group_gloo.h"

#include <torch/csrc/distributed/c10d/PrefixStore.hpp>
#include <torch/csrc/distributed/c10d/TCPStore.hpp>

// LibTorch builds that ship Gloo's headers get the backend; others (if any)
// get an UnimplementedError from Create.
#if __has_include(<gloo/algorithm.h>) && __has_include(<torch/csrc/distributed/c10d/ProcessGroupGloo.hpp>)
#define D2LORA_HAVE_GLOO 1
#ifndef USE_C10D_GLOO
#define USE_C10D_GLOO 1
#endif
#include <torch/csrc/distributed/c10d/ProcessGroupGloo.hpp>
#endif

#include <algorithm>
#include <chrono>
#include <cstdlib>
#include <mutex>
#include <thread>
#include <utility>
#include <vector>

#include "absl/strings/ascii.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "common/status_macros.h"
#include "worker/engine/torch_guard.h"

namespace d2lora::engine {

absl::Status C10dFailure(const absl::Status& caught) {
  const std::string lower = absl::AsciiStrToLower(caught.message());
  if (absl::StrContains(lower, "timed out") || absl::StrContains(lower, "timeout")) {
    return absl::DeadlineExceededError(caught.message());
  }
  return absl::UnavailableError(caught.message());
}

absl::StatusOr<c10::intrusive_ptr<c10d::Store>> ConnectRendezvousStore(const DistributedOptions& options,
                                                                      absl::string_view backend) {
  const auto deadline = std::chrono::steady_clock::now() + options.timeout;
  const std::string context = absl::StrCat(
      backend, " rendezvous at ", options.master_addr, ":", options.master_port,
      options.use_agent_store ? absl::StrCat(" (torchrun's agent store, attempt ", options.restart_count, ")") : "",
      " (rank ", options.rank, " of ", options.world_size, ", timeout ", options.timeout.count(), " ms)");
  try {
    c10d::TCPStoreOptions store_options;
    store_options.port = static_cast<std::uint16_t>(options.master_port);
    store_options.isServer = options.rank == 0 && !options.use_agent_store;  // the agent serves it
    store_options.numWorkers = static_cast<std::size_t>(options.world_size);
    // TCPStore's own wait for workers gives up silently in LibTorch 1.13; count
    // the ranks below instead.
    store_options.waitWorkers = false;
    store_options.timeout = options.timeout;
    c10::intrusive_ptr<c10d::Store> base = c10::make_intrusive<c10d::TCPStore>(options.master_addr, store_options);
    if (options.use_agent_store) {
      base = c10::make_intrusive<c10d::PrefixStore>(absl::StrCat("/worker/attempt_", options.restart_count), base);
    }
    c10::intrusive_ptr<c10d::Store> store =
        c10::make_intrusive<c10d::PrefixStore>(absl::StrCat("d2lora/", backend), base);
    const std::string key = "joined";
    int64_t joined = store->add(key, 1);
    while (joined < options.world_size) {
      if (std::chrono::steady_clock::now() >= deadline) {
        return absl::DeadlineExceededError(
            absl::StrCat(context, ": only ", joined, " of ", options.world_size, " ranks joined in time"));
      }
      std::this_thread::sleep_for(std::chrono::milliseconds(10));
      joined = store->add(key, 0);
    }
    return store;
  } catch (...) {
    return C10dFailure(StatusFromCurrentException(context));
  }
}

#ifdef D2LORA_HAVE_GLOO

struct GlooProcessGroup::Impl {
  c10::intrusive_ptr<c10d::Store> store;
  c10::intrusive_ptr<c10d::ProcessGroupGloo> pg;  // destroyed before the store
  std::mutex mu;                                  // one collective at a time
  std::string broken;                             // the first failure; empty while healthy
};

namespace {

bool IsLoopback(const std::string& addr) {
  return addr == "localhost" || absl::StartsWith(addr, "127.") || addr == "::1" || addr == "[::1]";
}

// GLOO_SOCKET_IFNAME (comma-separated interfaces), else the loopback device when
// the master is local, else the device bound to this host's name.
std::vector<std::shared_ptr<::gloo::transport::Device>> GlooDevices(const DistributedOptions& options) {
  std::vector<std::shared_ptr<::gloo::transport::Device>> devices;
  if (const char* ifname = std::getenv("GLOO_SOCKET_IFNAME"); ifname != nullptr && *ifname != '\0') {
    for (absl::string_view name : absl::StrSplit(ifname, ',', absl::SkipEmpty())) {
      devices.push_back(c10d::ProcessGroupGloo::createDeviceForInterface(std::string(name)));
    }
  }
  if (devices.empty()) {
    devices.push_back(IsLoopback(options.master_addr)
                          ? c10d::ProcessGroupGloo::createDeviceForHostname(options.master_addr)
                          : c10d::ProcessGroupGloo::createDefaultDevice());
  }
  return devices;
}

// Work::wait's own limit: a little past Gloo's, so Gloo's clearer error (which
// names the peer) normally arrives first.
std::chrono::milliseconds WaitLimit(std::chrono::milliseconds timeout) {
  return timeout + std::min<std::chrono::milliseconds>(timeout, std::chrono::seconds(10));
}

}  // namespace

GlooProcessGroup::GlooProcessGroup(const DistributedOptions& options, std::unique_ptr<Impl> impl)
    : options_(options), impl_(std::move(impl)) {}

GlooProcessGroup::~GlooProcessGroup() = default;

absl::StatusOr<std::unique_ptr<GlooProcessGroup>> GlooProcessGroup::Create(const DistributedOptions& options) {
  D2_RETURN_IF_ERROR(ValidateDistributedOptions(options));
  auto impl = std::make_unique<Impl>();
  D2_ASSIGN_OR_RETURN(impl->store, ConnectRendezvousStore(options, "gloo"));
  try {
    auto pg_options = c10d::ProcessGroupGloo::Options::create(options.timeout);
    pg_options->devices = GlooDevices(options);
    impl->pg = c10::make_intrusive<c10d::ProcessGroupGloo>(impl->store, static_cast<int>(options.rank),
                                                           static_cast<int>(options.world_size), pg_options);
  } catch (...) {
    return C10dFailure(StatusFromCurrentException(
        absl::StrCat("gloo connection setup through ", options.master_addr, ":", options.master_port, " (rank ",
                     options.rank, " of ", options.world_size, ")")));
  }
  return std::unique_ptr<GlooProcessGroup>(new GlooProcessGroup(options, std::move(impl)));
}

std::string GlooProcessGroup::Describe(absl::string_view op) const {
  return absl::StrCat("gloo ", op, " on rank ", options_.rank, " of ", options_.world_size);
}

absl::Status GlooProcessGroup::CheckTensor(const torch::Tensor& tensor, absl::string_view op) const {
  if (!tensor.defined()) return absl::InvalidArgumentError(absl::StrCat(Describe(op), ": undefined tensor"));
  if (!tensor.device().is_cpu() || tensor.is_sparse()) {
    return absl::InvalidArgumentError(
        absl::StrCat(Describe(op), ": needs a dense CPU tensor, got one on ", tensor.device().str()));
  }
  if (!tensor.is_contiguous()) {
    return absl::InvalidArgumentError(absl::StrCat(Describe(op), ": needs a contiguous tensor"));
  }
  return absl::OkStatus();
}

template <typename Fn>
absl::Status GlooProcessGroup::Run(absl::string_view op, Fn&& start) {
  std::lock_guard<std::mutex> lock(impl_->mu);
  const std::string what = Describe(op);
  if (!impl_->broken.empty()) {
    return absl::UnavailableError(absl::StrCat(what, ": the group is broken by an earlier failure: ",
                                               impl_->broken));
  }
  absl::Status status;
  try {
    c10::intrusive_ptr<c10d::Work> work = start(*impl_->pg);
    if (!work->wait(WaitLimit(options_.timeout))) {
      status = absl::AbortedError(absl::StrCat(what, ": the operation was aborted"));
    }
  } catch (...) {
    const absl::Status caught = C10dFailure(StatusFromCurrentException(what));
    status = absl::Status(caught.code(), absl::StrCat(caught.message(),
                                                      " (a peer died, stopped, or called a different collective)"));
  }
  if (!status.ok()) impl_->broken = std::string(status.message());
  return status;
}

absl::Status GlooProcessGroup::AllReduceSum(torch::Tensor& tensor) {
  D2_RETURN_IF_ERROR(CheckTensor(tensor, "AllReduceSum"));
  torch::NoGradGuard no_grad;
  // Gloo in LibTorch 1.13 has no bfloat16 sum: add in float32, round once.
  const bool widen = tensor.scalar_type() == torch::kBFloat16;
  std::vector<at::Tensor> tensors{widen ? tensor.to(torch::kFloat32) : tensor};
  D2_RETURN_IF_ERROR(Run("AllReduceSum", [&](c10d::ProcessGroupGloo& pg) {
    c10d::AllreduceOptions opts;
    opts.reduceOp = c10d::ReduceOp::SUM;
    opts.timeout = options_.timeout;
    return pg.allreduce(tensors, opts);
  }));
  if (widen) {
    return GuardTorch(Describe("AllReduceSum"), [&]() -> absl::Status {
      tensor.copy_(tensors[0]);
      return absl::OkStatus();
    });
  }
  return absl::OkStatus();
}

absl::Status GlooProcessGroup::Broadcast(torch::Tensor& tensor, int64_t root) {
  D2_RETURN_IF_ERROR(CheckTensor(tensor, "Broadcast"));
  if (root < 0 || root >= options_.world_size) {
    return absl::InvalidArgumentError(absl::StrCat(Describe("Broadcast"), ": root ", root,
                                                   " is outside [0, world size ", options_.world_size, ")"));
  }
  torch::NoGradGuard no_grad;
  // Broadcast copies bits: send bfloat16 and bool as same-sized integers.
  at::Tensor bits = tensor;
  if (tensor.scalar_type() == torch::kBFloat16) bits = tensor.view(torch::kInt16);
  if (tensor.scalar_type() == torch::kBool) bits = tensor.view(torch::kUInt8);
  std::vector<at::Tensor> tensors{bits};
  return Run("Broadcast", [&](c10d::ProcessGroupGloo& pg) {
    c10d::BroadcastOptions opts;
    opts.rootRank = root;
    opts.rootTensor = 0;
    opts.timeout = options_.timeout;
    return pg.broadcast(tensors, opts);
  });
}

absl::Status GlooProcessGroup::Barrier() {
  return Run("Barrier", [&](c10d::ProcessGroupGloo& pg) {
    c10d::BarrierOptions opts;
    opts.timeout = options_.timeout;
    return pg.barrier(opts);
  });
}

#else  // no Gloo headers

struct GlooProcessGroup::Impl {};

GlooProcessGroup::GlooProcessGroup(const DistributedOptions& options, std::unique_ptr<Impl> impl)
    : options_(options), impl_(std::move(impl)) {}

GlooProcessGroup::~GlooProcessGroup() = default;

absl::StatusOr<std::unique_ptr<GlooProcessGroup>> GlooProcessGroup::Create(const DistributedOptions&) {
  return absl::UnimplementedError("this build's LibTorch ships no Gloo headers: multi-process CPU training is off");
}

absl::Status GlooProcessGroup::AllReduceSum(torch::Tensor&) { return absl::UnimplementedError("no Gloo"); }
absl::Status GlooProcessGroup::Broadcast(torch::Tensor&, int64_t) { return absl::UnimplementedError("no Gloo"); }
absl::Status GlooProcessGroup::Barrier() { return absl::UnimplementedError("no Gloo"); }

#endif  // D2LORA_HAVE_GLOO

}  // namespace d2lora::engine
