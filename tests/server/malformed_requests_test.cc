// Malformed API requests, table-driven, against an in-process coordinator over
// real gRPC on loopback (SQLite job store and local artifact store in a temp
// directory, spec paths restricted to one allowed root): missing fields, huge
// strings, negative and absurd values, unknown enum values, paths with "..",
// symlinks out of the root, oversized and broken uploads, wrong checksums.
// Each row is refused with its status code and a message naming the field;
// after every row the service still serves (health, a valid list) and nothing
// was stored (no new job, no half-written upload).
#include <gtest/gtest.h>

#include <unistd.h>

#include <cmath>
#include <filesystem>
#include <functional>
#include <limits>

#include "common/sha256.h"
#include "d2lora/v1/job_service.grpc.pb.h"
#include "server/coordinator_server.h"
#include "tests/server/grpc_test_util.h"
#include "tests/server/server_test_util.h"
#include "tests/support/test_support.h"

namespace d2lora::server {
namespace {

constexpr char kToken[] = "malformed-test-token";
constexpr int64_t kMaxUpload = 4 << 20;
constexpr int kChunk = 1 << 20;

struct Row {
  std::string name;
  std::function<grpc::Status()> call;
  grpc::StatusCode code;
  std::string message;  // a substring of the error: the field it names
};

class MalformedRequestsTest : public ::testing::Test {
 protected:
  void SetUp() override {
    root_ = dir_.file("root");
    std::filesystem::create_directories(root_ + "/model");
    std::filesystem::create_directories(dir_.file("outside/model"));
    d2lora::testing::WriteFile(root_ + "/model/config.json", server::testing::kTinyModelConfigJson);
    d2lora::testing::WriteFile(root_ + "/train.jsonl", "{\"text\": \"a\"}\n");
    d2lora::testing::WriteFile(dir_.file("outside/model/config.json"), server::testing::kTinyModelConfigJson);
    d2lora::testing::WriteFile(dir_.file("outside/secret.jsonl"), "{\"text\": \"s\"}\n");
    ASSERT_EQ(symlink(dir_.file("outside/model").c_str(), (root_ + "/linked-model").c_str()), 0);
    ASSERT_EQ(symlink(dir_.file("outside").c_str(), (root_ + "/linked-dir").c_str()), 0);

    CoordinatorServerOptions options;
    options.listen = "127.0.0.1:0";
    options.data_dir = dir_.file("data");
    options.token = kToken;
    options.allowed_path_roots = {root_};
    options.coordinator.max_upload_bytes = kMaxUpload;
    options.coordinator.scheduler_thread = false;
    auto server = CoordinatorServer::Start(options, std::make_shared<prometheus::Registry>());
    ASSERT_TRUE(server.ok()) << server.status();
    server_ = *std::move(server);
    // A plain channel: no client-side size limit, so the server's own is what refuses.
    grpc::ChannelArguments args;
    args.SetMaxReceiveMessageSize(-1);
    args.SetMaxSendMessageSize(-1);
    channel_ = grpc::CreateCustomChannel("127.0.0.1:" + std::to_string(server_->port()),
                                         grpc::InsecureChannelCredentials(), args);
    stub_ = v1::JobService::NewStub(channel_);
  }

  void Prepare(grpc::ClientContext& context) {
    context.AddMetadata("authorization", std::string("Bearer ") + kToken);
    context.set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(30));
  }

  v1::SubmitJobRequest Valid() const {
    v1::SubmitJobRequest r;
    r.mutable_spec()->set_name("valid");
    r.mutable_spec()->set_model(root_ + "/model");
    r.mutable_spec()->mutable_data()->set_train(root_ + "/train.jsonl");
    r.mutable_spec()->mutable_train()->set_batch_size(4);
    r.mutable_spec()->mutable_train()->set_micro_batch_size(1);
    return r;
  }

