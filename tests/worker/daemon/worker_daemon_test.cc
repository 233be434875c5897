// The daemon end to end against an in-process fake coordinator and a shell
// script standing in for `d2lora train`.
#include "worker/daemon/worker_daemon.h"

#include <signal.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <condition_variable>
#include <deque>
#include <filesystem>
#include <functional>
#include <map>
#include <mutex>
#include <set>
#include <string>
#include <thread>
#include <vector>

#include <grpcpp/grpcpp.h>
#include <prometheus/registry.h>
#include <prometheus/text_serializer.h>

#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"
#include "common/sha256.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "tests/support/test_support.h"
#include "worker/daemon/rank_launcher_simulated.h"

namespace d2lora::worker {
namespace {

using d2lora::testing::ReadFile;
using d2lora::testing::TempDir;
using d2lora::testing::WriteFile;

// Modes, chosen by the first line of the train data.
constexpr char kFakeTrainer[] = R"SH(#!/bin/sh
config=""; rank=0; resume=""
while [ $# -gt 0 ]; do
  case "$1" in
    --config) config="$2"; shift ;;
    --rank) rank="$2"; shift ;;
    --resume) resume="$2"; shift ;;
  esac
  shift
done
dir=$(dirname "$config")
out="$dir/out"
mkdir -p "$out"
echo $$ > "$dir/trainer.pid"
echo "fake trainer rank $rank resume=$resume"
mode=$(head -n 1 "$dir/inputs/train.jsonl")
checkpoint() {
  mkdir -p "$out/checkpoints/step-$1/adapter"
  echo "params $1" > "$out/checkpoints/step-$1/parameters.safetensors"
  echo "adapter $1" > "$out/checkpoints/step-$1/adapter/adapter_model.safetensors"
  echo "{\"step\": $1}" > "$out/checkpoints/step-$1/trainer_state.json"
  echo "{\"event\":\"checkpoint\",\"step\":$1,\"path\":\"$out/checkpoints/step-$1\"}" >> "$out/metrics.jsonl"
}
step() {
  echo "{\"event\":\"step\",\"step\":$1,\"total_steps\":2,\"epoch\":0,\"loss\":$2,\"lr\":0.001,\"grad_norm\":1.0,\"tokens_per_second\":100.0,\"elapsed_seconds\":0.5,\"spikes_total\":0,\"skipped\":false}" >> "$out/metrics.jsonl"
}
case "$mode" in
  succeed)
    echo '{"event":"start","total_steps":2}' >> "$out/metrics.jsonl"
    step 1 2.5
    sleep 0.3
    echo '{"event":"eval","step":1,"final":false,"loss":1.5,"accuracy":0.5}' >> "$out/metrics.jsonl"
    checkpoint 1
    sleep 0.3
    step 2 2.0
    mkdir -p "$out/adapter"
    echo "weights" > "$out/adapter/adapter_model.safetensors"
    echo '{"r":8}' > "$out/adapter/adapter_config.json"
    cp "$config" "$out/spec.yaml"
    echo '{"status":"succeeded","steps":2}' > "$out/summary.json"
    echo '{"event":"end"}' >> "$out/metrics.jsonl"
    echo "done"
    exit 0 ;;
  fail)
    echo "working"
    echo "d2lora train: error: data.train: line 3: not JSON" >&2
    echo '{"code": "INVALID_ARGUMENT", "message": "data.train: line 3: not JSON", "retryable": false}' > "$D2LORA_ERROR_FILE"
    exit 1 ;;
  diverge)
    echo "d2lora train: error: training diverged: non-finite loss at step 6" >&2
    echo '{"code": "FAILED_PRECONDITION", "message": "training diverged: non-finite loss at step 6", "reason": "DIVERGED", "retryable": false, "step": 6}' > "$D2LORA_ERROR_FILE"
    exit 1 ;;
  lost-peer)
    echo "d2lora train: error: INVALID_ARGUMENT training diverged: (a misleading line)" >&2
    echo '{"code": "UNAVAILABLE", "message": "rank 1 went away", "retryable": true}' > "$D2LORA_ERROR_FILE"
    exit 1 ;;
  crash)
    echo "d2lora train: error: INVALID_ARGUMENT (a line that decides nothing)" >&2
    kill -SEGV $$ ;;
  silent)
    echo "d2lora train: error: FAILED_PRECONDITION (no error file)" >&2
    exit 1 ;;
  usage)
    echo "d2lora train: unknown flag --bogus" >&2
    echo '{"code": "INVALID_ARGUMENT", "message": "--bogus: unknown flag", "reason": "USAGE", "retryable": false}' > "$D2LORA_ERROR_FILE"
    exit 2 ;;
  hang)
    trap 'echo "got SIGTERM"; checkpoint 7; exit 4' TERM
    step 1 2.5
    echo "waiting"
    while :; do sleep 0.05; done ;;
  *)
    echo "unknown mode $mode" >&2
    exit 3 ;;
esac
)SH";

struct Upload {
  std::string assignment_id;
  std::string name;
  std::string data;
};

class FakeCoordinator final : public v1::WorkerService::Service {
 public:
  // --- what the test controls
  void Queue(const v1::Assignment& a) {
    std::lock_guard<std::mutex> lock(mu_);
    queue_.push_back(a);
    cv_.notify_all();  // a long-polling lease
  }
  void Command(const v1::WorkerCommand& c) {
    std::lock_guard<std::mutex> lock(mu_);
    commands_.push_back(c);
  }
  void ForgetWorkers() {
    std::lock_guard<std::mutex> lock(mu_);
    workers_.clear();
  }
  void SetInput(const std::string& name, const std::string& data) {
    std::lock_guard<std::mutex> lock(mu_);
    inputs_[name] = data;
  }

  // Waits for `pred` (called under the lock).
  bool WaitFor(const std::function<bool()>& pred, absl::Duration timeout = absl::Seconds(30)) {
    std::unique_lock<std::mutex> lock(mu_);
    return cv_.wait_for(lock, absl::ToChronoMilliseconds(timeout), pred);
  }

