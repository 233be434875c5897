#include "client/remote/client_config.h"

#include <yaml-cpp/yaml.h>

#include <CLI/CLI.hpp>
#include <cstdlib>
#include <filesystem>
#include <initializer_list>

#include "absl/strings/str_cat.h"
#include "client/remote/remote_util.h"
#include "common/file_util.h"
#include "common/status_macros.h"

namespace d2lora::cli {
namespace {

namespace fs = std::filesystem;

constexpr char kKnownKeys[] = "endpoint, token, token_file, tls_ca, tls_server_name";

std::string Env(const char* name) {
  const char* value = std::getenv(name);
  return value != nullptr ? value : "";
}

std::string FirstSet(std::initializer_list<std::string> values) {
  for (const std::string& v : values) {
    if (!v.empty()) return v;
  }
  return "";
}

// "~/x" under $HOME; a relative path under `base_dir`.
std::string ResolveConfigPath(const std::string& base_dir, const std::string& path) {
  if (path.empty()) return path;
  if (path == "~" || path.rfind("~/", 0) == 0) {
    const std::string home = Env("HOME");
    if (!home.empty()) return home + path.substr(1);
  }
  if (path.front() == '/' || base_dir.empty()) return path;
  return (fs::path(base_dir) / path).lexically_normal().string();
}

std::string* Slot(ConfigFile& config, const std::string& key) {
  if (key == "endpoint") return &config.endpoint;
  if (key == "token") return &config.token;
  if (key == "token_file") return &config.token_file;
  if (key == "tls_ca") return &config.tls_ca;
  if (key == "tls_server_name") return &config.tls_server_name;
  return nullptr;
}

absl::StatusOr<std::string> ReadToken(const std::string& path, const std::string& what) {
  auto token = rpc::ReadSecretFile(path);
  if (!token.ok()) return absl::InvalidArgumentError(absl::StrCat(what, ": ", token.status().message()));
  return token;
}

}  // namespace

void AddConnectionFlags(CLI::App* cmd, ConnectionFlags* flags) {
  cmd->add_option("--endpoint", flags->endpoint,
                  "Coordinator HOST:PORT (default: $D2LORA_ENDPOINT, the config file, localhost:50051)");
  CLI::Option* token =
      cmd->add_option("--token", flags->token, "Bearer token (default: $D2LORA_TOKEN, the config file)");
  CLI::Option* token_file =
      cmd->add_option("--token-file", flags->token_file, "File whose first line is the bearer token");
  token->excludes(token_file);
  cmd->add_option("--tls-ca", flags->tls_ca,
                  "Use TLS, trusting this PEM CA or server certificate (default: $D2LORA_TLS_CA, the config file)");
  cmd->add_option("--tls-server-name", flags->tls_server_name, "Name to check the server's certificate against");
  cmd->add_flag("--json", flags->json, "Machine-readable JSON output");
  cmd->add_option("--timeout", flags->timeout_seconds, "Seconds each request may take (default 30)")
      ->check(NonNegativeValidator(/*positive=*/true));
}

std::string ConfigFilePath() {
  if (std::string path = Env("D2LORA_CONFIG"); !path.empty()) return path;
  if (std::string xdg = Env("XDG_CONFIG_HOME"); !xdg.empty() && xdg.front() == '/') return xdg + "/d2lora/config";
  if (std::string home = Env("HOME"); !home.empty()) return home + "/.config/d2lora/config";
  return "";
}

absl::StatusOr<ConfigFile> LoadConfigFile(const std::string& path, bool must_exist) {
  ConfigFile config;
  if (path.empty()) return config;
  std::error_code ec;
  if (!fs::exists(path, ec)) {
    if (must_exist) return absl::NotFoundError(absl::StrCat("config file ", path, ": not found"));
    return config;
  }
  auto text = ReadFileToString(path);
  if (!text.ok()) return absl::Status(text.status().code(), absl::StrCat("config file ", text.status().message()));
  YAML::Node root;
  try {
    root = YAML::Load(*text);
  } catch (const YAML::Exception& e) {
    return absl::InvalidArgumentError(absl::StrCat("config file ", path, ": malformed YAML: ", e.what()));
  }
  if (root.IsNull()) return config;
  if (!root.IsMap()) {
    return absl::InvalidArgumentError(
        absl::StrCat("config file ", path, ": expected a mapping of settings (", kKnownKeys, ")"));
  }
  for (const auto& item : root) {
    const std::string key = item.first.IsScalar() ? item.first.Scalar() : "?";
    std::string* slot = Slot(config, key);
    if (slot == nullptr) {
      return absl::InvalidArgumentError(
          absl::StrCat("config file ", path, ": unknown key \"", key, "\" (known keys: ", kKnownKeys, ")"));
    }
    if (item.second.IsNull()) continue;
    if (!item.second.IsScalar()) {
      return absl::InvalidArgumentError(absl::StrCat("config file ", path, ": ", key, ": expected a string"));
    }
    *slot = item.second.Scalar();
  }
  if (!config.token.empty() && !config.token_file.empty()) {
    return absl::InvalidArgumentError(absl::StrCat("config file ", path, ": set token or token_file, not both"));
  }
  const std::string dir = fs::path(path).parent_path().string();
  config.token_file = ResolveConfigPath(dir, config.token_file);
  config.tls_ca = ResolveConfigPath(dir, config.tls_ca);
  return config;
}

absl::StatusOr<rpc::ClientOptions> ResolveClientOptions(const ConnectionFlags& flags) {
  const bool explicit_config = !Env("D2LORA_CONFIG").empty();
  const std::string config_path = ConfigFilePath();
  D2_ASSIGN_OR_RETURN(ConfigFile file, LoadConfigFile(config_path, explicit_config));

  rpc::ClientOptions options;
  options.endpoint = FirstSet({flags.endpoint, Env("D2LORA_ENDPOINT"), file.endpoint, kDefaultEndpoint});
  if (!flags.token.empty()) {
    options.token = flags.token;
  } else if (!flags.token_file.empty()) {
    D2_ASSIGN_OR_RETURN(options.token, ReadToken(flags.token_file, "--token-file"));
  } else if (std::string env = Env("D2LORA_TOKEN"); !env.empty()) {
    options.token = env;
  } else if (!file.token.empty()) {
    options.token = file.token;
  } else if (!file.token_file.empty()) {
    D2_ASSIGN_OR_RETURN(options.token,
                        ReadToken(file.token_file, absl::StrCat("config file ", config_path, ": token_file")));
  }
  options.tls_ca_file = FirstSet({flags.tls_ca, Env("D2LORA_TLS_CA"), file.tls_ca});
  options.tls_server_name = FirstSet({flags.tls_server_name, file.tls_server_name});
  return options;
}

}  // namespace d2lora::cli
