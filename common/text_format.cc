#include "common/text_format.h"

#include <cmath>

#include "absl/strings/ascii.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"

namespace d2lora {

std::string FormatBytes(int64_t bytes) {
  if (bytes < 1024) return absl::StrCat(bytes, " B");
  static const char* const kUnits[] = {"KiB", "MiB", "GiB", "TiB"};
  double v = static_cast<double>(bytes);
  int unit = -1;
  while (v >= 1024 && unit < 3) {
    v /= 1024;
    ++unit;
  }
  return absl::StrFormat("%.1f %s", v, kUnits[unit]);
}

absl::StatusOr<int64_t> ParseBytes(absl::string_view text) {
  absl::string_view t = absl::StripAsciiWhitespace(text);
  size_t end = 0;
  while (end < t.size() && (absl::ascii_isdigit(t[end]) || t[end] == '.')) ++end;
  const std::string unit = absl::AsciiStrToLower(absl::StripAsciiWhitespace(t.substr(end)));
  static const std::pair<const char*, double> kUnits[] = {
      {"", 1},          {"b", 1},          {"kib", 0x1p10}, {"mib", 0x1p20}, {"gib", 0x1p30}, {"tib", 0x1p40},
      {"kb", 1e3},      {"mb", 1e6},       {"gb", 1e9},     {"tb", 1e12}};
  double number = 0;
  if (end == 0 || !absl::SimpleAtod(t.substr(0, end), &number)) {
    return absl::InvalidArgumentError(absl::StrCat("\"", text, "\": expected a size such as 81920, 80GiB or 500MB"));
  }
  for (const auto& [name, factor] : kUnits) {
    if (unit != name) continue;
    const double bytes = number * factor;
    if (!(bytes >= 1) || bytes > 0x1p62 || std::floor(bytes) != bytes) {
      return absl::InvalidArgumentError(absl::StrCat("\"", text, "\": must be a whole number of bytes, at least 1"));
    }
    return static_cast<int64_t>(bytes);
  }
  return absl::InvalidArgumentError(
      absl::StrCat("\"", text, "\": unknown unit \"", unit, "\" (B, KiB, MiB, GiB, TiB, kB, MB, GB, TB)"));
}

std::string FormatDuration(double seconds) {
  if (!std::isfinite(seconds) || seconds < 0 || seconds > 1e15) return "?";
  const int64_t s = std::llround(seconds);
  if (s < 60) return absl::StrCat(s, "s");
  if (s < 3600) return absl::StrFormat("%dm%02ds", s / 60, s % 60);
  return absl::StrFormat("%dh%02dm", s / 3600, (s % 3600) / 60);
}

std::string FormatCount(int64_t n) {
  // Digits of |n| without overflow for INT64_MIN.
  const uint64_t u = n < 0 ? uint64_t{0} - static_cast<uint64_t>(n) : static_cast<uint64_t>(n);
  const std::string digits = absl::StrCat(u);
  std::string out = n < 0 ? "-" : "";
  for (size_t i = 0; i < digits.size(); ++i) {
    if (i > 0 && (digits.size() - i) % 3 == 0) out.push_back(',');
    out.push_back(digits[i]);
  }
  return out;
}

}  // namespace d2lora
