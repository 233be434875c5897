// The job spec between its wire form (d2lora.v1.JobSpec) and the engine's.
// Both directions go through the spec's JSON tree, so the engine's parser does
// every check once, for `d2lora train` and the service alike, and its errors
// name the field ("spec: train.batch_size = 0: must be >= 1").
#pragma once

#include <nlohmann/json.hpp>

#include "absl/status/statusor.h"
#include "d2lora/v1/job_spec.pb.h"
#include "common/spec/job_spec.h"

namespace d2lora::rpc {

// The fields that are set, as the spec's JSON tree (YAML keys, numbers as numbers).
nlohmann::json SpecProtoToJson(const v1::JobSpec& spec);

// Parses and checks; output.dir is left at its default (the worker sets it).
absl::StatusOr<spec::JobSpec> SpecFromProto(const v1::JobSpec& spec);

// Every field set (the canonical form), output.dir dropped.
absl::StatusOr<v1::JobSpec> SpecToProto(const spec::JobSpec& spec);

}  // namespace d2lora::rpc
