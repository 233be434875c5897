// The job spec (common/spec/) by its plain names in the engine's namespace,
// and the adapter dtype as LibTorch's. The spec is the project's ground
// floor: it knows no LibTorch type, so the coordinator links none.
#pragma once

#include <c10/core/ScalarType.h>

#include "common/spec/adapter_options.h"
#include "common/spec/job_spec.h"

namespace d2lora::engine {

using spec::JobSpec;
using spec::ValidJobSpec;
using spec::DataSpec;
using spec::TrainSpec;
using spec::EvalSpec;
using spec::MetricsSpec;
using spec::GuardSpec;
using spec::MergeThresholds;
using spec::OutputSpec;
using spec::ResourcesSpec;
using spec::TrainingMethod;
using spec::LrSchedule;
using spec::ComputeDtype;
using spec::MergeDtype;
using spec::ChoiceScoring;
using spec::DeviceKind;
using spec::AdapterOptions;
using spec::AdapterMethod;
using spec::NormGrad;
using spec::AdapterDtype;
using spec::TrainingMethodName;
using spec::ParseTrainingMethod;
using spec::LrScheduleName;
using spec::ParseLrSchedule;
using spec::ComputeDtypeName;
using spec::ParseComputeDtype;
using spec::MergeDtypeName;
using spec::ParseMergeDtype;
using spec::ChoiceScoringName;
using spec::ParseChoiceScoring;
using spec::DeviceKindName;
using spec::ParseDeviceKind;
using spec::AdapterDtypeName;
using spec::ParseAdapterDtype;
using spec::DefaultSpecAdapterOptions;
using spec::FittingMicroBatchSize;
using spec::ApplyOverride;
using spec::ParseJobSpec;
using spec::LoadJobSpec;
using spec::ValidateJobSpec;
using spec::JobSpecToYaml;
using spec::JobSpecToJson;
using spec::ResolveSpecPath;
using spec::SpecDirectory;
using spec::ResolveSpecPaths;
using spec::MethodName;
using spec::ParseMethod;
using spec::NormGradName;
using spec::ParseNormGrad;

inline c10::ScalarType ScalarTypeOf(AdapterDtype dtype) {
  switch (dtype) {
    case AdapterDtype::kFp32: return c10::ScalarType::Float;
    case AdapterDtype::kFp64: return c10::ScalarType::Double;
    case AdapterDtype::kBf16: return c10::ScalarType::BFloat16;
    case AdapterDtype::kFp16: return c10::ScalarType::Half;
  }
  return c10::ScalarType::Float;
}

}  // namespace d2lora::engine
