// d2lora submit FILE [--set key.path=value]... [--world-size N] [--priority P]
//                    [--max-retries K] [--label k=v]... [--idempotency-key KEY]
//                    [--upload-inputs] [--wait]
//
// Sends a job spec to the coordinator. The spec is loaded and checked like
// `d2lora train` loads it, its paths made absolute (workers read them from a
// shared volume). --upload-inputs sends the model folder and the data files
// first (and init.adapter's adapter folder: the folder itself, or the adapter/
// of a checkpoint or output folder) and rewrites the spec to "upload:ID" /
// "upload:ID/NAME" (noting each
// upload on stderr, except with --json). Prints the job id (--json: the Job);
// --wait then follows the job like `watch`. --world-size N sets both the
// request's world size and the spec's resources.world_size.
#include <CLI/CLI.hpp>
#include <filesystem>
#include <iostream>
#include <map>
#include <memory>
#include <set>

#include "absl/strings/str_cat.h"
#include "client/cli_util.h"
#include "client/remote/job_format.h"
#include "client/remote/job_watch.h"
#include "client/remote/remote_commands.h"
#include "client/remote/remote_util.h"
#include "client/remote/submit_spec.h"
#include "client/remote/uploads.h"
#include "common/rpc/spec_convert.h"
#include "common/status_macros.h"

namespace d2lora::cli {
namespace {
namespace fs = std::filesystem;

struct SubmitFlags {
  ConnectionFlags connection;
  std::string file;
  std::vector<std::string> overrides;
  std::vector<std::string> labels;
  int world_size = 0;
  int priority = 0;
  int max_retries = -1;
  std::string idempotency_key;
  bool upload_inputs = false;
  bool wait = false;
};

// The model folder becomes one upload; the data files share another (unless
// their names clash).
absl::Status UploadInputs(const Remote& remote, spec::JobSpec& spec) {
  if (!IsUploadReference(spec.model)) {
    D2_ASSIGN_OR_RETURN(UploadedFolder model, UploadFolder(remote, spec.model, ""));
    if (!remote.json)
      std::cerr << "uploaded model " << spec.model << " (" << model.files.size() << " files, "
                << FormatBytes(model.bytes) << ") as upload:" << model.upload_id << std::endl;
    spec.model = "upload:" + model.upload_id;
  }
  if (!spec.init.adapter.empty() && !IsUploadReference(spec.init.adapter)) {
    std::string folder = spec.init.adapter;
    std::error_code ec;
    if (!fs::is_regular_file(fs::path(folder) / "adapter_config.json", ec) &&
        fs::is_regular_file(fs::path(folder) / "adapter" / "adapter_config.json", ec)) {
      folder = (fs::path(folder) / "adapter").string();
    }
    D2_ASSIGN_OR_RETURN(UploadedFolder adapter, UploadFolder(remote, folder, ""));
    if (!remote.json)
      std::cerr << "uploaded adapter " << folder << " (" << adapter.files.size() << " files, "
                << FormatBytes(adapter.bytes) << ") as upload:" << adapter.upload_id << std::endl;
    spec.init.adapter = "upload:" + adapter.upload_id;
  }
  std::string data_upload;
  std::set<std::string> names;
  std::map<std::string, std::string> uploaded;  // local path -> reference
  for (std::string* path : {&spec.data.train, &spec.data.validation}) {
    if (path->empty() || IsUploadReference(*path)) continue;
    if (auto it = uploaded.find(*path); it != uploaded.end()) {
      *path = it->second;
      continue;
    }
    const std::string name = UploadName(fs::path(*path).filename().string());
    const std::string into = names.count(name) > 0 ? "" : data_upload;
    D2_ASSIGN_OR_RETURN(v1::UploadFileResponse response, UploadOneFile(remote, *path, name, into));
    if (data_upload.empty()) data_upload = response.upload_id();
    names.insert(name);
    const std::string reference =
        response.reference().empty() ? absl::StrCat("upload:", response.upload_id(), "/", name) : response.reference();
    if (!remote.json)
      std::cerr << "uploaded " << *path << " (" << FormatBytes(response.file().size()) << ") as " << reference
                << std::endl;
    uploaded[*path] = reference;
    *path = reference;
  }
  return absl::OkStatus();
}

absl::StatusOr<int> RunSubmit(const SubmitFlags& f) {
  D2_ASSIGN_OR_RETURN(spec::JobSpec spec, LoadSubmitSpec(f.file, f.overrides));
  D2_ASSIGN_OR_RETURN(auto labels, ParseKeyValues(f.labels, "--label"));
  D2_ASSIGN_OR_RETURN(Remote remote, Connect(f.connection));
  if (f.upload_inputs) D2_RETURN_IF_ERROR(UploadInputs(remote, spec));

  v1::SubmitJobRequest request;
  *request.mutable_spec() = rpc::SpecToProto(spec);
  if (f.world_size > 0) {
    // The request's world size wins over the spec's (job_spec.proto); the
    // coordinator checks the spec against it.
    request.set_world_size(f.world_size);
    request.mutable_spec()->mutable_resources()->set_world_size(f.world_size);
  }
  request.set_priority(f.priority);
  if (f.max_retries >= 0) request.set_max_retries(f.max_retries);
  request.mutable_labels()->insert(labels.begin(), labels.end());
  request.set_idempotency_key(f.idempotency_key);
  D2_ASSIGN_OR_RETURN(v1::Job job, Call(remote, &v1::JobService::Stub::SubmitJob, request));
  std::cout << (remote.json ? MessageToJson(job) : job.id()) << std::endl;
  if (!f.wait) return kExitOk;
  return WatchUntilEnd(remote, job.id(), 0);
}

}  // namespace

void AddSubmitCommand(CLI::App& app, int* exit_code) {
  auto f = std::make_shared<SubmitFlags>();
  CLI::App* cmd = app.add_subcommand("submit", "Submit a job spec to the coordinator");
  cmd->add_option("file", f->file, "Job spec (YAML or JSON), as for `d2lora train --config`")->required();
  cmd->add_option("--set", f->overrides, "Override a spec key: key.path=value (repeatable)");
  cmd->add_option("--world-size", f->world_size, "Ranks (default: the spec's resources.world_size)")
      ->check(NonNegativeValidator());
  cmd->add_option("--priority", f->priority, "Higher runs first (default 0)");
  cmd->add_option("--max-retries", f->max_retries,
                  "Retries after a failed attempt, 0..100 (default: the coordinator's)")
      ->check(CLI::Range(0, 100));
  cmd->add_option("--label", f->labels, "Label the job: key=value (repeatable)")->check(KeyValueValidator());
  cmd->add_option("--idempotency-key", f->idempotency_key,
                  "A retried submit with the same key returns the first job instead of a new one");
  cmd->add_flag("--upload-inputs", f->upload_inputs,
                "Upload the model folder and data files first (for workers without a shared volume)");
  cmd->add_flag("--wait", f->wait, "Then follow the job like `watch` (exit 0 if it succeeds, 4 if not)");
  AddConnectionFlags(cmd, &f->connection);
  cmd->callback([f, exit_code]() { RunCommand("submit", exit_code, [&f]() { return RunSubmit(*f); }); });
}

}  // namespace d2lora::cli
