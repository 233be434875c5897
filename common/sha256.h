// SHA-256 digests (OpenSSL's libcrypto) for checkpoint and artifact integrity.
#pragma once

#include <memory>
#include <string>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"

struct evp_md_ctx_st;

namespace d2lora {

// Incremental digest, for data that arrives in pieces (uploads, downloads).
class Sha256Hasher {
 public:
  Sha256Hasher();
  ~Sha256Hasher();
  Sha256Hasher(Sha256Hasher&&) noexcept;
  Sha256Hasher& operator=(Sha256Hasher&&) noexcept;
  void Update(absl::string_view data);
  // Lower-case hex digest of everything so far; the hasher starts over.
  std::string HexDigest();

 private:
  struct Deleter {
    void operator()(evp_md_ctx_st* ctx) const;
  };
  std::unique_ptr<evp_md_ctx_st, Deleter> ctx_;
};

// Lower-case hex digest of `data`.
std::string Sha256Hex(absl::string_view data);
// Lower-case hex digest of the file at `path`, read in chunks; errors name the path.
absl::StatusOr<std::string> Sha256File(const std::string& path);

}  // namespace d2lora
