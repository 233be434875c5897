// Rank 0's checkpoint uploads (worker/daemon/checkpoint_uploader.h) against an
// upload function that records what it is given.
#include "worker/daemon/checkpoint_uploader.h"

#include <gtest/gtest.h>

#include <atomic>
#include <filesystem>
#include <future>
#include <mutex>
#include <string>
#include <vector>

#include "tests/support/test_support.h"

namespace d2lora::worker {
namespace {

using d2lora::testing::TempDir;
using d2lora::testing::WriteFile;
namespace fs = std::filesystem;

void WriteCheckpoint(const std::string& out, int step) {
  const std::string dir = out + "/checkpoints/step-" + std::to_string(step);
  fs::create_directories(dir + "/adapter");
  WriteFile(dir + "/trainer_state.json", "{}");
  WriteFile(dir + "/parameters.safetensors", "p");
  WriteFile(dir + "/adapter/adapter_model.safetensors", "a");
}

struct Recorder {
  std::mutex mu;
  std::vector<std::string> names;
  absl::Status answer;
  CheckpointUploader::Options Options(const std::string& out, const std::string& snapshots) {
    CheckpointUploader::Options o;
    o.out_dir = out;
    o.snapshot_dir = snapshots;
    o.label = "test";
    o.upload = [this](const std::string& path, const std::string& name, absl::Time) {
      std::lock_guard<std::mutex> lock(mu);
      EXPECT_TRUE(fs::is_regular_file(path)) << path;
      names.push_back(name);
      return answer;
    };
    o.on_not_found = [this](const absl::Status&, const std::string& what) {
      std::lock_guard<std::mutex> lock(mu);
      not_found.push_back(what);
    };
    return o;
  }
  std::vector<std::string> not_found;
};

TEST(CheckpointUploaderTest, UploadsEachFileWithTheStateLastFromASnapshot) {
  TempDir dir;
  WriteCheckpoint(dir.file("out"), 4);
  Recorder r;
  CheckpointUploader uploader(r.Options(dir.file("out"), dir.file(".upload")));
  uploader.Queue({4, ""});
  uploader.Close();
  EXPECT_EQ(r.names, (std::vector<std::string>{"checkpoints/step-4/adapter/adapter_model.safetensors",
                                               "checkpoints/step-4/parameters.safetensors",
                                               "checkpoints/step-4/trainer_state.json"}));
  EXPECT_FALSE(fs::exists(dir.file(".upload/step-4")));  // the snapshot is removed
  EXPECT_TRUE(fs::exists(dir.file("out/checkpoints/step-4/trainer_state.json")));  // the source is not
}

TEST(CheckpointUploaderTest, AGoneFolderIsSkippedAndNotFoundIsPassedOn) {
  TempDir dir;
  WriteCheckpoint(dir.file("out"), 2);
  Recorder r;
  r.answer = absl::NotFoundError("no such assignment");
  CheckpointUploader uploader(r.Options(dir.file("out"), dir.file(".upload")));
  uploader.Queue({9, ""});  // never written
  uploader.Close();
  EXPECT_TRUE(r.names.empty());
  CheckpointUploader second(r.Options(dir.file("out"), dir.file(".upload")));
  second.Queue({2, ""});
  second.Close();
  EXPECT_EQ(r.names.size(), 1u);  // the first answer stops the checkpoint
  EXPECT_EQ(r.not_found, (std::vector<std::string>{"upload of checkpoints/step-2"}));
}

TEST(CheckpointUploaderTest, ANewerCheckpointReplacesOneNotYetStarted) {
  TempDir dir;
  for (int step : {1, 2, 3}) WriteCheckpoint(dir.file("out"), step);
  Recorder r;
  std::promise<void> entered, release;
  std::future<void> in_flight = entered.get_future();
  std::shared_future<void> released = release.get_future().share();
  std::atomic<bool> first{true};
  CheckpointUploader::Options o = r.Options(dir.file("out"), dir.file(".upload"));
  auto record = o.upload;
  o.upload = [&](const std::string& path, const std::string& name, absl::Time deadline) {
    if (first.exchange(false)) {  // step 1 is in flight while 2 and 3 are queued
      entered.set_value();
      released.wait();
    }
    return record(path, name, deadline);
  };
  CheckpointUploader uploader(o);
  uploader.Queue({1, ""});
  in_flight.wait();
  uploader.Queue({2, ""});
  uploader.Queue({3, ""});
  release.set_value();
  uploader.Close();
  std::vector<std::string> states;
  for (const std::string& n : r.names) {
    if (n.find("trainer_state.json") != std::string::npos) states.push_back(n);
  }
  EXPECT_EQ(states, (std::vector<std::string>{"checkpoints/step-1/trainer_state.json",
                                              "checkpoints/step-3/trainer_state.json"}));
}

}  // namespace
}  // namespace d2lora::worker
