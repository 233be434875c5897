#include "common/model/memory_plan.h"

#include <algorithm>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <string>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_join.h"
#include "common/cgroup_limits.h"
#include "common/spec/target_modules.h"
#include "common/status_macros.h"
#include "common/text_format.h"

namespace d2lora::model {
namespace {

using spec::TrainingMethod;

// The process before the model on this project's CPU build (Debian's
// LibTorch 1.13, OpenBLAS, glibc): `d2lora train`'s resident memory when the
// model starts loading (158 MiB, summary.json's measured_runtime_bytes), plus
// about 20 MiB that the compute libraries take at their first use (the
// intercept of measured peaks over micro-batch sizes on the tiny preset).
constexpr int64_t kCpuRuntimeBytes = 180ll << 20;
// CUDA: the context and cuBLAS's workspace on the device. Not measured yet
// (no GPU has been lent to this project): the usual size on recent drivers.
constexpr int64_t kCudaRuntimeBytes = 600ll << 20;
// Per example held in memory, besides its tokens: two vectors and the source line.
constexpr int64_t kExampleOverheadBytes = 96;
// Per token: its int64 id and its loss-mask byte.
constexpr int64_t kTokenBytes = 9;

// One linear layer of a decoder layer, as the engine builds it.
struct LinearShape {
  const char* name;
  int64_t in, out;
};

int64_t DtypeBytes(const std::string& dtype) {
  if (dtype == "bfloat16" || dtype == "float16" || dtype == "bf16" || dtype == "fp16") return 2;
  if (dtype == "float64" || dtype == "fp64") return 8;
  return 4;
}

int64_t AdapterBytes(spec::AdapterDtype d) {
  switch (d) {
    case spec::AdapterDtype::kFp64: return 8;
    case spec::AdapterDtype::kBf16:
    case spec::AdapterDtype::kFp16: return 2;
    case spec::AdapterDtype::kFp32: return 4;
  }
  return 4;
}

// What one adapted layer adds: parameters and buffers (elements).
struct AdapterShape {
  int64_t parameters = 0;
  int64_t buffer_bytes = 0;
};

AdapterShape AdapterOf(TrainingMethod method, const spec::AdapterOptions& a, const LinearShape& l) {
  AdapterShape s;
  const int64_t lora = a.r * (l.in + l.out);
  switch (method) {
    case TrainingMethod::kLora: s.parameters = lora; break;
    case TrainingMethod::kDora:
      s.parameters = lora + l.out;   // + the magnitude
      s.buffer_bytes = 4 * l.out;    // ‖W0‖² per row
      break;
    case TrainingMethod::kD2Lora:
      s.parameters = 2 * lora + (a.tau_learnable ? 1 : 0);
      s.buffer_bytes = 2 * 4 * l.out + 4;  // ‖W0‖² and ‖W0‖ per row, tau
      break;
    case TrainingMethod::kFull: break;
  }
  return s;
}

}  // namespace

int64_t MemoryPlan::step() const { return activations + backward_transient + (accumulates ? gradients : 0); }

absl::StatusOr<MemoryPlan> PlanMemory(const ModelConfig& c, const spec::JobSpec& spec,
                                      const MemoryPlanInputs& inputs) {
  MemoryPlan plan;
  const bool cuda = spec.resources.device == spec::DeviceKind::kCuda;
  plan.device = cuda ? "cuda" : "cpu";
  const bool bf16 = spec.train.dtype == spec::ComputeDtype::kBf16 ||
                    (spec.train.dtype == spec::ComputeDtype::kAuto && cuda);
  plan.compute_dtype = bf16 ? "bf16" : "fp32";
  const int64_t cb = bf16 ? 2 : 4;  // compute dtype bytes
  const bool full = spec.full_finetune();
  const TrainingMethod method = spec.method;
  const spec::AdapterOptions& a = spec.adapter;
  const int64_t ab = full ? cb : AdapterBytes(a.dtype);
  const int64_t wide = std::max(cb, ab);

  const int64_t H = c.hidden_size, I = c.intermediate_size, V = c.vocab_size, L = c.num_hidden_layers;
  const int64_t q = c.q_size(), kv = c.kv_size(), heads = c.num_attention_heads;
  const int64_t T = spec.data.max_seq_len;
  const int64_t N = spec.train.micro_batch_size * T;  // tokens per micro-batch
  plan.micro_batch_tokens = N;
  {
    // Every term below is bounded by a small multiple of this estimate: a
    // config.json or spec so large that int64 bytes would overflow is refused
    // instead of planned with wrapped numbers (the coordinator plans what
    // clients send).
    const double d_per_token = 64.0 * (static_cast<double>(H) + I + q + kv + a.r) + 6.0 * heads * T;
    const double estimate = static_cast<double>(L) * d_per_token * static_cast<double>(N) +
                            64.0 * static_cast<double>(N) * V +
                            32.0 * (static_cast<double>(V) * H * 2 + static_cast<double>(L) * 8 * (H + q) * (H + I));
    if (!(estimate < 1e18)) {
      return absl::InvalidArgumentError(absl::StrCat(
          "the memory plan cannot count a model of hidden_size ", H, ", intermediate_size ", I, ", vocab_size ", V,
          ", ", L, " layers at ", N, " tokens per micro-batch: more than an exabyte"));
    }
  }

  // --- Parameters.
  const LinearShape layer_linears[] = {{"self_attn.q_proj", H, q},  {"self_attn.k_proj", H, kv},
                                       {"self_attn.v_proj", H, kv}, {"self_attn.o_proj", q, H},
                                       {"mlp.gate_proj", H, I},     {"mlp.up_proj", H, I},
                                       {"mlp.down_proj", I, H}};
  int64_t per_layer = 2 * H;  // the two norms
  for (const LinearShape& l : layer_linears) per_layer += l.in * l.out;
  if (c.qkv_bias()) per_layer += q + 2 * kv;
  if (c.o_bias()) per_layer += H;
  if (c.mlp_bias) per_layer += 2 * I + H;
  plan.parameters = V * H + L * per_layer + H + (c.tie_word_embeddings ? 0 : V * H);
  plan.weights = plan.parameters * cb;

  // --- Adapters: which layers, and what each keeps.
  // Per decoder layer, which of its linears are adapted (by layer, since a
  // regex may pick some layers only), and the output head.
  std::vector<std::vector<bool>> adapted(L, std::vector<bool>(7, false));
  bool head_adapted = false;
  int64_t adapter_params = 0, adapter_buffer_bytes = 0, adapted_count = 0;
  if (!full) {
    for (int64_t i = 0; i < L; ++i) {
      for (int k = 0; k < 7; ++k) {
        const LinearShape& l = layer_linears[k];
        D2_ASSIGN_OR_RETURN(bool match,
                            spec::MatchesTargetModules(absl::StrCat("model.layers.", i, ".", l.name), a.target_modules));
        if (!match) continue;
        adapted[i][k] = true;
        const AdapterShape s = AdapterOf(method, a, l);
        adapter_params += s.parameters;
        adapter_buffer_bytes += s.buffer_bytes;
        ++adapted_count;
      }
    }
    if (!c.tie_word_embeddings) {
      D2_ASSIGN_OR_RETURN(head_adapted, spec::MatchesTargetModules("lm_head", a.target_modules));
      if (head_adapted) {
        const AdapterShape s = AdapterOf(method, a, {"lm_head", H, V});
        adapter_params += s.parameters;
        adapter_buffer_bytes += s.buffer_bytes;
        ++adapted_count;
      }
    }
    if (adapted_count == 0) {
      return absl::InvalidArgumentError(
          absl::StrCat("adapter.target_modules: no linear layer of the model matches [",
                       absl::StrJoin(a.target_modules, ", "), "]"));
    }
  }
  plan.trainable = full ? plan.parameters : adapter_params;
  plan.adapters = adapter_params * ab + adapter_buffer_bytes;
  plan.gradients = plan.trainable * ab;
  plan.optimizer = 2 * 4 * plan.trainable;            // exp_avg, exp_avg_sq in fp32
  plan.gradient_bucket = 4 * (plan.trainable + 3);   // every gradient in one fp32 tensor, then reduced
  if (spec.guard.enabled()) plan.guard = plan.trainable * ab + plan.optimizer;  // parameters and moments

  // --- Data.
  if (inputs.data_tokens >= 0) {
    plan.data = inputs.data_tokens * kTokenBytes + inputs.data_examples * kExampleOverheadBytes;
  } else {
    plan.data = inputs.data_file_bytes * kTokenBytes;
    plan.data_is_bound = true;
  }

  // --- Activations: the tensors autograd keeps for one micro-batch's
  // backward, per token, read from the forward (model/llama.cc, adapters/):
  //   each RMSNorm keeps its fp32 input (4H); its weighted output only when
  //   the weight trains (full);
  //   a linear keeps its input when its weight trains (full) or an adapter's A
  //   multiplies it; q_proj, k_proj and v_proj share one input, gate and up
  //   another;
  //   attention keeps the rotated q and k, v, and the fp32 probabilities (heads
  //   x T per token; a bf16 copy too in bf16);
  //   the MLP keeps gate (SiLU's input), SiLU's output and up (the product's
  //   inputs), and the product when down_proj trains;
  //   an adapter keeps x A^T (r per token, 2r for D2-LoRA's two branches); an
  //   adapter input of another dtype is a copy it keeps; dropout keeps the
  //   dropped input and its mask;
  //   a trainable row scale (D2-LoRA with norm_grad full, DoRA) keeps the
  //   layer's output, shared with the next operation where that keeps it (v,
  //   gate, up); D2-LoRA's residual adds nothing (its epilogue is one autograd
  //   node, worker/engine/adapters/d2lora_epilogue.h); an adapter of a wider
  //   dtype than the base keeps a wide copy of its own.
  const bool scale_keeps = !full && ((method == TrainingMethod::kD2Lora && a.projection_strength != 0.0 &&
                                      a.norm_grad == spec::NormGrad::kFull) ||
                                     method == TrainingMethod::kDora);
  const int64_t xa = (method == TrainingMethod::kD2Lora ? 2 : 1) * a.r;
  int64_t per_token = 0;
  for (int64_t i = 0; i < L; ++i) {
    const std::vector<bool>& ad = adapted[i];
    const bool input_grad = full || i > 0;  // layer 0's input is the frozen embedding's output
    int64_t e = 0;
    if (input_grad) e += 4 * H;  // input_layernorm's input
    if (full) e += 2 * H * cb;   // the two norms' weighted outputs (their weights train)
    if (full || ad[0] || ad[1] || ad[2]) e += H * cb;  // q/k/v's input
    e += (q + kv) * cb;                                 // rotated q, k
    e += kv * cb;                                       // v
    e += heads * T * 4 + (bf16 ? heads * T * 2 : 0);    // probabilities
    if (full || ad[3]) e += q * cb;                     // o_proj's input
    e += 4 * H;                                         // post_attention_layernorm's input
    if (full || ad[4] || ad[5]) e += H * cb;            // gate/up's input
    e += 3 * I * cb;                                    // gate, silu(gate), up
    if (full || ad[6]) e += I * cb;                     // down_proj's input
    for (int k = 0; k < 7; ++k) {
      if (!ad[k]) continue;
      const LinearShape& l = layer_linears[k];
      e += xa * ab;
      if (ab != cb) e += l.in * ab;
      if (a.dropout > 0) e += 2 * l.in * ab;
      if (scale_keeps) {
        const bool shared = k == 2 || k == 4 || k == 5;  // v, gate, up: the next op keeps the same tensor
        if (!shared || ab != cb) e += l.out * wide;
      }
    }
    per_token += e;
  }
  per_token += 4 * H;                        // the final norm's input
  if (full || head_adapted) per_token += H * cb;  // the head's input (its weight or adapter trains)
  if (head_adapted) per_token += xa * ab + (scale_keeps ? V * wide : 0);
  per_token += 2 * c.head_dim * cb + T;      // RoPE cos/sin, the attention mask
  int64_t activations = per_token * N;
  // D2-LoRA stacks its two branches each forward ([A+; A-], [B+, -tau B-]):
  // copies of its adapter, kept by the GEMMs that use them.
  if (method == TrainingMethod::kD2Lora && !full) activations += adapter_params * ab;
  if (spec.train.activation_checkpointing) {
    // Only each layer's input is kept; backward recomputes one layer at a
    // time, so its activations (the largest layer's) come back one at a time.
    const int64_t one_layer = (per_token - 4 * H - (full || head_adapted ? H * cb : 0)) / std::max<int64_t>(L, 1);
    activations = (L * H * cb + 4 * H + 2 * c.head_dim * cb + T) * N + one_layer * N;
    plan.notes.push_back("activation checkpointing: each layer's input is kept, one layer recomputed at a time");
  }
  plan.activations = activations;

  // --- Backward's transient peak: at its start, the logits (compute dtype,
  // held by the step), the fp32 log-probabilities cross-entropy keeps, their
  // gradient and the logits' gradient; or, later, one attention block's
  // backward (gradients of the probabilities and the scores) with the logits
  // still held.
  const int64_t loss_phase = N * V * (cb + 12);
  const int64_t attention_phase = N * V * cb + N * (heads * T * (2 * cb + 4) + (2 * I + 2 * H) * 4);
  plan.backward_transient = std::max(loss_phase, attention_phase);

  // Gradients accumulate over micro-batches: present during every forward after the first.
  const int64_t world = std::max<int64_t>(spec.resources.world_size, 1);
  plan.accumulates = spec.train.batch_size > spec.train.micro_batch_size * world;

  // --- Evaluation: one forward pass without gradients over micro_batch_size
  // prompts: the KV cache, the logits with their fp32 log-probabilities, one
  // layer's attention scores and MLP.
  plan.evaluation = N * (2 * kv * L * cb + V * (cb + 8) + heads * T * (4 + cb) + 3 * I * cb);

  // --- The merge gate (tasks/train_job.cc MergeAndCheck): the training
  // form's fp32 logits on M tokens are kept while the merged model runs the
  // same forward (its attention and MLP one layer at a time, its logits and
  // their masked fp32 copy); each layer is merged in fp64 (weight, update,
  // result). The comparison itself runs a few positions at a time.
  if (full || spec.output.merge) {
    const int64_t M = std::max<int64_t>(inputs.merge_check_sequences, 1) * T;
    int64_t largest_linear = V * H;
    for (const LinearShape& l : layer_linears) largest_linear = std::max(largest_linear, l.in * l.out);
    const int64_t forward = M * (heads * T * (4 + cb) + 3 * I * cb + 4 * H * cb) + M * V * cb;
    plan.merge_gate = M * V * 4 + std::max(forward, 2 * M * V * 4) + 3 * 8 * largest_linear;
  }

  // --- Load: the weights built while the checkpoint file's pages are mapped.
  const int64_t file = inputs.checkpoint_bytes > 0 ? inputs.checkpoint_bytes
                                                    : plan.parameters * (c.dtype.empty() ? 4 : DtypeBytes(c.dtype));
  plan.load = cuda ? plan.weights : plan.weights + file;

  plan.runtime = cuda ? kCudaRuntimeBytes : kCpuRuntimeBytes;

  // After the first step the gradients stay allocated (each step frees them
  // at its start): evaluations and the merge gate run beside them.
  const int64_t phases[] = {plan.step(), plan.gradients + plan.gradient_bucket, plan.gradients + plan.evaluation,
                            plan.gradients + plan.merge_gate};
  const char* names[] = {"step", "after step", "evaluation", "merge gate"};
  int64_t best = 0;
  for (int i = 0; i < 4; ++i) {
    if (phases[i] > best) {
      best = phases[i];
      plan.peak_phase = names[i];
    }
  }
  int64_t trained = plan.state() + best;
  if (plan.load > trained) {
    trained = plan.load;
    plan.peak_phase = "load";
  }
  plan.peak = plan.runtime + trained;
  if (plan.data_is_bound) plan.notes.push_back("data: bounded by the data files' size (one token per byte at most)");
  if (cuda) plan.notes.push_back("cuda: the runtime term is an estimate, not yet measured on a GPU");
  return plan;
}

nlohmann::json MemoryPlan::ToJson() const {
  nlohmann::json j = {{"device", device},
                      {"compute_dtype", compute_dtype},
                      {"micro_batch_tokens", micro_batch_tokens},
                      {"parameters", parameters},
                      {"trainable", trainable},
                      {"runtime_bytes", runtime},
                      {"weights_bytes", weights},
                      {"adapters_bytes", adapters},
                      {"optimizer_bytes", optimizer},
                      {"guard_bytes", guard},
                      {"data_bytes", data},
                      {"data_is_bound", data_is_bound},
                      {"activations_bytes", activations},
                      {"backward_transient_bytes", backward_transient},
                      {"gradients_bytes", gradients},
                      {"gradient_bucket_bytes", gradient_bucket},
                      {"evaluation_bytes", evaluation},
                      {"merge_gate_bytes", merge_gate},
                      {"load_bytes", load},
                      {"peak_bytes", peak},
                      {"peak_phase", peak_phase}};
  j["notes"] = notes;
  return j;
}

std::string MemoryPlan::Format() const {
  std::string out = absl::StrFormat("memory plan (%s, %s, %lld tokens per micro-batch; %lld of %lld parameters train)\n",
                                    device, compute_dtype, static_cast<long long>(micro_batch_tokens),
                                    static_cast<long long>(trainable), static_cast<long long>(parameters));
  auto line = [&](const char* name, int64_t bytes, const std::string& what) {
    absl::StrAppendFormat(&out, "  %-20s %12s  %s\n", name, FormatBytes(bytes), what);
  };
  line("runtime", runtime, device == "cuda" ? "CUDA context and workspace (estimate)" : "LibTorch, BLAS, allocator");
  line("weights", weights, absl::StrCat("base model in ", compute_dtype));
  line("adapters", adapters, "adapter parameters and buffers");
  line("optimizer", optimizer, "AdamW moments (fp32)");
  if (guard > 0) line("guard", guard, "the training guard's in-memory copy");
  line("data", data, data_is_bound ? "tokenized data sets (a bound from the files' size)" : "tokenized data sets");
  line("activations", activations, "kept for backward, one micro-batch");
  line("backward transient", backward_transient, "logits and their gradients, or one attention block's backward");
  line("gradients", gradients, accumulates ? "accumulate across micro-batches" : "after backward");
  line("gradient bucket", gradient_bucket, "the fp32 copy each step reduces");
  line("evaluation", evaluation, "one forward pass without gradients");
  if (merge_gate > 0) line("merge gate", merge_gate, "logits of the training form and the merged model");
  line("load", load, "weights while the checkpoint is mapped");
  absl::StrAppendFormat(&out, "  %-20s %12s  at %s\n", "peak", FormatBytes(peak), peak_phase);
  for (const std::string& n : notes) absl::StrAppend(&out, "  note: ", n, "\n");
  return out;
}

namespace {
int64_t StatusKiB(const char* key) {
  std::ifstream in("/proc/self/status");
  std::string line;
  const std::string prefix = absl::StrCat(key, ":");
  while (std::getline(in, line)) {
    if (line.rfind(prefix, 0) != 0) continue;
    long long kib = 0;
    if (std::sscanf(line.c_str() + prefix.size(), "%lld", &kib) == 1) return kib * 1024;
  }
  return 0;
}
}  // namespace

int64_t ResidentBytes() { return StatusKiB("VmRSS"); }
int64_t PeakResidentBytes() { return StatusKiB("VmHWM"); }

int64_t LocalBytes(const std::string& path, const std::string& suffix) {
  namespace fs = std::filesystem;
  std::error_code ec;
  if (fs::is_regular_file(path, ec)) return static_cast<int64_t>(fs::file_size(path, ec));
  int64_t total = 0;
  for (const auto& entry : fs::directory_iterator(path, ec)) {
    const std::string name = entry.path().filename().string();
    if (!entry.is_regular_file(ec) || name.size() < suffix.size() ||
        name.compare(name.size() - suffix.size(), suffix.size(), suffix) != 0) {
      continue;
    }
    const auto size = entry.file_size(ec);
    if (!ec) total += static_cast<int64_t>(size);
  }
  return total;
}

int64_t AvailableMemoryBytes() {
  int64_t available = 0;
  std::ifstream meminfo("/proc/meminfo");
  std::string line;
  long long kib = 0;
  while (std::getline(meminfo, line)) {
    if (std::sscanf(line.c_str(), "MemAvailable: %lld kB", &kib) == 1) available = kib * 1024;
  }
  if (std::optional<int64_t> limit = MemoryLimitBytes(); limit && (available == 0 || *limit < available)) {
    available = *limit;
  }
  return available;
}

}  // namespace d2lora::model
