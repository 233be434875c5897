#include <torch/torch.h>

#include "worker/engine/distributed/process_group_threads.h"

#include <utility>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "worker/engine/torch_guard.h"

namespace d2lora::engine {
namespace {

const char* OpName(ThreadGroup::Op op) {
  switch (op) {
    case ThreadGroup::Op::kAllReduceSum:
      return "AllReduceSum";
    case ThreadGroup::Op::kBroadcast:
      return "Broadcast";
    case ThreadGroup::Op::kBarrier:
      return "Barrier";
  }
  return "collective";
}

// "Float[2, 3] on cpu", for mismatch messages.
std::string Describe(const torch::Tensor& t) {
  if (!t.defined()) return "an undefined tensor";
  return absl::StrCat(c10::toString(t.scalar_type()), "[", absl::StrJoin(t.sizes(), ", "), "] on ",
                      t.device().str());
}

// Prefixes a shared round result with this rank's view of the call.
absl::Status Prefixed(const absl::Status& status, const std::string& what) {
  if (status.ok()) return status;
  return absl::Status(status.code(), absl::StrCat(what, ": ", status.message()));
}

class ThreadMember : public ProcessGroup {
 public:
  ThreadMember(std::shared_ptr<ThreadGroup> group, int64_t rank) : group_(std::move(group)), rank_(rank) {}

  int64_t rank() const override { return rank_; }
  int64_t world_size() const override { return group_->world_size(); }
  std::string backend() const override { return "threads"; }
  torch::Device device() const override { return torch::kCPU; }

  absl::Status AllReduceSum(torch::Tensor& tensor) override {
    return group_->Collective(rank_, ThreadGroup::Op::kAllReduceSum, &tensor, 0);
  }
  absl::Status Broadcast(torch::Tensor& tensor, int64_t root) override {
    return group_->Collective(rank_, ThreadGroup::Op::kBroadcast, &tensor, root);
  }
  absl::Status Barrier() override { return group_->Collective(rank_, ThreadGroup::Op::kBarrier, nullptr, 0); }