  // A submit of the valid request after `mutate`.
  std::function<grpc::Status()> Submit(std::function<void(v1::SubmitJobRequest&)> mutate) {
    return [this, mutate] {
      v1::SubmitJobRequest r = Valid();
      mutate(r);
      grpc::ClientContext context;
      Prepare(context);
      v1::Job job;
      return stub_->SubmitJob(&context, r, &job);
    };
  }

  int JobCount() {
    grpc::ClientContext context;
    Prepare(context);
    v1::ListJobsRequest request;
    request.set_page_size(1000);
    v1::ListJobsResponse response;
    const grpc::Status s = stub_->ListJobs(&context, request, &response);
    EXPECT_TRUE(s.ok()) << s.error_message();
    return s.ok() ? response.jobs_size() : -1;
  }

  // Sends a header, then `data` in chunks of at most kChunk (or as one
  // message when `one_message`); `stop_after` > 0 cancels the call after that
  // many data bytes, `writes_done_after` > 0 half-closes early instead.
  grpc::Status Upload(const v1::UploadHeader& header, const std::string& data, v1::UploadFileResponse* response,
                      int64_t cancel_after = -1, bool one_message = false, bool send_header = true) {
    grpc::ClientContext context;
    Prepare(context);
    auto writer = stub_->UploadFile(&context, response);
    v1::UploadFileRequest message;
    if (send_header) {
      *message.mutable_header() = header;
      writer->Write(message);
    }
    int64_t sent = 0;
    const size_t step = one_message ? std::max<size_t>(data.size(), 1) : kChunk;
    for (size_t at = 0; at < data.size(); at += step) {
      message.set_data(data.substr(at, step));
      if (!writer->Write(message)) break;
      sent += static_cast<int64_t>(message.data().size());
      if (cancel_after >= 0 && sent >= cancel_after) {
        context.TryCancel();
        break;
      }
    }
    writer->WritesDone();
    return writer->Finish();
  }

  std::function<grpc::Status()> UploadRow(v1::UploadHeader header, std::string data, int64_t cancel_after = -1,
                                          bool one_message = false, bool send_header = true) {
    return [=] {
      v1::UploadFileResponse response;
      return Upload(header, data, &response, cancel_after, one_message, send_header);
    };
  }

  std::vector<std::string> UploadListing(const std::string& upload_id) {
    grpc::ClientContext context;
    Prepare(context);
    v1::ListArtifactsRequest request;
    request.set_prefix("uploads/" + upload_id + "/");
    v1::ListArtifactsResponse response;
    const grpc::Status s = stub_->ListArtifacts(&context, request, &response);
    EXPECT_TRUE(s.ok()) << s.error_message();
    std::vector<std::string> names;
    for (const auto& a : response.artifacts()) names.push_back(a.name());
    return names;
  }

  void RunRows(const std::vector<Row>& rows, const std::function<void()>& after_each = {}) {
    ASSERT_TRUE(testing::Serving(channel_));
    const int jobs = JobCount();
    for (const Row& row : rows) {
      SCOPED_TRACE(row.name);
      const grpc::Status s = row.call();
      EXPECT_EQ(s.error_code(), row.code) << s.error_message();
      EXPECT_NE(s.error_message().find(row.message), std::string::npos)
          << "message \"" << s.error_message().substr(0, 300) << "\" does not name \"" << row.message << "\"";
      EXPECT_LT(s.error_message().size(), 2048u) << "an error message echoes a huge request";
      EXPECT_TRUE(testing::Serving(channel_)) << "the service stopped serving";
      EXPECT_EQ(JobCount(), jobs) << "a refused request stored a job";
      if (after_each) after_each();
    }
  }

