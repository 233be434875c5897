// Evaluation throughput of a `small`-preset model (made in-process, random
// weights), no-grad forward of the whole model with its LM head on random
// token batches:
//
//   base        the plain model
//   merged      adapters (in every linear layer, random non-zero B) folded into
//               the weights, as `d2lora merge` and `d2lora eval --adapter` do
//   unmerged    the same adapters in training form (eval mode, no grad)
//
// for D2-LoRA, LoRA and DoRA. Every variant runs once per repetition, in an
// order that rotates from one repetition to the next; the table gives median
// tokens/s and the ratios merged/base (zero added latency: ~1) and
// merged/unmerged (the paper reports 1.91x for D2-LoRA), plus the largest
// logit difference between the merged and the unmerged model.
//
// A second part times multiple-choice scoring on synthetic items (random
// prompts of --mc-prompt-min..max tokens, 4 choices of 1-4 tokens) with the
// base model: each prompt encoded once with its choices scored against the KV
// cache (PromptContinuationLogProbs, what evaluation uses) against one
// sequence per (prompt, choice) pair (ContinuationLogProbs), interleaved.
//
//   eval_bench [--quick] [--json FILE] [--device cpu|cuda] [--dtype fp32|bf16]
//              [--threads N] [--reps N] [--preset small] [--batch 8] [--seq 256]
//              [--r 8] [--methods d2lora,lora,dora] [--mc-items 64]
//              [--mc-batch 8] [--mc-prompt-min 24] [--mc-prompt-max 64] [--no-mc]
#include <torch/torch.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <iostream>
#include <map>
#include <random>
#include <string>
#include <vector>

#include "absl/strings/str_split.h"
#include "bench/bench_common.h"
#include "worker/engine/adapters/adapted_linear.h"
#include "common/spec/adapter_options.h"
#include "worker/engine/adapters/inject.h"
#include "worker/engine/adapters/linear.h"
#include "worker/engine/eval/evaluate.h"
#include "worker/engine/model/checkpoint.h"
#include "worker/engine/model/llama.h"
#include "worker/engine/tasks/init_model.h"

