// The job spec between its wire form (d2lora.v1.JobSpec) and the spec's
// struct, field by field: both directions walk the spec's one list of keys
// (common/spec/job_spec_fields.h) and find each key's field by name with
// protobuf reflection, so a key added to the list and the proto travels
// without code here. Errors name the field ("spec: train.schedule = sometimes:
// ..."), as the spec file's parser does.
#pragma once

#include <functional>

#include "absl/status/statusor.h"
#include "d2lora/v1/job_spec.pb.h"
#include "common/spec/job_spec.h"

namespace d2lora::rpc {

// Reads the wire spec (an unset field keeps the spec's default), lets `adjust`
// change it (the request's world size, the worker's paths), then checks it,
// once. output.dir is the spec's default until `adjust` sets it.
absl::StatusOr<spec::ValidJobSpec> SpecFromProto(const v1::JobSpec& wire,
                                                 const std::function<void(spec::JobSpec&)>& adjust = nullptr);

// Every field set (the canonical form) but output.dir, which is the worker's;
// an empty optional string (data.validation) stays unset.
v1::JobSpec SpecToProto(const spec::JobSpec& spec);

}  // namespace d2lora::rpc