 private:
  std::shared_ptr<ThreadGroup> group_;
  int64_t rank_;
};

}  // namespace

ThreadGroup::ThreadGroup(int64_t world_size, std::chrono::milliseconds timeout)
    : world_size_(world_size),
      timeout_(timeout),
      claimed_(static_cast<size_t>(world_size), false),
      slots_(static_cast<size_t>(world_size)) {}

std::shared_ptr<ThreadGroup> ThreadGroup::Create(int64_t world_size, std::chrono::milliseconds timeout) {
  if (world_size < 1 || timeout.count() <= 0) return nullptr;
  return std::shared_ptr<ThreadGroup>(new ThreadGroup(world_size, timeout));
}

std::unique_ptr<ProcessGroup> ThreadGroup::Member(int64_t rank) {
  if (rank < 0 || rank >= world_size_) return nullptr;
  std::lock_guard<std::mutex> lock(mu_);
  if (claimed_[static_cast<size_t>(rank)]) return nullptr;
  claimed_[static_cast<size_t>(rank)] = true;
  return std::make_unique<ThreadMember>(shared_from_this(), rank);
}

std::string ThreadGroup::MissingRanks() const {
  std::vector<int64_t> missing;
  for (int64_t r = 0; r < world_size_; ++r) {
    if (!slots_[static_cast<size_t>(r)].arrived) missing.push_back(r);
  }
  return absl::StrJoin(missing, ", ");
}

absl::Status ThreadGroup::Combine() {
  const Slot& first = slots_[0];
  for (int64_t r = 1; r < world_size_; ++r) {
    if (slots_[static_cast<size_t>(r)].op != first.op) {
      return absl::InvalidArgumentError(absl::StrCat("mismatched collectives: rank 0 called ", OpName(first.op),
                                                     " but rank ", r, " called ",
                                                     OpName(slots_[static_cast<size_t>(r)].op)));
    }
  }
  if (first.op == Op::kBarrier) return absl::OkStatus();
  if (first.op == Op::kBroadcast) {
    for (int64_t r = 1; r < world_size_; ++r) {
      if (slots_[static_cast<size_t>(r)].root != first.root) {
        return absl::InvalidArgumentError(absl::StrCat("mismatched Broadcast roots: rank 0 gave ", first.root,
                                                       " but rank ", r, " gave ",
                                                       slots_[static_cast<size_t>(r)].root));
      }
    }
    if (first.root < 0 || first.root >= world_size_) {
      return absl::InvalidArgumentError(
          absl::StrCat("Broadcast root ", first.root, " is outside [0, world size ", world_size_, ")"));
    }
  }
  const torch::Tensor& t0 = *first.tensor;
  if (!t0.defined()) return absl::InvalidArgumentError("rank 0 passed an undefined tensor");
  for (int64_t r = 1; r < world_size_; ++r) {
    const torch::Tensor& t = *slots_[static_cast<size_t>(r)].tensor;
    if (!t.defined() || t.scalar_type() != t0.scalar_type() || t.sizes() != t0.sizes() ||
        t.device() != t0.device()) {
      return absl::InvalidArgumentError(absl::StrCat("mismatched tensors: rank ", r, " passed ", Describe(t),
                                                     " but rank 0 passed ", Describe(t0)));
    }
  }
  return GuardTorch("combining tensors", [&]() -> absl::Status {
    torch::NoGradGuard no_grad;
    if (first.op == Op::kBroadcast) {
      result_ = slots_[static_cast<size_t>(first.root)].tensor->clone();
    } else {
      result_ = t0.clone();
      for (int64_t r = 1; r < world_size_; ++r) result_.add_(*slots_[static_cast<size_t>(r)].tensor);
    }
    return absl::OkStatus();
  });
}

absl::Status ThreadGroup::Collective(int64_t rank, Op op, torch::Tensor* tensor, int64_t root) {
  const std::string what = absl::StrCat(OpName(op), " on rank ", rank, " of ", world_size_, " (threads)");
  if (rank < 0 || rank >= world_size_) {
    return absl::InvalidArgumentError(absl::StrCat(what, ": rank is outside [0, ", world_size_, ")"));
  }
  if (world_size_ == 1) {
    if (op == Op::kBroadcast && root != 0) {
      return absl::InvalidArgumentError(absl::StrCat(what, ": Broadcast root ", root, " is outside [0, 1)"));
    }
    if (op != Op::kBarrier && !tensor->defined()) {
      return absl::InvalidArgumentError(absl::StrCat(what, ": undefined tensor"));
    }
    return absl::OkStatus();
  }

  const auto deadline = std::chrono::steady_clock::now() + timeout_;
  std::unique_lock<std::mutex> lock(mu_);
  // The previous round's ranks copy their results out before a new round fills the slots.
  if (!cv_.wait_until(lock, deadline, [&] { return leaving_ == 0 || !broken_.empty(); })) {
    broken_ = absl::StrCat(what, " timed out waiting for the previous collective to finish");
    cv_.notify_all();
    return absl::DeadlineExceededError(broken_);
  }
  if (!broken_.empty()) {
    return absl::UnavailableError(absl::StrCat(what, ": the group is broken: ", broken_));
  }
  Slot& slot = slots_[static_cast<size_t>(rank)];
  if (slot.arrived) {
    return absl::FailedPreconditionError(
        absl::StrCat(what, ": this rank is already inside a collective (one thread per rank)"));
  }
  slot = Slot{true, op, tensor, root};
  const uint64_t generation = generation_;
  if (++arrived_ == world_size_) {
    round_status_ = Combine();
    for (Slot& s : slots_) s = Slot{};
    arrived_ = 0;
    leaving_ = world_size_;
    ++generation_;
    cv_.notify_all();
  } else {
    const bool woke = cv_.wait_until(lock, deadline, [&] { return generation_ != generation || !broken_.empty(); });
    if (generation_ == generation) {
      if (!woke) {  // this rank's own deadline passed: it breaks the group
        broken_ = absl::StrCat(what, " timed out after ", timeout_.count(), " ms waiting for rank(s) ",
                               MissingRanks());
        cv_.notify_all();
        return absl::DeadlineExceededError(broken_);
      }
      return absl::DeadlineExceededError(absl::StrCat(what, ": gave up because ", broken_));
    }
  }

  // The round completed: copy its result out.
  absl::Status status = Prefixed(round_status_, what);
  if (status.ok() && op != Op::kBarrier && !(op == Op::kBroadcast && rank == root)) {
    status = GuardTorch(what, [&]() -> absl::Status {
      torch::NoGradGuard no_grad;
      tensor->copy_(result_);
      return absl::OkStatus();
    });
  }
  if (--leaving_ == 0) {
    result_ = torch::Tensor();
    cv_.notify_all();
  }
  return status;
}

std::unique_ptr<ProcessGroup> CreateSingleProcessGroup() { return ThreadGroup::Create(1)->Member(0); }

}  // namespace d2lora::engine
