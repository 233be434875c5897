#include "worker/daemon/assignment_spec.h"

#include <errno.h>
#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cstring>

#include "absl/strings/str_cat.h"
#include "common/file_util.h"
#include "common/rpc/spec_convert.h"
#include "common/spec/job_spec.h"

namespace d2lora::worker {
namespace {

absl::Status Unreadable(const std::string& field, const std::string& path, int error) {
  return absl::FailedPreconditionError(absl::StrCat(field, ": ", path, ": ", std::strerror(error)));
}

// A regular file (or anything that is not a directory) we can open for reading.
absl::Status CheckReadableFile(const std::string& field, const std::string& path) {
  struct stat st {};
  if (stat(path.c_str(), &st) != 0) return Unreadable(field, path, errno);
  if (S_ISDIR(st.st_mode)) return Unreadable(field, path, EISDIR);
  const int fd = open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) return Unreadable(field, path, errno);
  close(fd);
  return absl::OkStatus();
}

// A Hugging Face model directory: a directory with a readable config.json.
absl::Status CheckModelDirectory(const std::string& path) {
  struct stat st {};
  if (stat(path.c_str(), &st) != 0) return Unreadable("model", path, errno);
  if (!S_ISDIR(st.st_mode)) return Unreadable("model", path, ENOTDIR);
  return CheckReadableFile("model", path + "/config.json");
}

absl::Status CheckInputs(const spec::JobSpec& spec) {
  if (absl::Status s = CheckModelDirectory(spec.model); !s.ok()) return s;
  if (!spec.init.adapter.empty()) {
    // An adapter folder, or a checkpoint or output folder holding one (the engine tells which).
    struct stat st {};
    if (stat(spec.init.adapter.c_str(), &st) != 0) return Unreadable("init.adapter", spec.init.adapter, errno);
    if (!S_ISDIR(st.st_mode)) return Unreadable("init.adapter", spec.init.adapter, ENOTDIR);
  }
  if (absl::Status s = CheckReadableFile("data.train", spec.data.train); !s.ok()) return s;
  if (!spec.data.validation.empty()) {
    if (absl::Status s = CheckReadableFile("data.validation", spec.data.validation); !s.ok()) return s;
  }
  return absl::OkStatus();
}

}  // namespace

absl::StatusOr<std::string> PrepareAssignmentSpec(const v1::JobSpec& wire, const AssignmentSpecOptions& options) {
  absl::StatusOr<spec::ValidJobSpec> spec = rpc::SpecFromProto(wire, [&](spec::JobSpec& s) {
    s = spec::ResolveSpecPaths(s, options.dir);
    s.output.dir = absl::StrCat(options.dir, "/", kAssignmentOutputDir);
    s.resources.world_size = options.world_size;
    if (s.resources.threads == 0) s.resources.threads = std::max<int64_t>(1, options.slot_cores);
  });
  if (!spec.ok()) return absl::InvalidArgumentError(spec.status().message());
  if (absl::Status inputs = CheckInputs(*spec); !inputs.ok()) return inputs;
  const std::string path = absl::StrCat(options.dir, "/", kAssignmentSpecFile);
  if (absl::Status written = WriteFileAtomically(path, spec::JobSpecToYaml(*spec)); !written.ok()) return written;
  return path;
}

}  // namespace d2lora::worker
