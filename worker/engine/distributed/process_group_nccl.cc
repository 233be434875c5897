#include <torch/torch.h>

#include "worker/engine/distributed/process_group_nccl.h"

// Compiled only where CMake found a CUDA LibTorch, and only if its NCCL headers
// are actually installed next to it.
#if defined(D2LORA_WITH_NCCL) && __has_include(<nccl.h>) && \
    __has_include(<torch/csrc/distributed/c10d/ProcessGroupNCCL.hpp>)
#define D2LORA_NCCL_ENABLED 1
#endif

#ifdef D2LORA_NCCL_ENABLED

#ifndef USE_C10D_NCCL
#define USE_C10D_NCCL 1
#endif
#include <c10/cuda/CUDAGuard.h>
#include <torch/csrc/distributed/c10d/ProcessGroupNCCL.hpp>

#include <algorithm>
#include <chrono>
#include <exception>
#include <mutex>
#include <string>
#include <thread>
#include <utility>
#include <vector>

#include "absl/strings/str_cat.h"
#include "common/status_macros.h"
#include "worker/engine/distributed/process_group_gloo.h"  // ConnectRendezvousStore, C10dFailure
#include "worker/engine/torch_guard.h"

namespace d2lora::engine {
namespace {

class NcclProcessGroup : public ProcessGroup {
 public:
  NcclProcessGroup(const DistributedOptions& options, c10::intrusive_ptr<c10d::Store> store,
                   c10::intrusive_ptr<c10d::ProcessGroupNCCL> pg)
      : options_(options),
        device_(torch::kCUDA, static_cast<c10::DeviceIndex>(options.local_rank)),
        store_(std::move(store)),
        pg_(std::move(pg)) {}

  int64_t rank() const override { return options_.rank; }
  int64_t world_size() const override { return options_.world_size; }
  std::string backend() const override { return "nccl"; }
  torch::Device device() const override { return device_; }

  absl::Status AllReduceSum(torch::Tensor& tensor) override {
    D2_RETURN_IF_ERROR(CheckTensor(tensor, "AllReduceSum"));
    std::vector<at::Tensor> tensors{tensor};
    return Run("AllReduceSum", [&] {
      c10d::AllreduceOptions opts;
      opts.reduceOp = c10d::ReduceOp::SUM;
      return pg_->allreduce(tensors, opts);
    });
  }

  absl::Status Broadcast(torch::Tensor& tensor, int64_t root) override {
    D2_RETURN_IF_ERROR(CheckTensor(tensor, "Broadcast"));
    if (root < 0 || root >= options_.world_size) {
      return absl::InvalidArgumentError(absl::StrCat(Describe("Broadcast"), ": root ", root,
                                                     " is outside [0, world size ", options_.world_size, ")"));
    }
    std::vector<at::Tensor> tensors{tensor};
    return Run("Broadcast", [&] {
      c10d::BroadcastOptions opts;
      opts.rootRank = root;
      opts.rootTensor = 0;
      return pg_->broadcast(tensors, opts);
    });
  }

  // A one-element all-reduce on this rank's GPU: c10d's NCCL barrier has to
  // guess the device, this does not.
  absl::Status Barrier() override {
    absl::StatusOr<torch::Tensor> one = GuardTorch(Describe("Barrier"), [&]() -> absl::StatusOr<torch::Tensor> {
      return torch::ones({1}, torch::TensorOptions().dtype(torch::kFloat32).device(device_));
    });
    if (!one.ok()) return one.status();
    std::vector<at::Tensor> tensors{*one};
    return Run("Barrier", [&] { return pg_->allreduce(tensors); });
  }

 private:
  std::string Describe(absl::string_view op) const {
    return absl::StrCat("nccl ", op, " on rank ", options_.rank, " of ", options_.world_size, " (cuda:",
                        options_.local_rank, ")");
  }

  absl::Status CheckTensor(const torch::Tensor& tensor, absl::string_view op) const {
    if (!tensor.defined()) return absl::InvalidArgumentError(absl::StrCat(Describe(op), ": undefined tensor"));
    if (tensor.device() != device_) {
      return absl::InvalidArgumentError(absl::StrCat(Describe(op), ": needs a tensor on ", device_.str(),
                                                     ", got one on ", tensor.device().str()));
    }
    if (!tensor.is_contiguous()) {
      return absl::InvalidArgumentError(absl::StrCat(Describe(op), ": needs a contiguous tensor"));
    }
    return absl::OkStatus();
  }

