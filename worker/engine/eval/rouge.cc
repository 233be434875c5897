#include "worker/engine/eval/rouge.h"

#include <algorithm>

#include "absl/strings/str_cat.h"

namespace d2lora::engine {

std::vector<std::string> RougeTokens(const std::string& text) {
  std::vector<std::string> tokens;
  std::string current;
  for (char ch : text) {
    const unsigned char c = static_cast<unsigned char>(ch);
    if (c >= 'A' && c <= 'Z') {
      current.push_back(static_cast<char>(c - 'A' + 'a'));
    } else if ((c >= 'a' && c <= 'z') || (c >= '0' && c <= '9')) {
      current.push_back(ch);
    } else if (!current.empty()) {
      tokens.push_back(std::move(current));
      current.clear();
    }
  }
  if (!current.empty()) tokens.push_back(std::move(current));
  return tokens;
}

size_t LcsLength(const std::vector<std::string>& a, const std::vector<std::string>& b) {
  // One row over the shorter sequence: row[j] = LCS(a[0..i), b[0..j)).
  const std::vector<std::string>& outer = a.size() >= b.size() ? a : b;
  const std::vector<std::string>& inner = a.size() >= b.size() ? b : a;
  std::vector<size_t> row(inner.size() + 1, 0);
  for (const std::string& x : outer) {
    size_t diagonal = 0;  // row[j - 1] of the previous outer step
    for (size_t j = 1; j <= inner.size(); ++j) {
      const size_t above = row[j];
      row[j] = x == inner[j - 1] ? diagonal + 1 : std::max(above, row[j - 1]);
      diagonal = above;
    }
  }
  return row.back();
}

RougeScore RougeL(const std::string& candidate, const std::string& reference) {
  const std::vector<std::string> c = RougeTokens(candidate);
  const std::vector<std::string> r = RougeTokens(reference);
  RougeScore score;
  if (c.empty() || r.empty()) return score;
  const double lcs = static_cast<double>(LcsLength(c, r));
  score.precision = lcs / static_cast<double>(c.size());
  score.recall = lcs / static_cast<double>(r.size());
  const double sum = score.precision + score.recall;
  score.f1 = sum > 0 ? 2 * score.precision * score.recall / sum : 0;
  return score;
}

absl::StatusOr<double> MeanRougeLF1(const std::vector<std::string>& candidates,
                                    const std::vector<std::string>& references) {
  if (candidates.size() != references.size()) {
    return absl::InvalidArgumentError(absl::StrCat("ROUGE-L: ", candidates.size(), " candidates but ",
                                                   references.size(), " references"));
  }
  if (candidates.empty()) return 0.0;
  double sum = 0;
  for (size_t i = 0; i < candidates.size(); ++i) sum += RougeL(candidates[i], references[i]).f1;
  return sum / static_cast<double>(candidates.size());
}

}  // namespace d2lora::engine
