// The coordinator's state machine against a real SQLite job store and the
// in-memory artifact store: validation, gang scheduling, leases, progress,
// retries from checkpoints, lost workers, cancellation and restarts; group
// commit: concurrent callers all durable, a failed store write undone.
#include "server/coordinator.h"
#include "server/submit_memory.h"

#include <sqlite3.h>

#include <prometheus/text_serializer.h>

#include <gtest/gtest.h>

#include <atomic>
#include <map>
#include <set>
#include <thread>

#include "absl/strings/match.h"
#include "absl/time/clock.h"

#include "server/artifact_store_memory.h"
#include "server/coordinator_metrics.h"
#include "server/job_store_sqlite.h"
#include "tests/server/server_test_util.h"
#include "tests/support/test_support.h"

namespace d2lora::server {
namespace {

v1::SubmitJobRequest Request(int world_size = 1) {
  v1::SubmitJobRequest r;
  r.mutable_spec()->set_name("t");
  r.mutable_spec()->set_model("/models/m");
  r.mutable_spec()->mutable_data()->set_train("/data/train.jsonl");
  r.mutable_spec()->mutable_train()->set_batch_size(4);
  r.mutable_spec()->mutable_train()->set_micro_batch_size(1);
  r.set_world_size(world_size);
  return r;
}

using testing::Put;

class CoordinatorTest : public ::testing::Test {
 protected:
  void SetUp() override {
    options_.scheduler_thread = false;  // rounds run when the test says
    options_.heartbeat_timeout = absl::Seconds(30);
    Open();
  }
  void Open() {
    coordinator_.reset();
    metrics_.reset();
    store_.reset();
    auto store = SqliteJobStore::Create(dir_.file("jobs.db"), store_options_);
    ASSERT_TRUE(store.ok()) << store.status();
    store_ = *std::move(store);
    registry_ = std::make_shared<prometheus::Registry>();
    metrics_ = std::make_unique<CoordinatorMetrics>(*registry_);
    auto c = Coordinator::Create(options_, store_.get(), &artifacts_, metrics_.get());
    ASSERT_TRUE(c.ok()) << c.status();
    coordinator_ = *std::move(c);
  }
  std::string AddWorker(int slots, const std::string& host = "127.0.0.1") {
    v1::RegisterWorkerRequest r;
    r.set_name("w");
    r.set_host(host);
    for (int i = 0; i < slots; ++i) r.add_slots()->set_index(i);
    r.set_rendezvous_port_first(29500);
    r.set_rendezvous_port_last(29510);
    auto answer = coordinator_->Register(r);
    EXPECT_TRUE(answer.ok()) << answer.status();
    return answer->worker_id();
  }
  // What the coordinator logs, kept instead of written to stderr (before Open()).
  struct LogLines {
    std::mutex mu;
    std::vector<std::string> lines;
    std::vector<std::string> Get() {
      std::lock_guard<std::mutex> lock(mu);
      return lines;
    }
  };
  std::shared_ptr<LogLines> CaptureLog() {
    auto log = std::make_shared<LogLines>();
    options_.log = [log](absl::string_view line) {
      std::lock_guard<std::mutex> lock(log->mu);
      log->lines.emplace_back(line);
    };
    return log;
  }
  v1::Assignment Lease(const std::string& worker) {
    v1::LeaseAssignmentRequest r;
    r.set_worker_id(worker);
    auto answer = coordinator_->Lease(r);
    EXPECT_TRUE(answer.ok()) << answer.status();
    return answer->assignment();
  }
  void Start(const std::string& worker, const v1::Assignment& a) {
    v1::ReportProgressRequest r;
    r.set_worker_id(worker);
    r.set_assignment_id(a.id());
    r.set_started(true);
    ASSERT_TRUE(coordinator_->Report(r).ok());
  }
  v1::JobState State(const std::string& id) { return coordinator_->GetJob(id)->state(); }
  // `worker` heartbeats with `running` for half a second (5 beats) while the
  // others stay silent; returns its heartbeat request.
  v1::HeartbeatRequest KeepBeating(const std::string& worker, const v1::Assignment& running) {
    v1::HeartbeatRequest hb;
    hb.set_worker_id(worker);
    hb.add_running_assignments(running.id());
    for (int i = 0; i < 5; ++i) {
      std::this_thread::sleep_for(std::chrono::milliseconds(100));
      EXPECT_TRUE(coordinator_->Heartbeat(hb).ok());
    }
    return hb;
  }
  std::string Submit(const v1::SubmitJobRequest& r) {
    auto job = coordinator_->Submit(r);
    EXPECT_TRUE(job.ok()) << job.status();
    return job.ok() ? job->id() : "";
  }
  absl::Status Fail(const std::string& worker, const v1::Assignment& a, bool retryable, const std::string& code = "INTERNAL") {
    v1::FailAssignmentRequest r;
    r.set_worker_id(worker);
    r.set_assignment_id(a.id());
    r.mutable_error()->set_code(code);
    r.mutable_error()->set_message("boom");
    r.set_retryable(retryable);
    return coordinator_->Fail(r);
  }

