#include "worker/daemon/log_tail.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <utility>

#include "absl/strings/ascii.h"
#include "absl/strings/match.h"
#include "absl/strings/str_split.h"

namespace d2lora::worker {
namespace {

constexpr size_t kReadChunk = 64 * 1024;

class Fd {
 public:
  explicit Fd(const std::string& path) : fd_(open(path.c_str(), O_RDONLY | O_CLOEXEC)) {}
  ~Fd() {
    if (fd_ >= 0) close(fd_);
  }
  int get() const { return fd_; }

 private:
  int fd_;
};

// Bytes [offset, offset + size) of the file, fewer at its end.
std::string ReadAt(int fd, int64_t offset, size_t size) {
  std::string out(size, '\0');
  size_t got = 0;
  while (got < size) {
    const ssize_t n = pread(fd, out.data() + got, size - got, static_cast<off_t>(offset + got));
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) break;
    got += static_cast<size_t>(n);
  }
  out.resize(got);
  return out;
}

// The final `max_bytes` of a file, starting after a '\n' when cut.
std::string ReadTail(const std::string& path, size_t max_bytes) {
  Fd fd(path);
  if (fd.get() < 0) return "";
  struct stat st {};
  if (fstat(fd.get(), &st) != 0) return "";
  const int64_t size = st.st_size;
  const int64_t start = std::max<int64_t>(0, size - static_cast<int64_t>(max_bytes));
  std::string text = ReadAt(fd.get(), start, static_cast<size_t>(size - start));
  if (start > 0) {
    const size_t newline = text.find('\n');
    text = newline == std::string::npos ? "" : text.substr(newline + 1);
  }
  return text;
}

std::vector<absl::string_view> SplitLines(absl::string_view text) {
  std::vector<absl::string_view> lines = absl::StrSplit(text, '\n');
  if (!lines.empty() && lines.back().empty()) lines.pop_back();
  return lines;
}

// Length of the UTF-8 sequence starting at text[i], or 0 when it is not valid.
size_t Utf8Length(absl::string_view text, size_t i) {
  const auto byte = [&](size_t k) { return static_cast<unsigned char>(text[k]); };
  const unsigned char c = byte(i);
  size_t n;
  if (c < 0x80) return 1;
  if (c >= 0xC2 && c <= 0xDF) {
    n = 2;
  } else if (c >= 0xE0 && c <= 0xEF) {
    n = 3;
  } else if (c >= 0xF0 && c <= 0xF4) {
    n = 4;
  } else {
    return 0;
  }
  if (i + n > text.size()) return 0;
  for (size_t k = 1; k < n; ++k) {
    if ((byte(i + k) & 0xC0) != 0x80) return 0;
  }
  const unsigned char c1 = byte(i + 1);
  if (c == 0xE0 && c1 < 0xA0) return 0;   // overlong
  if (c == 0xED && c1 >= 0xA0) return 0;  // surrogates
  if (c == 0xF0 && c1 < 0x90) return 0;   // overlong
  if (c == 0xF4 && c1 >= 0x90) return 0;  // above U+10FFFF
  return n;
}

}  // namespace

LineTail::LineTail(std::string path, size_t max_line_bytes)
    : path_(std::move(path)), max_line_bytes_(std::max<size_t>(1, max_line_bytes)) {}

std::vector<std::string> LineTail::Read(size_t max_lines, bool to_end) {
  std::vector<std::string> lines;
  if (max_lines == 0) return lines;
  Fd fd(path_);
  if (fd.get() < 0) return lines;
  struct stat st {};
  if (fstat(fd.get(), &st) != 0) return lines;
  if (st.st_size < offset_) offset_ = 0;  // truncated or replaced
  std::string pending;  // bytes after offset_ read so far, no '\n' among them
  while (lines.size() < max_lines) {
    const std::string chunk = ReadAt(fd.get(), offset_ + static_cast<int64_t>(pending.size()), kReadChunk);
    if (chunk.empty()) {
      if (to_end && !pending.empty()) {
        lines.push_back(pending);
        offset_ += static_cast<int64_t>(pending.size());
      }
      break;
    }
    pending += chunk;
    size_t start = 0;
    while (lines.size() < max_lines) {
      const size_t newline = pending.find('\n', start);
      if (newline != std::string::npos && newline - start <= max_line_bytes_) {
        lines.emplace_back(pending, start, newline - start);
        start = newline + 1;
      } else if (pending.size() - start >= max_line_bytes_) {
        lines.emplace_back(pending, start, max_line_bytes_);  // too long: a piece
        start += max_line_bytes_;
        if (start < pending.size() && pending[start] == '\n') ++start;
      } else {
        break;
      }
    }
    offset_ += static_cast<int64_t>(start);
    pending.erase(0, start);
  }
  return lines;
}

std::string CleanLogLine(absl::string_view line, size_t max_bytes) {
  if (!line.empty() && line.back() == '\r') line.remove_suffix(1);
  static constexpr char kReplacement[] = "\xEF\xBF\xBD";  // U+FFFD
  std::string out;
  out.reserve(std::min(line.size(), max_bytes));
  size_t i = 0;
  while (i < line.size()) {
    const size_t n = Utf8Length(line, i);
    const size_t add = n == 0 ? 3 : n;
    if (out.size() + add > max_bytes) break;
    if (n == 0) {
      out += kReplacement;
      ++i;
    } else {
      out.append(line.data() + i, n);
      i += n;
    }
  }
  return out;
}

std::vector<std::string> LastLines(const std::string& path, size_t count, size_t max_bytes) {
  const std::string text = ReadTail(path, max_bytes);
  std::vector<absl::string_view> lines = SplitLines(text);
  const size_t first = lines.size() > count ? lines.size() - count : 0;
  std::vector<std::string> out;
  for (size_t i = first; i < lines.size(); ++i) out.push_back(CleanLogLine(lines[i]));
  return out;
}

std::string LastErrorLine(const std::string& path, size_t max_bytes) {
  const std::string text = ReadTail(path, max_bytes);
  const std::vector<absl::string_view> lines = SplitLines(text);
  for (auto it = lines.rbegin(); it != lines.rend(); ++it) {
    if (absl::StrContains(*it, "error:")) {
      return std::string(absl::StripAsciiWhitespace(CleanLogLine(*it)));
    }
  }
  return "";
}

}  // namespace d2lora::worker