namespace d2lora::bench {
namespace {

using engine::AdapterMethod;
using engine::CausalLM;

template <typename T>
T OrDie(absl::StatusOr<T> v) {
  if (!v.ok()) Die(std::string(v.status().message()));
  return *std::move(v);
}

struct Flags {
  std::string preset = "small";
  int64_t batch = 8, seq = 256, r = 8;
  std::vector<std::string> methods = {"d2lora", "lora", "dora"};
  int64_t mc_items = 64, mc_batch = 8, mc_prompt_min = 24, mc_prompt_max = 64;
  bool mc = true;
};

Flags ParseFlags(const BenchArgs& args) {
  Flags f;
  if (args.quick) {
    f.batch = 4;
    f.seq = 128;
    f.mc_items = 24;
  }
  for (BenchFlags flags(args.rest); flags.Next();) {
    const std::string& flag = flags.flag();
    if (flag == "--preset") f.preset = flags.Value();
    else if (flag == "--batch") f.batch = flags.Int(1);
    else if (flag == "--seq") f.seq = flags.Int(1);
    else if (flag == "--r") f.r = flags.Int(1);
    else if (flag == "--methods") f.methods = absl::StrSplit(flags.Value(), ',', absl::SkipEmpty());
    else if (flag == "--mc-items") f.mc_items = flags.Int(1);
    else if (flag == "--mc-batch") f.mc_batch = flags.Int(1);
    else if (flag == "--mc-prompt-min") f.mc_prompt_min = flags.Int(1);
    else if (flag == "--mc-prompt-max") f.mc_prompt_max = flags.Int(1);
    else if (flag == "--no-mc") f.mc = false;
    else flags.Unknown();
  }
  if (f.mc_prompt_max < f.mc_prompt_min) Die("--mc-prompt-max is below --mc-prompt-min");
  for (const std::string& m : f.methods) OrDie(engine::ParseMethod(m));
  return f;
}

constexpr uint64_t kModelSeed = 1;

// Gives every adapter non-zero factors (B too, which starts at zero) and DoRA
// a magnitude away from ||W0||; drawn in fp32 on the CPU from one seed, so two
// models built alike get the same values.
void RandomiseAdapters(engine::CausalLMImpl& model) {
  torch::manual_seed(7);
  torch::NoGradGuard no_grad;
  for (auto& [path, linear] : engine::LinearLayers(model)) {
    if (!linear->adapter()) continue;
    for (auto& p : linear->adapter()->named_parameters()) {
      torch::Tensor noise = torch::randn(p.value().sizes(), torch::kFloat32);
      if (p.key() == "magnitude") {
        p.value().mul_((1 + 0.05 * noise).to(p.value().options()));
      } else if (p.key().find("lora_B") == 0) {
        p.value().copy_(0.02 * noise);
      }
    }
  }
}

// The model of one variant on the bench's device. `method` empty: the base
// model. Unmerged: base weights in the compute dtype and fp32 adapters, as a
// training job holds them. Merged: merged in fp32, then cast, as `d2lora merge`.
CausalLM BuildModel(const model::ModelConfig& config, const std::string& method, bool merged, int64_t r,
                    const torch::Device& device, torch::ScalarType dtype) {
  CausalLM model = OrDie(engine::InitRandomModel(config, kModelSeed));
  if (!method.empty()) {
    if (!merged) model->to(dtype);
    engine::AdapterOptions o;
    o.method = OrDie(engine::ParseMethod(method));
    o.r = r;
    o.alpha = 2.0 * static_cast<double>(r);
    o.target_modules = {"all-linear"};
    o.seed = 3;
    auto injected = engine::InjectAdapters(*model, o);
    if (!injected.ok()) Die(std::string(injected.status().message()));
    RandomiseAdapters(*model);
    if (merged) engine::MergeAdapters(*model);
  }
  if (method.empty() || merged) {
    model->to(device, dtype);
  } else {
    model->to(device);  // keeps the fp32 adapters fp32
  }
  model->eval();
  return model;
}

struct Variant {
  std::string name;     // "base", "d2lora merged", ...
  std::string method;   // "" for base
  bool merged = false;
  CausalLM model{nullptr};
  std::vector<double> seconds;
};

torch::Tensor Forward(engine::CausalLMImpl& model, const torch::Tensor& ids, const torch::Tensor& mask) {
  torch::NoGradGuard no_grad;
  return model.forward(ids, mask);
}

std::string Fmt(const char* format, double v) {
  char buf[64];
  std::snprintf(buf, sizeof buf, format, v);
  return buf;
}

// Synthetic multiple-choice items: random prompts, 4 choices of 1-4 tokens.
std::vector<engine::PromptContinuations> McItems(const Flags& f, int64_t vocab) {
  std::mt19937 rng(11);
  std::uniform_int_distribution<int64_t> token(0, vocab - 4);  // no special tokens
  std::uniform_int_distribution<int64_t> prompt_len(f.mc_prompt_min, f.mc_prompt_max);
  std::uniform_int_distribution<int64_t> choice_len(1, 4);
  std::vector<engine::PromptContinuations> items(static_cast<size_t>(f.mc_items));
  for (auto& item : items) {
    item.prompt.resize(static_cast<size_t>(prompt_len(rng)));
    for (auto& t : item.prompt) t = token(rng);
    for (int c = 0; c < 4; ++c) {
      std::vector<int64_t> choice(static_cast<size_t>(choice_len(rng)));
      for (auto& t : choice) t = token(rng);
      item.continuations.push_back(std::move(choice));
    }
  }
  return items;
}

nlohmann::json RunMc(const Flags& f, engine::CausalLMImpl& model, int reps, const torch::Device& device) {
  const auto items = McItems(f, model.config().vocab_size);
  using Pairs = std::vector<std::pair<std::vector<int64_t>, std::vector<int64_t>>>;
  Pairs pairs, sorted_pairs;
  int64_t prompt_tokens = 0, choice_tokens = 0;
  for (const auto& item : items) {
    prompt_tokens += static_cast<int64_t>(item.prompt.size());
    for (const auto& c : item.continuations) {
      pairs.emplace_back(item.prompt, c);
      choice_tokens += static_cast<int64_t>(c.size());
    }
  }
  // The per-choice path on pairs sorted by length: how much of the gain is
  // only less padding.
  sorted_pairs = pairs;
  std::stable_sort(sorted_pairs.begin(), sorted_pairs.end(), [](const auto& a, const auto& b) {
    return a.first.size() + a.second.size() < b.first.size() + b.second.size();
  });
  auto shared = [&]() { return OrDie(engine::PromptContinuationLogProbs(model, items, f.mc_batch)); };
  auto per_pair = [&](const Pairs& p) { return OrDie(engine::ContinuationLogProbs(model, p, f.mc_batch)); };
  // Warm-up, and the two paths' scores side by side.
  const auto s = shared();
  const auto p = per_pair(pairs);
  per_pair(sorted_pairs);
  double max_diff = 0;
  size_t k = 0;
  for (const auto& row : s) {
    for (double v : row) max_diff = std::max(max_diff, std::abs(v - p[k++]));
  }
  std::vector<double> t[3];  // shared, per choice, per choice sorted
  for (int rep = 0; rep < reps; ++rep) {
    for (int i = 0; i < 3; ++i) {
      const int which = (i + rep) % 3;
      auto t0 = std::chrono::steady_clock::now();
      if (which == 0) shared();
      else per_pair(which == 1 ? pairs : sorted_pairs);
      t[which].push_back(SecondsSince(t0, device));
    }
  }
  const double n = static_cast<double>(items.size());
  const double ips_shared = n / Median(t[0]), ips_pair = n / Median(t[1]), ips_sorted = n / Median(t[2]);
  std::cout << "\nmc scoring: shared prefix vs per choice (" << items.size() << " items, 4 choices, prompts "
            << f.mc_prompt_min << "-" << f.mc_prompt_max << " tokens, mean " << Fmt("%.1f", prompt_tokens / n)
            << ", choices mean " << Fmt("%.2f", choice_tokens / (4 * n)) << " tokens; batch " << f.mc_batch
            << ")\n";
  std::cout << "  per choice (prompt + choice per sequence)   " << Fmt("%10.2f", ips_pair) << " items/s\n";
  std::cout << "  per choice, pairs sorted by length          " << Fmt("%10.2f", ips_sorted) << " items/s\n";
  std::cout << "  shared prefix (prompt once, KV cache)       " << Fmt("%10.2f", ips_shared) << " items/s\n";
  std::cout << "  speed-up shared / per choice                " << Fmt("%10.2f", ips_shared / ips_pair)
            << "x  (/ per choice sorted: " << Fmt("%.2f", ips_shared / ips_sorted) << "x)\n";
  std::cout << "  largest score difference                    " << Fmt("%10.3g", max_diff) << "\n";
  return {{"items", items.size()},
          {"batch", f.mc_batch},
          {"prompt_tokens_mean", prompt_tokens / n},
          {"choice_tokens_mean", choice_tokens / (4 * n)},
          {"per_choice_items_per_s", ips_pair},
          {"per_choice_sorted_items_per_s", ips_sorted},
          {"shared_prefix_items_per_s", ips_shared},
          {"shared_over_per_choice", ips_shared / ips_pair},
          {"shared_over_per_choice_sorted", ips_shared / ips_sorted},
          {"max_abs_score_diff", max_diff}};
}

int Main(int argc, char** argv) {
  const BenchArgs args = ParseBenchArgs(argc, argv);
  const Flags f = ParseFlags(args);
  nlohmann::json out;
  out["setup"] = SetUpRuntime(args);
  const torch::Device device = BenchDevice(args);
  const torch::ScalarType dtype = BenchDtype(args);
  const int reps = args.reps > 0 ? args.reps : (args.quick ? 5 : 7);
  const model::ModelConfig config = OrDie(engine::ModelPreset(f.preset));

  std::vector<Variant> variants;
  variants.push_back({"base", "", false, BuildModel(config, "", false, f.r, device, dtype), {}});
  for (const std::string& m : f.methods) {
    variants.push_back({m + " merged", m, true, BuildModel(config, m, true, f.r, device, dtype), {}});
    variants.push_back({m + " unmerged", m, false, BuildModel(config, m, false, f.r, device, dtype), {}});
  }

  torch::manual_seed(5);
  const auto long_opts = torch::TensorOptions().dtype(torch::kInt64).device(device);
  const torch::Tensor ids = torch::randint(config.vocab_size - 3, {f.batch, f.seq}, torch::kInt64).to(device);
  const torch::Tensor mask = torch::ones({f.batch, f.seq}, long_opts);

  // Warm-up, and the merged-vs-unmerged logits (fp32 on the CPU).
  std::map<std::string, torch::Tensor> logits;
  for (Variant& v : variants) logits[v.name] = Forward(*v.model, ids, mask).to(torch::kCPU, torch::kFloat32);

  const size_t nv = variants.size();
  for (int rep = 0; rep < reps; ++rep) {
    for (size_t i = 0; i < nv; ++i) {
      Variant& v = variants[(i + static_cast<size_t>(rep)) % nv];
      auto t0 = std::chrono::steady_clock::now();
      Forward(*v.model, ids, mask);
      v.seconds.push_back(SecondsSince(t0, device));
    }
  }
  const double tokens = static_cast<double>(f.batch * f.seq);
  auto tps = [&](const std::string& name) {
    for (const Variant& v : variants) {
      if (v.name == name) return tokens / Median(v.seconds);
    }
    return 0.0;
  };

  std::cout << "eval throughput: preset " << f.preset << ", " << f.batch << " x " << f.seq
            << " tokens, no-grad forward with LM head, adapters r=" << f.r
            << " in all linear layers; median of " << reps << " interleaved reps (" << args.device << ", "
            << args.dtype << ")\n";
  std::cout << "  variant             tokens/s\n";
  nlohmann::json jv = nlohmann::json::object();
  for (const Variant& v : variants) {
    std::cout << "  " << v.name << std::string(18 - std::min<size_t>(17, v.name.size()), ' ')
              << Fmt("%10.0f", tokens / Median(v.seconds)) << "\n";
    jv[v.name] = {{"tokens_per_s", tokens / Median(v.seconds)}, {"median_s", Median(v.seconds)}};
  }
  const double base = tps("base");
  std::cout << "  method   merged/base  merged/unmerged  max |logit diff| merged vs unmerged\n";
  nlohmann::json jm = nlohmann::json::object();
  for (const std::string& m : f.methods) {
    const double merged = tps(m + " merged"), unmerged = tps(m + " unmerged");
    const double diff = (logits[m + " merged"] - logits[m + " unmerged"]).abs().max().item<double>();
    const double adapter_effect = (logits[m + " merged"] - logits["base"]).abs().max().item<double>();
    std::cout << "  " << m << std::string(9 - std::min<size_t>(8, m.size()), ' ') << Fmt("%11.3f", merged / base)
              << Fmt("%17.2f", merged / unmerged) << Fmt("%19.3g", diff) << "   (vs base: "
              << Fmt("%.3g", adapter_effect) << ")\n";
    jm[m] = {{"merged_over_base", merged / base},
             {"merged_over_unmerged", merged / unmerged},
             {"max_abs_logit_diff_merged_vs_unmerged", diff},
             {"max_abs_logit_diff_merged_vs_base", adapter_effect}};
  }
  out["throughput"] = {{"preset", f.preset}, {"batch", f.batch}, {"seq", f.seq}, {"r", f.r},
                       {"reps", reps},       {"variants", jv},   {"methods", jm}};
  std::cout << "  targets: merged/base >= 0.97; merged/unmerged: the paper reports 1.91x (D2-LoRA)\n";

  if (f.mc) out["mc_scoring"] = RunMc(f, *variants.front().model, reps, device);
  if (!args.json.empty()) WriteJson(args.json, out);
  return 0;
}

}  // namespace
}  // namespace d2lora::bench

int main(int argc, char** argv) { return d2lora::bench::Main(argc, argv); }
