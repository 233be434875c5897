#include "common/rpc/metrics_exposer.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"

namespace d2lora::rpc {
namespace {

// A port the kernel considers free on `host` (IPv4 literal or a name that
// resolves to loopback/any), or 0.
int FreePort(const std::string& host) {
  const int fd = ::socket(AF_INET, SOCK_STREAM, 0);
  if (fd < 0) return 0;
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_port = 0;
  if (host.empty() || host == "0.0.0.0" || host == "*") {
    addr.sin_addr.s_addr = htonl(INADDR_ANY);
  } else if (::inet_pton(AF_INET, host.c_str(), &addr.sin_addr) != 1) {
    addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  }
  int port = 0;
  socklen_t len = sizeof(addr);
  if (::bind(fd, reinterpret_cast<sockaddr*>(&addr), sizeof(addr)) == 0 &&
      ::getsockname(fd, reinterpret_cast<sockaddr*>(&addr), &len) == 0) {
    port = ntohs(addr.sin_port);
  }
  ::close(fd);
  return port;
}

}  // namespace

absl::StatusOr<MetricsEndpoint> StartMetricsEndpoint(const std::string& listen,
                                                     std::shared_ptr<prometheus::Registry> registry) {
  const size_t colon = listen.rfind(':');
  int port = -1;
  if (colon == std::string::npos || !absl::SimpleAtoi(listen.substr(colon + 1), &port) || port < 0 || port > 65535) {
    return absl::InvalidArgumentError(absl::StrCat("metrics address \"", listen, "\": expected HOST:PORT"));
  }
  const std::string host = listen.substr(0, colon);
  std::string last_error;
  for (int attempt = 0; attempt < (port == 0 ? 5 : 1); ++attempt) {
    const int bind_port = port == 0 ? FreePort(host) : port;
    const std::string address = absl::StrCat(host, ":", bind_port);
    try {
      MetricsEndpoint endpoint{std::make_unique<prometheus::Exposer>(address), address};
      endpoint.exposer->RegisterCollectable(registry);
      return endpoint;
    } catch (const std::exception& e) {
      last_error = e.what();
    }
  }
  return absl::UnavailableError(absl::StrCat("cannot serve metrics on ", listen, ": ", last_error));
}

}  // namespace d2lora::rpc
