#include <torch/csrc/distributed/c10d/TCPStore.hpp>
#include <torch/torch.h>

#include "worker/engine/distributed/process_group_gloo.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <chrono>
#include <functional>
#include <future>
#include <thread>
#include <vector>

#include "common/status_macros.h"
#include "gtest/gtest.h"
#include "tests/support/test_support.h"
#include "worker/engine/distributed/create_process_group.h"

namespace d2lora::engine {
namespace {

using std::chrono::milliseconds;
using Clock = std::chrono::steady_clock;

// A loopback socket, bound (and listening when asked); its port is free for
// others once it closes.
class BoundSocket {
 public:
  explicit BoundSocket(bool listen) {
    fd_ = ::socket(AF_INET, SOCK_STREAM, 0);
    sockaddr_in addr{};
    addr.sin_family = AF_INET;
    addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    addr.sin_port = 0;
    if (::bind(fd_, reinterpret_cast<sockaddr*>(&addr), sizeof(addr)) != 0) return;
    if (listen) ::listen(fd_, 1);
    socklen_t len = sizeof(addr);
    ::getsockname(fd_, reinterpret_cast<sockaddr*>(&addr), &len);
    port_ = ntohs(addr.sin_port);
  }
  ~BoundSocket() { ::close(fd_); }
  int port() const { return port_; }

