// Regressions found by tests/fuzz/job_spec_fuzzer: each input is reduced from a
// fuzzer failure (the full reproducer is in tests/fuzz/corpus/job_spec/) and
// must now be a clean error naming the source and the key.
#include <string>

#include "gtest/gtest.h"
#include "common/spec/job_spec.h"

namespace d2lora::spec {
namespace {

constexpr char kBase[] = "name: tiny\ndata: {train: t.jsonl}\n";

// crash_non_utf8_model: a byte that is not UTF-8 was kept as it was, but the
// canonical YAML (what the coordinator stores and workers parse) wrote it as
// U+FFFD, so the worker saw another model path than the one submitted.
TEST(JobSpecFuzzRegressionTest, StringsMustBeUtf8) {
  auto spec = ParseJobSpec(std::string(kBase) + "model: /mo\xbc" "dels/tiny\n", "spec.yaml");
  ASSERT_FALSE(spec.ok());
  EXPECT_EQ(spec.status().message(), "spec.yaml: model: is not valid UTF-8");

  spec = ParseJobSpec(std::string(kBase) + "model: m\nadapter: {target_modules: [q_proj, \"v\xc0\xafproj\"]}\n",
                      "spec.yaml");
  ASSERT_FALSE(spec.ok());
  EXPECT_EQ(spec.status().message(), "spec.yaml: adapter.target_modules[1]: is not valid UTF-8");

  spec = ParseJobSpec(std::string(kBase) + "model: m\n", "spec.yaml", {"output.dir=/out/\xed\xa0\x80"});
  ASSERT_FALSE(spec.ok());
  EXPECT_EQ(spec.status().message(), "spec.yaml: output.dir: is not valid UTF-8");

  // Well-formed UTF-8 (two-, three- and four-byte characters) is kept and survives the canonical form.
  spec = ParseJobSpec(std::string(kBase) + "model: /mod\xc3\xa8les/\xe6\xa8\xa1\xe5\x9e\x8b\xf0\x9f\xa6\x99\n",
                      "spec.yaml");
  ASSERT_TRUE(spec.ok()) << spec.status();
  auto again = ParseJobSpec(JobSpecToYaml(*spec), "canonical.yaml");
  ASSERT_TRUE(again.ok()) << again.status();
  EXPECT_EQ(*again, *spec);
  EXPECT_EQ((*again)->model, "/mod\xc3\xa8les/\xe6\xa8\xa1\xe5\x9e\x8b\xf0\x9f\xa6\x99");
}

}  // namespace
}  // namespace d2lora::spec
