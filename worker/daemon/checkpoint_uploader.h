// Rank 0's checkpoints, uploaded while the trainer runs, from a thread of
// their own. Each "checkpoint" event of metrics.jsonl queues its folder (a
// newer one replaces one not yet started). The folder is hard-linked into a
// snapshot first (instant, and immune to the trainer pruning it meanwhile),
// then uploaded file by file with trainer_state.json last, so that the
// coordinator sees a checkpoint complete only once all of it is stored.
#pragma once

#include <condition_variable>
#include <functional>
#include <mutex>
#include <optional>
#include <string>
#include <thread>

#include "absl/status/status.h"
#include "absl/time/time.h"
#include "worker/daemon/metrics_tail.h"

namespace d2lora::worker {

class CheckpointUploader {
 public:
  struct Options {
    std::string out_dir;       // the trainer's output directory (checkpoints/step-N)
    std::string snapshot_dir;  // where the hard-linked copies go (removed after each upload)
    std::string label;         // the assignment, for the log
    // Stores the file at `path` as artifact `name`, retrying until `deadline`.
    std::function<absl::Status(const std::string& path, const std::string& name, absl::Time deadline)> upload;
    // An upload was answered NOT_FOUND: the coordinator no longer knows the assignment.
    std::function<void(const absl::Status& status, const std::string& what)> on_not_found;
    absl::Duration retry_window = absl::Minutes(5);  // per checkpoint
  };

  // Starts the thread.
  explicit CheckpointUploader(Options options);
  ~CheckpointUploader();  // Close()
  CheckpointUploader(const CheckpointUploader&) = delete;
  CheckpointUploader& operator=(const CheckpointUploader&) = delete;

  void Queue(const CheckpointEvent& event);
  // Uploads the checkpoint queued last, if any, then stops; waits for the thread.
  void Close();
  // Stops without starting another upload; the caller cancels the call in flight.
  void Abandon();

 private:
  void Loop();
  void Upload(const CheckpointEvent& event);
  bool abandoned() const;

  const Options options_;
  mutable std::mutex mu_;
  std::condition_variable cv_;
  std::optional<CheckpointEvent> queued_;
  bool closing_ = false;
  bool abandoned_ = false;
  std::thread thread_;
};

}  // namespace d2lora::worker