  // --- the service
  grpc::Status RegisterWorker(grpc::ServerContext*, const v1::RegisterWorkerRequest* request,
                              v1::RegisterWorkerResponse* response) override {
    std::lock_guard<std::mutex> lock(mu_);
    registrations_.push_back(*request);
    const std::string id = absl::StrCat("w-", registrations_.size());
    workers_.insert(id);
    heartbeats_ = 0;  // counts the heartbeats of the latest registration
    last_running_.clear();
    response->set_worker_id(id);
    response->set_heartbeat_interval_ms(heartbeat_interval_ms_);
    response->set_heartbeat_timeout_ms(1000);
    cv_.notify_all();
    return grpc::Status::OK;
  }
  grpc::Status Heartbeat(grpc::ServerContext*, const v1::HeartbeatRequest* request,
                         v1::HeartbeatResponse* response) override {
    std::lock_guard<std::mutex> lock(mu_);
    if (!workers_.count(request->worker_id())) return grpc::Status(grpc::StatusCode::NOT_FOUND, "unknown worker");
    ++heartbeats_;
    if (request->draining() && draining_heartbeats_++ == 0) failed_before_draining_ = failed_.size();
    for (const std::string& id : request->running_assignments()) ever_running_.insert(id);
    last_running_.assign(request->running_assignments().begin(), request->running_assignments().end());
    for (const auto& c : commands_) *response->add_commands() = c;
    commands_.clear();
    response->set_work_available(!queue_.empty());
    cv_.notify_all();
    return grpc::Status::OK;
  }
  grpc::Status LeaseAssignment(grpc::ServerContext* context, const v1::LeaseAssignmentRequest* request,
                               v1::LeaseAssignmentResponse* response) override {
    std::unique_lock<std::mutex> lock(mu_);
    if (!workers_.count(request->worker_id())) return grpc::Status(grpc::StatusCode::NOT_FOUND, "unknown worker");
    if (request->wait_ms() > 0) {
      ++long_polls_;
      cv_.notify_all();
    }
    if (long_poll_ && request->wait_ms() > 0) {
      // As the coordinator does: answer as soon as there is work, or after the wait (or a cancel).
      const auto deadline = std::chrono::steady_clock::now() + std::chrono::milliseconds(request->wait_ms());
      while (queue_.empty() && !context->IsCancelled() && std::chrono::steady_clock::now() < deadline) {
        cv_.wait_for(lock, std::chrono::milliseconds(100));
      }
    }
    if (!queue_.empty()) {
      *response->mutable_assignment() = queue_.front();
      queue_.pop_front();
    }
    return grpc::Status::OK;
  }
  grpc::Status ReportProgress(grpc::ServerContext*, const v1::ReportProgressRequest* request,
                              v1::ReportProgressResponse* response) override {
    std::lock_guard<std::mutex> lock(mu_);
    if (!workers_.count(request->worker_id())) return grpc::Status(grpc::StatusCode::NOT_FOUND, "unknown worker");
    reports_.push_back(*request);
    response->set_stop(stop_on_report_.count(request->assignment_id()) > 0);
    if (request->started()) started_.insert(request->assignment_id());
    for (const auto& line : request->logs()) logs_[request->assignment_id()].push_back(line.text());
    cv_.notify_all();
    return grpc::Status::OK;
  }
  grpc::Status DownloadInput(grpc::ServerContext*, const v1::DownloadInputRequest* request,
                             grpc::ServerWriter<v1::FileChunk>* writer) override {
    std::string data;
    {
      std::lock_guard<std::mutex> lock(mu_);
      auto it = inputs_.find(request->name());
      if (it == inputs_.end()) return grpc::Status(grpc::StatusCode::NOT_FOUND, "no such input");
      data = it->second;
    }
    v1::FileChunk chunk;
    chunk.set_offset(request->offset());
    chunk.set_data(data.substr(static_cast<size_t>(request->offset())));
    chunk.set_size(static_cast<int64_t>(data.size()));
    chunk.set_sha256(Sha256Hex(data));
    writer->Write(chunk);
    return grpc::Status::OK;
  }
  grpc::Status UploadArtifact(grpc::ServerContext*, grpc::ServerReader<v1::UploadArtifactRequest>* reader,
                              v1::Artifact* response) override {
    v1::UploadArtifactRequest message;
    if (!reader->Read(&message) || !message.has_header()) {
      return grpc::Status(grpc::StatusCode::INVALID_ARGUMENT, "no header");
    }
    const v1::UploadArtifactHeader header = message.header();
    std::string data;
    while (reader->Read(&message)) data += message.data();
    if (static_cast<int64_t>(data.size()) != header.size() || Sha256Hex(data) != header.sha256()) {
      return grpc::Status(grpc::StatusCode::DATA_LOSS, "size or sha256 mismatch");
    }
    std::lock_guard<std::mutex> lock(mu_);
    uploads_.push_back({header.assignment_id(), header.name(), data});
    response->set_name(header.name());
    response->set_size(header.size());
    cv_.notify_all();
    return grpc::Status::OK;
  }
  grpc::Status CompleteAssignment(grpc::ServerContext*, const v1::CompleteAssignmentRequest* request,
                                  v1::CompleteAssignmentResponse*) override {
    std::lock_guard<std::mutex> lock(mu_);
    completed_.push_back(*request);
    cv_.notify_all();
    return grpc::Status::OK;
  }
  grpc::Status FailAssignment(grpc::ServerContext*, const v1::FailAssignmentRequest* request,
                              v1::FailAssignmentResponse*) override {
    std::lock_guard<std::mutex> lock(mu_);
    failed_.push_back(*request);
    cv_.notify_all();
    return grpc::Status::OK;
  }
  grpc::Status LeaveWorker(grpc::ServerContext*, const v1::LeaveWorkerRequest* request,
                           v1::LeaveWorkerResponse*) override {
    std::lock_guard<std::mutex> lock(mu_);
    if (!workers_.erase(request->worker_id())) return grpc::Status(grpc::StatusCode::NOT_FOUND, "unknown worker");
    left_.push_back(*request);
    failed_before_leaving_ = failed_.size();
    cv_.notify_all();
    return grpc::Status::OK;
  }

