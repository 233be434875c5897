// The client side of a connection to the coordinator (the CLI and the worker
// daemon): endpoint, bearer token and TLS in one place.
#pragma once

#include <memory>
#include <optional>
#include <string>

#include <grpcpp/channel.h>
#include <grpcpp/client_context.h>

#include "absl/status/statusor.h"
#include "absl/time/time.h"

namespace d2lora::rpc {

// The largest gRPC message either side accepts or sends by default (the
// coordinator's --max-message-bytes). File transfers stream 1 MiB chunks.
inline constexpr int kMaxMessageBytes = 16 << 20;

struct ClientOptions {
  std::string endpoint;     // HOST:PORT
  std::string token;        // sent as "authorization: Bearer TOKEN"; "" = none
  std::string tls_ca_file;  // "" = plaintext; else TLS, trusting this PEM (CA or the server's certificate)
  std::string tls_server_name;  // overrides the name checked against the certificate
  int max_message_bytes = kMaxMessageBytes;  // receive and send limit of one message
};

// Checks the options (endpoint present, CA file readable) and makes the channel.
absl::StatusOr<std::shared_ptr<grpc::Channel>> MakeChannel(const ClientOptions& options);

// Adds the token and, when given, a deadline `timeout` from now.
void PrepareContext(grpc::ClientContext& context, const ClientOptions& options,
                    std::optional<absl::Duration> timeout = std::nullopt);

// A secret in a file (token, key): the file's first line, without surrounding
// whitespace. An empty secret is an error naming the file.
absl::StatusOr<std::string> ReadSecretFile(const std::string& path);

}  // namespace d2lora::rpc
