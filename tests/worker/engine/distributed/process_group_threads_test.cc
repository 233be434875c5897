#include <torch/torch.h>

#include "worker/engine/distributed/process_group_threads.h"

#include <chrono>
#include <cmath>
#include <functional>
#include <thread>
#include <vector>

#include "common/status_macros.h"
#include "gtest/gtest.h"
#include "tests/support/test_support.h"
#include "worker/engine/distributed/create_process_group.h"

namespace d2lora::engine {
namespace {

using std::chrono::milliseconds;

// Runs `body(group, rank)` on one thread per rank and returns each rank's status.
std::vector<absl::Status> RunRanks(int64_t world_size, milliseconds timeout,
                                   const std::function<absl::Status(ProcessGroup&, int64_t)>& body) {
  std::shared_ptr<ThreadGroup> group = ThreadGroup::Create(world_size, timeout);
  std::vector<std::unique_ptr<ProcessGroup>> members;
  for (int64_t r = 0; r < world_size; ++r) members.push_back(group->Member(r));
  std::vector<absl::Status> statuses(static_cast<size_t>(world_size));
  std::vector<std::thread> threads;
  for (int64_t r = 0; r < world_size; ++r) {
    threads.emplace_back([&, r] { statuses[r] = body(*members[r], r); });
  }
  for (std::thread& t : threads) t.join();
  return statuses;
}

class ThreadGroupSizes : public ::testing::TestWithParam<int64_t> {};

TEST_P(ThreadGroupSizes, AllReduceSumBroadcastBarrier) {
  const int64_t n = GetParam();
  std::vector<torch::Tensor> sums(n), casts(n);
  std::vector<absl::Status> statuses = RunRanks(n, milliseconds(10000), [&](ProcessGroup& pg, int64_t r) {
    EXPECT_EQ(pg.rank(), r);
    EXPECT_EQ(pg.world_size(), n);
    EXPECT_EQ(pg.backend(), "threads");
    torch::Tensor t = torch::full({2, 3}, static_cast<double>(r + 1), torch::kFloat32);
    D2_RETURN_IF_ERROR(pg.AllReduceSum(t));
    sums[r] = t;
    D2_RETURN_IF_ERROR(pg.Barrier());
    torch::Tensor b = torch::arange(4, torch::kInt64) * (r + 10);
    D2_RETURN_IF_ERROR(pg.Broadcast(b, n - 1));
    casts[r] = b;
    // Several rounds back to back exercise the generation counter.
    for (int i = 0; i < 20; ++i) {
      torch::Tensor one = torch::ones({1}, torch::kFloat64);
      D2_RETURN_IF_ERROR(pg.AllReduceSum(one));
      if (one.item<double>() != static_cast<double>(n)) return absl::InternalError("wrong sum");
    }
    return pg.Barrier();
  });
  const float expected_sum = static_cast<float>(n * (n + 1) / 2);
  for (int64_t r = 0; r < n; ++r) {
    D2_EXPECT_OK(statuses[r]);
    EXPECT_TRUE(torch::equal(sums[r], torch::full({2, 3}, expected_sum, torch::kFloat32))) << sums[r];
    EXPECT_TRUE(torch::equal(casts[r], torch::arange(4, torch::kInt64) * (n - 1 + 10))) << casts[r];
  }
}

INSTANTIATE_TEST_SUITE_P(Sizes, ThreadGroupSizes, ::testing::Values(1, 2, 4));

TEST(ThreadGroupTest, SumIsInRankOrderAndIdenticalEverywhere) {
  // Float addition is not associative: every rank must get the same bits.
  const int64_t n = 4;
  std::vector<torch::Tensor> out(n);
  std::vector<absl::Status> statuses = RunRanks(n, milliseconds(10000), [&](ProcessGroup& pg, int64_t r) {
    torch::Tensor t = torch::randn({1000}, torch::TensorOptions().dtype(torch::kFloat32)) * std::pow(10.0, r);
    out[r] = t;
    return pg.AllReduceSum(out[r]);
  });
  for (const absl::Status& s : statuses) D2_EXPECT_OK(s);
  for (int64_t r = 1; r < n; ++r) EXPECT_TRUE(torch::equal(out[0], out[r]));
}

TEST(ThreadGroupTest, MismatchedShapesFailOnEveryRank) {
  std::vector<absl::Status> statuses = RunRanks(2, milliseconds(5000), [](ProcessGroup& pg, int64_t r) {
    torch::Tensor t = torch::zeros({r + 1});
    return pg.AllReduceSum(t);
  });
  for (const absl::Status& s : statuses) {
    EXPECT_EQ(s.code(), absl::StatusCode::kInvalidArgument) << s;
    EXPECT_NE(s.message().find("mismatched tensors: rank 1 passed Float[2] on cpu but rank 0 passed Float[1]"),
              absl::string_view::npos)
        << s;
  }
}

TEST(ThreadGroupTest, MismatchedDtypesFailOnEveryRank) {
  std::vector<absl::Status> statuses = RunRanks(2, milliseconds(5000), [](ProcessGroup& pg, int64_t r) {
    torch::Tensor t = torch::zeros({3}, r == 0 ? torch::kFloat32 : torch::kFloat64);
    return pg.Broadcast(t, 0);
  });
  for (const absl::Status& s : statuses) {
    EXPECT_EQ(s.code(), absl::StatusCode::kInvalidArgument) << s;
    EXPECT_NE(s.message().find("Double[3]"), absl::string_view::npos) << s;
  }
}

TEST(ThreadGroupTest, MismatchedOperationsAndRootsFail) {
  std::vector<absl::Status> statuses = RunRanks(2, milliseconds(5000), [](ProcessGroup& pg, int64_t r) {
    torch::Tensor t = torch::zeros({3});
    absl::Status first = r == 0 ? pg.Barrier() : pg.AllReduceSum(t);
    EXPECT_EQ(first.code(), absl::StatusCode::kInvalidArgument) << first;
    EXPECT_NE(first.message().find("rank 0 called Barrier but rank 1 called AllReduceSum"), absl::string_view::npos)
        << first;
    absl::Status second = pg.Broadcast(t, r);
    EXPECT_EQ(second.code(), absl::StatusCode::kInvalidArgument) << second;
    absl::Status third = pg.Broadcast(t, 5);
    EXPECT_EQ(third.code(), absl::StatusCode::kInvalidArgument) << third;
    EXPECT_NE(third.message().find("root 5 is outside [0, world size 2)"), absl::string_view::npos) << third;
    // The group still works after argument errors.
    return pg.AllReduceSum(t);
  });
  for (const absl::Status& s : statuses) D2_EXPECT_OK(s);
}

TEST(ThreadGroupTest, MissingRankTimesOutAndBreaksTheGroup) {
  std::shared_ptr<ThreadGroup> group = ThreadGroup::Create(3, milliseconds(200));
  std::unique_ptr<ProcessGroup> r0 = group->Member(0), r1 = group->Member(1), r2 = group->Member(2);
  absl::Status s0, s1;
  const auto start = std::chrono::steady_clock::now();
  std::thread t0([&] {
    torch::Tensor t = torch::ones({2});
    s0 = r0->AllReduceSum(t);
  });
  std::thread t1([&] {
    torch::Tensor t = torch::ones({2});
    s1 = r1->AllReduceSum(t);
  });
  t0.join();
  t1.join();
  const auto elapsed = std::chrono::steady_clock::now() - start;
  EXPECT_GE(elapsed, milliseconds(150));
  EXPECT_LT(elapsed, milliseconds(3000));
  for (const absl::Status& s : {s0, s1}) {
    EXPECT_EQ(s.code(), absl::StatusCode::kDeadlineExceeded) << s;
    EXPECT_NE(s.message().find("waiting for rank(s) 2"), absl::string_view::npos) << s;
  }
  // The late rank must not be paired with anything: the group is broken.
  torch::Tensor late = torch::ones({2});
  absl::Status s2 = r2->AllReduceSum(late);
  EXPECT_EQ(s2.code(), absl::StatusCode::kUnavailable) << s2;
  EXPECT_NE(s2.message().find("broken"), absl::string_view::npos) << s2;
}

TEST(ThreadGroupTest, MemberHandles) {
  std::shared_ptr<ThreadGroup> group = ThreadGroup::Create(2);
  EXPECT_NE(group->Member(0), nullptr);
  EXPECT_EQ(group->Member(0), nullptr);  // already taken
  EXPECT_EQ(group->Member(2), nullptr);
  EXPECT_EQ(group->Member(-1), nullptr);
  EXPECT_EQ(ThreadGroup::Create(0), nullptr);
}

TEST(ThreadGroupTest, SingleProcessGroup) {
  std::unique_ptr<ProcessGroup> pg = CreateSingleProcessGroup();
  ASSERT_NE(pg, nullptr);
  EXPECT_EQ(pg->backend(), "threads");
  EXPECT_EQ(pg->world_size(), 1);
  EXPECT_EQ(pg->rank(), 0);
  torch::Tensor t = torch::arange(3, torch::kFloat32);
  D2_ASSERT_OK(pg->AllReduceSum(t));
  EXPECT_TRUE(torch::equal(t, torch::arange(3, torch::kFloat32)));
  D2_ASSERT_OK(pg->Broadcast(t, 0));
  D2_ASSERT_OK(pg->Barrier());
  EXPECT_EQ(pg->Broadcast(t, 1).code(), absl::StatusCode::kInvalidArgument);
}

TEST(CreateProcessGroupTest, WorldSizeOneNeedsNoNetwork) {
  DistributedOptions options;
  options.master_port = 1;  // nothing may listen or connect
  for (ProcessGroupDevice device : {ProcessGroupDevice::kCpu, ProcessGroupDevice::kCuda}) {
    absl::StatusOr<std::unique_ptr<ProcessGroup>> pg = CreateProcessGroup(options, device);
    D2_ASSERT_OK(pg.status());
    EXPECT_EQ((*pg)->backend(), "threads");
  }
  options.rank = 1;
  EXPECT_EQ(CreateProcessGroup(options, ProcessGroupDevice::kCpu).status().code(),
            absl::StatusCode::kInvalidArgument);
}

}  // namespace
}  // namespace d2lora::engine
