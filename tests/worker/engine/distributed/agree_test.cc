// Failing together (worker/engine/distributed/agree.h), over ranks as threads.
#include "worker/engine/distributed/agree.h"

#include <gtest/gtest.h>

#include <thread>
#include <vector>

#include "worker/engine/distributed/process_group_threads.h"

namespace d2lora::engine {
namespace {

// Each rank's result for `locals[rank]`.
std::vector<absl::Status> Agree(const std::vector<absl::Status>& locals) {
  std::shared_ptr<ThreadGroup> group = ThreadGroup::Create(static_cast<int64_t>(locals.size()));
  std::vector<absl::Status> out(locals.size());
  std::vector<std::thread> threads;
  for (size_t r = 0; r < locals.size(); ++r) {
    threads.emplace_back([&, r] {
      std::unique_ptr<ProcessGroup> member = group->Member(static_cast<int64_t>(r));
      out[r] = AgreeAcrossRanks(*member, locals[r], "setup");
    });
  }
  for (std::thread& t : threads) t.join();
  return out;
}

TEST(AgreeAcrossRanksTest, AllOkIsOk) {
  for (const absl::Status& s : Agree({absl::OkStatus(), absl::OkStatus(), absl::OkStatus()})) EXPECT_TRUE(s.ok()) << s;
}

TEST(AgreeAcrossRanksTest, PeersTakeTheFailedRanksCode) {
  const std::vector<absl::Status> out =
      Agree({absl::OkStatus(), absl::InvalidArgumentError("data.train: line 3: not JSON"), absl::OkStatus()});
  EXPECT_EQ(out[1].message(), "data.train: line 3: not JSON");  // its own error back
  for (int r : {0, 2}) {
    EXPECT_EQ(out[r].code(), absl::StatusCode::kInvalidArgument) << out[r];
    EXPECT_EQ(out[r].message(), "rank 1 failed during setup with INVALID_ARGUMENT (see its log)");
  }
}

TEST(AgreeAcrossRanksTest, TheLowestFailedRankSpeaksForTheGroup) {
  const std::vector<absl::Status> out =
      Agree({absl::OkStatus(), absl::ResourceExhaustedError("out of memory"), absl::NotFoundError("no model")});
  EXPECT_EQ(out[0].code(), absl::StatusCode::kResourceExhausted) << out[0];
  EXPECT_EQ(out[1].code(), absl::StatusCode::kResourceExhausted);
  EXPECT_EQ(out[2].code(), absl::StatusCode::kNotFound);
}

TEST(AgreeAcrossRanksTest, OneRankReturnsItsOwnStatus) {
  std::unique_ptr<ProcessGroup> single = CreateSingleProcessGroup();
  EXPECT_EQ(AgreeAcrossRanks(*single, absl::DataLossError("x"), "p").code(), absl::StatusCode::kDataLoss);
}

}  // namespace
}  // namespace d2lora::engine
