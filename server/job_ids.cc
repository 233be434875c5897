#include "server/job_ids.h"

#include <mutex>
#include <cctype>
#include <random>

#include "absl/strings/str_format.h"

namespace d2lora::server {
namespace {

std::string NewId(const char* prefix) {
  static std::mutex mu;
  static std::mt19937_64 rng{std::random_device{}()};
  std::lock_guard<std::mutex> lock(mu);
  return absl::StrFormat("%s-%012x", prefix, rng() & 0xffffffffffffULL);
}

}  // namespace

std::string NewJobId() { return NewId("job"); }
std::string NewWorkerId() { return NewId("worker"); }
std::string NewAssignmentId() { return NewId("asg"); }
std::string NewUploadId() { return NewId("up"); }

bool LooksLikeId(const std::string& id) {
  if (id.empty() || id.size() > 64) return false;
  for (char c : id) {
    if (!(std::isalnum(static_cast<unsigned char>(c)) || c == '-')) return false;
  }
  return true;
}

}  // namespace d2lora::server
