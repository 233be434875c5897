#include "worker/engine/model/generate.h"

#include <ATen/CPUGeneratorImpl.h>
#include <torch/torch.h>

#include <algorithm>

#include "absl/strings/str_cat.h"
#include "worker/engine/torch_guard.h"

namespace d2lora::engine {
namespace {

absl::Status Validate(const CausalLMImpl& model, const std::vector<int64_t>& prompt,
                      const GenerationOptions& options) {
  if (prompt.empty()) return absl::InvalidArgumentError("generate: the prompt is empty");
  const int64_t vocab = model.config().vocab_size;
  for (size_t i = 0; i < prompt.size(); ++i) {
    if (prompt[i] < 0 || prompt[i] >= vocab) {
      return absl::InvalidArgumentError(
          absl::StrCat("generate: prompt token ", i, " is ", prompt[i], ", outside the vocabulary [0, ", vocab, ")"));
    }
  }
  if (options.max_new_tokens < 0) {
    return absl::InvalidArgumentError(absl::StrCat("generate: max_new_tokens must be >= 0, got ", options.max_new_tokens));
  }
  if (!(options.temperature >= 0)) {
    return absl::InvalidArgumentError(absl::StrCat("generate: temperature must be >= 0, got ", options.temperature));
  }
  if (options.top_k.has_value() && *options.top_k <= 0) {
    return absl::InvalidArgumentError(absl::StrCat("generate: top_k must be positive, got ", *options.top_k));
  }
  return absl::OkStatus();
}

// Restores the module's training flag on every exit.
class EvalScope {
 public:
  explicit EvalScope(torch::nn::Module& m) : module_(m), was_training_(m.is_training()) { m.eval(); }
  ~EvalScope() { module_.train(was_training_); }

 private:
  torch::nn::Module& module_;
  bool was_training_;
};

}  // namespace

absl::StatusOr<std::vector<int64_t>> Generate(CausalLMImpl& model, const std::vector<int64_t>& prompt,
                                              const GenerationOptions& options) {
  if (absl::Status s = Validate(model, prompt, options); !s.ok()) return s;
  return GuardTorch("generate", [&]() -> absl::StatusOr<std::vector<int64_t>> {
    torch::NoGradGuard no_grad;
    EvalScope eval(model);
    const torch::Device device = model.output_weight().device();
    at::Generator gen = at::detail::createCPUGenerator(options.seed);
    KvCache cache;
    std::vector<int64_t> out;
    torch::Tensor input = torch::tensor(prompt, torch::kInt64).view({1, -1}).to(device);
    for (int64_t step = 0; step < options.max_new_tokens; ++step) {
      torch::Tensor last = model.forward(input, {}, &cache).select(1, -1).squeeze(0).to(torch::kCPU, torch::kFloat32);
      int64_t next;
      if (options.temperature == 0) {
        next = last.argmax().item<int64_t>();
      } else {
        torch::Tensor scaled = last / options.temperature;
        if (options.top_k.has_value() && *options.top_k < scaled.size(0)) {
          torch::Tensor kth = std::get<0>(scaled.topk(*options.top_k)).min();
          scaled = scaled.masked_fill(scaled < kth, -std::numeric_limits<float>::infinity());
        }
        torch::Tensor probs = torch::softmax(scaled, -1);
        next = torch::multinomial(probs, 1, /*replacement=*/false, gen).item<int64_t>();
      }
      out.push_back(next);
      if (std::find(options.eos_token_ids.begin(), options.eos_token_ids.end(), next) !=
          options.eos_token_ids.end()) {
        break;
      }
      input = torch::full({1, 1}, next, torch::TensorOptions().dtype(torch::kInt64).device(device));
    }
    return out;
  });
}

}  // namespace d2lora::engine
