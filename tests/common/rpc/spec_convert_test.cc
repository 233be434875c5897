#include "common/rpc/spec_convert.h"

#include <google/protobuf/descriptor.h>
#include <gtest/gtest.h>

#include <set>
#include <string>

#include "common/rpc/status_convert.h"
#include "common/spec/job_spec_fields.h"

namespace d2lora::rpc {
namespace {

using google::protobuf::Descriptor;
using google::protobuf::FieldDescriptor;

// Every key differs from its default, so a key the conversion drops shows.
constexpr char kEveryKey[] = R"(
name: round-trip
model: /models/base
method: dora
adapter: {r: 16, alpha: 32, target_modules: [q_proj, v_proj], dropout: 0.1, use_rslora: true, tau_init: 0.25,
          tau_learnable: true, projection_strength: 0.5, residual: false, norm_grad: full, dtype: bf16}
data: {train: upload:up-1/train.jsonl, validation: /d/val.jsonl, format: instruction, max_seq_len: 512,
       skip_invalid: true}
train: {epochs: 0, max_steps: 7, batch_size: 4, micro_batch_size: 2, lr: 1.0e-4, schedule: linear, warmup_steps: 3,
        weight_decay: 0.01, grad_clip: 0.5, seed: 12345678901, checkpoint_every: 9, keep_checkpoints: 2,
        max_nonfinite_steps: 4, activation_checkpointing: true, dtype: bf16}
eval: {every: 11, scoring: letter, max_examples: 12, generate_max_new_tokens: 13}
metrics: {volatility_window: 14, log_every: 15}
guard: {spike_factor: 3.5, max_rollbacks: 5, lr_backoff: 0.5, skip_batches: 2}
output: {dir: /ignored, merge: false, merge_dtype: fp16, merge_check: false, merge_max_row_norm_deviation: 0.1,
         merge_max_cast_error: 0.2, merge_max_logit_diff: 0.3, merge_max_kl: 0.4, merge_max_accuracy_gap_pp: 0.5}
resources: {world_size: 2, device: cuda, threads: 3, min_world_size: 1, elastic_wait_seconds: 7}
)";

TEST(SpecConvertTest, RoundTripKeepsEverySetting) {
  auto spec = spec::ParseJobSpec(kEveryKey, "test");
  ASSERT_TRUE(spec.ok()) << spec.status();
  const v1::JobSpec proto = SpecToProto(*spec);
  EXPECT_EQ(proto.train().seed(), 12345678901ULL);
  EXPECT_EQ(proto.adapter().target_modules_size(), 2);
  EXPECT_EQ(proto.guard().spike_factor(), 3.5);
  auto back = SpecFromProto(proto);
  ASSERT_TRUE(back.ok()) << back.status();
  spec::JobSpec expected = *spec;
  expected.output.dir = spec::JobSpec().output.dir;  // the worker's to choose
  EXPECT_TRUE(back->get() == expected) << spec::JobSpecToYaml(*back);
  // The defaults' spec round-trips too (an empty validation stays unset).
  auto minimal = spec::ParseJobSpec("name: m\nmodel: /m\ndata: {train: /t}\n", "test");
  ASSERT_TRUE(minimal.ok());
  const v1::JobSpec wire = SpecToProto(*minimal);
  EXPECT_FALSE(wire.data().has_validation());
  auto again = SpecFromProto(wire);
  ASSERT_TRUE(again.ok()) << again.status();
  EXPECT_TRUE(again->get() == minimal->get());
}

// Collects "section.key" for every key of the spec's list.
struct KeyCollector {
  std::set<std::string> keys;
  void Add(const char* section, const char* key) {
    keys.insert(*section == '\0' ? std::string(key) : std::string(section) + "." + key);
  }
  template <typename Get>
  void Value(const char* section, const char* key, Get) { Add(section, key); }
  template <typename Get>
  void Plain(const char* section, const char* key, Get) { Add(section, key); }
  template <typename Get, typename N, typename P>
  void Named(const char* section, const char* key, Get, N, P) { Add(section, key); }
};

TEST(SpecConvertTest, TheWireFormCarriesExactlyTheSpecsKeys) {
  KeyCollector list;
  spec::internal::ForEachField(list);
  std::set<std::string> wire;
  const Descriptor* top = v1::JobSpec::descriptor();
  for (int i = 0; i < top->field_count(); ++i) {
    const FieldDescriptor* f = top->field(i);
    if (f->cpp_type() != FieldDescriptor::CPPTYPE_MESSAGE) {
      wire.insert(f->name());
      continue;
    }
    for (int k = 0; k < f->message_type()->field_count(); ++k) {
      wire.insert(f->name() + "." + f->message_type()->field(k)->name());
    }
  }
  std::set<std::string> expected = list.keys;
  expected.erase("output.dir");  // the worker's, reserved on the wire
  EXPECT_EQ(wire, expected);
}

TEST(SpecConvertTest, UnsetFieldsTakeTheSpecDefaults) {
  v1::JobSpec proto;
  proto.set_name("minimal");
  proto.set_model("/m");
  proto.mutable_data()->set_train("/t.jsonl");
  auto spec = SpecFromProto(proto);
  ASSERT_TRUE(spec.ok()) << spec.status();
  spec::JobSpec defaults;
  EXPECT_EQ((*spec)->train.batch_size, defaults.train.batch_size);
  EXPECT_EQ((*spec)->adapter.r, defaults.adapter.r);
  EXPECT_EQ((*spec)->method, spec::TrainingMethod::kD2Lora);
  EXPECT_EQ((*spec)->data.validation, "");
  EXPECT_EQ((*spec)->adapter.seed, defaults.train.seed);
}

TEST(SpecConvertTest, DoraDetachesTheNormUnlessTheWireSaysOtherwise) {
  v1::JobSpec proto;
  proto.set_name("dora");
  proto.set_model("/m");
  proto.mutable_data()->set_train("/t.jsonl");
  proto.set_method("dora");
  auto detached = SpecFromProto(proto);
  ASSERT_TRUE(detached.ok()) << detached.status();
  EXPECT_EQ((*detached)->adapter.norm_grad, spec::NormGrad::kDetached);
  EXPECT_EQ((*detached)->adapter.method, spec::AdapterMethod::kDora);
  proto.mutable_adapter()->set_norm_grad("full");
  auto full = SpecFromProto(proto);
  ASSERT_TRUE(full.ok()) << full.status();
  EXPECT_EQ((*full)->adapter.norm_grad, spec::NormGrad::kFull);
}

TEST(SpecConvertTest, TheAdjustmentRunsBeforeTheOneCheck) {
  v1::JobSpec proto;
  proto.set_name("adjusted");
  proto.set_model("/m");
  proto.mutable_data()->set_train("/t.jsonl");
  proto.mutable_train()->set_batch_size(16);
  proto.mutable_train()->set_micro_batch_size(8);
  proto.mutable_resources()->set_world_size(3);  // 16 does not split over 3 ranks
  EXPECT_FALSE(SpecFromProto(proto).ok());
  auto two = SpecFromProto(proto, [](spec::JobSpec& s) { s.resources.world_size = 2; });
  ASSERT_TRUE(two.ok()) << two.status();
  EXPECT_EQ((*two)->resources.world_size, 2);
  auto broken = SpecFromProto(proto, [](spec::JobSpec& s) { s.resources.world_size = 5; });
  ASSERT_FALSE(broken.ok());
  EXPECT_NE(broken.status().message().find("spec: train.batch_size = 16"), std::string::npos) << broken.status();
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
  EXPECT_NE(spec.status().message().find("spec: train.schedule = sometimes"), std::string::npos) << spec.status();
  proto.mutable_train()->clear_schedule();
  proto.mutable_adapter()->set_r(0);
  EXPECT_NE(SpecFromProto(proto).status().message().find("adapter.r"), std::string::npos);
  proto.clear_adapter();
  proto.clear_name();
  EXPECT_NE(SpecFromProto(proto).status().message().find("name"), std::string::npos);
}

// A message built in-process is not checked by the wire parser; the spec's rule holds anyway.
TEST(SpecConvertTest, StringsMustBeUtf8) {
  v1::JobSpec proto;
  proto.set_name("utf8");
  proto.set_model("/mo\xbc" "dels");
  proto.mutable_data()->set_train("/t.jsonl");
  EXPECT_EQ(SpecFromProto(proto).status().message(), "spec: model: is not valid UTF-8");
  proto.set_model("/m");
  proto.mutable_adapter()->add_target_modules("q_proj");
  proto.mutable_adapter()->add_target_modules("v\xc0\xafproj");
  EXPECT_EQ(SpecFromProto(proto).status().message(), "spec: adapter.target_modules[1]: is not valid UTF-8");
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