  d2lora::testing::TempDir dir_;
  std::string root_;
  std::unique_ptr<CoordinatorServer> server_;
  std::shared_ptr<grpc::Channel> channel_;
  std::unique_ptr<v1::JobService::Stub> stub_;
};

using Req = v1::SubmitJobRequest;
constexpr auto kInvalid = grpc::StatusCode::INVALID_ARGUMENT;

TEST_F(MalformedRequestsTest, SubmitJob) {
  const std::string huge(10 << 20, 'x');  // 10 MB: under the message limit, far over any field's
  const std::string out = dir_.file("outside");
  const std::vector<Row> rows = {
      // Missing fields.
      {"no spec", Submit([](Req& r) { r.clear_spec(); }), kInvalid, "spec: required"},
      {"no model", Submit([](Req& r) { r.mutable_spec()->clear_model(); }), kInvalid, "model"},
      {"no train data", Submit([](Req& r) { r.mutable_spec()->mutable_data()->clear_train(); }), kInvalid, "data.train"},
      {"no name", Submit([](Req& r) { r.mutable_spec()->clear_name(); }), kInvalid, "name"},
      // Huge strings.
      {"10 MB model path", Submit([&](Req& r) { r.mutable_spec()->set_model(huge); }), kInvalid, "(10485760 bytes)"},
      {"10 MB name", Submit([&](Req& r) { r.mutable_spec()->set_name(huge); }), kInvalid, "spec.name"},
      {"5 kB method", Submit([](Req& r) { r.mutable_spec()->set_method(std::string(5000, 'm')); }), kInvalid, "spec.method"},
      {"20 MB spec (over the message limit)", Submit([](Req& r) { r.mutable_spec()->set_name(std::string(20 << 20, 'n')); }),
       grpc::StatusCode::RESOURCE_EXHAUSTED, ""},
      {"spec of 100k target modules", Submit([](Req& r) {
         for (int i = 0; i < 100000; ++i) r.mutable_spec()->mutable_adapter()->add_target_modules("q_proj");
       }), kInvalid, "spec: "},
      {"1 MB label value", Submit([](Req& r) { (*r.mutable_labels())["team"] = std::string(1 << 20, 'v'); }), kInvalid,
       "labels[\"team\"]"},
      {"1 MB label key", Submit([](Req& r) { (*r.mutable_labels())[std::string(1 << 20, 'k')] = "v"; }), kInvalid, "labels["},
      {"65 labels", Submit([](Req& r) {
         for (int i = 0; i < 65; ++i) (*r.mutable_labels())["k" + std::to_string(i)] = "v";
       }), kInvalid, "labels"},
      {"label key with ..", Submit([](Req& r) { (*r.mutable_labels())["../etc"] = "v"; }), kInvalid, "labels["},
      {"1 MB idempotency key", Submit([](Req& r) { r.set_idempotency_key(std::string(1 << 20, 'i')); }), kInvalid,
       "idempotency_key"},
      // Negative and absurd values.
      {"world_size -1", Submit([](Req& r) { r.set_world_size(-1); }), kInvalid, "world_size"},
      {"world_size 1e6", Submit([](Req& r) { r.set_world_size(1000000); }), kInvalid, "world_size"},
      {"spec world_size -3", Submit([](Req& r) { r.mutable_spec()->mutable_resources()->set_world_size(-3); }), kInvalid,
       "world_size"},
      {"priority 1e9", Submit([](Req& r) { r.set_priority(1000000000); }), kInvalid, "priority"},
      {"priority INT_MIN", Submit([](Req& r) { r.set_priority(std::numeric_limits<int32_t>::min()); }), kInvalid, "priority"},
      {"max_retries -1", Submit([](Req& r) { r.set_max_retries(-1); }), kInvalid, "max_retries"},
      {"max_retries 1e6", Submit([](Req& r) { r.set_max_retries(1000000); }), kInvalid, "max_retries"},
      {"batch_size -5", Submit([](Req& r) { r.mutable_spec()->mutable_train()->set_batch_size(-5); }), kInvalid,
       "batch_size"},
      {"lr NaN", Submit([](Req& r) { r.mutable_spec()->mutable_train()->set_lr(std::nan("")); }), kInvalid, "spec.train.lr"},
      {"lr infinite", Submit([](Req& r) { r.mutable_spec()->mutable_train()->set_lr(HUGE_VAL); }), kInvalid, "spec.train.lr"},
      {"dropout NaN", Submit([](Req& r) { r.mutable_spec()->mutable_adapter()->set_dropout(std::nan("")); }), kInvalid,
       "spec.adapter.dropout"},
      {"lr -1", Submit([](Req& r) { r.mutable_spec()->mutable_train()->set_lr(-1); }), kInvalid, "lr"},
      {"rank 1e9", Submit([](Req& r) { r.mutable_spec()->mutable_adapter()->set_r(1000000000); }), kInvalid, "r"},
      {"threads -2", Submit([](Req& r) { r.mutable_spec()->mutable_resources()->set_threads(-2); }), kInvalid, "threads"},
      // Unknown enum values (the spec's are names).
      {"method sgd", Submit([](Req& r) { r.mutable_spec()->set_method("sgd"); }), kInvalid, "method"},
      {"schedule zigzag", Submit([](Req& r) { r.mutable_spec()->mutable_train()->set_schedule("zigzag"); }), kInvalid,
       "schedule"},
      {"data format xml", Submit([](Req& r) { r.mutable_spec()->mutable_data()->set_format("xml"); }), kInvalid, "format"},
      {"device tpu", Submit([](Req& r) { r.mutable_spec()->mutable_resources()->set_device("tpu"); }), kInvalid, "device"},
      // Paths.
      {"model with ..", Submit([&](Req& r) { r.mutable_spec()->set_model(root_ + "/../outside/model"); }), kInvalid,
       "spec.model"},
      {"train with .. inside the root",
       Submit([&](Req& r) { r.mutable_spec()->mutable_data()->set_train(root_ + "/model/../train.jsonl"); }), kInvalid,
       "spec.data.train"},
      {"validation with ..",
       Submit([&](Req& r) { r.mutable_spec()->mutable_data()->set_validation(root_ + "/../../etc/passwd"); }), kInvalid,
       "spec.data.validation"},
      {"relative train path", Submit([](Req& r) { r.mutable_spec()->mutable_data()->set_train("data/train.jsonl"); }),
       kInvalid, "spec.data.train"},
      {"model outside the roots", Submit([&](Req& r) { r.mutable_spec()->set_model(out + "/model"); }), kInvalid,
       "spec.model"},
      {"a root's sibling with the same prefix", Submit([&](Req& r) { r.mutable_spec()->set_model(root_ + "x/model"); }),
       kInvalid, "spec.model"},
      {"symlink to a model outside", Submit([&](Req& r) { r.mutable_spec()->set_model(root_ + "/linked-model"); }),
       kInvalid, "spec.model"},
      {"file under a symlinked dir outside",
       Submit([&](Req& r) { r.mutable_spec()->mutable_data()->set_train(root_ + "/linked-dir/secret.jsonl"); }),
       kInvalid, "spec.data.train"},
      {"not-yet-existing file under a symlinked dir",
       Submit([&](Req& r) { r.mutable_spec()->mutable_data()->set_validation(root_ + "/linked-dir/new.jsonl"); }),
       kInvalid, "spec.data.validation"},
      {"upload ref with ..", Submit([](Req& r) { r.mutable_spec()->set_model("upload:../../etc"); }), kInvalid,
       "spec.model"},
      {"upload ref to a missing upload", Submit([](Req& r) { r.mutable_spec()->set_model("upload:up-000000000000"); }),
       kInvalid, "spec.model"},
      {"path with a NUL byte",
       Submit([&](Req& r) { r.mutable_spec()->set_model(root_ + std::string("/model\0/x", 9)); }), kInvalid,
       "spec.model"},
  };
  RunRows(rows);
  // The valid request itself is accepted (so each row failed for its own reason).
  const grpc::Status ok = Submit([](Req&) {})();
  EXPECT_TRUE(ok.ok()) << ok.error_message();
}

TEST_F(MalformedRequestsTest, QueriesAndCancel) {
  auto get = [this](std::string id) {
    return [this, id] {
      grpc::ClientContext context;
      Prepare(context);
      v1::GetJobRequest r;
      r.set_id(id);
      v1::Job job;
      return stub_->GetJob(&context, r, &job);
    };
  };
  auto list = [this](std::function<void(v1::ListJobsRequest&)> mutate) {
    return [this, mutate] {
      grpc::ClientContext context;
      Prepare(context);
      v1::ListJobsRequest r;
      mutate(r);
      v1::ListJobsResponse response;
      return stub_->ListJobs(&context, r, &response);
    };
  };
  auto cancel = [this](std::string id, std::string reason) {
    return [this, id, reason] {
      grpc::ClientContext context;
      Prepare(context);
      v1::CancelJobRequest r;
      r.set_id(id);
      r.set_reason(reason);
      v1::Job job;
      return stub_->CancelJob(&context, r, &job);
    };
  };
  auto pause = [this](std::string id, std::string reason) {
    return [this, id, reason] {
      grpc::ClientContext context;
      Prepare(context);
      v1::PauseJobRequest r;
      r.set_id(id);
      r.set_reason(reason);
      v1::Job job;
      return stub_->PauseJob(&context, r, &job);
    };
  };
  auto resume = [this](std::string id) {
    return [this, id] {
      grpc::ClientContext context;
      Prepare(context);
      v1::ResumeJobRequest r;
      r.set_id(id);
      v1::Job job;
      return stub_->ResumeJob(&context, r, &job);
    };
  };
  auto watch = [this](std::string id, int64_t after) {
    return [this, id, after] {
      grpc::ClientContext context;
      Prepare(context);
      v1::WatchJobRequest r;
      r.set_id(id);
      r.set_after_seq(after);
      auto reader = stub_->WatchJob(&context, r);
      v1::JobEvent event;
      while (reader->Read(&event)) {
      }
      return reader->Finish();
    };
  };
  auto download = [this](std::string job_id, std::string name, int64_t offset) {
    return [this, job_id, name, offset] {
      grpc::ClientContext context;
      Prepare(context);
      v1::DownloadArtifactRequest r;
      r.set_job_id(job_id);
      r.set_name(name);
      r.set_offset(offset);
      auto reader = stub_->DownloadArtifact(&context, r);
      v1::FileChunk chunk;
      while (reader->Read(&chunk)) {
      }
      return reader->Finish();
    };
  };
  auto artifacts = [this](std::string job_id, std::string prefix) {
    return [this, job_id, prefix] {
      grpc::ClientContext context;
      Prepare(context);
      v1::ListArtifactsRequest r;
      r.set_job_id(job_id);
      r.set_prefix(prefix);
      v1::ListArtifactsResponse response;
      return stub_->ListArtifacts(&context, r, &response);
    };
  };
  auto checkpoints = [this](std::string job_id) {
    return [this, job_id] {
      grpc::ClientContext context;
      Prepare(context);
      v1::ListCheckpointsRequest r;
      r.set_job_id(job_id);
      v1::ListCheckpointsResponse response;
      return stub_->ListCheckpoints(&context, r, &response);
    };
  };
  v1::UploadHeader header;
  header.set_name("a.txt");
  header.set_size(3);
  v1::UploadFileResponse uploaded;
  ASSERT_TRUE(Upload(header, "abc", &uploaded).ok());
  const std::string up = uploaded.upload_id();
  const std::string huge(1 << 20, 'x');
  const std::vector<Row> rows = {
      {"get: no id", get(""), kInvalid, "id"},
      {"get: 1 MB id", get(huge), kInvalid, "id: 1048576 bytes"},
      {"get: unknown id", get("job-000000000000"), grpc::StatusCode::NOT_FOUND, "job-000000000000"},
      {"list: unknown state 99", list([](v1::ListJobsRequest& r) { r.add_states(static_cast<v1::JobState>(99)); }),
       kInvalid, "states"},
      {"list: negative state", list([](v1::ListJobsRequest& r) { r.add_states(static_cast<v1::JobState>(-7)); }),
       kInvalid, "states"},
      {"list: page_size -1", list([](v1::ListJobsRequest& r) { r.set_page_size(-1); }), kInvalid, "page_size"},
      {"list: page_size 1e6", list([](v1::ListJobsRequest& r) { r.set_page_size(1000000); }), kInvalid, "page_size"},
      {"list: forged page token", list([](v1::ListJobsRequest& r) { r.set_page_token("../../x"); }), kInvalid,
       "page_token"},
      {"cancel: no id", cancel("", ""), kInvalid, "id"},
      {"cancel: 1 MB reason", cancel("job-000000000000", huge), kInvalid, "reason"},
      {"cancel: unknown id", cancel("job-000000000000", "r"), grpc::StatusCode::NOT_FOUND, "job-000000000000"},
      {"pause: no id", pause("", ""), kInvalid, "id"},
      {"pause: 1 MB reason", pause("job-000000000000", huge), kInvalid, "reason"},
      {"pause: unknown id", pause("job-000000000000", "r"), grpc::StatusCode::NOT_FOUND, "job-000000000000"},
      {"resume: no id", resume(""), kInvalid, "id"},
      {"resume: unknown id", resume("job-000000000000"), grpc::StatusCode::NOT_FOUND, "job-000000000000"},
      {"watch: 1 MB id", watch(huge, 0), kInvalid, "id"},
      {"watch: unknown id", watch("job-000000000000", 0), grpc::StatusCode::NOT_FOUND, "job-000000000000"},
      {"download: name with ..", download("", "uploads/" + up + "/../../jobs.db", 0), kInvalid, "\"..\""},
      {"download: absolute name", download("", "/etc/passwd", 0), kInvalid, "absolute"},
      {"download: offset -1", download("", "uploads/" + up + "/a.txt", -1), grpc::StatusCode::OUT_OF_RANGE, "offset"},
      {"download: offset past the end", download("", "uploads/" + up + "/a.txt", 1 << 30),
       grpc::StatusCode::OUT_OF_RANGE, "offset"},
      {"download: no job and not an upload", download("", "adapter/x", 0), kInvalid, "job_id"},
      {"download: 1 MB job id", download(huge, "x", 0), kInvalid, "job_id"},
      {"artifacts: prefix with ..", artifacts("", "uploads/../"), kInvalid, "prefix"},
      {"artifacts: absolute prefix", artifacts("", "/etc"), kInvalid, "prefix"},
      {"artifacts: unknown job", artifacts("job-000000000000", ""), grpc::StatusCode::NOT_FOUND, "job-000000000000"},
      {"checkpoints: no job id", checkpoints(""), kInvalid, "job_id: required"},
      {"checkpoints: 1 MB job id", checkpoints(huge), kInvalid, "job_id: 1048576 bytes"},
      {"checkpoints: unknown job", checkpoints("job-000000000000"), grpc::StatusCode::NOT_FOUND, "job-000000000000"},
  };
  RunRows(rows);
}

TEST_F(MalformedRequestsTest, UploadFile) {
  // An upload with one good file; every broken upload below adds to it and
  // must leave it exactly as it was.
  v1::UploadHeader good;
  good.set_name("good.txt");
  good.set_size(4);
  v1::UploadFileResponse uploaded;
  ASSERT_TRUE(Upload(good, "good", &uploaded).ok());
  const std::string up = uploaded.upload_id();
  auto header = [&](const std::string& name, int64_t size, const std::string& sha = "") {
    v1::UploadHeader h;
    h.set_name(name);
    h.set_upload_id(up);
    h.set_size(size);
    h.set_sha256(sha);
    return h;
  };
  const std::string three_mb(3 << 20, 'z');
  const std::string wrong_sha = Sha256Hex("not the data");
  const std::vector<Row> rows = {
      {"no header", UploadRow(header("x", 1), "x", -1, false, /*send_header=*/false), kInvalid, "header"},
      {"name with ..", UploadRow(header("../../jobs.db", 1), "x"), kInvalid, "header.name"},
      {"absolute name", UploadRow(header("/etc/passwd", 1), "x"), kInvalid, "header.name"},
      {"1 MB name", UploadRow(header(std::string(1 << 20, 'n'), 1), "x"), kInvalid, "header.name"},
      {"unknown upload id",
       [&] {
         v1::UploadHeader h = header("x", 1);
         h.set_upload_id("up-000000000000");
         v1::UploadFileResponse r;
         return Upload(h, "x", &r);
       },
       grpc::StatusCode::NOT_FOUND, "up-000000000000"},
      {"upload id with ..",
       [&] {
         v1::UploadHeader h = header("x", 1);
         h.set_upload_id("../jobs");
         v1::UploadFileResponse r;
         return Upload(h, "x", &r);
       },
       kInvalid, "header.upload_id"},
      {"negative size", UploadRow(header("x", -1), ""), kInvalid, "header.size"},
      {"size over the upload limit", UploadRow(header("big", kMaxUpload + 1), ""), grpc::StatusCode::RESOURCE_EXHAUSTED,
       "header.size"},
      {"absurd size", UploadRow(header("big", std::numeric_limits<int64_t>::max()), ""),
       grpc::StatusCode::RESOURCE_EXHAUSTED, "header.size"},
      {"more bytes than declared", UploadRow(header("long", 2), "abcdef"), kInvalid, "header.size"},
      {"stream ends half-way (fewer bytes than declared)", UploadRow(header("short", 3 << 20), three_mb.substr(0, 1 << 20)),
       kInvalid, "stream ended after 1048576 of 3145728 bytes"},
      {"client cancels half-way", UploadRow(header("cancelled", 3 << 20), three_mb, /*cancel_after=*/1 << 20),
       grpc::StatusCode::CANCELLED, ""},
      {"wrong checksum", UploadRow(header("sum", 4, wrong_sha), "data"), grpc::StatusCode::DATA_LOSS, "SHA-256 mismatch"},
      {"malformed checksum", UploadRow(header("sum", 4, "XYZ"), "data"), kInvalid, "header.sha256"},
      {"one message over the message limit", UploadRow(header("huge", 17 << 20), std::string(17 << 20, 'h'), -1, true),
       grpc::StatusCode::RESOURCE_EXHAUSTED, ""},
  };
  RunRows(rows, [&] {
    EXPECT_EQ(UploadListing(up), std::vector<std::string>{"uploads/" + up + "/good.txt"});
    // Nothing half-written on disk either: temporary files go when the call
    // ends (on the server, which may finish just after a cancelling client).
    std::vector<std::string> on_disk;
    for (int wait = 0; wait < 100; ++wait) {
      on_disk.clear();
      for (const auto& e : std::filesystem::recursive_directory_iterator(dir_.file("data/artifacts"))) {
        const std::string path = e.path().string();
        if (e.is_regular_file() && path.find("/.d2lora-meta/") == std::string::npos) on_disk.push_back(path);
      }
      if (on_disk.size() == 1) break;
      usleep(50 * 1000);
    }
    ASSERT_EQ(on_disk.size(), 1u) << "stray files under data/artifacts: " << on_disk.back();
    EXPECT_EQ(std::filesystem::path(on_disk[0]).filename(), "good.txt");
  });
}

}  // namespace
}  // namespace d2lora::server
