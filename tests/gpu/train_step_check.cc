#include "tests/gpu/train_step_check.h"

#include <chrono>
#include <cmath>
#include <map>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "common/status_macros.h"
#include "tests/gpu/check_setup.h"
#include "worker/engine/adapters/inject.h"
#include "worker/engine/distributed/distributed_options.h"
#include "worker/engine/distributed/process_group.h"
#include "worker/engine/distributed/process_group_gloo.h"
#include "worker/engine/distributed/process_group_nccl.h"
#include "worker/engine/distributed/process_group_threads.h"
#include "worker/engine/metrics/callbacks.h"
#include "common/spec/job_spec.h"
#include "worker/engine/torch_guard.h"
#include "worker/engine/train/adamw.h"
#include "worker/engine/train/trainer.h"
#include "worker/engine/train/validation.h"

namespace d2lora::gpucheck {
namespace {

using engine::ProcessGroup;

constexpr uint64_t kSeed = 11;

struct StepRecorder : engine::TrainingCallback {
  std::vector<engine::StepMetrics> steps;
  void OnStep(const engine::StepMetrics& m) override { steps.push_back(m); }
};

engine::JobSpec CheckSpec(const TrainStepCheckOptions& o) {
  engine::JobSpec spec;
  spec.name = "gpu-check";
  spec.model = "in-memory tiny model";
  spec.data.train = "in-memory counting task";
  spec.data.format = "lm";
  spec.method = engine::TrainingMethod::kD2Lora;
  spec.adapter.method = engine::AdapterMethod::kD2Lora;
  spec.adapter.r = 4;
  spec.adapter.alpha = 8;
  spec.adapter.target_modules = {"all-linear"};
  spec.adapter.seed = kSeed;
  spec.train.epochs = 0;
  spec.train.max_steps = o.steps;
  spec.train.batch_size = 8;
  spec.train.micro_batch_size = 4;
  spec.train.lr = 1e-2;
  spec.train.warmup_steps = 2;
  spec.train.schedule = engine::LrSchedule::kConstant;
  spec.train.checkpoint_every = 0;
  spec.train.seed = kSeed;
  spec.train.dtype = o.dtype == torch::kBFloat16 ? engine::ComputeDtype::kBf16 : engine::ComputeDtype::kFp32;
  spec.eval.every = 0;
  spec.metrics.volatility_window = 10;
  spec.resources.world_size = 1;
  spec.resources.device = o.device.is_cuda() ? engine::DeviceKind::kCuda : engine::DeviceKind::kCpu;
  return spec;
}

// A one-rank group of the backend the device trains with; *note says when the
// CPU had to fall back to the threads group.
absl::StatusOr<std::unique_ptr<ProcessGroup>> CreateGroup(const TrainStepCheckOptions& o, std::string* note) {
  engine::DistributedOptions dist;
  dist.rank = 0;
  dist.world_size = 1;
  dist.local_rank = o.device.is_cuda() && o.device.has_index() ? o.device.index() : 0;
  dist.master_addr = "127.0.0.1";
  dist.master_port = o.master_port > 0 ? o.master_port : FreeLoopbackPort();
  dist.timeout = std::chrono::seconds(60);
  if (dist.master_port <= 0) return absl::UnavailableError("no free loopback port for the rendezvous");
  if (o.device.is_cuda()) return engine::CreateNcclProcessGroup(dist);
  absl::StatusOr<std::unique_ptr<engine::GlooProcessGroup>> gloo = engine::GlooProcessGroup::Create(dist);
  if (gloo.ok()) return std::unique_ptr<ProcessGroup>(std::move(*gloo));
  if (gloo.status().code() != absl::StatusCode::kUnimplemented) return gloo.status();
  *note = absl::StrCat("Gloo unavailable (", gloo.status().message(), "); used the threads group");
  return engine::CreateSingleProcessGroup();
}

// One forward and backward on a fresh batch; the gradients flattened to one
// fp32 bucket on the group's device, as the trainer lays them out.
torch::Tensor GradientBucket(engine::CausalLMImpl& model, const std::vector<engine::TrainableParameter>& params,
                             int64_t vocab, const torch::Device& model_device, const torch::Device& group_device) {
  for (const auto& p : params) p.param.mutable_grad() = torch::Tensor();
  torch::manual_seed(kSeed + 1);
  torch::Tensor ids = torch::randint(3, vocab, {4, 16}, torch::TensorOptions().dtype(torch::kInt64)).to(model_device);
  model.train();
  torch::Tensor logits = model.forward(ids);
  const int64_t t = logits.size(1), v = logits.size(2);
  torch::Tensor loss = torch::nn::functional::cross_entropy(
      logits.slice(1, 0, t - 1).reshape({-1, v}).to(torch::kFloat32), ids.slice(1, 1, t).reshape({-1}));
  loss.backward();
  std::vector<torch::Tensor> pieces;
  for (const auto& p : params) {
    pieces.push_back(p.param.grad().defined()
                         ? p.param.grad().to(torch::kFloat32).reshape({-1})
                         : torch::zeros({p.param.numel()}, p.param.options().dtype(torch::kFloat32)));
  }
  for (const auto& p : params) p.param.mutable_grad() = torch::Tensor();
  return torch::cat(pieces).to(group_device).contiguous();
}

}  // namespace

absl::StatusOr<nlohmann::json> RunTrainStepCheck(const TrainStepCheckOptions& o) {
  nlohmann::json out;
  std::vector<std::string> failures;
  std::string note;
  D2_ASSIGN_OR_RETURN(std::unique_ptr<ProcessGroup> group, CreateGroup(o, &note));
  out["backend"] = group->backend();
  out["group_device"] = group->device().str();
  out["world_size"] = group->world_size();
  if (!note.empty()) out["note"] = note;

  D2_ASSIGN_OR_RETURN(const engine::ValidJobSpec valid, engine::ValidJobSpec::Check(CheckSpec(o)));
  const engine::JobSpec& spec = valid;
  TinyShape shape;
  D2_ASSIGN_OR_RETURN(model::ModelConfig config, TinyConfig(shape));
  D2_ASSIGN_OR_RETURN(engine::CausalLM model, RandomModel(config, o.dtype, kSeed));
  D2_ASSIGN_OR_RETURN(engine::InjectionReport report, engine::InjectAdapters(*model, spec.adapter));
  D2_RETURN_IF_ERROR(engine::GuardTorch("moving the model to " + o.device.str(), [&]() -> absl::Status {
    model->to(o.device);
    return absl::OkStatus();
  }));
  out["adapted_layers"] = report.adapted.size();
  out["trainable_parameters"] = report.parameters.trainable;

  std::map<std::string, torch::Tensor> before;
  for (const auto& p : engine::CollectTrainableParameters(*model)) before[p.name] = p.param.detach().clone();

  engine::ValidationSet validation;
  validation.examples = CountingExamples(8, 16, shape.vocab, kSeed + 2);
  engine::ValidationOptions vo;
  vo.batch_size = 4;
  D2_ASSIGN_OR_RETURN(engine::ValidationResult initial, engine::Validate(*model, validation, vo, *group, 0, false));

  StepRecorder recorder;
  engine::TrainerOptions to;
  to.pad_id = 0;
  to.validation = vo;
  to.fingerprint = {{"check", "gpu_checks"}};
  to.callbacks = {&recorder};
  auto train = std::make_shared<const std::vector<engine::Example>>(CountingExamples(64, 16, shape.vocab, kSeed));
  D2_ASSIGN_OR_RETURN(std::unique_ptr<engine::Trainer> trainer,
                      engine::Trainer::Create(model, train, validation, valid, std::move(to), group.get()));
  const auto start = std::chrono::steady_clock::now();
  D2_ASSIGN_OR_RETURN(engine::TrainResult result, trainer->Run());
  out["train_seconds"] = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();

  // Every step ran, with a finite loss.
  out["steps"] = result.steps;
  out["skipped_steps"] = result.skipped_steps;
  if (result.steps != o.steps) failures.push_back(absl::StrCat("ran ", result.steps, " of ", o.steps, " steps"));
  if (result.skipped_steps != 0) {
    failures.push_back(absl::StrCat(result.skipped_steps, " step(s) skipped as non-finite"));
  }
  std::vector<double> losses;
  bool finite = !recorder.steps.empty();
  double tokens_per_second = 0;
  for (const auto& m : recorder.steps) {
    losses.push_back(m.loss);
    finite = finite && std::isfinite(m.loss) && std::isfinite(m.grad_norm);
    tokens_per_second = m.tokens_per_second;
  }
  out["losses"] = losses;
  out["tokens_per_second_last_step"] = tokens_per_second;
  if (!finite) failures.push_back("a step's loss or gradient norm is not finite (or no step was reported)");
  const double nan = std::nan("");
  const double loss0 = initial.metrics.loss.value_or(nan);
  const double loss1 = result.final_eval ? result.final_eval->metrics.loss.value_or(nan) : nan;
  out["validation_loss_before"] = std::isfinite(loss0) ? nlohmann::json(loss0) : nlohmann::json(nullptr);
  out["validation_loss_after"] = std::isfinite(loss1) ? nlohmann::json(loss1) : nlohmann::json(nullptr);
  if (!std::isfinite(loss0) || !std::isfinite(loss1)) {
    failures.push_back("no finite validation loss before and after training");
  } else if (!(loss1 < loss0)) {
    // Twenty steps at lr 1e-2 learn much of the counting task (the trainer
    // tests need 30 to cut the loss by 10%); no drop at all means the
    // gradients do not reach the adapter.
    failures.push_back(absl::StrCat("validation loss did not fall: ", loss0, " -> ", loss1));
  }

  // The adapter moved: B+ and B- start at zero. tau is fixed (the paper's
  // form, the default): no tau parameter may exist, and a learnable one must move.
  double max_change = 0;
  int64_t changed = 0, b_nonzero = 0, b_total = 0, tau_changed = 0, tau_total = 0;
  for (const auto& p : trainer->parameters()) {
    const double d = MaxAbsDiff(p.param.detach(), before.at(p.name));
    max_change = std::max(max_change, d);
    if (d > 0) ++changed;
    const bool is_b = absl::EndsWith(p.name, ".lora_B") || absl::EndsWith(p.name, ".lora_B_neg");
    if (is_b) {
      ++b_total;
      if (p.param.detach().abs().max().item<double>() > 0) ++b_nonzero;
    }
    if (absl::EndsWith(p.name, ".tau_raw")) {
      ++tau_total;
      if (d > 0) ++tau_changed;
    }
  }
  out["adapter"] = {{"parameters", trainer->parameters().size()}, {"changed", changed},
                    {"max_abs_change", max_change}, {"b_matrices_nonzero", b_nonzero}, {"b_matrices", b_total},
                    {"tau_changed", tau_changed}, {"tau", tau_total}};
  if (b_total == 0 || b_nonzero != b_total) {
    failures.push_back(absl::StrCat(b_nonzero, " of ", b_total, " B matrices left the zero init"));
  }
  if (spec.adapter.tau_learnable ? (tau_total == 0 || tau_changed != tau_total) : tau_total != 0) {
    failures.push_back(absl::StrCat(tau_changed, " of ", tau_total, " tau values changed (tau_learnable: ",
                                    spec.adapter.tau_learnable ? "true" : "false", ")"));
  }

  // The collectives on a real gradient bucket.
  D2_ASSIGN_OR_RETURN(torch::Tensor bucket,
                      engine::GuardTorch("building a gradient bucket", [&]() -> absl::StatusOr<torch::Tensor> {
                        return GradientBucket(*model, trainer->parameters(), shape.vocab, o.device, group->device());
                      }));
  const torch::Tensor original = bucket.clone();
  D2_RETURN_IF_ERROR(group->AllReduceSum(bucket));
  const double allreduce_diff = MaxAbsDiff(bucket, original);
  D2_RETURN_IF_ERROR(group->Broadcast(bucket, 0));
  const double broadcast_diff = MaxAbsDiff(bucket, original);
  D2_RETURN_IF_ERROR(group->Barrier());
  const double bucket_norm = original.norm().item<double>();
  out["collectives"] = {{"bucket_numel", original.numel()}, {"bucket_norm", bucket_norm},
                        {"allreduce_max_abs_change", allreduce_diff}, {"broadcast_max_abs_change", broadcast_diff}};
  if (!(bucket_norm > 0) || !std::isfinite(bucket_norm)) {
    failures.push_back("the gradient bucket is zero or not finite");
  }
  if (allreduce_diff != 0) {
    failures.push_back(absl::StrCat("AllReduceSum over one rank changed the bucket by ", allreduce_diff));
  }
  if (broadcast_diff != 0) {
    failures.push_back(absl::StrCat("Broadcast from rank 0 changed the bucket by ", broadcast_diff));
  }

  out["passed"] = failures.empty();
  if (!failures.empty()) out["failures"] = failures;
  return out;
}

}  // namespace d2lora::gpucheck
