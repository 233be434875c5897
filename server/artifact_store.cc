#include "server/artifact_store.h"

#include "absl/strings/ascii.h"
#include "absl/strings/escaping.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"

namespace d2lora::server {
namespace {

constexpr size_t kMaxKeyBytes = 1024;
constexpr size_t kMaxSegmentBytes = 255;

bool IsKeyChar(char c) { return absl::ascii_isalnum(static_cast<unsigned char>(c)) || c == '.' || c == '_' || c == '-'; }

absl::Status Invalid(absl::string_view key, absl::string_view why) {
  // Keys come from clients: escape them, and keep an over-long one readable.
  std::string shown = absl::CHexEscape(key.substr(0, 120));
  if (key.size() > 120) absl::StrAppend(&shown, "...");
  return absl::InvalidArgumentError(absl::StrCat("invalid artifact key \"", shown, "\": ", why));
}

}  // namespace

absl::Status ValidateArtifactKey(absl::string_view key) {
  if (key.empty()) return Invalid(key, "empty");
  if (key.size() > kMaxKeyBytes) return Invalid(key, absl::StrCat("longer than ", kMaxKeyBytes, " bytes"));
  if (key.front() == '/') return Invalid(key, "absolute (starts with \"/\")");
  for (absl::string_view segment : absl::StrSplit(key, '/')) {
    if (segment.empty()) return Invalid(key, "empty segment (\"//\" or a trailing \"/\")");
    if (segment.size() > kMaxSegmentBytes) {
      return Invalid(key, absl::StrCat("a segment is longer than ", kMaxSegmentBytes, " bytes"));
    }
    if (segment == "." || segment == "..") return Invalid(key, "\".\" and \"..\" segments are not allowed");
    if (absl::StartsWith(segment, ".d2lora")) return Invalid(key, "segments starting with \".d2lora\" are reserved");
    for (char c : segment) {
      if (!IsKeyChar(c)) return Invalid(key, "only [A-Za-z0-9._-] and \"/\" are allowed");
    }
  }
  return absl::OkStatus();
}

}  // namespace d2lora::server
