// One full training step of a whole model (`d2lora init-model` presets) with
// D2-LoRA vs LoRA vs DoRA at the same rank, at several sequence lengths with a
// constant number of tokens per step. A step is forward, next-token cross
// entropy, backward and an AdamW update of the trainable parameters (the
// engine's AdamW), as the trainer runs it on one rank.
//
// Reported per (preset, seq, method): median step seconds, tokens/s, the peak
// memory one step adds (measured in a child process of its own per variant),
// the step's model and adapter FLOPs (bench/flop_count.h) and the model FLOP
// utilisation against this machine's GEMM peak measured in the same run.
// Ratios (d2lora/lora, dora/lora) are medians of per-repetition ratios: the
// methods run interleaved, repetition by repetition, on identical inputs. At
// --ref-seq (512) the run adds D2-LoRA with activation checkpointing and full
// fine-tuning. A per-linear breakdown (one adapted layer of each shape of the
// model, forward + backward) says where an adapter's extra time goes.
//
//   train_step_bench [--quick] [--presets small,base] [--seqs 128,512,2048]
//                    [--tokens 2048] [--r 8] [--ref-seq 512] [--gemm-sizes 2048,4096]
//                    [--adapter-dtype fp32|bf16] [--no-memory] [--no-breakdown]
//                    [--json FILE] [--device cpu|cuda] [--dtype fp32|bf16]
//                    [--threads N] [--reps N]
#include <torch/torch.h>
#include <unistd.h>

#ifdef __GLIBC__
#include <malloc.h>
#endif

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <functional>
#include <iostream>
#include <map>
#include <memory>
#include <optional>
#include <sstream>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "bench/bench_common.h"
#include "bench/flop_count.h"
#include "common/status_macros.h"
#include "worker/engine/adapters/adapted_linear.h"
#include "worker/engine/adapters/adapted_linear_d2lora.h"
#include "worker/engine/adapters/inject.h"
#include "worker/engine/adapters/linear.h"
#include "worker/engine/adapters/merge.h"
#include "worker/engine/model/checkpoint.h"
#include "worker/engine/model/llama.h"
#include "worker/engine/runtime.h"
#include "common/spec/job_spec.h"
#include "worker/engine/tasks/init_model.h"
#include "worker/engine/torch_guard.h"
#include "worker/engine/train/adamw.h"

