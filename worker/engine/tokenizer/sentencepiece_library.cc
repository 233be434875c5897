#include "worker/engine/tokenizer/sentencepiece_library.h"

#include <dlfcn.h>
#include <unistd.h>

#include <cstdlib>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "common/status_macros.h"

namespace d2lora::engine {
namespace {

constexpr char kShimName[] = "libd2lora_spm_shim.so";

std::string ExecutableDir() {
  std::string buf(4096, '\0');
  const ssize_t n = readlink("/proc/self/exe", buf.data(), buf.size() - 1);
  if (n <= 0) return "";
  buf.resize(static_cast<size_t>(n));
  const size_t slash = buf.rfind('/');
  return slash == std::string::npos ? "" : buf.substr(0, slash);
}

absl::StatusOr<const D2SpmApi*> LoadApi() {
  std::vector<std::string> candidates;
  if (const char* env = std::getenv("D2LORA_SPM_SHIM"); env != nullptr && *env != '\0') {
    candidates.push_back(env);
  }
#ifdef D2LORA_SPM_SHIM_PATH
  candidates.push_back(D2LORA_SPM_SHIM_PATH);
#endif
  if (std::string dir = ExecutableDir(); !dir.empty()) candidates.push_back(dir + "/" + kShimName);
  candidates.push_back(kShimName);
  std::vector<std::string> failures;
  for (const std::string& path : candidates) {
    // A fresh link namespace: SentencePiece binds to its own protobuf copy, and
    // nothing in this namespace binds to it.
    void* handle = dlmopen(LM_ID_NEWLM, path.c_str(), RTLD_NOW | RTLD_LOCAL);
    if (handle == nullptr) {
      const char* err = dlerror();
      failures.push_back(err != nullptr ? err : path);
      continue;
    }
    using Entry = const D2SpmApi* (*)();
    auto entry = reinterpret_cast<Entry>(dlsym(handle, "d2lora_spm_shim_api"));
    const D2SpmApi* api = entry != nullptr ? entry() : nullptr;
    if (api == nullptr || api->version != kD2SpmApiVersion) {
      failures.push_back(absl::StrCat(path, ": not a compatible SentencePiece shim"));
      dlclose(handle);
      continue;
    }
    return api;  // kept loaded for the life of the process
  }
  return absl::FailedPreconditionError(absl::StrCat(
      "SentencePiece support is unavailable: cannot load ", kShimName, " (set D2LORA_SPM_SHIM): ",
      absl::StrJoin(failures, "; ")));
}

}  // namespace

absl::StatusOr<const D2SpmApi*> SentencePieceApi() {
  static const absl::StatusOr<const D2SpmApi*>* api =
      new absl::StatusOr<const D2SpmApi*>(LoadApi());
  return *api;
}

absl::Status TrainSentencePiece(const std::string& args) {
  D2_ASSIGN_OR_RETURN(const D2SpmApi* api, SentencePieceApi());
  char error[1024] = "";
  if (api->train(args.data(), args.size(), error, sizeof error) != 0) {
    return absl::InvalidArgumentError(absl::StrCat("SentencePiece training failed: ", error));
  }
  return absl::OkStatus();
}

}  // namespace d2lora::engine
