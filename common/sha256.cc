#include "common/sha256.h"

#include <fcntl.h>
#include <openssl/evp.h>
#include <unistd.h>

#include <memory>
#include <vector>

#include "common/file_util.h"

namespace d2lora {
namespace {

std::string Hex(const unsigned char* bytes, unsigned int n) {
  static constexpr char kDigits[] = "0123456789abcdef";
  std::string out(2 * n, '0');
  for (unsigned int i = 0; i < n; ++i) {
    out[2 * i] = kDigits[bytes[i] >> 4];
    out[2 * i + 1] = kDigits[bytes[i] & 15];
  }
  return out;
}

}  // namespace

// OpenSSL only fails here on allocation failure.
void Sha256Hasher::Deleter::operator()(evp_md_ctx_st* ctx) const { EVP_MD_CTX_free(ctx); }
Sha256Hasher::Sha256Hasher() : ctx_(EVP_MD_CTX_new()) { EVP_DigestInit_ex(ctx_.get(), EVP_sha256(), nullptr); }
Sha256Hasher::~Sha256Hasher() = default;
Sha256Hasher::Sha256Hasher(Sha256Hasher&&) noexcept = default;
Sha256Hasher& Sha256Hasher::operator=(Sha256Hasher&&) noexcept = default;
void Sha256Hasher::Update(absl::string_view data) { EVP_DigestUpdate(ctx_.get(), data.data(), data.size()); }
std::string Sha256Hasher::HexDigest() {
  unsigned char md[EVP_MAX_MD_SIZE];
  unsigned int n = 0;
  EVP_DigestFinal_ex(ctx_.get(), md, &n);
  EVP_DigestInit_ex(ctx_.get(), EVP_sha256(), nullptr);
  return Hex(md, n);
}

std::string Sha256Hex(absl::string_view data) {
  Sha256Hasher h;
  h.Update(data);
  return h.HexDigest();
}

absl::StatusOr<std::string> Sha256File(const std::string& path) {
  const int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) return ErrnoError("cannot open", path);
  Sha256Hasher h;
  std::vector<char> buf(1 << 20);
  while (true) {
    const ssize_t n = ::read(fd, buf.data(), buf.size());
    if (n < 0) {
      if (errno == EINTR) continue;
      absl::Status error = ErrnoError("cannot read", path);
      ::close(fd);
      return error;
    }
    if (n == 0) break;
    h.Update(absl::string_view(buf.data(), static_cast<size_t>(n)));
  }
  ::close(fd);
  return h.HexDigest();
}

}  // namespace d2lora
