#include "worker/engine/data/collate.h"

#include <algorithm>

namespace d2lora::engine {

int64_t CollatePadId(const Tokenizer& tokenizer) {
  if (tokenizer.pad_id()) return *tokenizer.pad_id();
  if (tokenizer.eos_id()) return *tokenizer.eos_id();
  return 0;
}

Batch Collate(const std::vector<Example>& examples, const std::vector<int64_t>& indices,
              int64_t pad_id) {
  size_t t_max = 0;
  for (int64_t i : indices) t_max = std::max(t_max, examples[static_cast<size_t>(i)].ids.size());
  const int64_t b = static_cast<int64_t>(indices.size());
  const int64_t t = static_cast<int64_t>(t_max);
  auto opts = torch::TensorOptions().dtype(torch::kInt64);
  Batch batch;
  batch.input_ids = torch::full({b, t}, pad_id, opts);
  batch.attention_mask = torch::zeros({b, t}, opts);
  batch.labels = torch::full({b, t}, kIgnoreIndex, opts);
  int64_t* ids = batch.input_ids.data_ptr<int64_t>();
  int64_t* mask = batch.attention_mask.data_ptr<int64_t>();
  int64_t* labels = batch.labels.data_ptr<int64_t>();
  for (int64_t row = 0; row < b; ++row) {
    const Example& ex = examples[static_cast<size_t>(indices[static_cast<size_t>(row)])];
    for (size_t k = 0; k < ex.ids.size(); ++k) {
      const int64_t at = row * t + static_cast<int64_t>(k);
      ids[at] = ex.ids[k];
      mask[at] = 1;
      if (ex.loss_mask[k]) {
        labels[at] = ex.ids[k];
        ++batch.num_targets;
      }
    }
    batch.num_tokens += static_cast<int64_t>(ex.ids.size());
  }
  return batch;
}

}  // namespace d2lora::engine
