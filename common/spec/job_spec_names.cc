// Names of the job spec's enumerations, as written in the spec.
#include <utility>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "common/spec/job_spec.h"

namespace d2lora::spec {
namespace {

template <typename E>
using NameTable = std::vector<std::pair<E, const char*>>;

template <typename E>
std::string NameOf(const NameTable<E>& table, E value) {
  for (const auto& [v, name] : table) {
    if (v == value) return name;
  }
  return "unknown";
}

template <typename E>
absl::StatusOr<E> ValueOf(const NameTable<E>& table, const std::string& name) {
  std::vector<std::string> names;
  for (const auto& [v, n] : table) {
    if (name == n) return v;
    names.push_back(n);
  }
  return absl::InvalidArgumentError(
      absl::StrCat("unknown value '", name, "'; expected ", absl::StrJoin(names, ", ")));
}

const NameTable<TrainingMethod>& Methods() {
  static const auto* t = new NameTable<TrainingMethod>{{TrainingMethod::kD2Lora, "d2lora"},
                                                       {TrainingMethod::kLora, "lora"},
                                                       {TrainingMethod::kDora, "dora"},
                                                       {TrainingMethod::kFull, "full"}};
  return *t;
}
const NameTable<LrSchedule>& Schedules() {
  static const auto* t = new NameTable<LrSchedule>{
      {LrSchedule::kCosine, "cosine"}, {LrSchedule::kLinear, "linear"}, {LrSchedule::kConstant, "constant"}};
  return *t;
}
const NameTable<ComputeDtype>& ComputeDtypes() {
  static const auto* t = new NameTable<ComputeDtype>{
      {ComputeDtype::kAuto, "auto"}, {ComputeDtype::kFp32, "fp32"}, {ComputeDtype::kBf16, "bf16"}};
  return *t;
}
const NameTable<MergeDtype>& MergeDtypes() {
  static const auto* t = new NameTable<MergeDtype>{{MergeDtype::kAuto, "auto"},
                                                   {MergeDtype::kFp32, "fp32"},
                                                   {MergeDtype::kBf16, "bf16"},
                                                   {MergeDtype::kFp16, "fp16"}};
  return *t;
}
const NameTable<ChoiceScoring>& Scorings() {
  static const auto* t = new NameTable<ChoiceScoring>{{ChoiceScoring::kSum, "sum"},
                                                      {ChoiceScoring::kMean, "mean"},
                                                      {ChoiceScoring::kByte, "byte"},
                                                      {ChoiceScoring::kLetter, "letter"}};
  return *t;
}
const NameTable<DeviceKind>& Devices() {
  static const auto* t =
      new NameTable<DeviceKind>{{DeviceKind::kCpu, "cpu"}, {DeviceKind::kCuda, "cuda"}};
  return *t;
}
const NameTable<AdapterDtype>& AdapterDtypes() {
  static const auto* t = new NameTable<AdapterDtype>{{AdapterDtype::kFp32, "fp32"},
                                                     {AdapterDtype::kFp64, "fp64"},
                                                     {AdapterDtype::kBf16, "bf16"},
                                                     {AdapterDtype::kFp16, "fp16"}};
  return *t;
}

}  // namespace

std::string TrainingMethodName(TrainingMethod v) { return NameOf(Methods(), v); }
absl::StatusOr<TrainingMethod> ParseTrainingMethod(const std::string& name) {
  return ValueOf(Methods(), name);
}
std::string LrScheduleName(LrSchedule v) { return NameOf(Schedules(), v); }
absl::StatusOr<LrSchedule> ParseLrSchedule(const std::string& name) {
  return ValueOf(Schedules(), name);
}
std::string ComputeDtypeName(ComputeDtype v) { return NameOf(ComputeDtypes(), v); }
absl::StatusOr<ComputeDtype> ParseComputeDtype(const std::string& name) {
  return ValueOf(ComputeDtypes(), name);
}
std::string MergeDtypeName(MergeDtype v) { return NameOf(MergeDtypes(), v); }
absl::StatusOr<MergeDtype> ParseMergeDtype(const std::string& name) {
  return ValueOf(MergeDtypes(), name);
}
std::string ChoiceScoringName(ChoiceScoring v) { return NameOf(Scorings(), v); }
absl::StatusOr<ChoiceScoring> ParseChoiceScoring(const std::string& name) {
  return ValueOf(Scorings(), name);
}
std::string DeviceKindName(DeviceKind v) { return NameOf(Devices(), v); }
absl::StatusOr<DeviceKind> ParseDeviceKind(const std::string& name) {
  return ValueOf(Devices(), name);
}
std::string AdapterDtypeName(AdapterDtype dtype) { return NameOf(AdapterDtypes(), dtype); }
absl::StatusOr<AdapterDtype> ParseAdapterDtype(const std::string& name) {
  return ValueOf(AdapterDtypes(), name);
}

AdapterOptions DefaultSpecAdapterOptions() {
  AdapterOptions o;
  o.target_modules = {"q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"};
  o.seed = 42;  // train.seed's default
  return o;
}

}  // namespace d2lora::spec
