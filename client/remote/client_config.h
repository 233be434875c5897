// Where the remote subcommands find the coordinator, and how they talk to it.
//
// Each setting comes from the first of: a flag (--endpoint, --token,
// --token-file, --tls-ca, --tls-server-name), the environment
// (D2LORA_ENDPOINT, D2LORA_TOKEN, D2LORA_TLS_CA), the config file, and for the
// endpoint the default localhost:50051.
//
// The config file is $D2LORA_CONFIG when set (then it must exist), else
// $XDG_CONFIG_HOME/d2lora/config, else ~/.config/d2lora/config; a missing
// default file is fine. It is YAML, every key optional:
//
//   endpoint: coordinator.example.com:50051
//   token_file: token          # or token: SECRET (not both)
//   tls_ca: ca.pem             # relative paths: to the config file's folder
//   tls_server_name: coordinator
//
// An unknown key, a value that is not a string, or malformed YAML is an error
// naming the file.
#pragma once

#include <string>

#include "absl/status/statusor.h"
#include "common/rpc/channel.h"

namespace CLI {
class App;
}

namespace d2lora::cli {

inline constexpr char kDefaultEndpoint[] = "localhost:50051";

// The flags every remote subcommand takes.
struct ConnectionFlags {
  std::string endpoint;
  std::string token;
  std::string token_file;
  std::string tls_ca;
  std::string tls_server_name;
  bool json = false;
  double timeout_seconds = 30;  // deadline of each unary call
};

// The config file's settings; "" = not set. Relative paths are already
// resolved against the file's folder.
struct ConfigFile {
  std::string endpoint;
  std::string token;
  std::string token_file;
  std::string tls_ca;
  std::string tls_server_name;
};

// Registers --endpoint, --token, --token-file, --tls-ca, --tls-server-name,
// --json and --timeout on `cmd`.
void AddConnectionFlags(CLI::App* cmd, ConnectionFlags* flags);

// The config file to read ($D2LORA_CONFIG, $XDG_CONFIG_HOME/d2lora/config,
// ~/.config/d2lora/config); "" when none can be named.
std::string ConfigFilePath();

// Reads the config file at `path`. A missing file gives empty settings unless
// `must_exist`. Errors name the file.
absl::StatusOr<ConfigFile> LoadConfigFile(const std::string& path, bool must_exist = false);

// Flags > environment > config file > default, with the token read from its
// file when it comes from one.
absl::StatusOr<rpc::ClientOptions> ResolveClientOptions(const ConnectionFlags& flags);

}  // namespace d2lora::cli