 private:
  int fd_ = -1;
  int port_ = 0;
};

int FreePort() { return BoundSocket(/*listen=*/false).port(); }

DistributedOptions Options(int64_t rank, int64_t world_size, int port, milliseconds timeout) {
  DistributedOptions options;
  options.rank = rank;
  options.world_size = world_size;
  options.local_rank = rank;
  options.master_addr = "127.0.0.1";
  options.master_port = port;
  options.timeout = timeout;
  return options;
}

// Each rank on its own thread creates its GlooProcessGroup, then runs `body`.
// Rank 0 (the store's server) starts first: in LibTorch 1.13 a client that
// finds no server retries only once a second.
std::vector<absl::Status> RunGloo(int64_t world_size, milliseconds timeout,
                                  const std::function<absl::Status(GlooProcessGroup&, int64_t)>& body) {
  const int port = FreePort();
  std::vector<absl::Status> statuses(static_cast<size_t>(world_size));
  std::vector<std::thread> threads;
  for (int64_t r = 0; r < world_size; ++r) {
    threads.emplace_back([&, r] {
      absl::StatusOr<std::unique_ptr<GlooProcessGroup>> pg =
          GlooProcessGroup::Create(Options(r, world_size, port, timeout));
      statuses[r] = pg.ok() ? body(**pg, r) : pg.status();
    });
    if (r == 0) std::this_thread::sleep_for(milliseconds(100));
  }
  for (std::thread& t : threads) t.join();
  return statuses;
}

bool Contains(const absl::Status& status, absl::string_view text) {
  return status.message().find(text) != absl::string_view::npos;
}

TEST(GlooProcessGroupTest, CollectivesAcrossTwoRanks) {
  std::vector<torch::Tensor> floats(2), doubles(2), halves(2), casts(2);
  std::vector<absl::Status> statuses = RunGloo(2, milliseconds(5000), [&](GlooProcessGroup& pg, int64_t r) {
    EXPECT_EQ(pg.rank(), r);
    EXPECT_EQ(pg.world_size(), 2);
    EXPECT_EQ(pg.backend(), "gloo");
    floats[r] = torch::arange(5, torch::kFloat32) + static_cast<double>(r);
    D2_RETURN_IF_ERROR(pg.AllReduceSum(floats[r]));
    doubles[r] = torch::full({3, 2}, 0.25 * static_cast<double>(r + 1), torch::kFloat64);
    D2_RETURN_IF_ERROR(pg.AllReduceSum(doubles[r]));
    halves[r] = torch::full({4}, 1.5, torch::kBFloat16);
    D2_RETURN_IF_ERROR(pg.AllReduceSum(halves[r]));
    casts[r] = torch::full({7}, static_cast<double>(10 * (r + 1)), torch::kFloat32);
    D2_RETURN_IF_ERROR(pg.Broadcast(casts[r], 1));
    return pg.Barrier();
  });
  for (int r = 0; r < 2; ++r) {
    D2_EXPECT_OK(statuses[r]);
    EXPECT_TRUE(torch::equal(floats[r], torch::arange(5, torch::kFloat32) * 2 + 1)) << floats[r];
    EXPECT_TRUE(torch::equal(doubles[r], torch::full({3, 2}, 0.75, torch::kFloat64))) << doubles[r];
    EXPECT_TRUE(torch::equal(halves[r], torch::full({4}, 3.0, torch::kBFloat16))) << halves[r];
    EXPECT_TRUE(torch::equal(casts[r], torch::full({7}, 20.0, torch::kFloat32))) << casts[r];
  }
}

TEST(GlooProcessGroupTest, BadArgumentsFailLocally) {
  std::vector<absl::Status> statuses = RunGloo(2, milliseconds(5000), [](GlooProcessGroup& pg, int64_t) {
    torch::Tensor strided = torch::zeros({4, 4}).t();
    absl::Status s = pg.AllReduceSum(strided);
    EXPECT_EQ(s.code(), absl::StatusCode::kInvalidArgument) << s;
    EXPECT_TRUE(Contains(s, "contiguous")) << s;
    torch::Tensor t = torch::zeros({2});
    s = pg.Broadcast(t, 2);
    EXPECT_EQ(s.code(), absl::StatusCode::kInvalidArgument) << s;
    EXPECT_TRUE(Contains(s, "root 2 is outside [0, world size 2)")) << s;
    torch::Tensor undefined;
    EXPECT_EQ(pg.AllReduceSum(undefined).code(), absl::StatusCode::kInvalidArgument);
    return pg.Barrier();  // the group is still usable
  });
  for (const absl::Status& s : statuses) D2_EXPECT_OK(s);
}

// torchrun's elastic agent serves the store itself (TORCHELASTIC_USE_AGENT_STORE=True):
// a server started here as the agent does, then every rank, rank 0 included,
// connects as a client, with its keys under /worker/attempt_<restart count>.
TEST(GlooProcessGroupTest, RanksJoinTorchrunsAgentStore) {
  c10d::TCPStoreOptions agent_options;
  agent_options.port = 0;  // any free port
  agent_options.isServer = true;
  agent_options.waitWorkers = false;
  agent_options.timeout = milliseconds(10000);
  auto agent = c10::make_intrusive<c10d::TCPStore>("127.0.0.1", agent_options);
  const int port = agent->getPort();
  std::vector<absl::Status> statuses(2);
  std::vector<float> sums(2, 0.0f);
  std::vector<std::thread> threads;
  for (int64_t r = 0; r < 2; ++r) {
    threads.emplace_back([&, r] {
      DistributedOptions options = Options(r, 2, port, milliseconds(10000));
      options.use_agent_store = true;
      options.restart_count = 3;
      absl::StatusOr<std::unique_ptr<GlooProcessGroup>> pg = GlooProcessGroup::Create(options);
      if (!pg.ok()) {
        statuses[static_cast<size_t>(r)] = pg.status();
        return;
      }
      torch::Tensor t = torch::full({4}, static_cast<float>(r + 1));
      statuses[static_cast<size_t>(r)] = (*pg)->AllReduceSum(t);
      sums[static_cast<size_t>(r)] = t[0].item<float>();
    });
  }
  for (std::thread& t : threads) t.join();
  for (size_t r = 0; r < 2; ++r) {
    D2_EXPECT_OK(statuses[r]);
    EXPECT_EQ(sums[r], 3.0f) << "rank " << r;
  }
  // Our keys are under the attempt's prefix in the agent's store, not at its root.
  EXPECT_TRUE(agent->check({"/worker/attempt_3/d2lora/gloo/joined"}));
  EXPECT_FALSE(agent->check({"d2lora/gloo/joined"}));
  // Without the agent store, rank 0 would serve the store itself, on the agent's port.
  absl::StatusOr<std::unique_ptr<GlooProcessGroup>> own = GlooProcessGroup::Create(Options(0, 2, port, milliseconds(1000)));
  ASSERT_FALSE(own.ok());
  EXPECT_TRUE(Contains(own.status(), absl::StrCat("127.0.0.1:", port))) << own.status();
}

TEST(GlooProcessGroupTest, RankZeroAloneFailsNamingTheAddress) {
  const int port = FreePort();
  const auto start = Clock::now();
  absl::StatusOr<std::unique_ptr<GlooProcessGroup>> pg =
      GlooProcessGroup::Create(Options(0, 2, port, milliseconds(1000)));
  const auto elapsed = Clock::now() - start;
  ASSERT_FALSE(pg.ok());
  EXPECT_EQ(pg.status().code(), absl::StatusCode::kDeadlineExceeded) << pg.status();
  EXPECT_TRUE(Contains(pg.status(), absl::StrCat("127.0.0.1:", port))) << pg.status();
  EXPECT_TRUE(Contains(pg.status(), "only 1 of 2 ranks joined")) << pg.status();
  EXPECT_GE(elapsed, milliseconds(900));
  EXPECT_LT(elapsed, milliseconds(2500));
}

TEST(GlooProcessGroupTest, ClientWithoutServerFailsNamingTheAddress) {
  const int port = FreePort();
  const auto start = Clock::now();
  absl::StatusOr<std::unique_ptr<GlooProcessGroup>> pg =
      GlooProcessGroup::Create(Options(1, 2, port, milliseconds(1000)));
  const auto elapsed = Clock::now() - start;
  ASSERT_FALSE(pg.ok());
  EXPECT_TRUE(Contains(pg.status(), absl::StrCat("127.0.0.1:", port))) << pg.status();
  EXPECT_LT(elapsed, milliseconds(4000));
}

TEST(GlooProcessGroupTest, PortInUseFailsNamingTheAddress) {
  BoundSocket taken(/*listen=*/true);
  absl::StatusOr<std::unique_ptr<GlooProcessGroup>> pg =
      GlooProcessGroup::Create(Options(0, 2, taken.port(), milliseconds(1000)));
  ASSERT_FALSE(pg.ok());
  EXPECT_TRUE(Contains(pg.status(), absl::StrCat("127.0.0.1:", taken.port()))) << pg.status();
}

TEST(GlooProcessGroupTest, PeerThatStopsParticipatingFailsTheCollective) {
  std::promise<void> rank0_done;
  std::shared_future<void> rank0_done_future = rank0_done.get_future().share();
  absl::Status failed, after;
  milliseconds failed_after{0};
  std::vector<absl::Status> statuses = RunGloo(2, milliseconds(1500), [&](GlooProcessGroup& pg, int64_t r) {
    torch::Tensor t = torch::ones({16});
    D2_RETURN_IF_ERROR(pg.AllReduceSum(t));
    if (r == 1) {  // alive, group open, but never calls again
      rank0_done_future.wait();
      return absl::OkStatus();
    }
    const auto start = Clock::now();
    failed = pg.AllReduceSum(t);
    failed_after = std::chrono::duration_cast<milliseconds>(Clock::now() - start);
    after = pg.Barrier();
    rank0_done.set_value();
    return absl::OkStatus();
  });
  for (const absl::Status& s : statuses) D2_EXPECT_OK(s);
  EXPECT_EQ(failed.code(), absl::StatusCode::kDeadlineExceeded) << failed;
  EXPECT_TRUE(Contains(failed, "gloo AllReduceSum on rank 0 of 2")) << failed;
  EXPECT_GE(failed_after, milliseconds(1000));
  EXPECT_LT(failed_after, milliseconds(3500));
  EXPECT_EQ(after.code(), absl::StatusCode::kUnavailable) << after;
  EXPECT_TRUE(Contains(after, "broken")) << after;
}

TEST(GlooProcessGroupTest, PeerThatLeavesFailsTheCollective) {
  absl::Status failed;
  milliseconds failed_after{0};
  std::vector<absl::Status> statuses = RunGloo(2, milliseconds(2000), [&](GlooProcessGroup& pg, int64_t r) {
    torch::Tensor t = torch::ones({16});
    D2_RETURN_IF_ERROR(pg.AllReduceSum(t));
    if (r == 1) return absl::OkStatus();  // destroys its group: connections close
    std::this_thread::sleep_for(milliseconds(200));
    const auto start = Clock::now();
    failed = pg.AllReduceSum(t);
    failed_after = std::chrono::duration_cast<milliseconds>(Clock::now() - start);
    return absl::OkStatus();
  });
  for (const absl::Status& s : statuses) D2_EXPECT_OK(s);
  EXPECT_FALSE(failed.ok());
  EXPECT_TRUE(failed.code() == absl::StatusCode::kUnavailable ||
              failed.code() == absl::StatusCode::kDeadlineExceeded)
      << failed;
  EXPECT_TRUE(Contains(failed, "gloo AllReduceSum on rank 0 of 2")) << failed;
  EXPECT_LT(failed_after, milliseconds(4500));
}

TEST(CreateProcessGroupTest, CpuWithTwoRanksIsGloo) {
  const int port = FreePort();
  std::vector<absl::Status> statuses(2);
  std::vector<std::thread> threads;
  for (int64_t r = 0; r < 2; ++r) {
    threads.emplace_back([&, r] {
      absl::StatusOr<std::unique_ptr<ProcessGroup>> pg =
          CreateProcessGroup(Options(r, 2, port, milliseconds(5000)), ProcessGroupDevice::kCpu);
      if (!pg.ok()) {
        statuses[r] = pg.status();
        return;
      }
      EXPECT_EQ((*pg)->backend(), "gloo");
      torch::Tensor t = torch::full({3}, static_cast<double>(r));
      statuses[r] = (*pg)->AllReduceSum(t);
      EXPECT_TRUE(torch::equal(t, torch::ones({3})));
    });
    if (r == 0) std::this_thread::sleep_for(milliseconds(100));
  }
  for (std::thread& t : threads) t.join();
  for (const absl::Status& s : statuses) D2_EXPECT_OK(s);
}

#ifndef D2LORA_WITH_NCCL
TEST(CreateProcessGroupTest, CudaWithoutNcclIsUnimplemented) {
  absl::StatusOr<std::unique_ptr<ProcessGroup>> pg =
      CreateProcessGroup(Options(0, 2, 29500, milliseconds(1000)), ProcessGroupDevice::kCuda);
  EXPECT_EQ(pg.status().code(), absl::StatusCode::kUnimplemented) << pg.status();
  EXPECT_TRUE(Contains(pg.status(), "no NCCL")) << pg.status();
}
#endif

}  // namespace
}  // namespace d2lora::engine