  // --- what the test inspects (under the lock, from WaitFor predicates or after)
  std::mutex mu_;
  std::condition_variable cv_;
  std::deque<v1::Assignment> queue_;
  std::vector<v1::WorkerCommand> commands_;
  std::set<std::string> workers_;
  std::map<std::string, std::string> inputs_;
  std::vector<v1::RegisterWorkerRequest> registrations_;
  int heartbeats_ = 0;
  std::set<std::string> ever_running_;
  std::vector<std::string> last_running_;
  int heartbeat_interval_ms_ = 100;
  bool long_poll_ = false;  // LeaseAssignment waits for work (wait_ms) as the coordinator does
  int long_polls_ = 0;      // LeaseAssignment calls with wait_ms > 0
  std::vector<v1::ReportProgressRequest> reports_;
  std::set<std::string> started_;
  std::set<std::string> stop_on_report_;
  std::map<std::string, std::vector<std::string>> logs_;
  std::vector<Upload> uploads_;
  std::vector<v1::CompleteAssignmentRequest> completed_;
  std::vector<v1::FailAssignmentRequest> failed_;
  std::vector<v1::LeaveWorkerRequest> left_;
  size_t failed_before_leaving_ = 0;  // failure reports received when LeaveWorker came
  int draining_heartbeats_ = 0;       // heartbeats that said the worker is shutting down
  size_t failed_before_draining_ = 0;  // failure reports received when the first of them came
};

class WorkerDaemonTest : public ::testing::Test {
 protected:
  void SetUp() override {
    StartServer(0);
    trainer_ = dir_.file("fake-d2lora");
    WriteFile(trainer_, kFakeTrainer);
    chmod(trainer_.c_str(), 0755);
    fake_.SetInput("model-config", "{}");
  }
  void TearDown() override {
    StopDaemon();
    if (server_) server_->Shutdown(absl::ToChronoTime(absl::Now() + absl::Seconds(1)));
  }

  void StartServer(int port) {
    grpc::ServerBuilder builder;
    builder.AddListeningPort(absl::StrCat("127.0.0.1:", port), grpc::InsecureServerCredentials(), &port_);
    builder.RegisterService(&fake_);
    server_ = builder.BuildAndStart();
    ASSERT_NE(server_, nullptr);
    ASSERT_GT(port_, 0);
  }

  WorkerDaemon::Options Options() {
    WorkerDaemon::Options options;
    options.coordinator.endpoint = absl::StrCat("127.0.0.1:", port_);
    options.slots = 2;
    options.device = "cpu";
    options.work_dir = dir_.file("work");
    options.trainer = trainer_;
    options.name = "test-worker";
    options.stop_grace = absl::Seconds(3);
    options.report_interval = absl::Milliseconds(50);
    return options;
  }

  void StartDaemon(WorkerDaemon::Options options) {
    auto daemon = WorkerDaemon::Create(std::move(options), registry_);
    ASSERT_TRUE(daemon.ok()) << daemon.status();
    daemon_ = std::move(*daemon);
    run_thread_ = std::thread([this] { run_status_ = daemon_->Run(); });
  }
  void StartDaemon() { StartDaemon(Options()); }

  void StopDaemon() {
    if (!daemon_) return;
    daemon_->Shutdown();
    run_thread_.join();
    EXPECT_TRUE(run_status_.ok()) << run_status_;
    daemon_.reset();
  }

  // An assignment of one rank whose train data holds `mode`.
  v1::Assignment Assignment(const std::string& id, const std::string& mode, int rank = 0, int world_size = 1) {
    fake_.SetInput("train-" + id, mode + "\n");
    v1::Assignment a;
    a.set_id(id);
    a.set_job_id("job-" + id);
    a.set_attempt(1);
    a.set_rank(rank);
    a.set_world_size(world_size);
    a.set_local_rank(rank);
    a.set_slot(rank);
    a.set_master_addr("127.0.0.1");
    a.set_master_port(29500);
    a.mutable_spec()->set_name("unit");
    a.mutable_spec()->set_model("inputs/model");
    a.mutable_spec()->mutable_data()->set_train("inputs/train.jsonl");
    v1::InputFile* config = a.add_inputs();
    config->set_name("model-config");
    config->set_path("inputs/model/config.json");
    config->set_size(2);
    config->set_sha256(Sha256Hex("{}"));
    v1::InputFile* train = a.add_inputs();
    train->set_name("train-" + id);
    train->set_path("inputs/train.jsonl");
    train->set_size(static_cast<int64_t>(mode.size() + 1));
    train->set_sha256(Sha256Hex(mode + "\n"));
    return a;
  }

  std::string RankDir(const v1::Assignment& a) { return AssignmentRunner::Directory(Options().work_dir, a); }

  std::vector<std::string> UploadNames(const std::string& assignment_id) {
    std::lock_guard<std::mutex> lock(fake_.mu_);
    std::vector<std::string> names;
    for (const Upload& u : fake_.uploads_) {
      if (u.assignment_id == assignment_id) names.push_back(u.name);
    }
    return names;
  }

  std::string Metrics() {
    prometheus::TextSerializer serializer;
    return serializer.Serialize(registry_.Collect());
  }

  static bool Alive(pid_t pid) {
    if (kill(pid, 0) != 0) return false;
    // A zombie is dead too.
    const std::string stat = ReadFile(absl::StrCat("/proc/", pid, "/stat"));
    const size_t paren = stat.rfind(')');
    return paren == std::string::npos || stat.size() < paren + 3 || stat[paren + 2] != 'Z';
  }

