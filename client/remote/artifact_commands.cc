// d2lora artifacts ID [--prefix P]
// d2lora checkpoints ID
// d2lora download ID NAME [--out PATH]
// d2lora upload PATH [--upload-id ID]
//
// ID "-" names the uploads instead of a job: `d2lora download - uploads/ID/NAME`
// (or `upload:ID/NAME`) fetches an uploaded file.
#include <CLI/CLI.hpp>
#include <filesystem>
#include <iostream>
#include <map>
#include <memory>
#include <nlohmann/json.hpp>

#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"
#include "client/cli_util.h"
#include "client/remote/job_format.h"
#include "client/remote/remote_commands.h"
#include "client/remote/remote_util.h"
#include "client/remote/transfer_paths.h"
#include "client/remote/uploads.h"
#include "common/rpc/file_transfer.h"
#include "common/sha256.h"
#include "common/status_macros.h"

namespace d2lora::cli {
namespace {
namespace fs = std::filesystem;
using nlohmann::json;

struct ArtifactFlags {
  ConnectionFlags connection;
  std::string id;
  std::string name;  // artifacts: --prefix; download: NAME
  std::string out;   // download
  std::string path;  // upload
  std::string upload_id;
};

// Forwards a download stream and remembers how it finished, so that a
// coordinator's error can be told from a local one.
class RecordingReader : public grpc::ClientReaderInterface<v1::FileChunk> {
 public:
  RecordingReader(std::unique_ptr<grpc::ClientReader<v1::FileChunk>> inner, grpc::Status* finished)
      : inner_(std::move(inner)), finished_(finished) {}
  grpc::Status Finish() override { return *finished_ = inner_->Finish(); }
  bool NextMessageSize(uint32_t* size) override { return inner_->NextMessageSize(size); }
  bool Read(v1::FileChunk* chunk) override { return inner_->Read(chunk); }
  void WaitForInitialMetadata() override { inner_->WaitForInitialMetadata(); }

