#include "common/rpc/channel.h"

#include <grpcpp/create_channel.h>
#include <grpcpp/security/credentials.h>
#include <grpcpp/support/channel_arguments.h>

#include "absl/strings/str_cat.h"
#include "absl/strings/strip.h"
#include "absl/strings/ascii.h"
#include "common/file_util.h"

namespace d2lora::rpc {

absl::StatusOr<std::shared_ptr<grpc::Channel>> MakeChannel(const ClientOptions& options) {
  if (options.endpoint.empty()) {
    return absl::InvalidArgumentError(
        "no coordinator endpoint: pass --endpoint HOST:PORT or set D2LORA_ENDPOINT");
  }
  if (options.max_message_bytes <= 0) {
    return absl::InvalidArgumentError(absl::StrCat("max_message_bytes = ", options.max_message_bytes, ": must be > 0"));
  }
  grpc::ChannelArguments args;
  args.SetMaxReceiveMessageSize(options.max_message_bytes);
  args.SetMaxSendMessageSize(options.max_message_bytes);
  // Reconnect at least every second while the server is down (gRPC's default
  // backoff grows to 120 s): a worker must be back within the coordinator's
  // heartbeat timeout once a restarted coordinator listens again.
  args.SetInt(GRPC_ARG_MAX_RECONNECT_BACKOFF_MS, 1000);
  std::shared_ptr<grpc::ChannelCredentials> credentials;
  if (options.tls_ca_file.empty()) {
    credentials = grpc::InsecureChannelCredentials();
  } else {
    auto pem = ReadFileToString(options.tls_ca_file);
    if (!pem.ok()) {
      return absl::InvalidArgumentError(absl::StrCat("TLS CA file: ", pem.status().message()));
    }
    grpc::SslCredentialsOptions ssl;
    ssl.pem_root_certs = *pem;
    credentials = grpc::SslCredentials(ssl);
    if (!options.tls_server_name.empty()) {
      args.SetSslTargetNameOverride(options.tls_server_name);
    }
  }
  return grpc::CreateCustomChannel(options.endpoint, credentials, args);
}

void PrepareContext(grpc::ClientContext& context, const ClientOptions& options,
                    std::optional<absl::Duration> timeout) {
  if (!options.token.empty()) context.AddMetadata("authorization", "Bearer " + options.token);
  if (timeout) context.set_deadline(absl::ToChronoTime(absl::Now() + *timeout));
}

absl::StatusOr<std::string> ReadSecretFile(const std::string& path) {
  auto text = ReadFileToString(path);
  if (!text.ok()) return text.status();
  std::string secret(absl::StripAsciiWhitespace(text->substr(0, text->find('\n'))));
  if (secret.empty()) return absl::InvalidArgumentError(absl::StrCat(path, ": empty (expected the secret on the first line)"));
  return secret;
}

}  // namespace d2lora::rpc
