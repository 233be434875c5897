#include "worker/daemon/checkpoint_uploader.h"

#include <filesystem>
#include <system_error>
#include <utility>
#include <vector>

#include "absl/strings/str_cat.h"
#include "common/trainer/output_names.h"
#include "worker/daemon/artifact_transfer.h"
#include "worker/daemon/daemon_log.h"

namespace d2lora::worker {
namespace fs = std::filesystem;

namespace {

// A copy of `from` made of hard links.
absl::Status LinkTree(const fs::path& from, const fs::path& to) {
  std::error_code ec;
  fs::remove_all(to, ec);
  fs::create_directories(to, ec);
  if (ec) return absl::InternalError(absl::StrCat("cannot create ", to.string(), ": ", ec.message()));
  for (fs::recursive_directory_iterator it(from, ec), end; !ec && it != end; it.increment(ec)) {
    const fs::path target = to / fs::relative(it->path(), from, ec);
    if (ec) break;
    if (it->is_directory(ec)) {
      fs::create_directories(target, ec);
    } else if (it->is_regular_file(ec)) {
      fs::create_hard_link(it->path(), target, ec);
    }
    if (ec) break;
  }
  if (ec) return absl::InternalError(absl::StrCat("cannot link ", from.string(), " to ", to.string(), ": ", ec.message()));
  return absl::OkStatus();
}

}  // namespace

CheckpointUploader::CheckpointUploader(Options options) : options_(std::move(options)) {
  thread_ = std::thread([this] { Loop(); });
}

CheckpointUploader::~CheckpointUploader() { Close(); }

void CheckpointUploader::Queue(const CheckpointEvent& event) {
  std::lock_guard<std::mutex> lock(mu_);
  queued_ = event;  // a newer checkpoint replaces one not yet started
  cv_.notify_all();
}

void CheckpointUploader::Close() {
  {
    std::lock_guard<std::mutex> lock(mu_);
    closing_ = true;
    cv_.notify_all();
  }
  if (thread_.joinable()) thread_.join();
}

void CheckpointUploader::Abandon() {
  std::lock_guard<std::mutex> lock(mu_);
  abandoned_ = true;
  cv_.notify_all();
}

bool CheckpointUploader::abandoned() const {
  std::lock_guard<std::mutex> lock(mu_);
  return abandoned_;
}

void CheckpointUploader::Loop() {
  while (true) {
    CheckpointEvent event;
    {
      std::unique_lock<std::mutex> lock(mu_);
      cv_.wait(lock, [this] { return queued_.has_value() || closing_ || abandoned_; });
      if (abandoned_ || !queued_.has_value()) return;
      event = *queued_;
      queued_.reset();
    }
    Upload(event);
  }
}

void CheckpointUploader::Upload(const CheckpointEvent& event) {
  const std::string name = trainer::CheckpointName(event.step);
  std::string source = absl::StrCat(options_.out_dir, "/", name);
  std::error_code ec;
  if (!fs::is_directory(source, ec) && !event.path.empty()) source = event.path;
  if (!fs::is_directory(source, ec)) {
    Log(absl::StrCat(options_.label, ": checkpoint ", name, ": ", source, " is gone; not uploaded"));
    return;
  }
  const std::string snapshot = absl::StrCat(options_.snapshot_dir, "/", trainer::kCheckpointPrefix, event.step);
  std::string from = snapshot;
  if (absl::Status linked = LinkTree(source, snapshot); !linked.ok()) {
    Log(absl::StrCat(options_.label, ": checkpoint ", name, ": ", linked.message(), "; uploading in place"));
    from = source;
  }
  absl::Status status;
  absl::StatusOr<std::vector<std::string>> files = FilesToUpload(from);  // trainer_state.json last
  if (!files.ok()) status = files.status();
  const absl::Time deadline = absl::Now() + options_.retry_window;
  for (size_t i = 0; status.ok() && i < files->size(); ++i) {
    const std::string& file = (*files)[i];
    status = options_.upload(absl::StrCat(from, "/", file), absl::StrCat(name, "/", file), deadline);
  }
  fs::remove_all(snapshot, ec);
  if (status.code() == absl::StatusCode::kNotFound && !abandoned()) {
    options_.on_not_found(status, absl::StrCat("upload of ", name));
  } else if (!status.ok()) {
    Log(absl::StrCat(options_.label, ": checkpoint ", name, " not uploaded: ", status.message()));
  } else {
    Log(absl::StrCat(options_.label, ": checkpoint ", name, " uploaded (", files->size(), " files)"));
  }
}

}  // namespace d2lora::worker
