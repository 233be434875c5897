#include <torch/torch.h>

#include "worker/engine/train/trainer.h"

#include <chrono>
#include <cmath>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "common/status_macros.h"
#include "common/trainer/error_file.h"
#include "worker/engine/adapters/adapted_linear_d2lora.h"
#include "worker/engine/adapters/inject.h"
#include "worker/engine/adapters/linear.h"
#include "worker/engine/distributed/agree.h"
#include "worker/engine/torch_guard.h"
#include "worker/engine/train/lr_schedule.h"
#include "worker/engine/train/training_checkpoint.h"

namespace d2lora::engine {
namespace {

using Clock = std::chrono::steady_clock;

double Seconds(Clock::time_point since) { return std::chrono::duration<double>(Clock::now() - since).count(); }

// Dropout seed of (seed, rank, step): SplitMix64 over the three.
uint64_t StepSeed(uint64_t seed, int64_t rank, int64_t step) {
  uint64_t z = seed ^ (static_cast<uint64_t>(rank) * 0x9e3779b97f4a7c15ull) ^
               (static_cast<uint64_t>(step) * 0xbf58476d1ce4e5b9ull);
  z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
  z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
  return z ^ (z >> 31);
}

int64_t TotalSteps(const TrainSpec& t, int64_t steps_per_epoch) {
  return t.max_steps > 0 ? t.max_steps : t.epochs * steps_per_epoch;
}

std::string Shape(const torch::Tensor& t) { return absl::StrCat("[", absl::StrJoin(t.sizes(), ", "), "]"); }

}  // namespace

template <typename Fn>
void Trainer::Notify(Fn&& fn) {
  if (group_->rank() != 0) return;
  for (TrainingCallback* cb : options_.callbacks) fn(*cb);
}

Trainer::Trainer(CausalLM model, DataLoader loader, ValidationSet validation, const JobSpec& spec,
                 TrainerOptions options, ProcessGroup* group, std::vector<TrainableParameter> params)
    : model_(std::move(model)),
      loader_(std::move(loader)),
      validation_(std::move(validation)),
      spec_(spec),
      options_(std::move(options)),
      group_(group),
      optimizer_(std::move(params), AdamWOptions{0.9, 0.999, 1e-8, spec_.train.weight_decay}),
      volatility_(spec_.metrics.volatility_window),
      guard_(spec_.guard, spec_.train.max_nonfinite_steps),
      device_(torch::kCPU) {}

absl::StatusOr<std::unique_ptr<Trainer>> Trainer::Create(CausalLM model,
                                                         std::shared_ptr<const std::vector<Example>> train,
                                                         ValidationSet validation, const ValidJobSpec& valid,
                                                         TrainerOptions options, ProcessGroup* group) {
  if (group == nullptr) return absl::InvalidArgumentError("trainer: no process group");
  const JobSpec& spec = valid;
  if (group->world_size() != spec.resources.world_size) {
    return absl::InvalidArgumentError(absl::StrCat("resources.world_size = ", spec.resources.world_size,
                                                   " but the process group has ", group->world_size(), " ranks"));
  }
  BatchingOptions batching;
  batching.batch_size = spec.train.batch_size;
  batching.micro_batch_size = spec.train.micro_batch_size;
  batching.world_size = spec.resources.world_size;
  batching.seed = spec.train.seed;
  D2_ASSIGN_OR_RETURN(DataLoader loader, DataLoader::Create(std::move(train), batching, group->rank(), options.pad_id));
  std::vector<TrainableParameter> params = CollectTrainableParameters(*model);
  if (params.empty()) return absl::InvalidArgumentError("trainer: the model has no trainable parameters");
  for (const TrainableParameter& p : params) {
    if (p.param.scalar_type() != torch::kFloat32 && p.param.scalar_type() != torch::kBFloat16 &&
        p.param.scalar_type() != torch::kFloat64) {
      return absl::InvalidArgumentError(absl::StrCat("trainable parameter ", p.name, " has dtype ",
                                                     c10::toString(p.param.scalar_type()),
                                                     " (expected float32, float64 or bfloat16)"));
    }
  }
  std::unique_ptr<Trainer> t(new Trainer(std::move(model), std::move(loader), std::move(validation), spec,
                                         std::move(options), group, std::move(params)));
  t->device_ = t->optimizer_.parameters().front().param.device();
  if (group->world_size() > 1 && group->device().type() != t->device_.type()) {
    return absl::InvalidArgumentError(absl::StrCat("the model is on ", t->device_.str(), " but the ", group->backend(),
                                                   " process group works on ", group->device().str()));
  }
  t->total_steps_ = TotalSteps(spec.train, t->loader_.steps_per_epoch());
  t->model_->set_gradient_checkpointing(spec.train.activation_checkpointing);
  for (auto& [path, linear] : LinearLayers(*t->model_)) {
    if (auto d2 = std::dynamic_pointer_cast<D2LoraLinearImpl>(linear->adapter())) t->d2lora_layers_.push_back(d2);
  }
  D2_RETURN_IF_ERROR(t->BroadcastParameters());
  return t;
}

absl::Status Trainer::BroadcastParameters() {
  if (group_->world_size() == 1) return absl::OkStatus();
  return GuardTorch("broadcasting the initial parameters", [&]() -> absl::Status {
    torch::NoGradGuard no_grad;
    std::vector<torch::Tensor> flat;
    for (const TrainableParameter& p : optimizer_.parameters()) flat.push_back(p.param.detach().to(torch::kFloat64).reshape(-1));
    torch::Tensor bucket = torch::cat(flat);
    D2_RETURN_IF_ERROR(group_->Broadcast(bucket, 0));
    int64_t offset = 0;
    for (const TrainableParameter& p : optimizer_.parameters()) {
      const int64_t n = p.param.numel();
      p.param.copy_(bucket.narrow(0, offset, n).view(p.param.sizes()));
      offset += n;
    }
    return absl::OkStatus();
  });
}

absl::Status Trainer::Resume(const std::string& checkpoint_dir) {
  D2_ASSIGN_OR_RETURN(TrainingState state, ReadTrainingCheckpoint(checkpoint_dir));
  absl::Status fp = CheckFingerprint(state.fingerprint, options_.fingerprint);
  if (!fp.ok()) return absl::FailedPreconditionError(absl::StrCat("cannot resume from ", checkpoint_dir, ": ", fp.message()));
  if (state.step > total_steps_) {
    return absl::FailedPreconditionError(absl::StrCat("cannot resume from ", checkpoint_dir, ": it is at step ",
                                                      state.step, ", past this run's ", total_steps_, " steps"));
  }
  const std::string where = absl::StrCat(checkpoint_dir, "/", kParametersFile);
  std::map<std::string, torch::Tensor> by_name(state.parameters.begin(), state.parameters.end());
  const auto& params = optimizer_.parameters();
  if (by_name.size() != params.size()) {
    return absl::FailedPreconditionError(absl::StrCat(where, ": ", by_name.size(), " tensors, the model has ",
                                                      params.size(), " trainable parameters"));
  }
  for (const TrainableParameter& p : params) {
    auto it = by_name.find(p.name);
    if (it == by_name.end()) return absl::FailedPreconditionError(absl::StrCat(where, ": no tensor ", p.name));
    if (it->second.sizes() != p.param.sizes()) {
      return absl::FailedPreconditionError(absl::StrCat(where, ": ", p.name, " has shape ", Shape(it->second),
                                                        ", the model's is ", Shape(p.param)));
    }
  }
  D2_RETURN_IF_ERROR(RestoreState(state, checkpoint_dir));
  start_step_ = state.step;
  prior_seconds_ = state.elapsed_seconds;
  last_checkpoint_ = checkpoint_dir;
  return absl::OkStatus();
}

TrainingState Trainer::CaptureState(bool clone) const {
  auto copy = [&](const torch::Tensor& t) { return clone ? t.detach().clone() : t.detach(); };
  TrainingState s;
  s.step = step_;
  s.cursor = loader_.cursor();
  s.optimizer_steps = optimizer_.steps();
  for (const TrainableParameter& p : optimizer_.parameters()) s.parameters.emplace_back(p.name, copy(p.param));
  for (auto& [name, t] : optimizer_.StateTensors()) s.optimizer.emplace_back(name, copy(t));
  s.volatility = volatility_.ToJson();
  if (guard_.enabled() || guard_.state().rollbacks > 0) s.guard = GuardStateToJson(guard_.state());
  s.nonfinite_streak = nonfinite_streak_;
  s.skipped_steps = skipped_steps_;
  s.elapsed_seconds = prior_seconds_ + session_seconds_;
  s.fingerprint = options_.fingerprint;
  s.metrics = trainer::ToJson(trainer::CheckpointMetrics{last_metrics_, last_eval_});
  return s;
}

absl::Status Trainer::RestoreState(const TrainingState& state, const std::string& from_dir) {
  std::map<std::string, torch::Tensor> by_name(state.parameters.begin(), state.parameters.end());
  std::map<std::string, torch::Tensor> optim(state.optimizer.begin(), state.optimizer.end());
  absl::Status os = optimizer_.LoadState(optim, state.optimizer_steps);
  if (!os.ok()) return absl::FailedPreconditionError(absl::StrCat(from_dir, "/", kOptimizerFile, ": ", os.message()));
  const std::string state_file = absl::StrCat(from_dir, "/", kTrainerStateFile);
  auto tracker = VolatilityTracker::FromJson(state.volatility);
  if (!tracker.ok()) return absl::DataLossError(absl::StrCat(state_file, ": volatility: ", tracker.status().message()));
  if (!from_dir.empty()) {
    const trainer::CheckpointMetrics m = trainer::CheckpointMetricsFromJson(state.metrics);
    last_metrics_ = m.train;
    last_eval_ = m.eval;
  }
  if (!from_dir.empty() && !state.guard.is_null()) {
    D2_ASSIGN_OR_RETURN(GuardState g, GuardStateFromJson(state.guard, state_file));
    guard_.Restore(std::move(g));
  }
  D2_RETURN_IF_ERROR(loader_.Seek(state.cursor));
  D2_RETURN_IF_ERROR(GuardTorch("restoring parameters", [&]() -> absl::Status {
    torch::NoGradGuard no_grad;
    for (const TrainableParameter& p : optimizer_.parameters()) p.param.copy_(by_name.at(p.name));
    return absl::OkStatus();
  }));
  volatility_ = std::move(*tracker);
  step_ = state.step;
  nonfinite_streak_ = state.nonfinite_streak;
  skipped_steps_ = state.skipped_steps;
  return absl::OkStatus();
}

absl::Status Trainer::RollBack(const StepMetrics& m, const std::string& reason) {
  D2_RETURN_IF_ERROR(guard_.Record(last_batch_, reason));
  if (!snapshot_.has_value()) return absl::InternalError("training guard: no in-memory checkpoint to roll back to");
  D2_RETURN_IF_ERROR(RestoreState(*snapshot_, /*from_dir=*/""));
  RollbackInfo info;
  info.step = m.step;
  info.restored_step = step_;
  info.reason = reason;
  info.rollbacks = guard_.state().rollbacks;
  info.max_rollbacks = spec_.guard.max_rollbacks;
  info.lr_scale = guard_.lr_scale();
  info.first_skipped_batch = last_batch_;
  info.last_skipped_batch = last_batch_ + spec_.guard.skip_batches;
  Notify([&](TrainingCallback& cb) { cb.OnRollback(info); });
  return absl::OkStatus();
}

std::optional<TauStats> Trainer::CollectTau() {
  std::vector<double> taus;
  for (const auto& d2 : d2lora_layers_) taus.push_back(d2->tau().item<double>());
  if (taus.empty()) return std::nullopt;
  TauStats s;
  s.min = *std::min_element(taus.begin(), taus.end());
  s.max = *std::max_element(taus.begin(), taus.end());
  double sum = 0;
  for (double t : taus) sum += t;
  s.mean = sum / static_cast<double>(taus.size());
  return s;
}

absl::StatusOr<StepMetrics> Trainer::TrainStep(bool* stop_requested, std::optional<std::string>* rollback) {
  const auto start = Clock::now();
  const JobSpec& spec = spec_;
  const int64_t steps_per_epoch = loader_.steps_per_epoch();
  while (guard_.Skips(CursorToGlobalStep(loader_.cursor(), steps_per_epoch))) {
    D2_RETURN_IF_ERROR(loader_.Seek(NextCursor(loader_.cursor(), steps_per_epoch)));
  }
  const DataCursor cursor = loader_.cursor();
  last_batch_ = CursorToGlobalStep(cursor, steps_per_epoch);
  StepBatches step = loader_.Next();
  torch::manual_seed(StepSeed(spec.train.seed, group_->rank(), step_));
  model_->train();
  const auto& params = optimizer_.parameters();
  for (const TrainableParameter& p : params) p.param.mutable_grad() = torch::Tensor();

  double loss_sum = 0;
  int64_t tokens = 0;
  for (const Batch& b : step.micro_batches) {
    torch::Tensor ids = b.input_ids.to(device_), mask = b.attention_mask.to(device_), labels = b.labels.to(device_);
    torch::Tensor logits = model_->forward(ids, mask);
    const int64_t t = logits.size(1), v = logits.size(2);
    torch::Tensor loss = torch::nn::functional::cross_entropy(
        logits.slice(1, 0, t - 1).reshape({-1, v}).to(torch::kFloat32), labels.slice(1, 1, t).reshape({-1}),
        torch::nn::functional::CrossEntropyFuncOptions().ignore_index(kIgnoreIndex).reduction(torch::kSum));
    (loss / static_cast<double>(step.global_targets)).backward();
    loss_sum += loss.item<double>();
    tokens += b.num_tokens;
  }

  const double compute_seconds = Seconds(start);

  // One bucket: every gradient, then [loss sum, tokens, stop].
  std::vector<torch::Tensor> pieces;
  int64_t grad_numel = 0;
  for (const TrainableParameter& p : params) {
    pieces.push_back(p.param.grad().defined() ? p.param.grad().to(torch::kFloat32).reshape({-1})
                                              : torch::zeros({p.param.numel()}, p.param.options().dtype(torch::kFloat32)));
    grad_numel += p.param.numel();
  }
  const bool stop_here = options_.stop != nullptr && options_.stop->load();
  pieces.push_back(torch::tensor({static_cast<float>(loss_sum), static_cast<float>(tokens), stop_here ? 1.0f : 0.0f},
                                 torch::TensorOptions().dtype(torch::kFloat32)).to(device_));
  torch::Tensor bucket = torch::cat(pieces);
  double allreduce_seconds = 0;
  if (group_->world_size() > 1) {
    const auto reduce_start = Clock::now();
    D2_RETURN_IF_ERROR(group_->AllReduceSum(bucket));
    allreduce_seconds = Seconds(reduce_start);
  }
  torch::Tensor stats = bucket.narrow(0, grad_numel, 3).to(torch::kCPU, torch::kFloat64);
  auto acc = stats.accessor<double, 1>();
  *stop_requested = acc[2] > 0;

  StepMetrics m;
  m.step = step_ + 1;
  m.total_steps = total_steps_;
  m.epoch = cursor.epoch;
  m.loss = acc[0] / static_cast<double>(step.global_targets);
  m.tokens = static_cast<int64_t>(std::llround(acc[1]));
  torch::Tensor grads = bucket.narrow(0, 0, grad_numel);
  m.grad_norm = grads.norm().item<double>();
  m.lr = LearningRateAt(spec.train.lr, spec.train.schedule, spec.train.warmup_steps, total_steps_, step_) *
         guard_.lr_scale();
  m.rollbacks = guard_.state().rollbacks;

  const bool finite = std::isfinite(m.loss) && std::isfinite(m.grad_norm);
  *rollback = guard_.Check(m.step, m.loss, finite, volatility_.stats().loss_ema, finite ? 0 : nonfinite_streak_ + 1);
  if (rollback->has_value()) {
    for (const TrainableParameter& p : params) p.param.mutable_grad() = torch::Tensor();
    return m;
  }
  if (!finite) {
    m.skipped = true;
    ++skipped_steps_;
    if (++nonfinite_streak_ > spec.train.max_nonfinite_steps) {
      return trainer::WithReason(
          absl::FailedPreconditionError(absl::StrCat(
              "training diverged: non-finite ", std::isfinite(m.loss) ? "gradients" : "loss", " at step ", m.step,
              ", ", nonfinite_streak_, " step(s) in a row (train.max_nonfinite_steps = ",
              spec.train.max_nonfinite_steps, "); lower train.lr, or clip harder with a smaller train.grad_clip")),
          trainer::FailureReason::kDiverged);
    }
  } else {
    nonfinite_streak_ = 0;
    if (spec.train.grad_clip > 0 && m.grad_norm > spec.train.grad_clip) {
      grads.mul_(spec.train.grad_clip / (m.grad_norm + 1e-6));
    }
    int64_t offset = 0;
    for (const TrainableParameter& p : params) {
      const int64_t n = p.param.numel();
      p.param.mutable_grad() = grads.narrow(0, offset, n).view(p.param.sizes()).to(p.param.scalar_type());
      offset += n;
    }
    optimizer_.Step(m.lr);
  }
  for (const TrainableParameter& p : params) p.param.mutable_grad() = torch::Tensor();
  ++step_;

  m.volatility = m.skipped ? volatility_.Add(NAN) : volatility_.Add(m.loss);
  m.tau = CollectTau();
  m.step_seconds = Seconds(start);
  m.compute_seconds = compute_seconds;
  m.allreduce_seconds = allreduce_seconds;
  session_seconds_ += m.step_seconds;
  ++session_steps_;
  m.tokens_per_second = m.step_seconds > 0 ? static_cast<double>(m.tokens) / m.step_seconds : 0;
  m.elapsed_seconds = prior_seconds_ + session_seconds_;
  m.eta_seconds = session_seconds_ / static_cast<double>(session_steps_) * static_cast<double>(total_steps_ - step_);
  return m;
}

absl::Status Trainer::WriteCheckpoint() {
  if (options_.checkpoints_dir.empty()) return absl::OkStatus();
  const std::string dir = CheckpointPath(options_.checkpoints_dir, step_);
  absl::Status status = absl::OkStatus();
  if (group_->rank() == 0) {
    status = GuardTorch("writing checkpoint " + dir, [&]() -> absl::Status {
      D2_RETURN_IF_ERROR(WriteTrainingCheckpoint(dir, CaptureState(/*clone=*/false), options_.write_checkpoint_extra));
      return PruneCheckpoints(options_.checkpoints_dir, spec_.train.keep_checkpoints);
    });
  }
  D2_RETURN_IF_ERROR(AgreeAcrossRanks(*group_, status, "writing checkpoint " + dir));
  last_checkpoint_ = dir;
  CheckpointInfo info{step_, dir};
  Notify([&](TrainingCallback& cb) { cb.OnCheckpoint(info); });
  return absl::OkStatus();
}

absl::StatusOr<ValidationResult> Trainer::RunValidation(bool final) {
  D2_ASSIGN_OR_RETURN(ValidationResult r,
                      Validate(*model_, validation_, options_.validation, *group_, step_, final));
  last_eval_ = r.metrics;
  Notify([&](TrainingCallback& cb) { cb.OnEval(r.metrics); });
  return r;
}

absl::StatusOr<TrainResult> Trainer::Run() {
  int64_t at_step = step_;
  absl::StatusOr<TrainResult> result = RunSteps(&at_step);
  if (!result.ok()) return trainer::WithStep(result.status(), at_step);
  return result;
}

absl::StatusOr<TrainResult> Trainer::RunSteps(int64_t* at_step) {
  const JobSpec& spec = spec_;
  RunInfo info = options_.run_info;
  info.total_steps = total_steps_;
  info.start_step = step_;
  info.steps_per_epoch = loader_.steps_per_epoch();
  info.world_size = group_->world_size();
  Notify([&](TrainingCallback& cb) { cb.OnStart(info); });

  TrainResult result;
  result.total_steps = total_steps_;
  auto take_snapshot = [&]() -> absl::Status {
    if (!guard_.enabled()) return absl::OkStatus();
    return GuardTorch("keeping the guard's in-memory checkpoint", [&]() -> absl::Status {
      snapshot_ = CaptureState(/*clone=*/true);
      return absl::OkStatus();
    });
  };
  D2_RETURN_IF_ERROR(take_snapshot());
  while (step_ < total_steps_) {
    *at_step = step_ + 1;
    bool stop = false;
    std::optional<std::string> rollback;
    D2_ASSIGN_OR_RETURN(StepMetrics m, GuardTorch(absl::StrCat("training step ", step_ + 1),
                                                  [&]() { return TrainStep(&stop, &rollback); }));
    if (rollback.has_value()) {
      D2_RETURN_IF_ERROR(RollBack(m, *rollback));
      continue;
    }
    result.last_step = m;
    last_metrics_ = m;
    const bool last = step_ == total_steps_;
    if (step_ % spec.metrics.log_every == 0 || last || stop) Notify([&](TrainingCallback& cb) { cb.OnStep(m); });
    if (stop) {
      D2_RETURN_IF_ERROR(WriteCheckpoint());
      result.stopped = true;
      break;
    }
    // Validation first, so that a checkpoint at the same step records its figures.
    if (!last && spec.eval.every > 0 && step_ % spec.eval.every == 0 && !validation_.empty()) {
      D2_RETURN_IF_ERROR(RunValidation(/*final=*/false).status());
    }
    if (!last && spec.train.checkpoint_every > 0 && step_ % spec.train.checkpoint_every == 0) {
      D2_RETURN_IF_ERROR(WriteCheckpoint());
      D2_RETURN_IF_ERROR(take_snapshot());
    }
  }
  *at_step = step_;
  if (!result.stopped) {
    if (last_checkpoint_ != CheckpointPath(options_.checkpoints_dir, step_)) D2_RETURN_IF_ERROR(WriteCheckpoint());
    if (!validation_.empty()) {
      D2_ASSIGN_OR_RETURN(ValidationResult r, RunValidation(/*final=*/true));
      result.final_eval = std::move(r);
    }
  }
  result.steps = step_;
  result.skipped_steps = skipped_steps_;
  result.rollbacks = guard_.state().rollbacks;
  result.train_seconds = prior_seconds_ + session_seconds_;
  result.run_volatility = volatility_.run();
  result.last_checkpoint = last_checkpoint_;
  return result;
}

}  // namespace d2lora::engine
