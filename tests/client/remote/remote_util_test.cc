#include "client/remote/remote_util.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <CLI/CLI.hpp>

#include "client/cli_util.h"
#include "client/remote/transfer_paths.h"

namespace d2lora::cli {
namespace {

using ::testing::ElementsAre;
using ::testing::HasSubstr;
using ::testing::Pair;

TEST(ParseKeyValuesTest, ParsesLabels) {
  auto labels = ParseKeyValues({"team=nlp", "run=3", "empty=", "eq=a=b"}, "--label");
  ASSERT_TRUE(labels.ok()) << labels.status();
  EXPECT_THAT(*labels, ElementsAre(Pair("empty", ""), Pair("eq", "a=b"), Pair("run", "3"), Pair("team", "nlp")));
}

TEST(ParseKeyValuesTest, RejectsMissingKeyOrEqualsAndDuplicates) {
  for (const std::string bad : {"novalue", "=value", ""}) {
    auto labels = ParseKeyValues({bad}, "--label");
    ASSERT_FALSE(labels.ok()) << bad;
    EXPECT_THAT(std::string(labels.status().message()), HasSubstr("--label"));
    EXPECT_THAT(std::string(labels.status().message()), HasSubstr("KEY=VALUE"));
  }
  auto dup = ParseKeyValues({"a=1", "a=2"}, "--label");
  ASSERT_FALSE(dup.ok());
  EXPECT_THAT(std::string(dup.status().message()), HasSubstr("more than once"));
}

TEST(KeyValueValidatorTest, IsAParseError) {
  CLI::App app;
  std::vector<std::string> labels;
  app.add_option("--label", labels)->check(KeyValueValidator());
  EXPECT_NO_THROW(app.parse("--label x=2", false));
  EXPECT_THAT(labels, ElementsAre("x=2"));
  app.clear();
  EXPECT_THROW(app.parse("--label oops", false), CLI::ValidationError);
}

TEST(NonNegativeValidatorTest, ChecksSign) {
  CLI::App app;
  double timeout = 30;
  int64_t seq = 0;
  app.add_option("--timeout", timeout)->check(NonNegativeValidator(/*positive=*/true));
  app.add_option("--from-seq", seq)->check(NonNegativeValidator());
  EXPECT_NO_THROW(app.parse("--timeout 2.5 --from-seq 0", false));
  EXPECT_DOUBLE_EQ(timeout, 2.5);
  app.clear();
  EXPECT_THROW(app.parse("--timeout 0", false), CLI::ValidationError);
  app.clear();
  EXPECT_THROW(app.parse("--from-seq -1", false), CLI::ValidationError);
}

TEST(ConnectionFlagsTest, RegistersEveryFlag) {
  CLI::App app;
  ConnectionFlags flags;
  AddConnectionFlags(&app, &flags);
  app.parse("--endpoint h:1 --token t --tls-ca ca.pem --tls-server-name n --json --timeout 5", false);
  EXPECT_EQ(flags.endpoint, "h:1");
  EXPECT_EQ(flags.token, "t");
  EXPECT_EQ(flags.tls_ca, "ca.pem");
  EXPECT_EQ(flags.tls_server_name, "n");
  EXPECT_TRUE(flags.json);
  EXPECT_DOUBLE_EQ(flags.timeout_seconds, 5);
  CLI::App both;
  ConnectionFlags other;
  AddConnectionFlags(&both, &other);
  EXPECT_THROW(both.parse("--token t --token-file f", false), CLI::ExcludesError);
}

TEST(JobStateTest, ParsesAnyCase) {
  EXPECT_EQ(*ParseJobStateName("running"), v1::RUNNING);
  EXPECT_EQ(*ParseJobStateName("SUCCEEDED"), v1::SUCCEEDED);
  EXPECT_EQ(*ParseJobStateName("Cancelled"), v1::CANCELLED);
  EXPECT_FALSE(ParseJobStateName("done").ok());
  EXPECT_FALSE(ParseJobStateName("job_state_unspecified").ok());
  EXPECT_EQ(JobStateName(v1::QUEUED), "QUEUED");
  EXPECT_TRUE(IsTerminal(v1::FAILED));
  EXPECT_FALSE(IsTerminal(v1::RUNNING));
}

TEST(MessageToJsonTest, KeepsProtoFieldNamesOnOneLine) {
  v1::Job job;
  job.set_id("j1");
  job.set_checkpoint_step(50);
  job.set_state(v1::RUNNING);
  job.mutable_metrics()->set_total_steps(400);
  const std::string json = MessageToJson(job);
  EXPECT_THAT(json, HasSubstr("\"checkpoint_step\":\"50\""));
  EXPECT_THAT(json, HasSubstr("\"total_steps\":\"400\""));
  EXPECT_THAT(json, HasSubstr("\"state\":\"RUNNING\""));
  EXPECT_EQ(json.find('\n'), std::string::npos);
}

TEST(ReportErrorTest, ServerErrorsExit3WithCodeName) {
  const absl::Status server = ServerError(grpc::Status(grpc::StatusCode::NOT_FOUND, "no job x"), "get: ");
  EXPECT_TRUE(IsServerError(server));
  EXPECT_EQ(server.code(), absl::StatusCode::kNotFound);
  EXPECT_EQ(server.message(), "get: no job x");
  ::testing::internal::CaptureStderr();
  EXPECT_EQ(ReportError("get", server), kExitServer);
  EXPECT_EQ(::testing::internal::GetCapturedStderr(), "d2lora get: error: NOT_FOUND: get: no job x\n");

  ::testing::internal::CaptureStderr();
  EXPECT_EQ(ReportError("submit", absl::InvalidArgumentError("spec.yaml: bad")), kExitError);
  EXPECT_EQ(::testing::internal::GetCapturedStderr(), "d2lora submit: error: spec.yaml: bad\n");
  EXPECT_FALSE(IsServerError(absl::InvalidArgumentError("x")));
}

TEST(TransferPathsTest, UploadNamesAndFolders) {
  EXPECT_EQ(UploadArtifactName("upload:abc/train.jsonl"), "uploads/abc/train.jsonl");
  EXPECT_EQ(UploadArtifactName("upload:abc"), "uploads/abc");
  EXPECT_EQ(UploadArtifactName("uploads/abc/x"), "uploads/abc/x");
  EXPECT_EQ(FolderName("merged/"), "merged");
  EXPECT_EQ(FolderName("adapter"), "adapter");
  EXPECT_EQ(ArtifactJobId("-"), "");
  EXPECT_EQ(ArtifactJobId("j1"), "j1");
}

TEST(TransferPathsTest, RelativeArtifactPaths) {
  EXPECT_EQ(*RelativeArtifactPath("merged/a/b.json", "merged/"), "a/b.json");
  EXPECT_FALSE(RelativeArtifactPath("merged/", "merged/").ok());
  EXPECT_FALSE(RelativeArtifactPath("other/x", "merged/").ok());
  EXPECT_FALSE(RelativeArtifactPath("merged/../../etc/passwd", "merged/").ok());
  EXPECT_FALSE(RelativeArtifactPath("merged//etc/passwd", "merged/").ok());
}

TEST(TransferPathsTest, FileOutputPath) {
  EXPECT_EQ(FileOutputPath("checkpoints/step-50/state.json", ""), "state.json");
  EXPECT_EQ(FileOutputPath("summary.json", "out/"), "out/summary.json");
  EXPECT_EQ(FileOutputPath("summary.json", "/tmp"), "/tmp/summary.json");
  EXPECT_EQ(FileOutputPath("summary.json", "x.json"), "x.json");
}

}  // namespace
}  // namespace d2lora::cli
