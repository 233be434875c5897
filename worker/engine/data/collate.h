// Examples to tensors.
//
// Label convention (Hugging Face's): labels are NOT shifted here.
//   labels[b][t] = input_ids[b][t]  where example b's loss_mask[t] == 1,
//                  -100 (kIgnoreIndex) elsewhere, padding included;
// the model / loss shifts: the logits at position t predict labels[t + 1], i.e.
//   loss = cross_entropy(logits[:, :-1, :], labels[:, 1:], ignore_index = -100).
// Since loss_mask[0] is always 0, labels[:, 0] is always -100.
#pragma once

#include <torch/torch.h>

#include <cstdint>
#include <vector>

#include "worker/engine/data/examples.h"
#include "worker/engine/tokenizer/tokenizer.h"

namespace d2lora::engine {

inline constexpr int64_t kIgnoreIndex = -100;

struct Batch {
  torch::Tensor input_ids;       // [B, T] int64, right-padded with the pad id
  torch::Tensor attention_mask;  // [B, T] int64, 1 = real token, 0 = padding
  torch::Tensor labels;          // [B, T] int64, see above
  int64_t num_targets = 0;       // labels != -100
  int64_t num_tokens = 0;        // real (unpadded) tokens
};

// The pad id for collation: the tokenizer's pad token, else its EOS, else 0.
// (Padded positions are masked and ignored, so any valid id does.)
int64_t CollatePadId(const Tokenizer& tokenizer);

// examples[indices[0]], examples[indices[1]], ... as one batch, T = the longest
// of them. `indices` must be non-empty and in range.
Batch Collate(const std::vector<Example>& examples, const std::vector<int64_t>& indices,
              int64_t pad_id);

}  // namespace d2lora::engine
