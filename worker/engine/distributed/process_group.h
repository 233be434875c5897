// A group of ranks that train one model together (data parallelism): the
// collectives the trainer needs, nothing more. Like c10d's ProcessGroup, with
// one implementation per backend:
//   process_group_gloo.h    c10d Gloo over a TCPStore rendezvous (CPU tensors)
//   process_group_nccl.h    c10d NCCL (CUDA tensors; built where LibTorch has CUDA)
//   process_group_threads.h ranks as threads of one process (tests, world size 1)
//
// Every call is collective: all ranks call it in the same order with tensors
// of the same shape and dtype. A peer that dies or never arrives makes the call
// fail with an error (after the group's timeout), never hang forever.
#pragma once

#include <torch/torch.h>

#include <cstdint>
#include <string>

#include "absl/status/status.h"

namespace d2lora::engine {

class ProcessGroup {
 public:
  virtual ~ProcessGroup() = default;

  virtual int64_t rank() const = 0;
  virtual int64_t world_size() const = 0;
  // "gloo", "nccl" or "threads".
  virtual std::string backend() const = 0;
  // Where collective tensors must live: the CPU (gloo, threads) or this rank's GPU (nccl).
  virtual torch::Device device() const = 0;

  // In place: every rank ends with the elementwise sum over ranks. `tensor` must
  // be contiguous and on the backend's device.
  virtual absl::Status AllReduceSum(torch::Tensor& tensor) = 0;
  // In place: every rank ends with `root`'s values.
  virtual absl::Status Broadcast(torch::Tensor& tensor, int64_t root) = 0;
  // Returns once every rank has called it.
  virtual absl::Status Barrier() = 0;
};

}  // namespace d2lora::engine
