// ROUGE-L (longest common subsequence) between a generated text and a
// reference, as Google's rouge-score package computes it without stemming:
//
//   tokens     lowercase ASCII, every character other than [a-z0-9] becomes a
//              space (so punctuation splits words and non-ASCII text - every
//              byte of a multi-byte UTF-8 character - is dropped), split on
//              whitespace. No stemming (rouge-score's use_stemmer=False).
//   precision  LCS / candidate tokens;  recall  LCS / reference tokens;
//   f1         2PR / (P + R), 0 when P + R is 0.
//
// When either side has no tokens the score is all 0, also when both are
// empty (as rouge-score does).
#pragma once

#include <string>
#include <vector>

#include "absl/status/statusor.h"

namespace d2lora::engine {

struct RougeScore {
  double precision = 0;
  double recall = 0;
  double f1 = 0;
};

// The tokens ROUGE compares (see above).
std::vector<std::string> RougeTokens(const std::string& text);

// Length of the longest common subsequence; O(min(n, m)) memory.
size_t LcsLength(const std::vector<std::string>& a, const std::vector<std::string>& b);

RougeScore RougeL(const std::string& candidate, const std::string& reference);

// Mean ROUGE-L F1 over pairs candidates[i], references[i]; 0 for no pairs.
// InvalidArgument when the two lists differ in length.
absl::StatusOr<double> MeanRougeLF1(const std::vector<std::string>& candidates,
                                    const std::vector<std::string>& references);

}  // namespace d2lora::engine
