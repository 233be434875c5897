#include "server/submit_check.h"

#include <cctype>
#include <cmath>
#include <utility>
#include <vector>

#include <google/protobuf/descriptor.h>
#include <google/protobuf/reflection.h>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "common/rpc/spec_convert.h"
#include "server/job_ids.h"

namespace d2lora::server {
namespace {

absl::Status Invalid(const std::string& field, const std::string& message) {
  return absl::InvalidArgumentError(absl::StrCat(field, ": ", message));
}

bool ValidLabelKey(const std::string& key) {
  if (key.empty() || key.size() > 63) return false;
  for (size_t i = 0; i < key.size(); ++i) {
    const char c = key[i];
    const bool alnum = std::isalnum(static_cast<unsigned char>(c));
    if (!(alnum || (i > 0 && (c == '_' || c == '.' || c == '-' || c == '/')))) return false;
  }
  return true;
}

// Every string field of `message` (recursively) at most kMaxPathBytes, every
// floating-point one finite (NaN passes every range check written as a < b).
absl::Status CheckFieldValues(const google::protobuf::Message& message, const std::string& prefix) {
  const google::protobuf::Reflection* reflection = message.GetReflection();
  std::vector<const google::protobuf::FieldDescriptor*> fields;
  reflection->ListFields(message, &fields);
  for (const google::protobuf::FieldDescriptor* f : fields) {
    const std::string name = absl::StrCat(prefix, f->name());
    if (f->cpp_type() == google::protobuf::FieldDescriptor::CPPTYPE_MESSAGE) {
      if (f->is_repeated()) continue;  // the spec has no repeated messages
      if (absl::Status s = CheckFieldValues(reflection->GetMessage(message, f), name + "."); !s.ok()) return s;
    } else if (f->cpp_type() == google::protobuf::FieldDescriptor::CPPTYPE_DOUBLE && !f->is_repeated()) {
      const double v = reflection->GetDouble(message, f);
      if (!std::isfinite(v)) return Invalid(name, absl::StrCat(v, ": must be a finite number"));
    } else if (f->cpp_type() == google::protobuf::FieldDescriptor::CPPTYPE_STRING) {
      const int n = f->is_repeated() ? reflection->FieldSize(message, f) : 1;
      for (int i = 0; i < n; ++i) {
        std::string scratch;
        const std::string& v = f->is_repeated() ? reflection->GetRepeatedStringReference(message, f, i, &scratch)
                                                : reflection->GetStringReference(message, f, &scratch);
        if (v.size() > kMaxPathBytes) {
          return Invalid(f->is_repeated() ? absl::StrCat(name, "[", i, "]") : name,
                         absl::StrCat(v.size(), " bytes, longer than the limit of ", kMaxPathBytes));
        }
      }
    }
  }
  return absl::OkStatus();
}

// `folder_file`: for an upload of a whole folder, the file it must hold
// (config.json for a model, adapter_config.json for an adapter); nullptr = any.
absl::Status CheckPath(const std::string& field, const std::string& path, ArtifactStore& artifacts,
                       const char* folder_file) {
  auto ref = ParseUploadRef(field, path);
  if (!ref.ok()) return ref.status();
  if (!ref->has_value()) {
    if (path.empty() || path[0] != '/') {
      return Invalid(field, absl::StrCat("\"", path, "\" is not an absolute path: give a path every worker can ",
                                         "read (a shared volume), or upload it (d2lora upload) and use upload:ID"));
    }
    if (HasDotDotSegment(path)) return Invalid(field, absl::StrCat("\"", path, "\" has a \"..\" segment"));
    return absl::OkStatus();
  }
  const UploadRef& r = **ref;
  const std::string prefix = absl::StrCat("uploads/", r.upload_id, "/");
  if (!r.name.empty()) {
    auto info = artifacts.Stat(prefix + r.name);
    if (!info.ok()) return Invalid(field, absl::StrCat("upload ", path, " not found"));
    return absl::OkStatus();
  }
  auto files = artifacts.List(prefix);
  if (!files.ok()) return files.status();
  if (files->empty()) return Invalid(field, absl::StrCat("upload ", r.upload_id, " not found"));
  if (folder_file != nullptr) {
    bool has_file = false;
    for (const ArtifactInfo& f : *files) has_file |= f.key == prefix + folder_file;
    if (!has_file) {
      return Invalid(field, absl::StrCat("upload ", r.upload_id, " has no ", folder_file, ": not ",
                                         field == "spec.model" ? "a model" : "an adapter", " directory"));
    }
  }
  return absl::OkStatus();
}

}  // namespace

absl::Status CheckSpecPathRoots(const v1::SubmitJobRequest& request, const PathRoots& roots) {
  const v1::JobSpec& spec = request.spec();
  const std::vector<std::pair<std::string, const std::string*>> paths = {
      {"spec.model", &spec.model()}, {"spec.data.train", &spec.data().train()}};
  for (const auto& [field, path] : paths) {
    if (path->empty() || absl::StartsWith(*path, kUploadScheme)) continue;  // CheckSubmitRequest's to judge
    if (absl::Status s = roots.Check(field, *path); !s.ok()) return s;
  }
  if (spec.init().has_adapter() && !spec.init().adapter().empty() &&
      !absl::StartsWith(spec.init().adapter(), kUploadScheme)) {
    if (absl::Status s = roots.Check("spec.init.adapter", spec.init().adapter()); !s.ok()) return s;
  }
  if (spec.data().has_validation() && !spec.data().validation().empty() &&
      !absl::StartsWith(spec.data().validation(), kUploadScheme)) {
    if (absl::Status s = roots.Check("spec.data.validation", spec.data().validation()); !s.ok()) return s;
  }
  return absl::OkStatus();
}

absl::StatusOr<std::optional<UploadRef>> ParseUploadRef(const std::string& field, const std::string& path) {
  if (!absl::StartsWith(path, kUploadScheme)) return std::optional<UploadRef>();
  const std::string rest = path.substr(sizeof(kUploadScheme) - 1);
  UploadRef ref;
  const size_t slash = rest.find('/');
  ref.upload_id = rest.substr(0, slash);
  if (slash != std::string::npos) ref.name = rest.substr(slash + 1);
  if (!LooksLikeId(ref.upload_id)) {
    return Invalid(field, absl::StrCat("\"", path, "\": expected upload:ID or upload:ID/NAME"));
  }
  if (slash != std::string::npos) {
    if (absl::Status s = ValidateArtifactKey(ref.name); !s.ok()) return Invalid(field, absl::StrCat("\"", path, "\": ", s.message()));
  }
  return std::optional<UploadRef>(ref);
}

absl::StatusOr<v1::Job> CheckSubmitRequest(const v1::SubmitJobRequest& request, ArtifactStore& artifacts,
                                           int default_max_retries) {
  if (!request.has_spec()) return Invalid("spec", "required");
  // Sizes first: nothing oversized reaches the parser or an error message.
  if (absl::Status s = CheckFieldValues(request.spec(), "spec."); !s.ok()) return s;
  if (const size_t bytes = request.spec().ByteSizeLong(); bytes > kMaxSpecBytes) {
    return Invalid("spec", absl::StrCat(bytes, " bytes, larger than the limit of ", kMaxSpecBytes));
  }
  if (request.labels_size() > 64) return Invalid("labels", "more than 64");
  if (request.idempotency_key().size() > 256) return Invalid("idempotency_key", "longer than 256 bytes");
  int world_size = request.world_size();
  if (world_size < 0 || world_size > 1024) {
    return Invalid("world_size", absl::StrCat(world_size, ": must be in [1, 1024], or 0 for the spec's"));
  }
  // The request's world size wins over the spec's (job_spec.proto).
  auto valid = rpc::SpecFromProto(request.spec(), [&](spec::JobSpec& s) {
    if (world_size == 0) world_size = static_cast<int>(s.resources.world_size);
    s.resources.world_size = world_size;
  });
  if (!valid.ok()) return absl::InvalidArgumentError(valid.status().message());
  const spec::JobSpec& spec = *valid;
  if (request.priority() < -1000 || request.priority() > 1000) {
    return Invalid("priority", absl::StrCat(request.priority(), ": must be in [-1000, 1000]"));
  }
  const int max_retries = request.has_max_retries() ? request.max_retries() : default_max_retries;
  if (max_retries < 0 || max_retries > 100) {
    return Invalid("max_retries", absl::StrCat(max_retries, ": must be in [0, 100]"));
  }
  for (const auto& [k, v] : request.labels()) {
    if (!ValidLabelKey(k)) return Invalid(absl::StrCat("labels[\"", k.substr(0, 80), "\"]"), "keys are 1-63 of [A-Za-z0-9_.-/], starting with a letter or digit");
    if (v.size() > 256) return Invalid(absl::StrCat("labels[\"", k, "\"]"), "value longer than 256 bytes");
  }

  struct PathField {
    const char* field;
    const std::string& path;
    const char* folder_file;
  };
  const PathField paths[] = {{"spec.model", spec.model, "config.json"},
                             {"spec.init.adapter", spec.init.adapter, "adapter_config.json"},
                             {"spec.data.train", spec.data.train, nullptr},
                             {"spec.data.validation", spec.data.validation, nullptr}};
  for (const PathField& p : paths) {
    if (p.path.empty()) continue;  // optional (model and data.train are required by the spec's own check)
    if (absl::Status s = CheckPath(p.field, p.path, artifacts, p.folder_file); !s.ok()) return s;
  }
  if (!spec.init.adapter.empty() && !spec.init.from_job.empty()) {
    return Invalid("spec.init", "give init.adapter or init.from_job, not both (the service fills init.adapter in "
                                "from init.from_job)");
  }

  v1::Job job;
  *job.mutable_spec() = rpc::SpecToProto(spec);
  job.set_name(spec.name);
  job.set_world_size(world_size);
  job.set_priority(request.priority());
  job.set_max_retries(max_retries);
  *job.mutable_labels() = request.labels();
  job.set_idempotency_key(request.idempotency_key());
  return job;
}

}  // namespace d2lora::server