  TempDir dir_;
  FakeCoordinator fake_;
  std::unique_ptr<grpc::Server> server_;
  int port_ = 0;
  std::string trainer_;
  prometheus::Registry registry_;
  std::unique_ptr<WorkerDaemon> daemon_;
  std::thread run_thread_;
  absl::Status run_status_;
};

TEST_F(WorkerDaemonTest, RegistersItsSlots) {
  StartDaemon();
  ASSERT_TRUE(fake_.WaitFor([&] { return fake_.heartbeats_ >= 2; }));
  std::lock_guard<std::mutex> lock(fake_.mu_);
  ASSERT_EQ(fake_.registrations_.size(), 1u);
  const v1::RegisterWorkerRequest& r = fake_.registrations_[0];
  EXPECT_EQ(r.name(), "test-worker");
  EXPECT_EQ(r.host(), "127.0.0.1");  // a loopback coordinator
  ASSERT_EQ(r.slots_size(), 2);
  EXPECT_EQ(r.slots(0).index(), 0);
  EXPECT_EQ(r.slots(1).index(), 1);
  EXPECT_EQ(r.slots(1).device(), "cpu");
  EXPECT_GE(r.slots(0).cores(), 1);
  EXPECT_GT(r.slots(0).memory_bytes(), 0);
  EXPECT_EQ(r.rendezvous_port_first(), 29500);
  EXPECT_EQ(r.rendezvous_port_last(), 29999);
  EXPECT_FALSE(r.version().empty());
  EXPECT_EQ(daemon_->worker_id(), "w-1");
}

TEST(JitteredIntervalTest, SpreadsWithinItsBounds) {
  std::mt19937_64 rng(7);
  absl::Duration lo = absl::InfiniteDuration(), hi = absl::ZeroDuration();
  for (int i = 0; i < 2000; ++i) {
    const absl::Duration d = JitteredInterval(absl::Seconds(2), 0.1, rng);
    lo = std::min(lo, d);
    hi = std::max(hi, d);
  }
  EXPECT_GE(lo, absl::Milliseconds(1800));
  EXPECT_LE(hi, absl::Milliseconds(2200));
  EXPECT_LT(lo, absl::Milliseconds(1850));  // spread over the range, not a constant
  EXPECT_GT(hi, absl::Milliseconds(2150));
  EXPECT_EQ(JitteredInterval(absl::Seconds(2), 0, rng), absl::Seconds(2));
  EXPECT_LE(JitteredInterval(absl::Seconds(2), 9, rng), absl::Seconds(3));  // clamped to 0.5
}

// With heartbeats a minute apart, work placed after the first one is leased
// within seconds only through the long poll; with lease_wait 0 the worker
// leases at its heartbeats (the behaviour before the long poll), and against a
// coordinator that answers at once the lease thread falls back to them too.
TEST_F(WorkerDaemonTest, TheLongPollLeasesWorkAsSoonAsItIsPlaced) {
  fake_.heartbeat_interval_ms_ = 60000;
  fake_.long_poll_ = true;
  StartDaemon();
  ASSERT_TRUE(fake_.WaitFor([&] { return fake_.heartbeats_ >= 1 && fake_.long_polls_ >= 1; }));
  fake_.Queue(Assignment("lp", "succeed"));
  EXPECT_TRUE(fake_.WaitFor([&] { return fake_.started_.count("lp") > 0; }, absl::Seconds(20)))
      << "not leased before the next heartbeat";
  std::lock_guard<std::mutex> lock(fake_.mu_);
  EXPECT_EQ(fake_.heartbeats_, 1);
}

TEST_F(WorkerDaemonTest, WithoutTheLongPollWorkWaitsForAHeartbeat) {
  fake_.heartbeat_interval_ms_ = 60000;
  fake_.long_poll_ = true;
  WorkerDaemon::Options options = Options();
  options.lease_wait = absl::ZeroDuration();
  StartDaemon(options);
  ASSERT_TRUE(fake_.WaitFor([&] { return fake_.heartbeats_ >= 1; }));
  fake_.Queue(Assignment("hb", "succeed"));
  EXPECT_FALSE(fake_.WaitFor([&] { return fake_.started_.count("hb") > 0; }, absl::Seconds(2)));
  std::lock_guard<std::mutex> lock(fake_.mu_);
  EXPECT_EQ(fake_.long_polls_, 0);
}

// A stand-in for nvidia-smi on a machine with GPUs: a script that prints what
// the real one prints for `--query-gpu=memory.total --format=csv,noheader,nounits`
// (or fails), and records its arguments.
std::string FakeNvidiaSmi(const TempDir& dir, const std::string& body) {
  const std::string path = dir.file("nvidia-smi");
  WriteFile(path, absl::StrCat("#!/bin/sh\necho \"$@\" > ", dir.file("nvidia-smi.args"), "\n", body));
  chmod(path.c_str(), 0755);
  return path;
}

TEST_F(WorkerDaemonTest, CudaSlotsAdvertiseTheirGpusMemory) {
  WorkerDaemon::Options options = Options();
  options.device = "cuda";
  options.slots = 3;
  options.advertise_host = "node7";
  // Four GPUs, the last one smaller: slot i is cuda:i with GPU i's memory.
  options.nvidia_smi = FakeNvidiaSmi(dir_, "printf '81559\\n81559\\n40960\\n16384\\n'\n");
  auto daemon = WorkerDaemon::Create(options, registry_);
  ASSERT_TRUE(daemon.ok()) << daemon.status();
  EXPECT_EQ(ReadFile(dir_.file("nvidia-smi.args")), "--query-gpu=memory.total --format=csv,noheader,nounits\n");
  const v1::RegisterWorkerRequest r = (*daemon)->RegistrationRequest();
  ASSERT_EQ(r.slots_size(), 3);
  EXPECT_EQ(r.slots(2).device(), "cuda:2");
  EXPECT_EQ(r.slots(0).memory_bytes(), int64_t{81559} << 20);
  EXPECT_EQ(r.slots(2).memory_bytes(), int64_t{40960} << 20);
  EXPECT_EQ(r.host(), "node7");

  // --slot-memory wins over what is detected, on either device.
  options.slot_memory_bytes = int64_t{24} << 30;
  auto given = WorkerDaemon::Create(options, registry_);
  ASSERT_TRUE(given.ok()) << given.status();
  EXPECT_EQ((*given)->RegistrationRequest().slots(2).memory_bytes(), int64_t{24} << 30);
}

