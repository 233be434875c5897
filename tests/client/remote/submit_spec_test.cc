#include "client/remote/submit_spec.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <filesystem>

#include "client/remote/uploads.h"
#include "common/rpc/spec_convert.h"
#include "tests/client/remote/test_env.h"

namespace d2lora::cli {
namespace {

using ::testing::ElementsAre;
using ::testing::HasSubstr;

class SubmitSpecTest : public remote_test::ScratchEnv {};

TEST_F(SubmitSpecTest, ResolvesPathsAgainstSpecFolderAndKeepsUploads) {
  const std::string spec = Write("jobs/spec.yaml",
                                 "name: t1\nmodel: ./models/base\n"
                                 "data: {train: ../data/train.jsonl, validation: upload:abc/val.jsonl}\n");
  auto loaded = LoadSubmitSpec(spec, {});
  ASSERT_TRUE(loaded.ok()) << loaded.status();
  EXPECT_EQ(loaded->model, dir() + "/jobs/models/base");
  EXPECT_EQ(loaded->data.train, dir() + "/data/train.jsonl");
  EXPECT_EQ(loaded->data.validation, "upload:abc/val.jsonl");
}

TEST_F(SubmitSpecTest, RelativeSpecPathIsMadeAbsolute) {
  Write("spec.yaml", "name: t1\nmodel: m\ndata: {train: t.jsonl}\n");
  const auto cwd = std::filesystem::current_path();
  std::filesystem::current_path(dir());
  auto loaded = LoadSubmitSpec("spec.yaml", {});
  std::filesystem::current_path(cwd);
  ASSERT_TRUE(loaded.ok()) << loaded.status();
  EXPECT_EQ(loaded->model, dir() + "/m");
  EXPECT_EQ(loaded->data.train, dir() + "/t.jsonl");
  EXPECT_EQ(loaded->data.validation, "");
}

TEST_F(SubmitSpecTest, AppliesSetOverrides) {
  const std::string spec = Write("spec.yaml", "name: t1\nmodel: /m\ndata: {train: /t.jsonl}\n");
  auto loaded = LoadSubmitSpec(spec, {"train.lr=0.001", "adapter.r=4", "model=upload:xyz"});
  ASSERT_TRUE(loaded.ok()) << loaded.status();
  EXPECT_DOUBLE_EQ(loaded->train.lr, 0.001);
  EXPECT_EQ(loaded->adapter.r, 4);
  EXPECT_EQ(loaded->model, "upload:xyz");
  const v1::JobSpec proto = rpc::SpecToProto(*loaded);
  EXPECT_EQ(proto.model(), "upload:xyz");
  EXPECT_EQ(proto.data().train(), "/t.jsonl");
}

TEST_F(SubmitSpecTest, BadOverrideOrSpecIsAnError) {
  const std::string spec = Write("spec.yaml", "name: t1\nmodel: /m\ndata: {train: /t.jsonl}\n");
  EXPECT_FALSE(LoadSubmitSpec(spec, {"train.lr"}).ok());
  auto unknown = LoadSubmitSpec(spec, {"train.nope=1"});
  ASSERT_FALSE(unknown.ok());
  EXPECT_THAT(std::string(unknown.status().message()), HasSubstr("nope"));
  auto range = LoadSubmitSpec(spec, {"train.batch_size=0"});
  ASSERT_FALSE(range.ok());
  EXPECT_THAT(std::string(range.status().message()), HasSubstr("train.batch_size"));
  EXPECT_FALSE(LoadSubmitSpec(dir() + "/missing.yaml", {}).ok());
}

TEST_F(SubmitSpecTest, UploadReferencesAndNames) {
  EXPECT_TRUE(IsUploadReference("upload:abc"));
  EXPECT_FALSE(IsUploadReference("/data/upload:abc"));
  EXPECT_EQ(AbsoluteSpecPath("/base", "upload:abc/x"), "upload:abc/x");
  EXPECT_EQ(AbsoluteSpecPath("/base", "/abs/./x/"), "/abs/x");
  EXPECT_EQ(AbsoluteSpecPath("/base", ""), "");
  EXPECT_EQ(UploadName("my data (v2).jsonl"), "my_data__v2_.jsonl");
  EXPECT_EQ(UploadName("train-1.jsonl"), "train-1.jsonl");
}

TEST_F(SubmitSpecTest, ListsRegularFilesRecursively) {
  Write("model/config.json", "{}");
  Write("model/tokenizer/tokenizer.model", "x");
  Write("elsewhere/weights.bin", "w");
  std::filesystem::create_directories(dir() + "/model/empty");
  std::filesystem::create_symlink(dir() + "/elsewhere/weights.bin", dir() + "/model/weights.bin");
  auto names = ListRegularFiles(dir() + "/model/");
  ASSERT_TRUE(names.ok()) << names.status();
  EXPECT_THAT(*names, ElementsAre("config.json", "tokenizer/tokenizer.model", "weights.bin"));
  EXPECT_FALSE(ListRegularFiles(dir() + "/model/config.json").ok());
}

}  // namespace
}  // namespace d2lora::cli
