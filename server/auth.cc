#include "server/auth.h"

#include <openssl/crypto.h>

#include "absl/strings/match.h"
#include "common/sha256.h"

namespace d2lora::server {

absl::Status TokenAuth::Check(const grpc::ServerContext& context) const {
  if (token_.empty()) return absl::OkStatus();
  const auto& metadata = context.client_metadata();
  auto it = metadata.find("authorization");
  if (it == metadata.end()) {
    return absl::UnauthenticatedError("missing \"authorization: Bearer TOKEN\" metadata (--token or D2LORA_TOKEN)");
  }
  const std::string value(it->second.data(), it->second.size());
  static constexpr char kBearer[] = "Bearer ";
  const std::string given = absl::StartsWith(value, kBearer) ? value.substr(sizeof(kBearer) - 1) : std::string();
  // Digests have one length, so the comparison time says nothing about the token.
  const std::string expected = Sha256Hex(token_), got = Sha256Hex(given);
  if (CRYPTO_memcmp(got.data(), expected.data(), expected.size()) != 0) return absl::UnauthenticatedError("invalid bearer token");
  return absl::OkStatus();
}

}  // namespace d2lora::server
