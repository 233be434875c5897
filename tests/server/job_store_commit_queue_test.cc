// Group commit (job_store_commit_queue.h) on a real SQLite job store: many
// writers, all durable and in order once the store is opened again; a failed
// batch fails every mutation in it and behind it, and nothing more is written
// until the owner resumes. The batch that fails is made with a second SQLite
// connection that holds the write lock (the queue's writer waits for it) and a
// real constraint violation (an event number written twice).
#include "server/job_store_commit_queue.h"

#include <sqlite3.h>

#include <gtest/gtest.h>

#include <atomic>
#include <future>
#include <map>
#include <thread>

#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"
#include "server/job_store_sqlite.h"
#include "tests/support/test_support.h"

namespace d2lora::server {
namespace {

// A job `id` whose attempt is `n`, with event n.
StoreMutation Write(const std::string& id, int n) {
  StoreMutation m;
  v1::Job& job = m.jobs.emplace_back();
  job.set_id(id);
  job.set_attempt(n);
  job.mutable_create_time()->set_seconds(1);
  v1::JobEvent& e = m.events.emplace_back();
  e.set_job_id(id);
  e.set_seq(n);
  return m;
}

std::map<std::string, v1::Job> Jobs(const StoredState& state) {
  std::map<std::string, v1::Job> jobs;
  for (const v1::Job& j : state.jobs) jobs[j.id()] = j;
  return jobs;
}

TEST(CommitQueueTest, ConcurrentWritersAreAllDurableInTheirOrder) {
  d2lora::testing::TempDir dir;
  constexpr int kThreads = 8, kWrites = 40;
  {
    auto store = SqliteJobStore::Create(dir.file("jobs.db"));
    ASSERT_TRUE(store.ok()) << store.status();
    auto queue = CommitQueue::Create(store->get(), {});
    ASSERT_TRUE(queue.ok()) << queue.status();
    std::mutex owner;  // the caller's lock, which defines the order
    std::atomic<int> failures{0};
    std::vector<std::thread> threads;
    for (int t = 0; t < kThreads; ++t) {
      threads.emplace_back([&, t] {
        for (int i = 1; i <= kWrites; ++i) {
          uint64_t ticket = 0;
          {
            std::lock_guard<std::mutex> lock(owner);
            ticket = (*queue)->Enqueue(Write(absl::StrCat("job-", t), i));
          }
          if (!(*queue)->Wait(ticket).ok()) ++failures;
        }
      });
    }
    for (auto& t : threads) t.join();
    EXPECT_EQ(failures, 0);
    const CommitQueue::Stats stats = (*queue)->stats();
    EXPECT_EQ(stats.mutations, kThreads * kWrites);
    EXPECT_LE(stats.batches, stats.mutations);
    EXPECT_EQ(stats.failed_batches, 0);
    EXPECT_EQ((*queue)->last_ticket(), static_cast<uint64_t>(kThreads * kWrites));
  }
  auto store = SqliteJobStore::Create(dir.file("jobs.db"));  // from disk again
  ASSERT_TRUE(store.ok()) << store.status();
  auto state = (*store)->Load();
  ASSERT_TRUE(state.ok()) << state.status();
  const auto jobs = Jobs(*state);
  ASSERT_EQ(jobs.size(), static_cast<size_t>(kThreads));
  for (int t = 0; t < kThreads; ++t) {
    const std::string id = absl::StrCat("job-", t);
    EXPECT_EQ(jobs.at(id).attempt(), kWrites) << id << ": a later write was overwritten by an earlier one";
    auto events = (*store)->ReadEvents(id, 0, 1000);
    ASSERT_TRUE(events.ok()) << events.status();
    ASSERT_EQ(events->size(), static_cast<size_t>(kWrites)) << id;
    for (int i = 0; i < kWrites; ++i) EXPECT_EQ((*events)[i].seq(), i + 1);
  }
}

TEST(CommitQueueTest, AFailedBatchFailsEveryMutationInAndBehindItUntilResumed) {
  d2lora::testing::TempDir dir;
  const std::string path = dir.file("jobs.db");
  auto store = SqliteJobStore::Create(path);
  ASSERT_TRUE(store.ok()) << store.status();
  std::promise<absl::Status> failed;
  CommitQueueOptions options;
  std::atomic<int> failures{0};
  options.on_failure = [&](const absl::Status& s) {
    if (failures++ == 0) failed.set_value(s);
  };
  auto queue = CommitQueue::Create(store->get(), options);
  ASSERT_TRUE(queue.ok()) << queue.status();

  // Another connection holds the write lock: the writer's first batch (x)
  // waits, and a, b, c queue up behind it to go out as one batch.
  sqlite3* other = nullptr;
  ASSERT_EQ(sqlite3_open(path.c_str(), &other), SQLITE_OK);
  ASSERT_EQ(sqlite3_exec(other, "BEGIN IMMEDIATE;", nullptr, nullptr, nullptr), SQLITE_OK);
  const uint64_t x = (*queue)->Enqueue(Write("x", 1));
  for (absl::Time end = absl::Now() + absl::Seconds(10); (*queue)->queued() > 0 && absl::Now() < end;) {
    absl::SleepFor(absl::Milliseconds(5));
  }
  ASSERT_EQ((*queue)->queued(), 0u) << "the writer did not take the first batch";
  const uint64_t a = (*queue)->Enqueue(Write("a", 1));
  const uint64_t b = (*queue)->Enqueue(Write("x", 1));  // event 1 of x again: the batch's transaction fails
  const uint64_t c = (*queue)->Enqueue(Write("c", 1));
  EXPECT_EQ((*queue)->queued(), 3u);
  ASSERT_EQ(sqlite3_exec(other, "ROLLBACK;", nullptr, nullptr, nullptr), SQLITE_OK);
  sqlite3_close(other);

  D2_EXPECT_OK((*queue)->Wait(x));
  const absl::Status error = (*queue)->Wait(b);
  EXPECT_FALSE(error.ok());
  EXPECT_NE(error.message().find(path), std::string::npos) << error;   // names the file
  EXPECT_NE(error.message().find("job x"), std::string::npos) << error;  // and the row
  EXPECT_EQ((*queue)->Wait(a), error);
  EXPECT_EQ((*queue)->Wait(c), error);
  ASSERT_EQ(failed.get_future().wait_for(std::chrono::seconds(10)), std::future_status::ready);
  EXPECT_EQ(failures, 1);
  EXPECT_EQ((*queue)->stats().failed_batches, 1);

  // Poisoned: what is enqueued now was staged on lost changes and fails too.
  const uint64_t d = (*queue)->Enqueue(Write("d", 1));
  EXPECT_EQ((*queue)->Wait(d), error);
  EXPECT_EQ((*queue)->last_ticket(), d);  // readers see the failure
  (*queue)->Resume();
  EXPECT_EQ((*queue)->last_ticket(), 0u);  // the owner's state is the store's again
  const uint64_t e = (*queue)->Enqueue(Write("e", 1));
  D2_EXPECT_OK((*queue)->Wait(e));
  EXPECT_EQ((*queue)->last_ticket(), e);

  queue->reset();
  auto state = (*store)->Load();
  ASSERT_TRUE(state.ok()) << state.status();
  const auto jobs = Jobs(*state);
  EXPECT_EQ(jobs.size(), 2u);
  EXPECT_TRUE(jobs.count("x"));
  EXPECT_TRUE(jobs.count("e"));
}

TEST(CommitQueueTest, DrainsWhatIsQueuedWhenDestroyed) {
  d2lora::testing::TempDir dir;
  auto store = SqliteJobStore::Create(dir.file("jobs.db"));
  ASSERT_TRUE(store.ok()) << store.status();
  {
    auto queue = CommitQueue::Create(store->get(), {});
    ASSERT_TRUE(queue.ok()) << queue.status();
    for (int i = 1; i <= 50; ++i) (*queue)->Enqueue(Write("j", i));
  }
  auto events = (*store)->ReadEvents("j", 0, 1000);
  ASSERT_TRUE(events.ok()) << events.status();
  EXPECT_EQ(events->size(), 50u);
}

TEST(CommitQueueTest, RefusesBadOptions) {
  EXPECT_FALSE(CommitQueue::Create(nullptr, {}).ok());
  d2lora::testing::TempDir dir;
  auto store = SqliteJobStore::Create(dir.file("jobs.db"));
  ASSERT_TRUE(store.ok()) << store.status();
  CommitQueueOptions options;
  options.max_batch = 0;
  auto queue = CommitQueue::Create(store->get(), options);
  ASSERT_FALSE(queue.ok());
  EXPECT_NE(queue.status().message().find("max_batch"), std::string::npos);
}

}  // namespace
}  // namespace d2lora::server