 private:
  std::unique_ptr<grpc::ClientReader<v1::FileChunk>> inner_;
  grpc::Status* finished_;
};

absl::StatusOr<std::vector<v1::Artifact>> ListArtifacts(const Remote& remote, const std::string& job_id,
                                                        const std::string& prefix) {
  v1::ListArtifactsRequest request;
  request.set_job_id(job_id);
  request.set_prefix(prefix);
  D2_ASSIGN_OR_RETURN(v1::ListArtifactsResponse response, Call(remote, &v1::JobService::Stub::ListArtifacts, request));
  return std::vector<v1::Artifact>(response.artifacts().begin(), response.artifacts().end());
}

// One artifact into `path`, continuing a PATH.part; a broken stream is retried.
absl::StatusOr<rpc::FileDigest> Download(const Remote& remote, const std::string& job_id, const std::string& name,
                                         const std::string& path) {
  for (int attempt = 1;; ++attempt) {
    grpc::Status finished;
    auto open = [&](grpc::ClientContext& context,
                    int64_t offset) -> std::unique_ptr<grpc::ClientReaderInterface<v1::FileChunk>> {
      v1::DownloadArtifactRequest request;
      request.set_job_id(job_id);
      request.set_name(name);
      request.set_offset(offset);
      return std::make_unique<RecordingReader>(remote.stub->DownloadArtifact(&context, request), &finished);
    };
    auto prepare = [&remote](grpc::ClientContext& context) { remote.Prepare(context, /*unary=*/false); };
    absl::StatusOr<rpc::FileDigest> digest = rpc::DownloadFile(open, prepare, path);
    if (digest.ok() || finished.ok()) return digest;  // done, or a local problem
    if (finished.error_code() != grpc::StatusCode::UNAVAILABLE || attempt == 4) {
      std::error_code ec;  // an empty PATH.part is nothing to continue
      if (fs::exists(path + ".part", ec) && fs::file_size(path + ".part", ec) == 0) fs::remove(path + ".part", ec);
      return MarkServerError(digest.status());
    }
    absl::SleepFor(absl::Seconds(attempt));
  }
}

}  // namespace

absl::Status DownloadJobArtifact(const ConnectionFlags& flags, const std::string& job_id, const std::string& name,
                                 const std::string& path) {
  D2_ASSIGN_OR_RETURN(Remote remote, Connect(flags));
  return Download(remote, job_id, name, path).status();
}

namespace {

absl::StatusOr<int> RunCheckpoints(const ArtifactFlags& f) {
  D2_ASSIGN_OR_RETURN(Remote remote, Connect(f.connection));
  v1::ListCheckpointsRequest request;
  request.set_job_id(f.id);
  D2_ASSIGN_OR_RETURN(v1::ListCheckpointsResponse response,
                      Call(remote, &v1::JobService::Stub::ListCheckpoints, request));
  std::cout << (remote.json ? MessageToJson(response) + "\n" : FormatCheckpointTable(response)) << std::flush;
  return kExitOk;
}

absl::StatusOr<int> RunArtifacts(const ArtifactFlags& f) {
  D2_ASSIGN_OR_RETURN(Remote remote, Connect(f.connection));
  D2_ASSIGN_OR_RETURN(std::vector<v1::Artifact> artifacts, ListArtifacts(remote, ArtifactJobId(f.id), f.name));
  if (remote.json) {
    v1::ListArtifactsResponse response;
    for (const v1::Artifact& a : artifacts) *response.add_artifacts() = a;
    std::cout << MessageToJson(response) << std::endl;
  } else {
    std::cout << FormatArtifactTable(artifacts) << std::flush;
  }
  return kExitOk;
}

absl::StatusOr<int> RunDownload(const ArtifactFlags& f) {
  D2_ASSIGN_OR_RETURN(Remote remote, Connect(f.connection));
  const std::string job_id = ArtifactJobId(f.id);
  const std::string name = job_id.empty() ? UploadArtifactName(f.name) : f.name;
  const std::string folder = FolderName(name);
  // A folder when NAME ends with '/' or names one; else a file.
  std::vector<v1::Artifact> under;
  if (!folder.empty()) {
    auto listed = ListArtifacts(remote, job_id, folder + "/");
    if (listed.ok()) {
      under = std::move(*listed);
    } else if (!job_id.empty()) {
      return listed.status();
    }
  }
  std::vector<std::pair<std::string, std::string>> plan;  // artifact name, local path
  std::map<std::string, std::string> known_sha;
  if (!under.empty()) {
    const std::string dir = f.out.empty() ? fs::path(folder).filename().string() : f.out;
    for (const v1::Artifact& a : under) {
      D2_ASSIGN_OR_RETURN(std::string rel, RelativeArtifactPath(a.name(), folder + "/"));
      plan.emplace_back(a.name(), (fs::path(dir) / rel).string());
      known_sha[a.name()] = a.sha256();
    }
  } else if (name.empty() || name.back() == '/') {
    return MarkServerError(absl::NotFoundError(
        absl::StrCat("no artifacts under ", folder, "/", job_id.empty() ? "" : " in job " + job_id)));
  } else {
    plan.emplace_back(name, FileOutputPath(name, f.out));
  }

  json report = json::array();
  for (const auto& [artifact, path] : plan) {
    std::error_code ec;
    rpc::FileDigest digest;
    bool skipped = false;
    if (auto it = known_sha.find(artifact);
        it != known_sha.end() && !it->second.empty() && fs::is_regular_file(path, ec)) {
      auto have = Sha256File(path);
      if (have.ok() && *have == it->second) {
        digest = {static_cast<int64_t>(fs::file_size(path, ec)), *have};
        skipped = true;
      }
    }
    if (!skipped) {
      D2_ASSIGN_OR_RETURN(digest, Download(remote, job_id, artifact, path));
    }
    if (remote.json) {
      report.push_back({{"name", artifact}, {"path", path}, {"size", digest.size}, {"sha256", digest.sha256}});
    } else {
      std::cout << artifact << " -> " << path << " (" << FormatBytes(digest.size) << (skipped ? ", up to date" : "")
                << ")" << std::endl;
    }
  }
  if (remote.json) std::cout << report.dump() << std::endl;
  return kExitOk;
}

absl::StatusOr<int> RunUpload(const ArtifactFlags& f) {
  std::error_code ec;
  const bool folder = fs::is_directory(f.path, ec);
  if (!folder && !fs::is_regular_file(f.path, ec)) {
    return absl::NotFoundError(absl::StrCat(f.path, ": no such file or directory"));
  }
  D2_ASSIGN_OR_RETURN(Remote remote, Connect(f.connection));
  UploadedFolder uploaded;
  if (folder) {
    D2_ASSIGN_OR_RETURN(uploaded, UploadFolder(remote, f.path, f.upload_id));
  } else {
    const std::string name = fs::path(f.path).filename().string();
    D2_ASSIGN_OR_RETURN(v1::UploadFileResponse response, UploadOneFile(remote, f.path, name, f.upload_id));
    uploaded.upload_id = response.upload_id();
    uploaded.bytes = response.file().size();
    uploaded.files.push_back(std::move(response));
  }
  auto reference = [](const v1::UploadFileResponse& r) {
    return r.reference().empty() ? absl::StrCat("upload:", r.upload_id(), "/", r.file().name()) : r.reference();
  };
  if (remote.json) {
    json out = {{"upload_id", uploaded.upload_id}, {"files", json::array()}};
    if (folder) out["reference"] = "upload:" + uploaded.upload_id;
    for (const auto& r : uploaded.files) {
      json file = json::parse(MessageToJson(r), nullptr, false);
      if (file.is_object() && !file.contains("reference")) file["reference"] = reference(r);
      out["files"].push_back(file);
    }
    std::cout << out.dump() << std::endl;
    return kExitOk;
  }
  for (const auto& r : uploaded.files) std::cout << reference(r) << std::endl;
  if (folder) std::cout << "upload:" << uploaded.upload_id << std::endl;
  return kExitOk;
}

}  // namespace

void AddArtifactCommands(CLI::App& app, int* exit_code) {
  auto artifacts = std::make_shared<ArtifactFlags>();
  CLI::App* cmd = app.add_subcommand("artifacts", "List a job's artifacts (\"-\": the uploads)");
  cmd->add_option("id", artifacts->id, "Job id, or - for uploads")->required();
  cmd->add_option("--prefix", artifacts->name, "Only names starting with this, e.g. merged/");
  AddConnectionFlags(cmd, &artifacts->connection);
  cmd->callback([artifacts, exit_code]() {
    RunCommand("artifacts", exit_code, [&artifacts]() { return RunArtifacts(*artifacts); });
  });

  auto checkpoints = std::make_shared<ArtifactFlags>();
  cmd = app.add_subcommand("checkpoints",
                           "List a job's stored checkpoints with their metrics (a spec's init.from_job + init.step "
                           "starts a job from one)");
  cmd->add_option("id", checkpoints->id, "Job id")->required();
  AddConnectionFlags(cmd, &checkpoints->connection);
  cmd->callback([checkpoints, exit_code]() {
    RunCommand("checkpoints", exit_code, [&checkpoints]() { return RunCheckpoints(*checkpoints); });
  });

  auto download = std::make_shared<ArtifactFlags>();
  cmd = app.add_subcommand("download", "Download an artifact file, or every file of an artifact folder");
  cmd->add_option("id", download->id, "Job id, or - for an upload (NAME uploads/ID/NAME or upload:ID/NAME)")
      ->required();
  cmd->add_option("name", download->name, "A file (summary.json) or a folder (adapter, merged/)")->required();
  cmd->add_option("--out,-o", download->out,
                  "Where to: the file (or a folder to put it in), or the folder for a folder's files "
                  "(default: NAME's last part, here)");
  AddConnectionFlags(cmd, &download->connection);
  cmd->callback(
      [download, exit_code]() { RunCommand("download", exit_code, [&download]() { return RunDownload(*download); }); });

  auto upload = std::make_shared<ArtifactFlags>();
  cmd = app.add_subcommand("upload", "Upload a file or a folder for job specs to use as upload:ID[/NAME]");
  cmd->add_option("path", upload->path, "A file, or a folder (every file in it, recursively)")->required();
  cmd->add_option("--upload-id", upload->upload_id, "Add to this upload instead of starting a new one");
  AddConnectionFlags(cmd, &upload->connection);
  cmd->callback([upload, exit_code]() { RunCommand("upload", exit_code, [&upload]() { return RunUpload(*upload); }); });
}

}  // namespace d2lora::cli
