#include "worker/engine/tasks/merge_report.h"

#include "common/trainer/error_file.h"

#include <torch/torch.h>

#include <algorithm>
#include <cmath>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "common/file_util.h"
#include "worker/engine/adapters/adapted_linear.h"
#include "worker/engine/adapters/inject.h"
#include "worker/engine/adapters/linear.h"

namespace d2lora::engine {

MergeThresholds ThresholdsFor(c10::ScalarType dtype, const MergeThresholds& given) {
  MergeThresholds d;
  d.max_row_norm_deviation = 1e-4;
  switch (dtype) {
    case c10::ScalarType::BFloat16:
      d.max_cast_error = std::ldexp(1.0, -7);
      d.max_logit_diff = 0.5;
      d.max_kl = 1e-2;
      d.max_accuracy_gap_pp = 3.0;
      break;
    case c10::ScalarType::Half:
      d.max_cast_error = std::ldexp(1.0, -10);
      d.max_logit_diff = 0.1;
      d.max_kl = 1e-3;
      d.max_accuracy_gap_pp = 2.0;
      break;
    default:
      d.max_cast_error = 1e-6;
      d.max_logit_diff = 1e-3;
      d.max_kl = 1e-6;
      d.max_accuracy_gap_pp = 0.5;
      break;
  }
  auto pick = [](double g, double def) { return g > 0 ? g : def; };
  return {pick(given.max_row_norm_deviation, d.max_row_norm_deviation), pick(given.max_cast_error, d.max_cast_error),
          pick(given.max_logit_diff, d.max_logit_diff), pick(given.max_kl, d.max_kl),
          pick(given.max_accuracy_gap_pp, d.max_accuracy_gap_pp)};
}

std::vector<LayerMergeFigures> MergeAdaptersMeasured(torch::nn::Module& root, c10::ScalarType checkpoint_dtype) {
  torch::NoGradGuard no_grad;
  std::vector<LayerMergeFigures> out;
  for (auto& [path, linear] : LinearLayers(root)) {
    if (!linear->adapter()) continue;
    const MergedWeight merged = linear->merge_adapter();
    const torch::Tensor& w = merged.weight;
    torch::Tensor cast = w.to(checkpoint_dtype).to(w.scalar_type());
    LayerMergeFigures f;
    f.layer = path;
    f.row_norm_deviation = merged.row_norm_deviation;
    f.nonfinite = (~torch::isfinite(cast)).sum().item<int64_t>();
    const double norm = w.norm().item<double>();
    f.cast_error = norm > 0 ? (cast - w).norm().item<double>() / norm : 0.0;
    out.push_back(std::move(f));
  }
  return out;
}

LogitAgreement CompareLogits(const at::Tensor& training_form, const at::Tensor& merged, const at::Tensor& mask) {
  torch::NoGradGuard no_grad;
  const int64_t vocab = training_form.size(-1);
  const torch::Tensor keep = mask.reshape({-1}).to(torch::kBool);
  const torch::Tensor all_p = training_form.reshape({-1, vocab});
  const torch::Tensor all_q = merged.reshape({-1, vocab});
  LogitAgreement a;
  a.sequences = training_form.size(0);
  // In fp64 a few positions at a time: the whole [positions, vocab] in fp64,
  // with its log-softmaxes, was the largest thing a run held (7 copies of
  // 8 x 512 x 4,096 on the small preset: more than its training step).
  constexpr int64_t kRows = 256;
  double kl_sum = 0;
  for (int64_t start = 0; start < all_p.size(0); start += kRows) {
    const int64_t n = std::min(kRows, all_p.size(0) - start);
    const torch::Tensor k = keep.narrow(0, start, n);
    torch::Tensor p = all_p.narrow(0, start, n).index({k}).to(torch::kFloat64);
    if (p.size(0) == 0) continue;
    torch::Tensor q = all_q.narrow(0, start, n).index({k}).to(torch::kFloat64);
    a.positions += p.size(0);
    a.max_abs_diff = std::max(a.max_abs_diff, (p - q).abs().max().item<double>());
    torch::Tensor log_p = torch::log_softmax(p, -1);
    torch::Tensor log_q = torch::log_softmax(q, -1);
    kl_sum += (log_p.exp() * (log_p - log_q)).sum().item<double>();
  }
  if (a.positions > 0) a.mean_kl = kl_sum / static_cast<double>(a.positions);
  return a;
}

void RoundTripToDtype(torch::nn::Module& root, c10::ScalarType dtype) {
  torch::NoGradGuard no_grad;
  auto round = [dtype](torch::Tensor& t) {
    if (t.defined() && t.is_floating_point() && t.scalar_type() != dtype) t.copy_(t.to(dtype));
  };
  for (torch::Tensor& p : root.parameters()) round(p);
  for (torch::Tensor& b : root.buffers()) round(b);
}

void Judge(MergeReport* r) {
  r->breaches.clear();
  const MergeThresholds& t = r->thresholds;
  auto over = [r](const std::string& where, const char* figure, double value, double limit) {
    if (!(value <= limit)) {  // NaN breaches too
      r->breaches.push_back(absl::StrCat(where, ": ", figure, " ", value, " > ", limit));
    }
  };
  for (const LayerMergeFigures& f : r->layers) {
    if (f.nonfinite > 0) {
      r->breaches.push_back(absl::StrCat(f.layer, ": ", f.nonfinite, " non-finite weights in ", r->merged_dtype));
    }
    if (f.row_norm_deviation >= 0 || std::isnan(f.row_norm_deviation)) {
      over(f.layer, "row_norm_deviation", f.row_norm_deviation, t.max_row_norm_deviation);
    }
    over(f.layer, "cast_error", f.cast_error, t.max_cast_error);
  }
  if (r->logits && r->logits->positions > 0) {
    over("logits", "max_abs_diff", r->logits->max_abs_diff, t.max_logit_diff);
    over("logits", "mean_kl", r->logits->mean_kl, t.max_kl);
  }
  if (r->accuracy_training_form && r->accuracy_merged) {
    over("validation", "accuracy_gap_pp", 100.0 * std::abs(*r->accuracy_training_form - *r->accuracy_merged),
         t.max_accuracy_gap_pp);
  }
}

namespace {
nlohmann::json OrNull(const std::optional<double>& v) { return v ? nlohmann::json(*v) : nlohmann::json(nullptr); }
}  // namespace

nlohmann::json MergeReport::Headline() const {
  nlohmann::json h;
  h["passed"] = passed();
  h["merged_dtype"] = merged_dtype;
  h["layers"] = layers.size();
  double dev = -1, cast = 0;
  int64_t nonfinite = 0;
  std::string worst_dev_layer, worst_cast_layer;
  for (const LayerMergeFigures& f : layers) {
    if (f.row_norm_deviation > dev || std::isnan(f.row_norm_deviation)) dev = f.row_norm_deviation, worst_dev_layer = f.layer;
    if (f.cast_error > cast || std::isnan(f.cast_error)) cast = f.cast_error, worst_cast_layer = f.layer;
    nonfinite += f.nonfinite;
  }
  h["max_row_norm_deviation"] = dev >= 0 ? nlohmann::json(dev) : nlohmann::json(nullptr);
  h["max_row_norm_deviation_layer"] = worst_dev_layer;
  h["max_cast_error"] = cast;
  h["max_cast_error_layer"] = worst_cast_layer;
  h["nonfinite"] = nonfinite;
  h["max_logit_diff"] = logits ? nlohmann::json(logits->max_abs_diff) : nlohmann::json(nullptr);
  h["mean_kl"] = logits ? nlohmann::json(logits->mean_kl) : nlohmann::json(nullptr);
  std::optional<double> gap;
  if (accuracy_training_form && accuracy_merged) gap = 100.0 * (*accuracy_training_form - *accuracy_merged);
  h["accuracy_gap_pp"] = OrNull(gap);
  std::optional<double> loss_gap;
  if (loss_training_form && loss_merged) loss_gap = *loss_training_form - *loss_merged;
  h["loss_gap"] = OrNull(loss_gap);
  return h;
}

nlohmann::json MergeReport::ToJson() const {
  nlohmann::json j;
  j["headline"] = Headline();
  j["enforced"] = enforced;
  j["thresholds"] = {{"max_row_norm_deviation", thresholds.max_row_norm_deviation},
                     {"max_cast_error", thresholds.max_cast_error},
                     {"max_logit_diff", thresholds.max_logit_diff},
                     {"max_kl", thresholds.max_kl},
                     {"max_accuracy_gap_pp", thresholds.max_accuracy_gap_pp}};
  j["breaches"] = breaches;
  nlohmann::json layer_list = nlohmann::json::array();
  for (const LayerMergeFigures& f : layers) {
    layer_list.push_back({{"layer", f.layer},
                          {"row_norm_deviation", f.row_norm_deviation >= 0 ? nlohmann::json(f.row_norm_deviation)
                                                                           : nlohmann::json(nullptr)},
                          {"nonfinite", f.nonfinite},
                          {"cast_error", f.cast_error}});
  }
  j["layers"] = std::move(layer_list);
  if (logits) {
    j["logits"] = {{"max_abs_diff", logits->max_abs_diff},
                   {"mean_kl", logits->mean_kl},
                   {"positions", logits->positions},
                   {"sequences", logits->sequences}};
  } else {
    j["logits"] = nullptr;
  }
  j["validation"] = {{"scoring", scoring},
                     {"accuracy_training_form", OrNull(accuracy_training_form)},
                     {"accuracy_merged", OrNull(accuracy_merged)},
                     {"loss_training_form", OrNull(loss_training_form)},
                     {"loss_merged", OrNull(loss_merged)}};
  return j;
}

absl::Status MergeReport::Verdict() const {
  if (passed() || !enforced) return absl::OkStatus();
  const size_t shown = std::min<size_t>(breaches.size(), 3);
  std::vector<std::string> first(breaches.begin(), breaches.begin() + static_cast<std::ptrdiff_t>(shown));
  return trainer::WithReason(absl::FailedPreconditionError(absl::StrCat(
      trainer::FailureReasonName(trainer::FailureReason::kMergeCheckFailed), ": the merged model (", merged_dtype, ") was not published: ", absl::StrJoin(first, "; "),
      breaches.size() > shown ? absl::StrCat(" (and ", breaches.size() - shown, " more)") : "",
      "; see ", trainer::kMergeReportFile, " (raise the output.merge_max_* thresholds, or merge in fp32)")),
                             trainer::FailureReason::kMergeCheckFailed);
}

absl::Status WriteMergeReport(const MergeReport& report, const std::string& dir) {
  return WriteFileAtomically(absl::StrCat(dir, "/", trainer::kMergeReportFile), report.ToJson().dump(2) + "\n");
}

}  // namespace d2lora::engine