// A CUDA worker that cannot learn its GPUs' memory does not start (it would
// advertise memory it does not have); the error says what failed and the flag
// that fixes it.
TEST_F(WorkerDaemonTest, CudaWithoutGpuMemoryRefusesToStart) {
  WorkerDaemon::Options options = Options();
  options.device = "cuda";
  options.slots = 2;
  options.nvidia_smi = FakeNvidiaSmi(dir_, "echo 'NVIDIA-SMI has failed because it could not communicate'; exit 9\n");
  auto failed = WorkerDaemon::Create(options, registry_);
  ASSERT_EQ(failed.status().code(), absl::StatusCode::kFailedPrecondition) << failed.status();
  EXPECT_THAT(std::string(failed.status().message()),
              ::testing::AllOf(::testing::HasSubstr("exit 9"), ::testing::HasSubstr("could not communicate"),
                             ::testing::HasSubstr("--slot-memory")));

  options.nvidia_smi = dir_.file("no-such-nvidia-smi");
  EXPECT_THAT(std::string(WorkerDaemon::Create(options, registry_).status().message()),
              ::testing::HasSubstr("was not found"));

  options.nvidia_smi = FakeNvidiaSmi(dir_, "echo 81559; echo '[N/A]'\n");
  EXPECT_THAT(std::string(WorkerDaemon::Create(options, registry_).status().message()),
              ::testing::HasSubstr("line 2: \"[N/A]\" is not a MiB count"));

  options.nvidia_smi = FakeNvidiaSmi(dir_, "echo 81559\n");  // one GPU, two slots
  auto too_many = WorkerDaemon::Create(options, registry_);
  EXPECT_EQ(too_many.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(std::string(too_many.status().message()), ::testing::HasSubstr("lists 1 GPU(s)"));
}

TEST_F(WorkerDaemonTest, RunsAnAssignmentToCompletion) {
  const v1::Assignment a = Assignment("a1", "succeed");
  fake_.Queue(a);
  StartDaemon();
  ASSERT_TRUE(fake_.WaitFor([&] { return !fake_.completed_.empty() || !fake_.failed_.empty(); }));
  std::lock_guard<std::mutex> lock(fake_.mu_);
  ASSERT_TRUE(fake_.failed_.empty()) << fake_.failed_[0].DebugString();
  ASSERT_EQ(fake_.completed_.size(), 1u);
  EXPECT_EQ(fake_.completed_[0].assignment_id(), "a1");
  EXPECT_EQ(fake_.completed_[0].worker_id(), "w-1");
  EXPECT_EQ(fake_.completed_[0].summary_json(), "{\"status\":\"succeeded\",\"steps\":2}\n");
  EXPECT_TRUE(fake_.started_.count("a1"));
  EXPECT_TRUE(fake_.ever_running_.count("a1"));

  // The reports: started first; the metrics of the last step, with the evaluation's figures.
  ASSERT_FALSE(fake_.reports_.empty());
  EXPECT_TRUE(fake_.reports_[0].started());
  bool saw_step2 = false, saw_eval = false;
  for (const auto& r : fake_.reports_) {
    if (r.has_metrics() && r.metrics().step() == 2) {
      saw_step2 = true;
      EXPECT_DOUBLE_EQ(r.metrics().loss(), 2.0);
      EXPECT_DOUBLE_EQ(r.metrics().eval_loss(), 1.5);
      EXPECT_DOUBLE_EQ(r.metrics().eval_accuracy(), 0.5);
    }
    for (const auto& e : r.evals()) {
      saw_eval = true;
      EXPECT_EQ(e.step(), 1);
      EXPECT_DOUBLE_EQ(e.accuracy(), 0.5);
    }
  }
  EXPECT_TRUE(saw_step2);
  EXPECT_TRUE(saw_eval);
  const auto& logs = fake_.logs_["a1"];
  EXPECT_NE(std::find(logs.begin(), logs.end(), "fake trainer rank 0 resume="), logs.end());
  EXPECT_NE(std::find(logs.begin(), logs.end(), "done"), logs.end());

  // Uploads: the checkpoint with trainer_state.json last, then the outputs, the log.
  std::vector<std::string> names;
  std::map<std::string, std::string> data;
  for (const Upload& u : fake_.uploads_) {
    names.push_back(u.name);
    data[u.name] = u.data;
  }
  auto index = [&](const std::string& name) {
    return std::find(names.begin(), names.end(), name) - names.begin();
  };
  const std::vector<std::string> expected = {
      "checkpoints/step-1/adapter/adapter_model.safetensors",
      "checkpoints/step-1/parameters.safetensors",
      "checkpoints/step-1/trainer_state.json",
      "adapter/adapter_config.json",
      "adapter/adapter_model.safetensors",
      "metrics.jsonl",
      "summary.json",
      "spec.yaml",
      "logs/attempt-1-rank-0.log"};
  for (const std::string& name : expected) EXPECT_LT(index(name), static_cast<long>(names.size())) << name;
  EXPECT_LT(index("checkpoints/step-1/parameters.safetensors"), index("checkpoints/step-1/trainer_state.json"));
  EXPECT_LT(index("checkpoints/step-1/adapter/adapter_model.safetensors"),
            index("checkpoints/step-1/trainer_state.json"));
  EXPECT_EQ(data["checkpoints/step-1/trainer_state.json"], "{\"step\": 1}\n");
  EXPECT_EQ(data["adapter/adapter_model.safetensors"], "weights\n");
  EXPECT_TRUE(absl::StrContains(data["logs/attempt-1-rank-0.log"], "done"));
  EXPECT_TRUE(absl::StrContains(data["spec.yaml"], RankDir(a) + "/out"));

  // The spec the rank ran.
  const std::string spec = ReadFile(RankDir(a) + "/spec.yaml");
  EXPECT_TRUE(absl::StrContains(spec, RankDir(a) + "/inputs/train.jsonl")) << spec;
}

TEST_F(WorkerDaemonTest, MetricsFollowTheAssignments) {
  fake_.Queue(Assignment("m1", "succeed"));
  StartDaemon();
  ASSERT_TRUE(fake_.WaitFor([&] { return !fake_.completed_.empty(); }));
  // The runner's bookkeeping ends just after its report.
  const absl::Time deadline = absl::Now() + absl::Seconds(10);
  while (absl::Now() < deadline && !absl::StrContains(Metrics(), "d2lora_worker_assignments_total{result=\"succeeded\"} 1")) {
    absl::SleepFor(absl::Milliseconds(20));
  }
  const std::string text = Metrics();
  EXPECT_TRUE(absl::StrContains(text, "d2lora_worker_slots_capacity 2")) << text;
  EXPECT_TRUE(absl::StrContains(text, "d2lora_worker_up 1")) << text;
  EXPECT_TRUE(absl::StrContains(text, "d2lora_worker_assignments_total{result=\"succeeded\"} 1")) << text;
  EXPECT_FALSE(absl::StrContains(text, "d2lora_train_")) << text;  // the coordinator's alone
}

// What a failed rank reports comes from its error.json ($D2LORA_ERROR_FILE)
// alone: an invalid input and a divergence are not retried, a crash is.
TEST_F(WorkerDaemonTest, ReportsAFailedRankFromItsErrorFile) {
  struct Expected {
    const char* code;
    const char* message;
    bool retryable;
    int exit_code;
  };
  const std::map<std::string, Expected> expected = {
      {"fail", {"INVALID_ARGUMENT", "data.train: line 3: not JSON", false, 1}},
      {"diverge", {"FAILED_PRECONDITION", "training diverged: non-finite loss at step 6", false, 1}},
      {"lost-peer", {"UNAVAILABLE", "rank 1 went away", true, 1}},
      {"crash",
       {"INTERNAL",
        "rank process killed by signal 11 (Segmentation fault); its last error line: "
        "d2lora train: error: INVALID_ARGUMENT (a line that decides nothing)",
        true, 128 + 11}},
      {"silent",
       {"INTERNAL",
        "rank process exited with code 1 without an error file; its last error line: "
        "d2lora train: error: FAILED_PRECONDITION (no error file)",
        true, 1}},
      {"usage", {"INVALID_ARGUMENT", "--bogus: unknown flag", false, 2}},
  };
  for (const auto& [mode, e] : expected) fake_.Queue(Assignment(mode, mode));
  StartDaemon();
  ASSERT_TRUE(fake_.WaitFor([&] { return fake_.failed_.size() == expected.size(); }));
  std::lock_guard<std::mutex> lock(fake_.mu_);
  for (const auto& f : fake_.failed_) {
    SCOPED_TRACE(f.assignment_id());
    const Expected& e = expected.at(f.assignment_id());
    EXPECT_EQ(f.error().code(), e.code);
    EXPECT_EQ(f.error().message(), e.message);
    EXPECT_EQ(f.retryable(), e.retryable);
    EXPECT_EQ(f.exit_code(), e.exit_code);
    EXPECT_EQ(f.error().attempt(), 1);
    EXPECT_EQ(f.error().rank(), 0);
    if (f.assignment_id() == "fail") {
      EXPECT_TRUE(absl::StrContains(f.error().log_tail(), "working")) << f.error().log_tail();
    }
  }
  int logs = 0;
  for (const Upload& u : fake_.uploads_) logs += u.name == "logs/attempt-1-rank-0.log" ? 1 : 0;
  EXPECT_EQ(logs, static_cast<int>(expected.size()));
  EXPECT_TRUE(fake_.completed_.empty());
}

TEST_F(WorkerDaemonTest, UnreadableTrainDataFailsBeforeTheLaunch) {
  v1::Assignment a = Assignment("p1", "succeed");
  a.mutable_spec()->mutable_data()->set_train("inputs/missing.jsonl");
  fake_.Queue(a);
  StartDaemon();
  ASSERT_TRUE(fake_.WaitFor([&] { return !fake_.failed_.empty(); }));
  std::lock_guard<std::mutex> lock(fake_.mu_);
  const auto& f = fake_.failed_[0];
  EXPECT_EQ(f.error().code(), "FAILED_PRECONDITION");
  EXPECT_EQ(f.error().message(), "data.train: " + RankDir(a) + "/inputs/missing.jsonl: No such file or directory");
  EXPECT_FALSE(f.retryable());
  EXPECT_TRUE(fake_.started_.empty());
}

TEST_F(WorkerDaemonTest, MissingInputFailsTheAssignment) {
  v1::Assignment a = Assignment("i1", "succeed");
  a.mutable_inputs(0)->set_name("nonexistent");
  fake_.Queue(a);
  StartDaemon();
  ASSERT_TRUE(fake_.WaitFor([&] { return !fake_.failed_.empty(); }));
  std::lock_guard<std::mutex> lock(fake_.mu_);
  EXPECT_EQ(fake_.failed_[0].error().code(), "FAILED_PRECONDITION");
  EXPECT_TRUE(absl::StrContains(fake_.failed_[0].error().message(), "nonexistent"));
}

TEST_F(WorkerDaemonTest, StopCommandStopsTheRankAndUploadsItsCheckpoint) {
  const v1::Assignment a = Assignment("s1", "hang");
  fake_.Queue(a);
  StartDaemon();
  ASSERT_TRUE(fake_.WaitFor([&] {
    const auto& logs = fake_.logs_["s1"];
    return std::find(logs.begin(), logs.end(), "waiting") != logs.end();
  }));
  v1::WorkerCommand stop;
  stop.set_type(v1::WorkerCommand::STOP);
  stop.set_assignment_id("s1");
  stop.set_reason("job cancelled");
  fake_.Command(stop);
  ASSERT_TRUE(fake_.WaitFor([&] { return !fake_.failed_.empty(); }));
  std::lock_guard<std::mutex> lock(fake_.mu_);
  const auto& f = fake_.failed_[0];
  EXPECT_EQ(f.error().code(), "ABORTED");
  EXPECT_TRUE(absl::StrContains(f.error().message(), "job cancelled")) << f.error().message();
  EXPECT_TRUE(f.retryable());
  EXPECT_EQ(f.exit_code(), 4);
  bool state_uploaded = false;
  for (const Upload& u : fake_.uploads_) state_uploaded |= u.name == "checkpoints/step-7/trainer_state.json";
  EXPECT_TRUE(state_uploaded);
}

TEST_F(WorkerDaemonTest, ProgressAnsweredWithStopStopsTheRank) {
  const v1::Assignment a = Assignment("g1", "hang");
  fake_.Queue(a);
  StartDaemon();
  // Rank 0's figures reach the coordinator while it runs (and only there:
  // the worker exports no training series of its own).
  ASSERT_TRUE(fake_.WaitFor([&] {
    for (const auto& r : fake_.reports_) {
      if (r.assignment_id() == "g1" && r.has_metrics() && r.metrics().step() == 1) return r.metrics().loss() == 2.5;
    }
    return false;
  }));
  EXPECT_TRUE(absl::StrContains(Metrics(), "d2lora_worker_slots_busy 1")) << Metrics();
  EXPECT_FALSE(absl::StrContains(Metrics(), "d2lora_train_")) << Metrics();
  {
    std::lock_guard<std::mutex> lock(fake_.mu_);
    fake_.stop_on_report_.insert("g1");
  }
  ASSERT_TRUE(fake_.WaitFor([&] { return !fake_.failed_.empty(); }));
  {
    std::lock_guard<std::mutex> lock(fake_.mu_);
    EXPECT_EQ(fake_.failed_[0].error().code(), "ABORTED");
    EXPECT_TRUE(fake_.failed_[0].retryable());
  }
  // The runner's bookkeeping (the counter, then the slot) ends just after its
  // report: wait for both, or a loaded machine sees the counter before the slot.
  const absl::Time deadline = absl::Now() + absl::Seconds(10);
  auto settled = [&] {
    const std::string m = Metrics();
    return absl::StrContains(m, "d2lora_worker_assignments_total{result=\"stopped\"} 1") &&
           absl::StrContains(m, "d2lora_worker_slots_busy 0");
  };
  while (absl::Now() < deadline && !settled()) absl::SleepFor(absl::Milliseconds(20));
  EXPECT_TRUE(absl::StrContains(Metrics(), "d2lora_worker_assignments_total{result=\"stopped\"} 1")) << Metrics();
  EXPECT_TRUE(absl::StrContains(Metrics(), "d2lora_worker_slots_busy 0")) << Metrics();
}

TEST_F(WorkerDaemonTest, ShutdownStopsRanksAndReportsThemAborted) {
  fake_.Queue(Assignment("d1", "hang"));
  fake_.Queue(Assignment("d2", "hang", 1, 2));
  StartDaemon();
  ASSERT_TRUE(fake_.WaitFor([&] { return fake_.started_.size() == 2 && fake_.heartbeats_ > 0; }));
  {
    std::lock_guard<std::mutex> lock(fake_.mu_);
    EXPECT_EQ(fake_.draining_heartbeats_, 0);  // at work, it is not draining
  }
  StopDaemon();
  std::lock_guard<std::mutex> lock(fake_.mu_);
  // It says it is draining at once, before its ranks have stopped and reported.
  EXPECT_GE(fake_.draining_heartbeats_, 1);
  EXPECT_EQ(fake_.failed_before_draining_, 0u);
  ASSERT_EQ(fake_.failed_.size(), 2u);
  for (const auto& f : fake_.failed_) {
    EXPECT_EQ(f.error().code(), "ABORTED");
    EXPECT_TRUE(f.retryable());
  }
  // Then it leaves the coordinator, once, after its ranks reported.
  ASSERT_EQ(fake_.left_.size(), 1u);
  EXPECT_EQ(fake_.left_[0].worker_id(), "w-1");
  EXPECT_EQ(fake_.left_[0].reason(), "the worker is shutting down");
  EXPECT_EQ(fake_.failed_before_leaving_, 2u);
}

TEST_F(WorkerDaemonTest, ForgottenWorkerKillsItsRanksAndRegistersAgain) {
  const v1::Assignment a = Assignment("n1", "hang");
  fake_.Queue(a);
  StartDaemon();
  ASSERT_TRUE(fake_.WaitFor([&] { return fake_.started_.count("n1") > 0; }));
  pid_t pid = 0;
  const absl::Time deadline = absl::Now() + absl::Seconds(10);
  while (absl::Now() < deadline && !absl::SimpleAtoi(ReadFile(RankDir(a) + "/trainer.pid"), &pid)) {
    absl::SleepFor(absl::Milliseconds(10));
  }
  ASSERT_GT(pid, 0);
  EXPECT_TRUE(Alive(pid));
  fake_.ForgetWorkers();
  ASSERT_TRUE(fake_.WaitFor([&] { return fake_.registrations_.size() == 2; }));
  ASSERT_TRUE(fake_.WaitFor([&] { return fake_.heartbeats_ > 0 && fake_.last_running_.empty(); }));
  const absl::Time dead_by = absl::Now() + absl::Seconds(10);
  while (absl::Now() < dead_by && Alive(pid)) absl::SleepFor(absl::Milliseconds(10));
  EXPECT_FALSE(Alive(pid));
  EXPECT_EQ(daemon_->worker_id(), "w-2");
  std::lock_guard<std::mutex> lock(fake_.mu_);
  EXPECT_TRUE(fake_.failed_.empty());  // dropped, not reported
  EXPECT_TRUE(fake_.completed_.empty());
}

TEST_F(WorkerDaemonTest, WaitsForAnUnreachableCoordinator) {
  const int port = port_;
  server_->Shutdown(absl::ToChronoTime(absl::Now() + absl::Seconds(1)));
  server_.reset();
  fake_.Queue(Assignment("u1", "succeed"));
  StartDaemon();
  absl::SleepFor(absl::Seconds(1));
  {
    std::lock_guard<std::mutex> lock(fake_.mu_);
    EXPECT_TRUE(fake_.registrations_.empty());
  }
  StartServer(port);
  ASSERT_TRUE(fake_.WaitFor([&] { return !fake_.completed_.empty(); }, absl::Seconds(60)));
}

TEST_F(WorkerDaemonTest, RanksKeepRunningWhileTheCoordinatorIsAway) {
  const v1::Assignment a = Assignment("r1", "hang");
  fake_.Queue(a);
  StartDaemon();
  ASSERT_TRUE(fake_.WaitFor([&] { return fake_.started_.count("r1") > 0; }));
  const int port = port_;
  server_->Shutdown(absl::ToChronoTime(absl::Now() + absl::Seconds(1)));
  server_.reset();
  absl::SleepFor(absl::Seconds(1));
  pid_t pid = 0;
  ASSERT_TRUE(absl::SimpleAtoi(ReadFile(RankDir(a) + "/trainer.pid"), &pid));
  EXPECT_TRUE(Alive(pid));
  StartServer(port);
  // Still the same worker, still running it.
  ASSERT_TRUE(fake_.WaitFor([&] {
    return std::find(fake_.last_running_.begin(), fake_.last_running_.end(), "r1") != fake_.last_running_.end() &&
           fake_.heartbeats_ > 3;
  }));
  EXPECT_EQ(daemon_->worker_id(), "w-1");
  std::lock_guard<std::mutex> lock(fake_.mu_);
  EXPECT_EQ(fake_.registrations_.size(), 1u);
}

// The daemon with the launcher it is given (here the simulated one the
// benchmarks use): the same lease, reports, uploads and completion as with
// the trainer's processes, and the observers see each assignment once.
TEST_F(WorkerDaemonTest, RunsRanksThroughTheLauncherItIsGiven) {
  SimulatedRankOptions simulated;
  simulated.run_time = absl::Milliseconds(300);
  simulated.step_time = absl::Milliseconds(50);
  auto launcher = std::make_shared<SimulatedRankLauncher>(simulated);
  std::mutex mu;
  std::vector<std::string> leased, done;
  WorkerDaemon::Options options = Options();
  options.launcher = launcher;
  options.on_lease = [&](const v1::Assignment& a) {
    std::lock_guard<std::mutex> lock(mu);
    leased.push_back(a.id());
  };
  options.on_done = [&](const v1::Assignment& a, AssignmentResult result) {
    std::lock_guard<std::mutex> lock(mu);
    EXPECT_EQ(result, AssignmentResult::kSucceeded);
    done.push_back(a.id());
  };
  fake_.Queue(Assignment("s1", "succeed"));
  fake_.Queue(Assignment("s1", "succeed"));  // leased again while it runs (2 slots): ignored, not observed
  StartDaemon(options);
  ASSERT_TRUE(fake_.WaitFor([&] { return !fake_.completed_.empty() || !fake_.failed_.empty(); }));
  {
    std::lock_guard<std::mutex> lock(fake_.mu_);
    ASSERT_TRUE(fake_.failed_.empty()) << fake_.failed_[0].DebugString();
    EXPECT_TRUE(absl::StrContains(fake_.completed_[0].summary_json(), "\"simulated\": true"))
        << fake_.completed_[0].summary_json();
    bool saw_step = false;
    for (const auto& r : fake_.reports_) saw_step |= r.has_metrics() && r.metrics().step() >= 1;
    EXPECT_TRUE(saw_step);
  }
  const std::vector<std::string> uploads = UploadNames("s1");
  for (const char* name : {"metrics.jsonl", "summary.json", "spec.yaml", "logs/attempt-1-rank-0.log"}) {
    EXPECT_NE(std::find(uploads.begin(), uploads.end(), name), uploads.end()) << name;
  }
  EXPECT_EQ(launcher->launched(), 1);
  StopDaemon();
  std::lock_guard<std::mutex> lock(mu);
  EXPECT_EQ(leased, std::vector<std::string>{"s1"});
  EXPECT_EQ(done, std::vector<std::string>{"s1"});
}

// What a rank's error.json says decides the report, whichever launcher ran it.
TEST_F(WorkerDaemonTest, ASimulatedDivergenceIsNotRetried) {
  SimulatedRankOptions simulated;
  simulated.run_time = absl::Milliseconds(100);
  trainer::TrainerError diverged;
  diverged.code = absl::StatusCode::kFailedPrecondition;
  diverged.message = "loss diverged";
  diverged.reason = trainer::FailureReason::kDiverged;
  diverged.retryable = false;
  simulated.fail_with = diverged;
  WorkerDaemon::Options options = Options();
  options.launcher = std::make_shared<SimulatedRankLauncher>(simulated);
  fake_.Queue(Assignment("d1", "succeed"));
  StartDaemon(options);
  ASSERT_TRUE(fake_.WaitFor([&] { return !fake_.failed_.empty(); }));
  std::lock_guard<std::mutex> lock(fake_.mu_);
  EXPECT_EQ(fake_.failed_[0].error().code(), "FAILED_PRECONDITION");
  EXPECT_FALSE(fake_.failed_[0].retryable());
  EXPECT_EQ(fake_.failed_[0].exit_code(), 1);
}

}  // namespace
}  // namespace d2lora::worker