namespace d2lora::bench {
namespace {

using Clock = std::chrono::steady_clock;
using nlohmann::json;

// ---------------------------------------------------------------------------
// Flags

struct Options {
  std::vector<std::string> presets;
  std::vector<int64_t> seqs;
  int64_t tokens = 2048;
  int64_t r = 8;
  int64_t ref_seq = 512;  // where the checkpointing and full fine-tuning rows run; 0 = none
  std::vector<int64_t> gemm_sizes;
  std::string adapter_dtype = "fp32";  // the job spec's default (adapter.dtype)
  bool memory = true;
  bool breakdown = true;
  uint64_t seed = 1234;
  int reps = 0;
  // Child mode: one variant's peak memory.
  bool mem_child = false;
  std::string method = "d2lora";
  bool ckpt = false;
};

Options ParseOptions(const BenchArgs& args) {
  Options o;
  for (BenchFlags flags(args.rest); flags.Next();) {
    const std::string& flag = flags.flag();
    if (flag == "--presets") o.presets = absl::StrSplit(flags.Value(), ',', absl::SkipEmpty());
    else if (flag == "--seqs") o.seqs = flags.Ints(1);
    else if (flag == "--tokens") o.tokens = flags.Int(1);
    else if (flag == "--r") o.r = flags.Int(1);
    else if (flag == "--ref-seq") o.ref_seq = flags.Int(0);  // 0: no reference rows
    else if (flag == "--gemm-sizes") o.gemm_sizes = flags.Ints(1);
    else if (flag == "--adapter-dtype") o.adapter_dtype = flags.Value();
    else if (flag == "--seed") o.seed = static_cast<uint64_t>(flags.Int(1));
    else if (flag == "--no-memory") o.memory = false;
    else if (flag == "--no-breakdown") o.breakdown = false;
    else if (flag == "--mem-child") o.mem_child = true;  // hidden: run by this binary itself
    else if (flag == "--method") o.method = flags.Value();
    else if (flag == "--ckpt") o.ckpt = flags.Value() == "1";
    else flags.Unknown(" (see the comment at the top of bench/train_step_bench.cc)");
  }
  if (o.adapter_dtype != "fp32" && o.adapter_dtype != "bf16") Die("--adapter-dtype must be fp32 or bf16");
  if (o.presets.empty()) {
    o.presets = args.quick ? std::vector<std::string>{"small"} : std::vector<std::string>{"small", "base"};
  }
  if (o.seqs.empty()) o.seqs = args.quick ? std::vector<int64_t>{128, 512} : std::vector<int64_t>{128, 512, 2048};
  if (o.gemm_sizes.empty()) {
    o.gemm_sizes = args.device == "cuda" ? std::vector<int64_t>{4096, 8192} : std::vector<int64_t>{2048, 4096};
  }
  o.reps = args.reps > 0 ? args.reps : (args.quick ? 3 : 5);
  return o;
}

StepMethod ParseStepMethod(const std::string& name) {
  for (StepMethod m : {StepMethod::kLora, StepMethod::kD2Lora, StepMethod::kDora, StepMethod::kFull}) {
    if (StepMethodName(m) == name) return m;
  }
  Die("unknown method '" + name + "'");
}

// ---------------------------------------------------------------------------
// Models and the training step

// A model with its adapters (or everything trainable) and its optimizer.
struct Trainee {
  engine::CausalLM model{nullptr};
  std::unique_ptr<engine::AdamW> optimizer;
};

absl::StatusOr<std::unique_ptr<Trainee>> MakeTrainee(const model::ModelConfig& config, StepMethod method,
                                                     const Options& o, const torch::Device& device,
                                                     torch::ScalarType dtype) {
  auto t = std::make_unique<Trainee>();
  D2_ASSIGN_OR_RETURN(t->model, engine::InitRandomModel(config, o.seed, dtype));
  D2_RETURN_IF_ERROR(engine::GuardTorch("preparing the model", [&]() -> absl::Status {
    // As the trainer does (worker/engine/tasks/train_job.cc): adapters on the
    // spec's default targets (every decoder projection), then to the device.
    if (method == StepMethod::kFull) {
      for (auto& p : t->model->parameters()) p.requires_grad_(true);
    } else {
      engine::AdapterOptions a = engine::DefaultSpecAdapterOptions();
      a.method = method == StepMethod::kLora   ? engine::AdapterMethod::kLora
                 : method == StepMethod::kDora ? engine::AdapterMethod::kDora
                                               : engine::AdapterMethod::kD2Lora;
      a.r = o.r;
      a.dtype = o.adapter_dtype == "bf16" ? engine::AdapterDtype::kBf16 : engine::AdapterDtype::kFp32;
      a.seed = o.seed;
      D2_RETURN_IF_ERROR(engine::InjectAdapters(*t->model, a).status());
      // A trained adapter, not the B = 0 start (the same draw for every method).
      torch::NoGradGuard no_grad;
      torch::manual_seed(o.seed);
      for (auto& item : t->model->named_parameters()) {
        if (absl::EndsWith(item.key(), "lora_B") || absl::EndsWith(item.key(), "lora_B_neg")) {
          item.value().normal_(0.0, 0.02);
        }
      }
    }
    t->model->to(device);
    t->model->train();
    engine::AdamWOptions adamw;
    adamw.weight_decay = engine::JobSpec().train.weight_decay;
    t->optimizer = std::make_unique<engine::AdamW>(engine::CollectTrainableParameters(*t->model), adamw);
    return absl::OkStatus();
  }));
  return t;
}

// One training step; returns its seconds (after a device synchronise).
double TrainStep(Trainee& t, bool checkpointing, const torch::Tensor& ids, const torch::Device& device) {
  t.model->set_gradient_checkpointing(checkpointing);
  const auto t0 = Clock::now();
  torch::Tensor logits = t.model->forward(ids);
  const int64_t steps = logits.size(1), vocab = logits.size(2);
  torch::Tensor loss = torch::nn::functional::cross_entropy(
      logits.slice(1, 0, steps - 1).reshape({-1, vocab}).to(torch::kFloat32),
      ids.slice(1, 1, steps).reshape({-1}));
  loss.backward();
  t.optimizer->Step(1e-4);
  for (const engine::TrainableParameter& p : t.optimizer->parameters()) p.param.mutable_grad() = torch::Tensor();
  const double seconds = SecondsSince(t0, device);
  t.model->set_gradient_checkpointing(false);
  return seconds;
}

torch::Tensor RandomIds(int64_t batch, int64_t seq, int64_t vocab, uint64_t seed, const torch::Device& device) {
  torch::manual_seed(seed);
  return torch::randint(0, vocab, {batch, seq}, torch::TensorOptions().dtype(torch::kInt64)).to(device);
}

int64_t BatchFor(const Options& o, int64_t seq) { return std::max<int64_t>(1, o.tokens / seq); }

// ---------------------------------------------------------------------------
// Peak memory: one variant per child process

std::string ShellQuote(const std::string& s) {
  std::string out = "'";
  for (char c : s) out += c == '\'' ? std::string("'\\''") : std::string(1, c);
  return out + "'";
}

std::string SelfPath() {
  char buf[4096];
  const ssize_t n = readlink("/proc/self/exe", buf, sizeof(buf) - 1);
  if (n <= 0) Die("cannot read /proc/self/exe");
  return std::string(buf, static_cast<size_t>(n));
}

// The child: builds the variant, runs a warm-up step, then prints the peak
// memory the next step adds ("peak_mib X"), and on CPU its peak in tensor
// bytes, whatever the allocator keeps ("tensor_peak_mib Y").
int MemChild(const BenchArgs& args, const Options& o) {
#ifdef __GLIBC__
  // Fixed thresholds (no dynamic adjustment): blocks above 128 KiB are mmap'd
  // and given back on free, so the resident set after the warm-up step holds
  // no freed activations that the measured step could reuse unseen.
  mallopt(M_MMAP_THRESHOLD, 128 * 1024);
  mallopt(M_TRIM_THRESHOLD, 128 * 1024);
#endif
  engine::ConfigureThreads(args.threads);
  const torch::Device device = BenchDevice(args);
  if (device.is_cpu()) StartTensorAccounting();
  auto status = engine::GuardTorch("memory child", [&]() -> absl::Status {
    D2_ASSIGN_OR_RETURN(model::ModelConfig config, engine::ModelPreset(o.presets.at(0)));
    const int64_t seq = o.seqs.at(0);
    D2_ASSIGN_OR_RETURN(auto trainee, MakeTrainee(config, ParseStepMethod(o.method), o, device, BenchDtype(args)));
    torch::Tensor ids = RandomIds(BatchFor(o, seq), seq, config.vocab_size, o.seed, device);
    TrainStep(*trainee, o.ckpt, ids, device);
    ResetPeakMemory(device);
    ResetTensorPeak();
    TrainStep(*trainee, o.ckpt, ids, device);
    std::printf("peak_mib %.3f\n", PeakMemoryMiBSinceReset(device));
    if (std::optional<double> t = TensorPeakMiBSinceReset()) std::printf("tensor_peak_mib %.3f\n", *t);
    std::fflush(stdout);
    return absl::OkStatus();
  });
  if (!status.ok()) {
    std::cerr << "memory child: " << status << "\n";
    return 1;
  }
  return 0;
}

struct StepPeak {
  double rss_mib = 0;
  std::optional<double> tensor_mib;  // CPU only
};

// Runs the child for one variant; nullopt (with a message) when it fails.
std::optional<StepPeak> PeakStepMiB(const BenchArgs& args, const Options& o, int threads, const std::string& preset,
                                  int64_t seq, StepMethod method, bool ckpt) {
  std::ostringstream cmd;
  // On glibc's malloc with fixed thresholds (MemChild): tcmalloc, the trainer's
  // default allocator, keeps the warm-up step's memory cached, so what the
  // measured step adds would read as nothing.
  cmd << "env -u LD_PRELOAD D2LORA_MALLOC=system " << ShellQuote(SelfPath()) << " --mem-child --device " << args.device << " --dtype " << args.dtype
      << " --threads " << threads << " --presets " << preset << " --seqs " << seq << " --tokens " << o.tokens
      << " --r " << o.r << " --method " << StepMethodName(method) << " --ckpt " << (ckpt ? 1 : 0)
      << " --adapter-dtype " << o.adapter_dtype << " --seed " << o.seed;
  FILE* pipe = popen(cmd.str().c_str(), "r");
  if (pipe == nullptr) return std::nullopt;
  std::optional<double> mib, tensor_mib;
  char line[256];
  while (std::fgets(line, sizeof(line), pipe) != nullptr) {
    double v = 0;
    if (std::sscanf(line, "peak_mib %lf", &v) == 1) mib = v;
    if (std::sscanf(line, "tensor_peak_mib %lf", &v) == 1) tensor_mib = v;
  }
  const int rc = pclose(pipe);
  if (rc != 0 || !mib) {
    std::cerr << "warning: the memory child for " << preset << " seq " << seq << " " << StepMethodName(method)
              << (ckpt ? "+ckpt" : "") << " failed (status " << rc << ")\n";
    return std::nullopt;
  }
  return StepPeak{*mib, tensor_mib};
}

// ---------------------------------------------------------------------------
// GEMM peak

json MeasureGemmPeak(const BenchArgs& args, const Options& o, double* peak_flops) {
  const torch::Device device = BenchDevice(args);
  const auto opts = torch::TensorOptions().dtype(BenchDtype(args)).device(device);
  const int tries = device.is_cuda() ? 10 : 3;
  json sizes = json::array();
  *peak_flops = 0;
  for (int64_t n : o.gemm_sizes) {
    torch::manual_seed(0);
    torch::Tensor a = torch::randn({n, n}, opts), b = torch::randn({n, n}, opts);
    torch::Tensor c = torch::mm(a, b);  // warm-up
    double best = 1e30;
    for (int i = 0; i < tries; ++i) {
      Synchronize(device);
      const auto t0 = Clock::now();
      c = torch::mm(a, b);
      best = std::min(best, SecondsSince(t0, device));
    }
    const double flops = 2.0 * n * n * n / best;
    *peak_flops = std::max(*peak_flops, flops);
    std::cerr << "GEMM " << n << "x" << n << ": " << flops / 1e9 << " GFLOP/s\n";
    sizes.push_back({{"n", n}, {"seconds", best}, {"flops_per_s", flops}});
  }
  return {{"dtype", args.dtype}, {"op", "torch::mm, square, best of " + std::to_string(tries)},
          {"sizes", sizes}, {"peak_flops_per_s", *peak_flops}};
}

// ---------------------------------------------------------------------------
// Whole-step runs

struct Variant {
  std::string name;  // lora | d2lora | dora | d2lora_ckpt | full
  StepMethod method;
  bool ckpt;
  Trainee* trainee;
  std::vector<double> seconds;
  std::optional<double> peak_mib;
  std::optional<double> tensor_peak_mib;  // the same step's peak in CPU tensor bytes
};

double MedianRatio(const std::vector<double>& num, const std::vector<double>& den) {
  std::vector<double> r;
  for (size_t i = 0; i < num.size() && i < den.size(); ++i) r.push_back(num[i] / den[i]);
  return Median(r);
}

json OptionalJson(const std::optional<double>& v) { return v ? json(*v) : json(nullptr); }

std::string Fmt(const char* format, double v) {
  char buf[64];
  std::snprintf(buf, sizeof(buf), format, v);
  return buf;
}

std::string FmtOpt(const char* format, const std::optional<double>& v) { return v ? Fmt(format, *v) : "-"; }

// ---------------------------------------------------------------------------
// Per-linear breakdown

struct Shape {
  std::string names;  // "q_proj,o_proj"
  int64_t in, out;
  int count = 0;  // per decoder layer
};

std::vector<Shape> DecoderShapes(const model::ModelConfig& c) {
  const int64_t hd = c.head_dim > 0 ? c.head_dim : c.hidden_size / c.num_attention_heads;
  const int64_t q = c.num_attention_heads * hd;
  const int64_t kv = (c.num_key_value_heads > 0 ? c.num_key_value_heads : c.num_attention_heads) * hd;
  const std::pair<const char*, std::pair<int64_t, int64_t>> all[] = {
      {"q", {c.hidden_size, q}},  {"k", {c.hidden_size, kv}}, {"v", {c.hidden_size, kv}},
      {"o", {q, c.hidden_size}},  {"gate", {c.hidden_size, c.intermediate_size}},
      {"up", {c.hidden_size, c.intermediate_size}}, {"down", {c.intermediate_size, c.hidden_size}},
  };
  std::vector<Shape> shapes;
  for (const auto& [name, io] : all) {
    auto it = std::find_if(shapes.begin(), shapes.end(),
                           [&](const Shape& s) { return s.in == io.first && s.out == io.second; });
    if (it == shapes.end()) {
      shapes.push_back({name, io.first, io.second, 1});
    } else {
      it->names += std::string(",") + name;
      ++it->count;
    }
  }
  return shapes;
}

struct LayerUnderTest {
  engine::Linear host{nullptr};
  std::shared_ptr<engine::AdaptedLinearImpl> adapter;  // null: the frozen base alone
};

absl::StatusOr<LayerUnderTest> MakeLayer(int64_t in, int64_t out, std::optional<engine::AdapterMethod> method,
                                         int64_t r, const Options& o, const torch::Device& device,
                                         torch::ScalarType dtype) {
  LayerUnderTest l;
  l.host = engine::Linear(in, out, false, torch::TensorOptions().dtype(dtype));
  {
    torch::NoGradGuard no_grad;
    torch::manual_seed(o.seed);
    l.host->weight().normal_(0.0, 0.02);
  }
  l.host->weight().requires_grad_(false);
  if (method) {
    engine::AdapterOptions a;
    a.method = *method;
    a.r = r;
    a.dtype = o.adapter_dtype == "bf16" ? engine::AdapterDtype::kBf16 : engine::AdapterDtype::kFp32;
    a.seed = o.seed;
    D2_ASSIGN_OR_RETURN(l.adapter, engine::CreateAdaptedLinear(*l.host, a, "bench.layer"));
    l.host->set_adapter(l.adapter);
    torch::NoGradGuard no_grad;
    for (auto& item : l.adapter->named_parameters()) {
      if (absl::StartsWith(item.key(), "lora_B")) item.value().normal_(0.0, 0.02);
    }
  }
  l.host->to(device);
  l.host->train();
  return l;
}

void ClearGrads(torch::nn::Module& m) {
  for (auto& p : m.parameters()) p.mutable_grad() = torch::Tensor();
}

// Times, per linear shape of the model, forward + backward (with the input
// gradient) of: the frozen base alone, LoRA (r and 2r), D2-LoRA, DoRA, and the
// row-norm part of D2-LoRA and DoRA alone. Returns the JSON and prints a table.
absl::StatusOr<json> Breakdown(const BenchArgs& args, const Options& o, const std::string& preset,
                               const model::ModelConfig& config, double lora_step_s, double d2_step_s,
                               double dora_step_s) {
  const torch::Device device = BenchDevice(args);
  const torch::ScalarType dtype = BenchDtype(args);
  const int64_t tokens = o.tokens;
  const std::vector<std::string> names = {"base", "lora", "lora_2r", "d2lora", "dora", "d2lora_norms", "dora_norms"};
  json shapes_json = json::array();
  std::map<std::string, double> per_step;  // estimated seconds per step over all decoder layers
  for (const Shape& s : DecoderShapes(config)) {
    std::cerr << "[" << preset << "] breakdown " << s.names << " " << s.in << "->" << s.out << "\n";
    auto make = [&](std::optional<engine::AdapterMethod> method, int64_t r) {
      return MakeLayer(s.in, s.out, method, r, o, device, dtype);
    };
    D2_ASSIGN_OR_RETURN(LayerUnderTest base, make(std::nullopt, o.r));
    D2_ASSIGN_OR_RETURN(LayerUnderTest lora, make(engine::AdapterMethod::kLora, o.r));
    D2_ASSIGN_OR_RETURN(LayerUnderTest lora2, make(engine::AdapterMethod::kLora, 2 * o.r));
    D2_ASSIGN_OR_RETURN(LayerUnderTest d2, make(engine::AdapterMethod::kD2Lora, o.r));
    D2_ASSIGN_OR_RETURN(LayerUnderTest dora, make(engine::AdapterMethod::kDora, o.r));
    torch::manual_seed(o.seed);
    torch::Tensor x = torch::randn({tokens, s.in}, torch::TensorOptions().dtype(dtype).device(device));
    x.requires_grad_(true);
    torch::Tensor g = torch::randn({tokens, s.out}, torch::TensorOptions().dtype(dtype).device(device));
    auto layer_step = [&](LayerUnderTest& l) {
      return [&]() {
        l.host->forward(x).backward(g);
        x.mutable_grad() = torch::Tensor();
        if (l.adapter) ClearGrads(*l.adapter);
      };
    };
    auto d2_impl = std::dynamic_pointer_cast<engine::D2LoraLinearImpl>(d2.adapter);
    if (!d2_impl) return absl::InternalError("the D2-LoRA adapter is not a D2LoraLinearImpl");
    std::vector<std::function<void()>> steps = {
        layer_step(base), layer_step(lora), layer_step(lora2), layer_step(d2), layer_step(dora),
        [&]() {
          d2_impl->RowScale().sum().backward();
          ClearGrads(*d2.adapter);
        },
        [&]() {
          auto params = dora.adapter->named_parameters();
          auto buffers = dora.adapter->named_buffers();
          engine::LowRankUpdate u{params["lora_A"], params["lora_B"], dora.adapter->options().scaling()};
          engine::RowNormsLowRank(dora.adapter->base_weight(), buffers["w0_sq_norms"], u).sum().backward();
          ClearGrads(*dora.adapter);
        },
    };
    std::vector<std::vector<double>> t(steps.size());
    for (auto& step : steps) step();  // warm-up
    for (int rep = 0; rep < o.reps; ++rep) {
      for (size_t j = 0; j < steps.size(); ++j) {
        const size_t v = (rep + j) % steps.size();
        Synchronize(device);
        const auto t0 = Clock::now();
        steps[v]();
        t[v].push_back(SecondsSince(t0, device));
      }
    }
    json row = {{"modules", s.names}, {"in", s.in}, {"out", s.out}, {"per_layer", s.count}, {"tokens", tokens}};
    for (size_t v = 0; v < steps.size(); ++v) {
      const double m = Median(t[v]);
      row[names[v] + "_ms"] = 1e3 * m;
      per_step[names[v]] += m * s.count * static_cast<double>(config.num_hidden_layers);
    }
    shapes_json.push_back(row);
  }
  // Where D2-LoRA's and DoRA's extra time over LoRA goes, summed over every
  // adapted projection of one step (estimates from the single-layer medians).
  const double d2_extra = per_step["d2lora"] - per_step["lora"];
  const double d2_rank = per_step["lora_2r"] - per_step["lora"];
  const double d2_norms = per_step["d2lora_norms"];
  const double dora_extra = per_step["dora"] - per_step["lora"];
  const double dora_norms = per_step["dora_norms"];
  json est = json::object();
  for (const auto& [k, v] : per_step) est[k + "_s"] = v;
  json out = {
      {"preset", preset},
      {"shapes", shapes_json},
      {"per_step_estimate", est},
      {"d2lora_extra_over_lora",
       {{"linears_s", d2_extra},
        {"rank_2r_path_s", d2_rank},
        {"row_norms_s", d2_norms},
        {"rest_s", d2_extra - d2_rank - d2_norms},
        {"measured_step_difference_s", d2_step_s - lora_step_s}}},
      {"dora_extra_over_lora",
       {{"linears_s", dora_extra},
        {"row_norms_s", dora_norms},
        {"rest_s", dora_extra - dora_norms},
        {"measured_step_difference_s", dora_step_s - lora_step_s}}},
  };
  std::printf("\nPer-linear breakdown, %s (forward + backward of one layer, %lld tokens, median ms):\n",
              preset.c_str(), static_cast<long long>(tokens));
  std::printf("%-16s %11s %8s %8s %8s %8s %8s %8s %8s\n", "modules", "in->out", "base", "lora", "lora2r",
              "d2lora", "dora", "d2norms", "doranorm");
  for (const json& row : shapes_json) {
    const std::string io = std::to_string(row["in"].get<int64_t>()) + "->" + std::to_string(row["out"].get<int64_t>());
    std::printf("%-16s %11s", row["modules"].get<std::string>().c_str(), io.c_str());
    for (const std::string& n : names) std::printf(" %8.2f", row[n + "_ms"].get<double>());
    std::printf("\n");
  }
  const double lora_s = per_step["lora"];
  std::printf("Summed over all adapted layers of a step: base %.3f s, lora %.3f s, d2lora %.3f s, dora %.3f s\n",
              per_step["base"], lora_s, per_step["d2lora"], per_step["dora"]);
  std::printf("d2lora - lora: %.3f s (measured whole step: %.3f s) = rank-2r low-rank path %.3f + row norms %.3f "
              "+ rest (row scaling, element-wise) %.3f\n",
              d2_extra, d2_step_s - lora_step_s, d2_rank, d2_norms, d2_extra - d2_rank - d2_norms);
  std::printf("dora - lora:   %.3f s (measured whole step: %.3f s) = row norms %.3f + rest %.3f\n", dora_extra,
              dora_step_s - lora_step_s, dora_norms, dora_extra - dora_norms);
  return out;
}

// ---------------------------------------------------------------------------

absl::Status Run(const BenchArgs& args, const Options& o) {
  json setup = SetUpRuntime(args);
  const int threads = setup["threads"].get<int>();
  const torch::Device device = BenchDevice(args);
  const torch::ScalarType dtype = BenchDtype(args);
  const auto run_start = Clock::now();

  double peak_flops = 0;
  json gemm = MeasureGemmPeak(args, o, &peak_flops);

  json results = json::array(), ratios = json::array(), ckpt_rows = json::array(), breakdowns = json::array();
  std::vector<std::string> table;
  std::vector<std::string> ratio_table, ckpt_table;
  for (const std::string& preset : o.presets) {
    D2_ASSIGN_OR_RETURN(model::ModelConfig config, engine::ModelPreset(preset));
    std::cerr << "[" << preset << "] building models\n";
    std::map<StepMethod, std::unique_ptr<Trainee>> trainees;
    for (StepMethod m : {StepMethod::kLora, StepMethod::kD2Lora, StepMethod::kDora}) {
      D2_ASSIGN_OR_RETURN(trainees[m], MakeTrainee(config, m, o, device, dtype));
    }
    double ref_lora = 0, ref_d2 = 0, ref_dora = 0;  // step medians at the breakdown's reference seq
    for (int64_t seq : o.seqs) {
      const int64_t batch = BatchFor(o, seq);
      if (batch * seq != o.tokens) {
        std::cerr << "note: seq " << seq << " with --tokens " << o.tokens << ": batch " << batch << ", "
                  << batch * seq << " tokens per step\n";
      }
      const bool ref = seq == o.ref_seq;
      if (ref && !trainees.count(StepMethod::kFull)) {
        D2_ASSIGN_OR_RETURN(trainees[StepMethod::kFull], MakeTrainee(config, StepMethod::kFull, o, device, dtype));
      }
      std::vector<Variant> variants = {
          {"lora", StepMethod::kLora, false, trainees[StepMethod::kLora].get(), {}, {}, {}},
          {"d2lora", StepMethod::kD2Lora, false, trainees[StepMethod::kD2Lora].get(), {}, {}, {}},
          {"dora", StepMethod::kDora, false, trainees[StepMethod::kDora].get(), {}, {}, {}},
      };
      if (ref) {
        variants.push_back({"d2lora_ckpt", StepMethod::kD2Lora, true, trainees[StepMethod::kD2Lora].get(), {}, {}, {}});
        variants.push_back({"full", StepMethod::kFull, false, trainees[StepMethod::kFull].get(), {}, {}, {}});
      }
      torch::Tensor ids = RandomIds(batch, seq, config.vocab_size, o.seed + static_cast<uint64_t>(seq), device);
      std::cerr << "[" << preset << " seq " << seq << " x" << batch << "] warm-up\n";
      D2_RETURN_IF_ERROR(engine::GuardTorch("training step", [&]() -> absl::Status {
        for (Variant& v : variants) TrainStep(*v.trainee, v.ckpt, ids, device);
        for (int rep = 0; rep < o.reps; ++rep) {
          std::ostringstream line;
          line << "[" << preset << " seq " << seq << " x" << batch << "] rep " << rep + 1 << "/" << o.reps << ":";
          for (size_t j = 0; j < variants.size(); ++j) {
            Variant& v = variants[(rep + j) % variants.size()];  // rotate the order across reps
            v.seconds.push_back(TrainStep(*v.trainee, v.ckpt, ids, device));
            line << " " << v.name << " " << Fmt("%.3f", v.seconds.back()) << "s";
          }
          std::cerr << line.str() << "\n";
        }
        return absl::OkStatus();
      }));
      if (o.memory) {
        for (Variant& v : variants) {
          std::cerr << "[" << preset << " seq " << seq << "] peak memory of " << v.name << " (child process)\n";
          if (std::optional<StepPeak> peak = PeakStepMiB(args, o, threads, preset, seq, v.method, v.ckpt)) {
            v.peak_mib = peak->rss_mib;
            v.tensor_peak_mib = peak->tensor_mib;
          }
        }
      }
      std::map<std::string, const Variant*> by_name;
      for (const Variant& v : variants) {
        by_name[v.name] = &v;
        StepShape shape{batch, seq, o.r, v.ckpt};
        const StepFlops f = CountTrainStepFlops(config, v.method, shape);
        const double med = Median(v.seconds);
        const double mfu = f.model() / med / peak_flops;
        const double hfu = f.executed() / med / peak_flops;
        results.push_back({{"preset", preset},
                           {"seq", seq},
                           {"batch", batch},
                           {"tokens", batch * seq},
                           {"method", StepMethodName(v.method)},
                           {"variant", v.name},
                           {"activation_checkpointing", v.ckpt},
                           {"median_step_s", med},
                           {"step_s", v.seconds},
                           {"tokens_per_s", static_cast<double>(batch * seq) / med},
                           {"peak_mib", OptionalJson(v.peak_mib)},
                           {"tensor_peak_mib", OptionalJson(v.tensor_peak_mib)},
                           {"model_flops", f.model()},
                           {"model_flops_detail",
                            {{"linears", f.linears.total()},
                             {"lm_head", f.lm_head.total()},
                             {"attention", f.attention.total()},
                             {"attention_causal_half_counted", true}}},
                           {"adapter_flops", f.adapter()},
                           {"recompute_flops", f.recompute},
                           {"mfu", mfu},
                           {"hfu", hfu}});
        char buf[256];
        std::snprintf(buf, sizeof(buf), "%-6s %5lld %5lld  %-12s %8.3f %9.0f %10s %10s %9.1f %9.2f %6.1f%% %6.1f%%",
                      preset.c_str(), static_cast<long long>(seq), static_cast<long long>(batch), v.name.c_str(), med,
                      static_cast<double>(batch * seq) / med, FmtOpt("%.1f", v.peak_mib).c_str(),
                      FmtOpt("%.1f", v.tensor_peak_mib).c_str(), f.model() / 1e9,
                      f.adapter() / 1e9, 100 * mfu, 100 * hfu);
        table.push_back(buf);
      }
      const Variant& lora = *by_name["lora"];
      const Variant& d2 = *by_name["d2lora"];
      const Variant& dora = *by_name["dora"];
      // a's / b's peak by `field` (peak_mib or tensor_peak_mib), when both were measured.
      auto peak_ratio = [](const Variant& a, const Variant& b,
                           std::optional<double> Variant::*field) -> std::optional<double> {
        if (!(a.*field) || !(b.*field) || *(b.*field) <= 0) return std::nullopt;
        return *(a.*field) / *(b.*field);
      };
      const std::optional<double> d2_mem = peak_ratio(d2, lora, &Variant::peak_mib),
                                  dora_mem = peak_ratio(dora, lora, &Variant::peak_mib),
                                  d2_tensor = peak_ratio(d2, lora, &Variant::tensor_peak_mib);
      json ratio = {{"preset", preset},
                    {"seq", seq},
                    {"d2lora_over_lora", MedianRatio(d2.seconds, lora.seconds)},
                    {"dora_over_lora", MedianRatio(dora.seconds, lora.seconds)},
                    {"d2lora_over_lora_peak_mib", OptionalJson(d2_mem)},
                    {"dora_over_lora_peak_mib", OptionalJson(dora_mem)},
                    {"d2lora_over_lora_tensor_peak_mib", OptionalJson(d2_tensor)}};
      std::string full_col = "-";
      if (by_name.count("full")) {
        ratio["full_over_lora"] = MedianRatio(by_name["full"]->seconds, lora.seconds);
        full_col = Fmt("%.3f", ratio["full_over_lora"].get<double>());
      }
      ratios.push_back(ratio);
      {
        char buf[256];
        std::snprintf(buf, sizeof(buf), "%-6s %5lld  %11.3f %10.3f %11s %11s %10s %10s", preset.c_str(),
                      static_cast<long long>(seq), ratio["d2lora_over_lora"].get<double>(),
                      ratio["dora_over_lora"].get<double>(), FmtOpt("%.3f", d2_mem).c_str(),
                      FmtOpt("%.3f", d2_tensor).c_str(), FmtOpt("%.3f", dora_mem).c_str(),
                      full_col.c_str());
        ratio_table.push_back(buf);
      }
      if (by_name.count("d2lora_ckpt")) {
        const Variant& ck = *by_name["d2lora_ckpt"];
        const double tr = MedianRatio(ck.seconds, d2.seconds);
        const std::optional<double> mr = peak_ratio(ck, d2, &Variant::peak_mib);
        ckpt_rows.push_back({{"preset", preset}, {"seq", seq}, {"method", "d2lora"},
                             {"time_ckpt_over_plain", tr}, {"peak_mib_ckpt_over_plain", OptionalJson(mr)},
                             {"peak_mib_plain", OptionalJson(d2.peak_mib)},
                             {"peak_mib_ckpt", OptionalJson(ck.peak_mib)}});
        char buf[256];
        std::snprintf(buf, sizeof(buf), "%-6s %5lld  %14.3f %14s %10s %10s", preset.c_str(),
                      static_cast<long long>(seq), tr, FmtOpt("%.3f", mr).c_str(), FmtOpt("%.1f", d2.peak_mib).c_str(),
                      FmtOpt("%.1f", ck.peak_mib).c_str());
        ckpt_table.push_back(buf);
      }
      if (ref || ref_lora == 0) {  // the breakdown compares with the ref seq's steps (else the first seq's)
        ref_lora = Median(lora.seconds);
        ref_d2 = Median(d2.seconds);
        ref_dora = Median(dora.seconds);
      }
    }
    trainees.clear();
    if (o.breakdown) {
      D2_ASSIGN_OR_RETURN(json b, engine::GuardTorch("breakdown", [&]() -> absl::StatusOr<json> {
        return Breakdown(args, o, preset, config, ref_lora, ref_d2, ref_dora);
      }));
      breakdowns.push_back(b);
    }
  }

  std::printf("\ntrain_step_bench: %lld tokens/step, r %lld, %d reps, %d threads, %s %s; GEMM peak %.1f GFLOP/s\n",
              static_cast<long long>(o.tokens), static_cast<long long>(o.r), o.reps, threads, args.device.c_str(),
              args.dtype.c_str(), peak_flops / 1e9);
  std::printf("%-6s %5s %5s  %-12s %8s %9s %10s %10s %9s %9s %7s %7s\n", "preset", "seq", "batch", "variant", "step_s",
              "tok/s", "peak_MiB", "tensor_MiB", "model_GF", "adapt_GF", "MFU", "HFU");
  for (const std::string& row : table) std::printf("%s\n", row.c_str());
  std::printf("\nRatios (time: median of per-rep ratios, interleaved; memory: peak one step adds):\n");
  std::printf("%-6s %5s  %11s %10s %11s %11s %10s %10s\n", "preset", "seq", "d2lora/lora", "dora/lora", "mem d2/lora",
              "tensor d2/l",
              "mem dora/l", "full/lora");
  for (const std::string& row : ratio_table) std::printf("%s\n", row.c_str());
  if (!ckpt_table.empty()) {
    std::printf("\nActivation checkpointing, D2-LoRA (ckpt / plain):\n");
    std::printf("%-6s %5s  %14s %14s %10s %10s\n", "preset", "seq", "time ratio", "peak ratio", "plain MiB",
                "ckpt MiB");
    for (const std::string& row : ckpt_table) std::printf("%s\n", row.c_str());
  }
  std::printf("\nMFU = model FLOPs (base GEMMs incl. LM head and the full T x T attention square; adapters "
              "excluded) / step time / GEMM peak; HFU adds adapter and recompute FLOPs.\n");
  const double total_s = std::chrono::duration<double>(Clock::now() - run_start).count();
  std::cerr << "done in " << Fmt("%.1f", total_s) << " s\n";

  if (!args.json.empty()) {
    json out = {{"bench", "train_step_bench"},
                {"setup", setup},
                {"config",
                 {{"presets", o.presets},
                  {"seqs", o.seqs},
                  {"tokens", o.tokens},
                  {"r", o.r},
                  {"reps", o.reps},
                  {"ref_seq", o.ref_seq},
                  {"adapter_dtype", o.adapter_dtype},
                  {"seed", o.seed},
                  {"target_modules", engine::DefaultSpecAdapterOptions().target_modules}}},
                {"gemm_peak", gemm},
                {"results", results},
                {"ratios", ratios},
                {"activation_checkpointing", ckpt_rows},
                {"breakdown", breakdowns},
                {"seconds", total_s}};
    WriteJson(args.json, out);
  }
  return absl::OkStatus();
}

}  // namespace
}  // namespace d2lora::bench

int main(int argc, char** argv) {
  using namespace d2lora::bench;
  const BenchArgs args = ParseBenchArgs(argc, argv);
  const Options options = ParseOptions(args);
  if (options.mem_child) return MemChild(args, options);
  const absl::Status st = Run(args, options);
  if (!st.ok()) {
    std::cerr << "train_step_bench: " << st << "\n";
    return 1;
  }
  return 0;
}
