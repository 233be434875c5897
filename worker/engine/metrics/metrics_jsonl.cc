#include "worker/engine/metrics/metrics_jsonl.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <utility>

#include "common/file_util.h"
#include "worker/engine/metrics/metrics_json.h"

namespace d2lora::engine {
namespace {

using json = nlohmann::json;

// Cuts the file back to just after its last '\n' (to 0 when it has none), so
// that an append starts on a fresh line.
absl::Status DropIncompleteLastLine(int fd, const std::string& path) {
  struct stat st;
  if (::fstat(fd, &st) != 0) return ErrnoError("cannot stat", path);
  off_t end = st.st_size;
  char buf[4096];
  while (end > 0) {
    const off_t start = end > static_cast<off_t>(sizeof(buf)) ? end - static_cast<off_t>(sizeof(buf)) : 0;
    const size_t len = static_cast<size_t>(end - start);
    const ssize_t n = ::pread(fd, buf, len, start);
    if (n < 0) {
      if (errno == EINTR) continue;
      return ErrnoError("cannot read", path);
    }
    if (static_cast<size_t>(n) != len) break;  // shrank meanwhile; leave it
    for (size_t i = len; i > 0; --i) {
      if (buf[i - 1] == '\n') {
        end = start + static_cast<off_t>(i);
        if (end != st.st_size && ::ftruncate(fd, end) != 0) return ErrnoError("cannot truncate", path);
        return absl::OkStatus();
      }
    }
    end = start;
  }
  if (st.st_size > 0 && ::ftruncate(fd, 0) != 0) return ErrnoError("cannot truncate", path);
  return absl::OkStatus();
}

}  // namespace

absl::StatusOr<std::unique_ptr<JsonlMetricsWriter>> JsonlMetricsWriter::Create(
    const std::string& path, bool append, std::function<double()> clock) {
  const int flags = O_CREAT | O_APPEND | O_CLOEXEC | (append ? O_RDWR : (O_WRONLY | O_TRUNC));
  const int fd = ::open(path.c_str(), flags, 0644);
  if (fd < 0) return ErrnoError("cannot open", path);
  if (append) {
    absl::Status st = DropIncompleteLastLine(fd, path);
    if (!st.ok()) {
      ::close(fd);
      return st;
    }
  }
  if (!clock) clock = UnixNow;
  return std::unique_ptr<JsonlMetricsWriter>(new JsonlMetricsWriter(path, fd, std::move(clock)));
}

JsonlMetricsWriter::~JsonlMetricsWriter() { ::close(fd_); }

void JsonlMetricsWriter::OnStart(const RunInfo& info) { Write({clock_(), info}); }
void JsonlMetricsWriter::OnStep(const StepMetrics& metrics) { Write({clock_(), metrics}); }
void JsonlMetricsWriter::OnEval(const EvalMetrics& metrics) { Write({clock_(), metrics}); }

void JsonlMetricsWriter::OnCheckpoint(const CheckpointInfo& info) {
  Write({clock_(), info});
  Sync();
}

void JsonlMetricsWriter::OnRollback(const RollbackInfo& info) {
  Write({clock_(), info});
  Sync();
}

void JsonlMetricsWriter::OnEnd(const json& summary) {
  Write({clock_(), trainer::EndInfo{summary}});
  Sync();
}

void JsonlMetricsWriter::Write(trainer::MetricsEvent event) {
  if (!status_.ok()) return;
  std::string line = trainer::EventLine(event);  // invalid UTF-8 (a path, a name) is replaced
  line.push_back('\n');
  const char* p = line.data();
  size_t left = line.size();
  while (left > 0) {
    const ssize_t n = ::write(fd_, p, left);
    if (n < 0) {
      if (errno == EINTR) continue;
      status_ = ErrnoError("cannot write", path_);
      return;
    }
    p += n;
    left -= static_cast<size_t>(n);
  }
}

void JsonlMetricsWriter::Sync() {
  if (status_.ok() && ::fsync(fd_) != 0 && errno != EINVAL && errno != EROFS) {
    status_ = ErrnoError("cannot fsync", path_);
  }
}

}  // namespace d2lora::engine
