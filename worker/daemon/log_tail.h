// Reading what a rank process appends to its files: complete lines only, from
// where the last read stopped, and log lines made fit for the wire (valid
// UTF-8, at most 4 KiB).
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>
#include <vector>

#include "absl/strings/string_view.h"

namespace d2lora::worker {

inline constexpr size_t kMaxLogLineBytes = 4096;

// The lines appended to a growing file since the last Read. A line is read
// once it ends in '\n'; a line longer than `max_line_bytes` that has no '\n'
// yet comes out in pieces of that size. A file that does not exist yet reads
// as empty; a file that shrank (replaced) is read again from its start.
class LineTail {
 public:
  explicit LineTail(std::string path, size_t max_line_bytes = 1 << 20);

  // At most `max_lines` lines, without their '\n'. `to_end`: the file is
  // complete (its writer has exited), so a last line without '\n' counts too.
  std::vector<std::string> Read(size_t max_lines = SIZE_MAX, bool to_end = false);
  // Bytes consumed so far.
  int64_t offset() const { return offset_; }
  const std::string& path() const { return path_; }

 private:
  std::string path_;
  size_t max_line_bytes_;
  int64_t offset_ = 0;
};

// `line` made fit for a LogLine: a trailing '\r' dropped, bytes that are not
// UTF-8 replaced by U+FFFD, cut at a character boundary to at most `max_bytes`.
std::string CleanLogLine(absl::string_view line, size_t max_bytes = kMaxLogLineBytes);

// The last `count` lines of the file at `path` (from its final `max_bytes`),
// cleaned; an unreadable file gives none. A last line without '\n' counts.
std::vector<std::string> LastLines(const std::string& path, size_t count, size_t max_bytes = 1 << 20);

// The last line containing "error:" in the final `max_bytes` of the file,
// cleaned and trimmed; "" when there is none.
std::string LastErrorLine(const std::string& path, size_t max_bytes = 1 << 20);

}  // namespace d2lora::worker
