#include "common/rpc/spec_convert.h"

#include <gtest/gtest.h>

#include "common/rpc/status_convert.h"

namespace d2lora::rpc {
namespace {

TEST(SpecConvertTest, RoundTripKeepsEverySetting) {
  auto spec = spec::ParseJobSpec(R"(
name: round-trip
model: /models/base
method: lora
adapter: {r: 16, alpha: 32, target_modules: [q_proj, v_proj], dropout: 0.1, dtype: bf16}
data: {train: upload:up-1/train.jsonl, validation: /d/val.jsonl, format: instruction, max_seq_len: 512}
train: {epochs: 0, max_steps: 7, batch_size: 4, micro_batch_size: 2, lr: 1.0e-4, schedule: linear, seed: 12345678901}
eval: {scoring: letter}
output: {dir: /ignored, merge: false, merge_dtype: fp16}
resources: {world_size: 2, threads: 3}
)", "test");
  ASSERT_TRUE(spec.ok()) << spec.status();
  auto proto = SpecToProto(*spec);
  ASSERT_TRUE(proto.ok()) << proto.status();
  EXPECT_EQ(proto->train().seed(), 12345678901ULL);
  EXPECT_EQ(proto->adapter().target_modules_size(), 2);
  auto back = SpecFromProto(*proto);
  ASSERT_TRUE(back.ok()) << back.status();
  spec::JobSpec expected = *spec;
  expected.output.dir = spec::JobSpec().output.dir;  // the worker's to choose
  EXPECT_TRUE(*back == expected);
  // Numbers travel as numbers, not the strings protobuf's JSON uses for int64.
  EXPECT_TRUE(SpecProtoToJson(*proto)["train"]["max_steps"].is_number_integer());
}

TEST(SpecConvertTest, UnsetFieldsTakeTheSpecDefaults) {
  v1::JobSpec proto;
  proto.set_name("minimal");
  proto.set_model("/m");
  proto.mutable_data()->set_train("/t.jsonl");
  auto spec = SpecFromProto(proto);
  ASSERT_TRUE(spec.ok()) << spec.status();
  spec::JobSpec defaults;
  EXPECT_EQ(spec->train.batch_size, defaults.train.batch_size);
  EXPECT_EQ(spec->adapter.r, defaults.adapter.r);
  EXPECT_EQ(spec->method, spec::TrainingMethod::kD2Lora);
  EXPECT_EQ(spec->data.validation, "");
}

TEST(SpecConvertTest, ErrorsNameTheField) {
  v1::JobSpec proto;
  proto.set_name("bad");
  proto.set_model("/m");
  proto.mutable_data()->set_train("/t.jsonl");
  proto.mutable_train()->set_schedule("sometimes");
  auto spec = SpecFromProto(proto);
  ASSERT_FALSE(spec.ok());
  EXPECT_EQ(spec.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_NE(spec.status().message().find("train.schedule"), std::string::npos) << spec.status();
  proto.mutable_train()->clear_schedule();
  proto.mutable_adapter()->set_r(0);
  EXPECT_NE(SpecFromProto(proto).status().message().find("adapter.r"), std::string::npos);
  proto.clear_adapter();
  proto.clear_name();
  EXPECT_NE(SpecFromProto(proto).status().message().find("name"), std::string::npos);
}

TEST(StatusConvertTest, CodesAndMessagesSurviveBothWays) {
  const absl::Status s = absl::FailedPreconditionError("data.train: missing");
  const grpc::Status g = ToGrpcStatus(s);
  EXPECT_EQ(g.error_code(), grpc::StatusCode::FAILED_PRECONDITION);
  EXPECT_EQ(FromGrpcStatus(g), s);
  EXPECT_TRUE(ToGrpcStatus(absl::OkStatus()).ok());
  EXPECT_EQ(StatusCodeFromName("UNAVAILABLE"), absl::StatusCode::kUnavailable);
  EXPECT_EQ(StatusCodeFromName("nonsense"), absl::StatusCode::kUnknown);
  EXPECT_EQ(StatusCodeName(absl::StatusCode::kAborted), "ABORTED");
}

}  // namespace
}  // namespace d2lora::rpc