  // Starts the collective on this rank's device, makes the current stream wait
  // for it, then polls until the GPU has finished it or the timeout passes.
  template <typename Fn>
  absl::Status Run(absl::string_view op, Fn&& start) {
    std::lock_guard<std::mutex> lock(mu_);
    const std::string what = Describe(op);
    if (!broken_.empty()) {
      return absl::UnavailableError(absl::StrCat(what, ": the group is broken by an earlier failure: ", broken_));
    }
    absl::Status status;
    try {
      c10::cuda::CUDAGuard guard(device_);
      c10::intrusive_ptr<c10d::Work> work = start();
      work->wait();
      const auto deadline = std::chrono::steady_clock::now() + options_.timeout;
      while (!work->isCompleted()) {
        if (std::chrono::steady_clock::now() >= deadline) {
          try {
            work->abort();  // frees the communicator where c10d supports it
          } catch (...) {
          }
          status = absl::DeadlineExceededError(absl::StrCat(
              what, ": not finished after ", options_.timeout.count(),
              " ms (a peer died, is stuck, or called a different collective)"));
          break;
        }
        std::this_thread::sleep_for(std::chrono::microseconds(100));
      }
      if (status.ok()) {
        if (std::exception_ptr error = work->exception()) std::rethrow_exception(error);
      }
    } catch (...) {
      status = C10dFailure(StatusFromCurrentException(what));
    }
    if (!status.ok()) broken_ = std::string(status.message());
    return status;
  }

  const DistributedOptions options_;
  const torch::Device device_;
  c10::intrusive_ptr<c10d::Store> store_;
  c10::intrusive_ptr<c10d::ProcessGroupNCCL> pg_;
  std::mutex mu_;
  std::string broken_;
};

}  // namespace

absl::StatusOr<std::unique_ptr<ProcessGroup>> CreateNcclProcessGroup(const DistributedOptions& options) {
  D2_RETURN_IF_ERROR(ValidateDistributedOptions(options));
  const int64_t gpus = static_cast<int64_t>(torch::cuda::device_count());
  if (gpus == 0) {
    return absl::FailedPreconditionError("nccl process group: no CUDA device is visible to this process");
  }
  if (options.local_rank >= gpus) {
    return absl::FailedPreconditionError(absl::StrCat("nccl process group: local rank ", options.local_rank,
                                                      " has no GPU (this process sees ", gpus, ")"));
  }
  D2_ASSIGN_OR_RETURN(c10::intrusive_ptr<c10d::Store> store, ConnectRendezvousStore(options, "nccl"));
  c10::intrusive_ptr<c10d::ProcessGroupNCCL> pg;
  try {
    c10::cuda::CUDAGuard guard(static_cast<c10::DeviceIndex>(options.local_rank));
    auto pg_options = c10d::ProcessGroupNCCL::Options::create();
    // c10d's own watchdog limit sits past ours, so our Status normally comes first.
    pg_options->timeout = options.timeout + std::min<std::chrono::milliseconds>(options.timeout,
                                                                                std::chrono::seconds(30));
    pg = c10::make_intrusive<c10d::ProcessGroupNCCL>(store, static_cast<int>(options.rank),
                                                     static_cast<int>(options.world_size), pg_options);
  } catch (...) {
    return C10dFailure(StatusFromCurrentException(
        absl::StrCat("nccl process group through ", options.master_addr, ":", options.master_port, " (rank ",
                     options.rank, " of ", options.world_size, ")")));
  }
  auto group = std::make_unique<NcclProcessGroup>(options, store, pg);
  // NCCL connects lazily; a first barrier surfaces missing peers here.
  D2_RETURN_IF_ERROR(group->Barrier());
  return std::unique_ptr<ProcessGroup>(std::move(group));
}

}  // namespace d2lora::engine

#else  // no NCCL in this build

namespace d2lora::engine {

absl::StatusOr<std::unique_ptr<ProcessGroup>> CreateNcclProcessGroup(const DistributedOptions& /*options*/) {
#ifdef D2LORA_WITH_NCCL
  return absl::UnimplementedError(
      "this build's LibTorch has CUDA but its NCCL headers (nccl.h, ProcessGroupNCCL.hpp) were not found at "
      "compile time; use device: cpu");
#else
  return absl::UnimplementedError("this build's LibTorch has no NCCL (CPU-only); use device: cpu");
#endif
}

}  // namespace d2lora::engine

#endif  // D2LORA_NCCL_ENABLED