  d2lora::testing::TempDir dir_;
  CoordinatorOptions options_;
  SqliteJobStoreOptions store_options_;
  MemoryArtifactStore artifacts_;
  std::unique_ptr<SqliteJobStore> store_;
  std::shared_ptr<prometheus::Registry> registry_;
  std::unique_ptr<CoordinatorMetrics> metrics_;
  std::unique_ptr<Coordinator> coordinator_;
};

TEST_F(CoordinatorTest, SubmitRefusesBadRequestsNamingTheField) {
  auto expect = [&](v1::SubmitJobRequest r, const std::string& field) {
    auto job = coordinator_->Submit(r);
    ASSERT_FALSE(job.ok()) << field;
    EXPECT_EQ(job.status().code(), absl::StatusCode::kInvalidArgument);
    EXPECT_NE(job.status().message().find(field), std::string::npos) << job.status();
  };
  auto r = Request();
  r.mutable_spec()->mutable_train()->set_batch_size(0);
  expect(r, "train.batch_size");
  r = Request();
  r.mutable_spec()->set_model("models/m");
  expect(r, "spec.model");
  r = Request();
  r.mutable_spec()->mutable_data()->set_train("upload:up-missing/train.jsonl");
  expect(r, "spec.data.train");
  r = Request();
  r.set_priority(5000);
  expect(r, "priority");
  r = Request();
  r.mutable_spec()->set_method("qlora");
  expect(r, "method");
  r = Request();
  (*r.mutable_labels())["bad key!"] = "x";
  expect(r, "labels");
  r = Request(3);  // batch 4 is not divisible by 1 x 3 ranks
  expect(r, "batch_size");
}

TEST_F(CoordinatorTest, GangSchedulesTwoRanksAndRunsToSuccess) {
  const std::string w1 = AddWorker(1), w2 = AddWorker(1);
  const std::string id = Submit(Request(2));
  EXPECT_EQ(State(id), v1::QUEUED);
  coordinator_->ScheduleNow();
  EXPECT_EQ(State(id), v1::SCHEDULED);
  const v1::Assignment a1 = Lease(w1), a2 = Lease(w2);
  ASSERT_FALSE(a1.id().empty());
  ASSERT_FALSE(a2.id().empty());
  EXPECT_TRUE(Lease(w1).id().empty());  // nothing leased twice
  EXPECT_EQ(a1.master_port(), a2.master_port());
  EXPECT_EQ(a1.master_addr(), "127.0.0.1");
  EXPECT_EQ(a1.rank() + a2.rank(), 1);
  EXPECT_EQ(a1.spec().resources().world_size(), 2);
  Start(w1, a1);
  EXPECT_EQ(State(id), v1::SCHEDULED);
  Start(w2, a2);
  EXPECT_EQ(State(id), v1::RUNNING);

  const auto& [w0, rank0] = a1.rank() == 0 ? std::pair(w1, a1) : std::pair(w2, a2);
  v1::ReportProgressRequest progress;
  progress.set_worker_id(w0);
  progress.set_assignment_id(rank0.id());
  progress.mutable_metrics()->set_step(3);
  progress.mutable_metrics()->set_loss(1.5);
  progress.add_logs()->set_text("hello");
  ASSERT_TRUE(coordinator_->Report(progress).ok());
  EXPECT_EQ(coordinator_->GetJob(id)->metrics().step(), 3);

  for (const auto& [w, a] : {std::pair(w1, a1), std::pair(w2, a2)}) {
    v1::CompleteAssignmentRequest done;
    done.set_worker_id(w);
    done.set_assignment_id(a.id());
    if (a.rank() == 0) done.set_summary_json("{\"ok\": true}");
    D2_ASSERT_OK(coordinator_->Complete(done));
  }
  auto job = coordinator_->GetJob(id);
  EXPECT_EQ(job->state(), v1::SUCCEEDED);
  EXPECT_EQ(job->summary_json(), "{\"ok\": true}");
  EXPECT_TRUE(job->has_end_time());

  auto events = coordinator_->WaitEvents(id, 0, absl::ZeroDuration());
  ASSERT_TRUE(events.ok());
  EXPECT_TRUE(events->job_ended);
  std::vector<v1::JobState> states;
  int seq = 0;
  bool saw_log = false;
  for (const v1::JobEvent& e : events->events) {
    EXPECT_EQ(e.seq(), ++seq);
    if (e.has_state()) states.push_back(e.state().state());
    saw_log |= e.has_log() && e.log().text() == "hello";
  }
  EXPECT_EQ(states, (std::vector<v1::JobState>{v1::QUEUED, v1::SCHEDULED, v1::RUNNING, v1::SUCCEEDED}));
  EXPECT_TRUE(saw_log);
}

TEST_F(CoordinatorTest, QueueIsFifoWithinPriorityAndBigJobsAreNotStarved) {
  const std::string big = Submit(Request(2));
  auto low = Request(1);
  const std::string small = Submit(low);
  auto urgent = Request(1);
  urgent.set_priority(10);
  const std::string first = Submit(urgent);
  const std::string w = AddWorker(2);  // after the submits: the scheduler thread sees the whole queue
  coordinator_->ScheduleNow();
  // The urgent job takes one slot; the 2-rank job waits for both and holds the
  // small one back.
  EXPECT_EQ(State(first), v1::SCHEDULED);
  EXPECT_EQ(State(big), v1::QUEUED);
  EXPECT_EQ(State(small), v1::QUEUED);
  auto too_big = Submit(Request(4));  // larger than the cluster: passed over, blocks nobody
  const v1::Assignment a = Lease(w);
  v1::CompleteAssignmentRequest done;
  done.set_worker_id(w);
  done.set_assignment_id(a.id());
  D2_ASSERT_OK(coordinator_->Complete(done));
  coordinator_->ScheduleNow();
  EXPECT_EQ(State(big), v1::SCHEDULED);
  EXPECT_EQ(State(small), v1::QUEUED);
  EXPECT_EQ(State(too_big), v1::QUEUED);
}

TEST_F(CoordinatorTest, FailedRankRetriesFromTheLastCheckpoint) {
  const std::string w1 = AddWorker(1), w2 = AddWorker(1);
  auto r = Request(2);
  r.set_max_retries(1);
  const std::string id = Submit(r);
  coordinator_->ScheduleNow();
  v1::Assignment a1 = Lease(w1), a2 = Lease(w2);
  std::string rank0_worker = w1, rank1_worker = w2;
  if (a1.rank() != 0) {
    std::swap(a1, a2);
    std::swap(rank0_worker, rank1_worker);
  }
  Put(artifacts_, "jobs/" + id + "/checkpoints/step-2/parameters.safetensors", "p");
  Put(artifacts_, "jobs/" + id + "/checkpoints/step-2/trainer_state.json", "{}");
  D2_ASSERT_OK(coordinator_->ArtifactStored(a1, "checkpoints/step-2/trainer_state.json"));
  EXPECT_EQ(coordinator_->GetJob(id)->checkpoint_step(), 2);

  D2_ASSERT_OK(Fail(rank1_worker, a2, /*retryable=*/true));
  EXPECT_EQ(State(id), v1::QUEUED);
  EXPECT_EQ(coordinator_->GetJob(id)->error().message(), "boom");
  // The surviving rank is told to stop; its slot is busy until it reports.
  v1::HeartbeatRequest hb;
  hb.set_worker_id(rank0_worker);
  hb.add_running_assignments(a1.id());
  auto beat = coordinator_->Heartbeat(hb);
  ASSERT_TRUE(beat.ok());
  ASSERT_EQ(beat->commands_size(), 1);
  EXPECT_EQ(beat->commands(0).type(), v1::WorkerCommand::STOP);
  EXPECT_EQ(beat->commands(0).assignment_id(), a1.id());
  coordinator_->ScheduleNow();
  EXPECT_EQ(State(id), v1::QUEUED);
  D2_ASSERT_OK(Fail(rank0_worker, a1, true, "ABORTED"));
  EXPECT_EQ(coordinator_->GetJob(id)->error().code(), "INTERNAL");  // the first failure stays the reason
  coordinator_->ScheduleNow();
  auto job = coordinator_->GetJob(id);
  EXPECT_EQ(job->state(), v1::SCHEDULED);
  EXPECT_EQ(job->attempt(), 2);
  const v1::Assignment retry = Lease(w1);
  EXPECT_EQ(retry.attempt(), 2);
  EXPECT_EQ(retry.resume_from(), "resume/checkpoints/step-2");
  ASSERT_EQ(retry.inputs_size(), 2);
  EXPECT_EQ(retry.inputs(1).path(), "resume/checkpoints/step-2/trainer_state.json");

  // The second failure uses up the retries.
  D2_ASSERT_OK(Fail(w1, retry, true));
  EXPECT_EQ(State(id), v1::FAILED);
}

TEST_F(CoordinatorTest, KeepsTheNewestCheckpointsOfAJob) {
  const std::string w = AddWorker(1);
  auto r = Request();
  r.mutable_spec()->mutable_train()->set_keep_checkpoints(2);
  const std::string id = Submit(r);
  coordinator_->ScheduleNow();
  const v1::Assignment a = Lease(w);
  for (int step : {2, 4, 6}) {
    const std::string dir = "checkpoints/step-" + std::to_string(step);
    Put(artifacts_, "jobs/" + id + "/" + dir + "/parameters.safetensors", "p");
    Put(artifacts_, "jobs/" + id + "/" + dir + "/trainer_state.json", "{}");
    D2_ASSERT_OK(coordinator_->ArtifactStored(a, dir + "/trainer_state.json"));
  }
  // A stale attempt's late upload of an older step changes nothing.
  D2_ASSERT_OK(coordinator_->ArtifactStored(a, "checkpoints/step-4/trainer_state.json"));
  EXPECT_EQ(coordinator_->GetJob(id)->checkpoint_step(), 6);
  auto files = artifacts_.List("jobs/" + id + "/checkpoints/");
  ASSERT_TRUE(files.ok());
  std::vector<std::string> keys;
  for (const ArtifactInfo& f : *files) keys.push_back(f.key.substr(("jobs/" + id + "/checkpoints/").size()));
  EXPECT_EQ(keys, (std::vector<std::string>{"step-4/parameters.safetensors", "step-4/trainer_state.json",
                                            "step-6/parameters.safetensors", "step-6/trainer_state.json"}));
}

TEST_F(CoordinatorTest, NonRetryableFailureEndsTheJob) {
  const std::string w = AddWorker(1);
  const std::string id = Submit(Request(1));
  coordinator_->ScheduleNow();
  D2_ASSERT_OK(Fail(w, Lease(w), /*retryable=*/false, "FAILED_PRECONDITION"));
  auto job = coordinator_->GetJob(id);
  EXPECT_EQ(job->state(), v1::FAILED);
  EXPECT_EQ(job->error().code(), "FAILED_PRECONDITION");
  EXPECT_EQ(job->error().attempt(), 1);
}

// A worker learns of an assignment at its next heartbeat: the ranks go to the
// idle workers heard from longest ago, whose next heartbeat comes soonest, but
// not to one that has missed its heartbeats (perhaps gone) while others are free.
TEST_F(CoordinatorTest, PlacesRanksOnTheWorkersHeardFromLongestAgo) {
  options_.heartbeat_interval = absl::Milliseconds(200);  // late: silent for over 400 ms
  Open();
  const std::string silent = AddWorker(1);
  std::this_thread::sleep_for(std::chrono::milliseconds(600));
  const std::string w1 = AddWorker(1), w2 = AddWorker(1), w3 = AddWorker(1);
  for (const std::string& w : {w1, w2}) {  // heard from: silent (late), w3 (registered), w1, w2 (now)
    v1::HeartbeatRequest hb;
    hb.set_worker_id(w);
    ASSERT_TRUE(coordinator_->Heartbeat(hb).ok());
  }
  const std::string id = Submit(Request(2));
  coordinator_->ScheduleNow();
  auto job = coordinator_->GetJob(id);
  ASSERT_TRUE(job.ok());
  EXPECT_EQ(std::vector<std::string>(job->workers().begin(), job->workers().end()),
            (std::vector<std::string>{w3, w1}));
  (void)silent;
}

TEST_F(CoordinatorTest, LostWorkerFailsItsAttemptAndStopsThePeers) {
  options_.heartbeat_timeout = absl::Milliseconds(300);
  Open();
  const std::string w1 = AddWorker(1), w2 = AddWorker(1);
  const std::string id = Submit(Request(2));
  coordinator_->ScheduleNow();
  const v1::Assignment a1 = Lease(w1), a2 = Lease(w2);
  const v1::HeartbeatRequest hb = KeepBeating(w1, a1);  // w2 has gone silent
  coordinator_->ScheduleNow();
  auto job = coordinator_->GetJob(id);
  EXPECT_EQ(job->state(), v1::QUEUED);
  EXPECT_EQ(job->error().code(), "UNAVAILABLE");
  auto beat = coordinator_->Heartbeat(hb);
  ASSERT_EQ(beat->commands_size(), 1);
  EXPECT_EQ(beat->commands(0).assignment_id(), a1.id());
  v1::HeartbeatRequest gone;
  gone.set_worker_id(w2);
  EXPECT_EQ(coordinator_->Heartbeat(gone).status().code(), absl::StatusCode::kNotFound);
  (void)a2;
}

// A worker that leaves (it shut down) is forgotten at once, not after the
// heartbeat timeout: the job placed on it is requeued, naming the worker and
// its reason, and the next round places it on the worker that stayed.
TEST_F(CoordinatorTest, AWorkerThatLeavesIsForgottenAtOnceAndItsJobRequeued) {
  const std::string w1 = AddWorker(1);
  const std::string id = Submit(Request(1));
  coordinator_->ScheduleNow();
  ASSERT_EQ(State(id), v1::SCHEDULED);  // placed on w1, not yet leased
  const std::string w2 = AddWorker(1);
  v1::LeaveWorkerRequest leave;
  leave.set_worker_id(w1);
  leave.set_reason("shutting down");
  D2_ASSERT_OK(coordinator_->Leave(leave));
  auto job = coordinator_->GetJob(id);
  EXPECT_EQ(job->state(), v1::QUEUED);
  EXPECT_EQ(job->error().code(), "UNAVAILABLE");
  EXPECT_TRUE(absl::StrContains(job->error().message(), absl::StrCat("(", w1, ") left: shutting down")))
      << job->error().message();
  v1::HeartbeatRequest gone;
  gone.set_worker_id(w1);
  EXPECT_EQ(coordinator_->Heartbeat(gone).status().code(), absl::StatusCode::kNotFound);
  EXPECT_EQ(coordinator_->Leave(leave).code(), absl::StatusCode::kNotFound);  // once
  coordinator_->ScheduleNow();
  EXPECT_EQ(Lease(w2).job_id(), id);
  const std::string text = prometheus::TextSerializer().Serialize(registry_->Collect());
  EXPECT_TRUE(absl::StrContains(text, "\nd2lora_workers_left_total 1\n")) << text;
  EXPECT_TRUE(absl::StrContains(text, "\nd2lora_workers_lost_total 0\n")) << text;
  leave.set_reason(std::string(1025, 'x'));
  EXPECT_EQ(coordinator_->Leave(leave).code(), absl::StatusCode::kInvalidArgument);
}

// A worker shutting down says so on its heartbeats (draining): from then on
// nothing is placed on it, though its slots are free; the coordinator logs it
// once. It would otherwise be preferred (heard from longest ago).
TEST_F(CoordinatorTest, NothingIsPlacedOnADrainingWorker) {
  const std::shared_ptr<LogLines> log = CaptureLog();
  Open();
  const std::string draining = AddWorker(1);
  v1::HeartbeatRequest hb;
  hb.set_worker_id(draining);
  hb.set_draining(true);
  D2_ASSERT_OK(coordinator_->Heartbeat(hb).status());
  D2_ASSERT_OK(coordinator_->Heartbeat(hb).status());
  const std::string id = Submit(Request(1));
  coordinator_->ScheduleNow();
  EXPECT_EQ(State(id), v1::QUEUED);  // its only candidate is draining
  std::this_thread::sleep_for(std::chrono::milliseconds(20));
  const std::string other = AddWorker(1);
  coordinator_->ScheduleNow();
  EXPECT_EQ(State(id), v1::SCHEDULED);
  EXPECT_EQ(Lease(other).job_id(), id);
  const std::vector<std::string> logged = log->Get();
  ASSERT_EQ(logged.size(), 1u);  // once, however many heartbeats say it
  EXPECT_TRUE(absl::StrContains(logged.front(), absl::StrCat("(", draining, ") is draining"))) << logged.front();
  // A heartbeat without the flag (the worker stayed after all) makes it a candidate again.
  hb.set_draining(false);
  D2_ASSERT_OK(coordinator_->Heartbeat(hb).status());
  const std::string next = Submit(Request(1));
  coordinator_->ScheduleNow();
  EXPECT_EQ(Lease(draining).job_id(), next);
}

// Elastic retries: with one of two workers gone for good, the retry waits
// resources.elastic_wait_seconds for 2 slots, then runs on 1 from the
// checkpoint, with a micro-batch that divides the larger share, and says so.
TEST_F(CoordinatorTest, AnElasticRetryRunsOnFewerRanksAfterItsWait) {
  options_.heartbeat_timeout = absl::Milliseconds(300);
  Open();
  const std::string w1 = AddWorker(1), w2 = AddWorker(1);
  auto r = Request(2);
  r.mutable_spec()->mutable_train()->set_batch_size(8);
  r.mutable_spec()->mutable_train()->set_micro_batch_size(4);
  r.mutable_spec()->mutable_resources()->set_min_world_size(1);
  r.mutable_spec()->mutable_resources()->set_elastic_wait_seconds(1);
  r.set_max_retries(2);
  const std::string id = Submit(r);
  auto rigid = Request(2);  // queued behind it, never elastic
  const std::string rigid_id = Submit(rigid);
  coordinator_->ScheduleNow();
  const v1::Assignment a1 = Lease(w1), a2 = Lease(w2);
  EXPECT_EQ(coordinator_->GetJob(id)->current_world_size(), 2);
  const std::string survivor = w1;
  const v1::Assignment mine = a1;
  Put(artifacts_, "jobs/" + id + "/checkpoints/step-2/trainer_state.json", "{}");
  D2_ASSERT_OK(coordinator_->ArtifactStored(a1.rank() == 0 ? a1 : a2, "checkpoints/step-2/trainer_state.json"));
  KeepBeating(survivor, mine);  // w2 has gone silent
  coordinator_->ScheduleNow();
  ASSERT_EQ(State(id), v1::QUEUED);
  D2_ASSERT_OK(Fail(survivor, mine, true, "ABORTED"));  // the surviving rank stops
  coordinator_->ScheduleNow();
  EXPECT_EQ(State(id), v1::QUEUED) << "placed on fewer ranks before its elastic wait";
  std::this_thread::sleep_for(std::chrono::milliseconds(1100));
  v1::HeartbeatRequest idle;
  idle.set_worker_id(survivor);
  ASSERT_TRUE(coordinator_->Heartbeat(idle).ok());
  coordinator_->ScheduleNow();
  auto job = coordinator_->GetJob(id);
  ASSERT_EQ(job->state(), v1::SCHEDULED);
  EXPECT_EQ(job->attempt(), 2);
  EXPECT_EQ(job->world_size(), 2);
  EXPECT_EQ(job->current_world_size(), 1);
  EXPECT_EQ(State(rigid_id), v1::QUEUED);
  const v1::Assignment retry = Lease(survivor);
  EXPECT_EQ(retry.world_size(), 1);
  EXPECT_EQ(retry.spec().resources().world_size(), 1);
  EXPECT_EQ(retry.spec().train().batch_size(), 8);  // the same global batch
  EXPECT_EQ(retry.spec().train().micro_batch_size(), 4);
  EXPECT_EQ(retry.resume_from(), "resume/checkpoints/step-2");
  // The change is a job event.
  bool said = false;
  auto events = coordinator_->WaitEvents(id, 0, absl::ZeroDuration());
  ASSERT_TRUE(events.ok()) << events.status();
  for (const v1::JobEvent& e : events->events) {
    said |= e.has_state() && e.state().state() == v1::SCHEDULED &&
            e.state().message().find("elastic: 1 of 2 ranks") != std::string::npos;
  }
  EXPECT_TRUE(said);
}

TEST_F(CoordinatorTest, CancelStopsRanksAtTheNextHeartbeat) {
  const std::string w = AddWorker(1);
  const std::string queued_then_cancelled = Submit(Request(1));
  auto c = coordinator_->Cancel(queued_then_cancelled, "");
  ASSERT_TRUE(c.ok());
  EXPECT_EQ(c->state(), v1::CANCELLED);

  const std::string id = Submit(Request(1));
  coordinator_->ScheduleNow();
  const v1::Assignment a = Lease(w);
  Start(w, a);
  ASSERT_EQ(State(id), v1::RUNNING);
  ASSERT_TRUE(coordinator_->Cancel(id, "changed my mind").ok());
  EXPECT_EQ(State(id), v1::CANCELLED);
  v1::HeartbeatRequest hb;
  hb.set_worker_id(w);
  hb.add_running_assignments(a.id());
  auto beat = coordinator_->Heartbeat(hb);
  ASSERT_EQ(beat->commands_size(), 1);
  EXPECT_EQ(beat->commands(0).reason(), "job cancelled");
  D2_ASSERT_OK(Fail(w, a, true, "ABORTED"));
  EXPECT_EQ(State(id), v1::CANCELLED);
  EXPECT_EQ(coordinator_->Cancel("job-nope", "").status().code(), absl::StatusCode::kNotFound);
}

// Pause: a running attempt's ranks are told to checkpoint and stop; the slot
// stays theirs (their checkpoint upload is still accepted) until they report,
// then the job is PAUSED with its slot free; resume queues it from that
// checkpoint, and pauses do not use up retries (max_retries 1 here).
TEST_F(CoordinatorTest, PauseCheckpointsFreesTheSlotAndResumeContinues) {
  const std::string w = AddWorker(1);
  auto r = Request(1);
  r.set_max_retries(1);
  const std::string id = Submit(r);
  for (int round = 1; round <= 2; ++round) {
    coordinator_->ScheduleNow();
    const v1::Assignment a = Lease(w);
    ASSERT_FALSE(a.id().empty()) << "round " << round;
    EXPECT_EQ(a.attempt(), round);
    Start(w, a);
    ASSERT_EQ(State(id), v1::RUNNING);
    auto paused = coordinator_->Pause(id, "make room");
    ASSERT_TRUE(paused.ok()) << paused.status();
    EXPECT_EQ(paused->state(), v1::PAUSING);
    EXPECT_EQ(coordinator_->Pause(id, "").value().state(), v1::PAUSING);  // again: nothing changes
    EXPECT_EQ(coordinator_->Resume(id).status().code(), absl::StatusCode::kFailedPrecondition);
    v1::HeartbeatRequest hb;
    hb.set_worker_id(w);
    hb.add_running_assignments(a.id());
    auto beat = coordinator_->Heartbeat(hb);
    ASSERT_EQ(beat->commands_size(), 1);
    EXPECT_EQ(beat->commands(0).type(), v1::WorkerCommand::STOP);
    EXPECT_EQ(beat->commands(0).reason(), "job paused: checkpoint and stop");
    // The stop checkpoint arrives while PAUSING and counts.
    const std::string dir = "checkpoints/step-" + std::to_string(10 * round);
    Put(artifacts_, "jobs/" + id + "/" + dir + "/parameters.safetensors", "p");
    Put(artifacts_, "jobs/" + id + "/" + dir + "/trainer_state.json", "{}");
    D2_ASSERT_OK(coordinator_->ArtifactStored(a, dir + "/trainer_state.json"));
    // No other job can take the slot yet.
    const std::string other = Submit(Request(1));
    coordinator_->ScheduleNow();
    EXPECT_EQ(State(other), v1::QUEUED);
    D2_ASSERT_OK(Fail(w, a, /*retryable=*/true, "ABORTED"));
    auto job = coordinator_->GetJob(id);
    EXPECT_EQ(job->state(), v1::PAUSED);
    EXPECT_EQ(job->checkpoint_step(), 10 * round);
    EXPECT_EQ(job->pauses(), round);
    EXPECT_EQ(job->workers_size(), 0);
    EXPECT_EQ(coordinator_->Pause(id, "").value().state(), v1::PAUSED);
    // The free slot goes to the other job, which runs to its end.
    coordinator_->ScheduleNow();
    EXPECT_EQ(State(other), v1::SCHEDULED);
    const v1::Assignment b = Lease(w);
    v1::CompleteAssignmentRequest done;
    done.set_worker_id(w);
    done.set_assignment_id(b.id());
    D2_ASSERT_OK(coordinator_->Complete(done));
    coordinator_->ScheduleNow();
    EXPECT_EQ(State(id), v1::PAUSED) << "a paused job is not placed";
    auto resumed = coordinator_->Resume(id);
    ASSERT_TRUE(resumed.ok()) << resumed.status();
    EXPECT_EQ(resumed->state(), v1::QUEUED);
    EXPECT_EQ(coordinator_->Resume(id).value().state(), v1::QUEUED);  // again: nothing changes
  }
  coordinator_->ScheduleNow();
  const v1::Assignment last = Lease(w);
  EXPECT_EQ(last.attempt(), 3);
  EXPECT_EQ(last.resume_from(), "resume/checkpoints/step-20");
  // A failure now is the first real one: retried (attempt 3 of which 2 were paused)...
  D2_ASSERT_OK(Fail(w, last, /*retryable=*/true));
  EXPECT_EQ(State(id), v1::QUEUED);
  EXPECT_NE(coordinator_->GetJob(id)->error().message().find("boom"), std::string::npos);
  coordinator_->ScheduleNow();
  // ...and the second uses up the one retry.
  D2_ASSERT_OK(Fail(w, Lease(w), /*retryable=*/true));
  EXPECT_EQ(State(id), v1::FAILED);
  EXPECT_EQ(coordinator_->Pause(id, "").status().code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_EQ(coordinator_->Resume(id).status().code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_EQ(coordinator_->Pause("job-nope", "").status().code(), absl::StatusCode::kNotFound);
  EXPECT_EQ(coordinator_->Pause(id, std::string(1025, 'x')).status().code(), absl::StatusCode::kInvalidArgument);
}

// A queued job pauses at once; a scheduled one whose ranks were never leased
// too; a pausing job whose worker is lost ends PAUSED; a pausing job whose
// rank 0 had already completed the run is SUCCEEDED; a paused job can be
// cancelled; and all of it survives a restart.
TEST_F(CoordinatorTest, PauseEdges) {
  options_.heartbeat_timeout = absl::Milliseconds(300);
  Open();
  const std::string queued = Submit(Request(1));
  EXPECT_EQ(coordinator_->Pause(queued, "").value().state(), v1::PAUSED);

  const std::string w1 = AddWorker(1);
  const std::string unleased = Submit(Request(1));
  coordinator_->ScheduleNow();
  ASSERT_EQ(State(unleased), v1::SCHEDULED);
  auto p = coordinator_->Pause(unleased, "");
  ASSERT_TRUE(p.ok()) << p.status();
  EXPECT_EQ(p->state(), v1::PAUSED) << "no rank held a slot: nothing to wait for";
  EXPECT_TRUE(Lease(w1).id().empty());

  // Lost while pausing.
  const std::string lost = Submit(Request(1));
  coordinator_->ScheduleNow();
  const v1::Assignment a = Lease(w1);
  ASSERT_EQ(a.job_id(), lost);
  ASSERT_EQ(coordinator_->Pause(lost, "").value().state(), v1::PAUSING);
  const std::string w2 = AddWorker(1);
  v1::HeartbeatRequest hb;
  hb.set_worker_id(w2);
  for (int i = 0; i < 5; ++i) {
    std::this_thread::sleep_for(std::chrono::milliseconds(100));
    ASSERT_TRUE(coordinator_->Heartbeat(hb).ok());
  }
  coordinator_->ScheduleNow();  // w1 is lost
  EXPECT_EQ(State(lost), v1::PAUSED);
  EXPECT_EQ(coordinator_->GetJob(lost)->pauses(), 1);

  // Rank 0 completed before the stop reached it.
  const std::string finished = Submit(Request(1));
  coordinator_->ScheduleNow();
  const v1::Assignment f = Lease(w2);
  ASSERT_EQ(f.job_id(), finished);
  ASSERT_EQ(coordinator_->Pause(finished, "").value().state(), v1::PAUSING);
  v1::CompleteAssignmentRequest done;
  done.set_worker_id(w2);
  done.set_assignment_id(f.id());
  done.set_summary_json(R"({"steps": 3})");
  D2_ASSERT_OK(coordinator_->Complete(done));
  EXPECT_EQ(State(finished), v1::SUCCEEDED);

  ASSERT_TRUE(coordinator_->Cancel(unleased, "no longer needed").ok());
  EXPECT_EQ(State(unleased), v1::CANCELLED);
  Open();  // restart
  EXPECT_EQ(State(queued), v1::PAUSED);
  EXPECT_EQ(State(lost), v1::PAUSED);
  EXPECT_EQ(State(unleased), v1::CANCELLED);
  ASSERT_TRUE(coordinator_->Resume(queued).ok());
  EXPECT_EQ(State(queued), v1::QUEUED);
}

TEST_F(CoordinatorTest, RestartLosesNothingAcknowledged) {
  const std::string w = AddWorker(1);
  const std::string id = Submit(Request(1));
  const std::string waiting = Submit(Request(1));
  coordinator_->ScheduleNow();
  const v1::Assignment a = Lease(w);
  Start(w, a);
  auto before = coordinator_->WaitEvents(id, 0, absl::ZeroDuration());
  Open();  // a new coordinator on the same database
  EXPECT_EQ(State(id), v1::RUNNING);
  EXPECT_EQ(State(waiting), v1::QUEUED);
  v1::HeartbeatRequest hb;  // the worker is re-adopted with its running rank
  hb.set_worker_id(w);
  hb.add_running_assignments(a.id());
  auto beat = coordinator_->Heartbeat(hb);
  ASSERT_TRUE(beat.ok()) << beat.status();
  EXPECT_EQ(beat->commands_size(), 0);
  v1::CompleteAssignmentRequest done;
  done.set_worker_id(w);
  done.set_assignment_id(a.id());
  D2_ASSERT_OK(coordinator_->Complete(done));
  EXPECT_EQ(State(id), v1::SUCCEEDED);
  auto after = coordinator_->WaitEvents(id, 0, absl::ZeroDuration());
  ASSERT_EQ(after->events.size(), before->events.size() + 1);  // sequence numbers continue
  EXPECT_EQ(after->events.back().seq(), static_cast<int64_t>(after->events.size()));
}

TEST_F(CoordinatorTest, IdempotencyKeyReturnsTheFirstJob) {
  auto r = Request();
  r.set_idempotency_key("k1");
  const std::string id = Submit(r);
  EXPECT_EQ(Submit(r), id);
  r.set_priority(3);
  EXPECT_EQ(coordinator_->Submit(r).status().code(), absl::StatusCode::kAlreadyExists);
}

TEST_F(CoordinatorTest, ListJobsFiltersAndPages) {
  std::vector<std::string> ids;
  for (int i = 0; i < 5; ++i) {
    auto r = Request();
    (*r.mutable_labels())["team"] = i % 2 ? "a" : "b";
    ids.push_back(Submit(r));
  }
  coordinator_->Cancel(ids[0], "").IgnoreError();
  v1::ListJobsRequest list;
  list.set_page_size(2);
  std::vector<std::string> seen;
  while (true) {
    auto page = coordinator_->ListJobs(list);
    ASSERT_TRUE(page.ok());
    for (const v1::Job& j : page->jobs()) seen.push_back(j.id());
    if (page->next_page_token().empty()) break;
    list.set_page_token(page->next_page_token());
  }
  EXPECT_EQ(seen, std::vector<std::string>(ids.rbegin(), ids.rend()));
  v1::ListJobsRequest filtered;
  filtered.add_states(v1::QUEUED);
  (*filtered.mutable_labels())["team"] = "b";
  auto page = coordinator_->ListJobs(filtered);
  ASSERT_EQ(page->jobs_size(), 2);  // ids[4], ids[2]; ids[0] was cancelled
  EXPECT_EQ(page->jobs(0).id(), ids[4]);
  list.set_page_token("garbage");
  EXPECT_EQ(coordinator_->ListJobs(list).status().code(), absl::StatusCode::kInvalidArgument);
}

TEST_F(CoordinatorTest, UploadReferencesBecomeAssignmentInputs) {
  Put(artifacts_, "uploads/up-model/config.json", server::testing::kTinyModelConfigJson);
  Put(artifacts_, "uploads/up-model/model.safetensors", "w");
  Put(artifacts_, "uploads/up-data/train.jsonl", "{}\n");
  const std::string w = AddWorker(1);
  auto r = Request();
  r.mutable_spec()->set_model("upload:up-model");
  r.mutable_spec()->mutable_data()->set_train("upload:up-data/train.jsonl");
  Submit(r);
  auto no_config = Request();
  no_config.mutable_spec()->set_model("upload:up-data");
  EXPECT_EQ(coordinator_->Submit(no_config).status().code(), absl::StatusCode::kInvalidArgument);
  coordinator_->ScheduleNow();
  const v1::Assignment a = Lease(w);
  EXPECT_EQ(a.spec().model(), "inputs/up-model");
  EXPECT_EQ(a.spec().data().train(), "inputs/up-data/train.jsonl");
  ASSERT_EQ(a.inputs_size(), 3);
  EXPECT_EQ(a.inputs(0).name(), "uploads/up-model/config.json");
  EXPECT_EQ(a.inputs(0).path(), "inputs/up-model/config.json");
  EXPECT_EQ(a.inputs(2).path(), "inputs/up-data/train.jsonl");
  EXPECT_FALSE(a.inputs(2).sha256().empty());
}

// The memory plan at submission: a job that fits no registered worker's slot
// is refused naming both sizes; one that fits is placed only on a slot that
// advertises enough memory, never on the worker with less.
TEST_F(CoordinatorTest, TheMemoryPlanRefusesWhatFitsNoWorkerAndPlacesWhereItFits) {
  Put(artifacts_, "uploads/up-model/config.json", server::testing::kTinyModelConfigJson);
  Put(artifacts_, "uploads/up-data/train.jsonl", "{}\n");
  auto r = Request();
  r.mutable_spec()->set_model("upload:up-model");
  r.mutable_spec()->mutable_data()->set_train("upload:up-data/train.jsonl");
  auto planned = PlanJobMemory(r.spec(), artifacts_);
  ASSERT_TRUE(planned.ok()) << planned.status();
  const int64_t bytes = planned->bytes;
  ASSERT_GT(bytes, 0);
  auto add_worker = [&](const std::string& name, int64_t memory) {
    v1::RegisterWorkerRequest w;
    w.set_name(name);
    w.set_host("127.0.0.1");
    v1::Slot* slot = w.add_slots();
    slot->set_index(0);
    slot->set_memory_bytes(memory);
    w.set_rendezvous_port_first(29500);
    w.set_rendezvous_port_last(29510);
    auto answer = coordinator_->Register(w);
    EXPECT_TRUE(answer.ok()) << answer.status();
    return answer->worker_id();
  };
  const std::string small = add_worker("small", bytes / 2);
  auto refused = coordinator_->Submit(r);
  ASSERT_EQ(refused.status().code(), absl::StatusCode::kFailedPrecondition) << refused.status();
  EXPECT_NE(refused.status().message().find(absl::StrCat("predicts ", bytes, " bytes")), std::string::npos)
      << refused.status();
  EXPECT_NE(refused.status().message().find(absl::StrCat("has ", bytes / 2, " bytes")), std::string::npos);

  const std::string big = add_worker("big", bytes * 2);
  auto job = coordinator_->Submit(r);
  ASSERT_TRUE(job.ok()) << job.status();
  EXPECT_EQ(job->memory_plan_bytes(), bytes);
  auto events = coordinator_->WaitEvents(job->id(), 0, absl::ZeroDuration());
  ASSERT_TRUE(events.ok() && !events->events.empty());
  EXPECT_NE(events->events[0].state().message().find("; memory plan: "), std::string::npos)
      << events->events[0].state().message();
  coordinator_->ScheduleNow();
  EXPECT_TRUE(Lease(small).id().empty());
  EXPECT_EQ(Lease(big).job_id(), job->id());
}

// LeaseAssignment's long poll: a lease waiting for work answers as soon as a
// job is placed on the worker (long before its wait is over), an idle one
// answers empty when its wait is over, and a lost worker's gets NOT_FOUND.
TEST_F(CoordinatorTest, ALongPollLeaseAnswersWhenWorkIsPlaced) {
  const std::string w = AddWorker(1);
  v1::LeaseAssignmentRequest r;
  r.set_worker_id(w);
  auto idle = coordinator_->Lease(r, absl::Milliseconds(200));
  ASSERT_TRUE(idle.ok()) << idle.status();
  EXPECT_FALSE(idle->has_assignment());

  absl::StatusOr<v1::LeaseAssignmentResponse> leased;
  absl::Time answered;
  const absl::Time start = absl::Now();
  std::thread poll([&] {
    leased = coordinator_->Lease(r, absl::Seconds(30));
    answered = absl::Now();
  });
  std::this_thread::sleep_for(std::chrono::milliseconds(300));
  const std::string id = Submit(Request());
  coordinator_->ScheduleNow();
  poll.join();
  ASSERT_TRUE(leased.ok()) << leased.status();
  ASSERT_TRUE(leased->has_assignment());
  EXPECT_EQ(leased->assignment().job_id(), id);
  EXPECT_LT(answered - start, absl::Seconds(15)) << "the lease waited out its poll instead of waking";

  // A waiting lease is not a heartbeat: a worker silent for longer than the
  // timeout is lost while its lease waits, and the lease answers NOT_FOUND.
  options_.heartbeat_timeout = absl::Milliseconds(1200);
  Open();
  const std::string silent = AddWorker(1);
  r.set_worker_id(silent);
  absl::StatusOr<v1::LeaseAssignmentResponse> waiting;
  std::thread wait_thread([&] { waiting = coordinator_->Lease(r, absl::Seconds(5)); });
  std::this_thread::sleep_for(std::chrono::milliseconds(1500));
  coordinator_->ScheduleNow();
  wait_thread.join();
  EXPECT_EQ(waiting.status().code(), absl::StatusCode::kNotFound) << waiting.status();
}

// A waiting lease wakes only for its own worker's work: ranks placed on
// another worker leave it asleep (it neither answers nor asks gRPC whether it
// was cancelled, which it does once per one-second slice), and a cancelled
// call ends at the end of its slice. Before, every placement woke every
// waiting lease of the fleet, each taking the coordinator's lock.
TEST_F(CoordinatorTest, ALongPollLeaseSleepsThroughOtherWorkersWork) {
  // The sleeper's one slot is busy with the first job (it was the only worker).
  const std::string sleeper = AddWorker(1);
  Submit(Request());
  coordinator_->ScheduleNow();
  ASSERT_FALSE(Lease(sleeper).id().empty());
  const std::string busy = AddWorker(6);

  std::atomic<int> asked{0};
  v1::LeaseAssignmentRequest r;
  r.set_worker_id(sleeper);
  absl::StatusOr<v1::LeaseAssignmentResponse> waiting;
  std::thread poll([&] {
    waiting = coordinator_->Lease(r, absl::Milliseconds(2500), [&] {
      ++asked;
      return false;
    });
  });
  std::this_thread::sleep_for(std::chrono::milliseconds(200));
  for (int i = 0; i < 5; ++i) {  // five jobs, all placed on the other worker
    Submit(Request());
    coordinator_->ScheduleNow();
    std::this_thread::sleep_for(std::chrono::milliseconds(50));
  }
  poll.join();
  ASSERT_TRUE(waiting.ok()) << waiting.status();
  EXPECT_FALSE(waiting->has_assignment());
  for (int i = 0; i < 5; ++i) EXPECT_FALSE(Lease(busy).id().empty()) << i;
  EXPECT_LE(asked.load(), 2) << "the sleeper was woken by work placed elsewhere";

  // A cancelled call ends when its slice does, not when its wait does.
  const absl::Time start = absl::Now();
  auto gone = coordinator_->Lease(r, absl::Seconds(20), [] { return true; });
  ASSERT_TRUE(gone.ok()) << gone.status();
  EXPECT_LT(absl::Now() - start, absl::Seconds(5));
}

// init.from_job: the source's adapter is copied into an upload of the new
// job's at submission (a retry with the same key copies nothing more), the
// first event names the step, and the ranks download the copy.
TEST_F(CoordinatorTest, InitFromJobCopiesTheSourcesAdapter) {
  const std::string source = Submit(Request());
  const std::string ck = "jobs/" + source + "/checkpoints/step-2/";
  Put(artifacts_, ck + "trainer_state.json", R"({"metrics": {"train": {"step": 2, "loss": 1.5}}})");
  Put(artifacts_, ck + "adapter/adapter_config.json", "{\"peft_type\": \"LORA\"}");
  Put(artifacts_, ck + "adapter/adapter_model.safetensors", "weights");
  Put(artifacts_, "jobs/" + source + "/checkpoints/step-4/parameters.safetensors", "incomplete");

  auto listed = coordinator_->ListCheckpoints(source);
  ASSERT_TRUE(listed.ok()) << listed.status();
  ASSERT_EQ(listed->checkpoints_size(), 2);
  EXPECT_TRUE(listed->checkpoints(0).has_adapter());
  EXPECT_EQ(listed->checkpoints(0).metrics().loss(), 1.5);
  EXPECT_FALSE(listed->checkpoints(1).complete());
  EXPECT_EQ(listed->final_adapter_step(), 0);
  EXPECT_EQ(coordinator_->ListCheckpoints("nope").status().code(), absl::StatusCode::kNotFound);

  auto r = Request();
  r.mutable_spec()->mutable_init()->set_from_job(source);
  r.set_idempotency_key("from-source");
  auto job = coordinator_->Submit(r);
  ASSERT_TRUE(job.ok()) << job.status();
  const std::string copy = job->spec().init().adapter();
  ASSERT_TRUE(absl::StartsWith(copy, "upload:")) << copy;
  EXPECT_EQ(job->spec().init().from_job(), source);
  auto uploads = artifacts_.List("uploads/");
  ASSERT_TRUE(uploads.ok());
  ASSERT_EQ(uploads->size(), 2u);
  EXPECT_EQ((*uploads)[1].key, "uploads/" + copy.substr(7) + "/adapter_model.safetensors");
  EXPECT_EQ((*uploads)[1].sha256, artifacts_.Stat(ck + "adapter/adapter_model.safetensors")->sha256);
  auto events = coordinator_->WaitEvents(job->id(), 0, absl::ZeroDuration());
  ASSERT_TRUE(events.ok() && !events->events.empty());
  const std::string& first = events->events[0].state().message();
  EXPECT_TRUE(absl::StartsWith(
      first, "submitted; starts from job " + source + "'s checkpoint at step 2 (copied as " + copy + "); "))
      << first;
  auto again = coordinator_->Submit(r);
  ASSERT_TRUE(again.ok()) << again.status();
  EXPECT_EQ(again->id(), job->id());
  EXPECT_EQ(artifacts_.List("uploads/")->size(), 2u);  // no second copy

  // The final adapter, once stored, is what step 0 starts from.
  Put(artifacts_, "jobs/" + source + "/adapter/adapter_config.json", "{}");
  Put(artifacts_, "jobs/" + source + "/adapter/adapter_model.safetensors", "final");
  auto latest = Request();
  latest.mutable_spec()->mutable_init()->set_from_job(source);
  auto from_final = coordinator_->Submit(latest);
  ASSERT_TRUE(from_final.ok()) << from_final.status();
  auto final_events = coordinator_->WaitEvents(from_final->id(), 0, absl::ZeroDuration());
  EXPECT_NE(final_events->events[0].state().message().find("'s final adapter at step 2"), std::string::npos)
      << final_events->events[0].state().message();

  auto refused = [&](const std::string& from_job, int64_t step, const std::string& adapter) {
    auto bad = Request();
    bad.mutable_spec()->mutable_init()->set_from_job(from_job);
    if (step > 0) bad.mutable_spec()->mutable_init()->set_step(step);
    if (!adapter.empty()) bad.mutable_spec()->mutable_init()->set_adapter(adapter);
    return coordinator_->Submit(bad).status();
  };
  const absl::Status unknown = refused("nope", 0, "");
  EXPECT_EQ(unknown.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(unknown.message(), "spec.init.from_job: job nope not found");
  const absl::Status no_step = refused(source, 3, "");
  EXPECT_EQ(no_step.code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_NE(no_step.message().find("no usable checkpoint at step 3 (stored with an adapter: 2)"), std::string::npos)
      << no_step;
  const absl::Status incomplete = refused(source, 4, "");
  EXPECT_NE(incomplete.message().find("at step 4: it is not complete"), std::string::npos) << incomplete;
  const absl::Status both = refused(source, 0, copy);
  EXPECT_EQ(both.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_NE(both.message().find("give init.adapter or init.from_job, not both"), std::string::npos) << both;

  // The ranks download the copy (the source job, queued first, takes the only slot first).
  const std::string w = AddWorker(2);
  coordinator_->ScheduleNow();
  std::vector<v1::Assignment> leased = {Lease(w), Lease(w)};
  const v1::Assignment* mine = nullptr;
  for (const v1::Assignment& a : leased) {
    if (a.job_id() == job->id()) mine = &a;
  }
  ASSERT_NE(mine, nullptr);
  EXPECT_EQ(mine->spec().init().adapter(), "inputs/" + copy.substr(7));
  std::set<std::string> paths;
  for (const v1::InputFile& in : mine->inputs()) paths.insert(in.path());
  EXPECT_EQ(paths.count("inputs/" + copy.substr(7) + "/adapter_model.safetensors"), 1u);
}

// Every job ID the coordinator lists, newest first (pages of 1000).
std::vector<std::pair<std::string, v1::JobState>> ListAll(Coordinator& c) {
  std::vector<std::pair<std::string, v1::JobState>> all;
  v1::ListJobsRequest r;
  r.set_page_size(1000);
  while (true) {
    auto page = c.ListJobs(r);
    EXPECT_TRUE(page.ok()) << page.status();
    if (!page.ok()) break;
    for (const v1::Job& j : page->jobs()) all.emplace_back(j.id(), j.state());
    if (page->next_page_token().empty()) break;
    r.set_page_token(page->next_page_token());
  }
  return all;
}

// Group commit: callers on many threads, their answers only once durable.
TEST_F(CoordinatorTest, ConcurrentSubmittersAreAllDurableListedOnceInOrder) {
  constexpr int kThreads = 8, kJobs = 25;
  std::vector<std::vector<std::string>> ids(kThreads);
  std::vector<std::thread> threads;
  for (int t = 0; t < kThreads; ++t) {
    threads.emplace_back([&, t] {
      for (int i = 0; i < kJobs; ++i) {
        auto job = coordinator_->Submit(Request());
        EXPECT_TRUE(job.ok()) << job.status();
        if (job.ok()) ids[t].push_back(job->id());
      }
    });
  }
  for (auto& t : threads) t.join();
  auto check = [&](const char* when) {
    const auto listed = ListAll(*coordinator_);
    std::map<std::string, size_t> position;  // in submission order
    for (size_t i = 0; i < listed.size(); ++i) {
      EXPECT_TRUE(position.emplace(listed[listed.size() - 1 - i].first, i).second)
          << when << ": " << listed[i].first << " listed twice";
      EXPECT_EQ(listed[i].second, v1::QUEUED) << when;
    }
    EXPECT_EQ(listed.size(), static_cast<size_t>(kThreads * kJobs)) << when;
    for (const auto& mine : ids) {  // each thread's jobs in the order it was answered
      for (size_t i = 1; i < mine.size(); ++i) {
        ASSERT_TRUE(position.count(mine[i]) && position.count(mine[i - 1])) << when << ": " << mine[i];
        EXPECT_LT(position[mine[i - 1]], position[mine[i]]) << when;
      }
    }
  };
  check("before the restart");
  EXPECT_GE(coordinator_->commit_stats().mutations, kThreads * kJobs);
  Open();  // the store, read from disk again
  check("after the restart");
}

// A store write that fails (another connection holds the database's write
// lock past the busy timeout) fails every call whose changes it carried, and
// the coordinator's state goes back to what the store has.
TEST_F(CoordinatorTest, AFailedStoreWriteFailsItsCallsAndRestoresTheStoredState) {
  store_options_.busy_timeout_ms = 100;
  const std::shared_ptr<LogLines> log = CaptureLog();
  Open();
  const std::string w = AddWorker(1);
  const std::string kept = Submit(Request());
  const auto before = ListAll(*coordinator_);

  sqlite3* other = nullptr;
  ASSERT_EQ(sqlite3_open(dir_.file("jobs.db").c_str(), &other), SQLITE_OK);
  ASSERT_EQ(sqlite3_exec(other, "BEGIN IMMEDIATE;", nullptr, nullptr, nullptr), SQLITE_OK);
  std::vector<std::thread> threads;
  std::atomic<int> succeeded{0};
  std::vector<absl::Status> errors(5);
  for (int t = 0; t < 4; ++t) {
    threads.emplace_back([&, t] {
      auto job = coordinator_->Submit(Request());
      if (job.ok()) ++succeeded;
      errors[t] = job.status();
    });
  }
  threads.emplace_back([&] {
    auto cancelled = coordinator_->Cancel(kept, "test");
    if (cancelled.ok()) ++succeeded;
    errors[4] = cancelled.status();
  });
  for (auto& t : threads) t.join();
  ASSERT_EQ(sqlite3_exec(other, "ROLLBACK;", nullptr, nullptr, nullptr), SQLITE_OK);
  sqlite3_close(other);
  EXPECT_EQ(succeeded, 0);
  for (const absl::Status& s : errors) {
    EXPECT_EQ(s.code(), absl::StatusCode::kUnavailable) << s;
    EXPECT_NE(s.message().find(dir_.file("jobs.db")), std::string::npos) << s;  // names the store
  }

  // Once the coordinator has reloaded the store (it answers again), it holds
  // exactly what the store holds: the cancel and the submissions are undone.
  absl::StatusOr<v1::Job> job;
  for (absl::Time end = absl::Now() + absl::Seconds(10); absl::Now() < end; absl::SleepFor(absl::Milliseconds(10))) {
    job = coordinator_->GetJob(kept);
    if (job.ok()) break;
  }
  ASSERT_TRUE(job.ok()) << job.status();
  EXPECT_EQ(job->state(), v1::QUEUED);
  EXPECT_FALSE(job->cancel_requested());
  EXPECT_EQ(ListAll(*coordinator_), before);
  EXPECT_GE(coordinator_->commit_stats().failed_batches, 1);
  // The operator is told: a line that names the store and the reload, and a counter.
  const std::vector<std::string> logged = log->Get();
  ASSERT_EQ(logged.size(), 2u);
  EXPECT_TRUE(absl::StrContains(logged.front(), "a job store write failed (UNAVAILABLE")) << logged.front();
  EXPECT_TRUE(absl::StrContains(logged.front(), dir_.file("jobs.db"))) << logged.front();
  EXPECT_TRUE(absl::StrContains(logged.back(), "from the job store; writes resume")) << logged.back();
  // A second failure soon after is counted, not logged again (a full disk fails every write).
  ASSERT_EQ(sqlite3_open(dir_.file("jobs.db").c_str(), &other), SQLITE_OK);
  ASSERT_EQ(sqlite3_exec(other, "BEGIN IMMEDIATE;", nullptr, nullptr, nullptr), SQLITE_OK);
  EXPECT_EQ(coordinator_->Submit(Request()).status().code(), absl::StatusCode::kUnavailable);
  ASSERT_EQ(sqlite3_exec(other, "ROLLBACK;", nullptr, nullptr, nullptr), SQLITE_OK);
  sqlite3_close(other);
  for (absl::Time end = absl::Now() + absl::Seconds(10); absl::Now() < end; absl::SleepFor(absl::Milliseconds(10))) {
    if (coordinator_->GetJob(kept).ok()) break;  // reloaded
  }
  EXPECT_EQ(log->Get(), logged);
  const std::string text = prometheus::TextSerializer().Serialize(registry_->Collect());
  EXPECT_GE(coordinator_->commit_stats().failed_batches, 2);
  EXPECT_TRUE(absl::StrContains(text, absl::StrCat("\nd2lora_store_write_failures_total ",
                                                   coordinator_->commit_stats().failed_batches, "\n")))
      << text;

  // And it works on: a job is placed, leased and finished.
  const std::string next = Submit(Request());
  coordinator_->ScheduleNow();
  const v1::Assignment a = Lease(w);
  EXPECT_EQ(a.job_id(), kept);
  const auto after = ListAll(*coordinator_);
  Open();
  EXPECT_EQ(ListAll(*coordinator_), after);
  EXPECT_EQ(State(kept), v1::SCHEDULED);
  EXPECT_EQ(State(next), v1::QUEUED);
}

}  // namespace
}  // namespace d2lora::server
