// ParseJobSpec (YAML or JSON) on arbitrary bytes. Lines starting "#--set " (YAML
// comments, so the text parses the same without them) are also applied as
// --set overrides. A spec that parses is in canonical form after
// JobSpecToYaml and JobSpecToJson: both parse back to the same spec.
#include <cstdint>
#include <string>
#include <vector>

#include "absl/strings/match.h"
#include "absl/strings/str_split.h"
#include "tests/fuzz/fuzz_check.h"
#include "common/spec/job_spec.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  using namespace d2lora::spec;
  const std::string text(reinterpret_cast<const char*>(data), size);
  std::vector<std::string> overrides;
  for (absl::string_view line : absl::StrSplit(text, '\n')) {
    if (absl::ConsumePrefix(&line, "#--set ")) overrides.emplace_back(line);
  }
  auto spec = ParseJobSpec(text, "spec.yaml", overrides);
  if (!spec.ok()) {
    FUZZ_CHECK(spec.status().message().rfind("spec.yaml", 0) == 0);  // errors name the source
    return 0;
  }
  FUZZ_CHECK(ValidateJobSpec(*spec).ok());
  const std::string yaml = JobSpecToYaml(*spec);
  auto from_yaml = ParseJobSpec(yaml, "canonical.yaml");
  if (!from_yaml.ok()) std::fprintf(stderr, "%s\n%s\n", yaml.c_str(), std::string(from_yaml.status().message()).c_str());
  FUZZ_CHECK(from_yaml.ok());
  if (!(*from_yaml == *spec)) std::fprintf(stderr, "canonical YAML:\n%s\n", yaml.c_str());
  FUZZ_CHECK(*from_yaml == *spec);
  FUZZ_CHECK(JobSpecToYaml(*from_yaml) == yaml);

  std::string json;
  try {
    json = JobSpecToJson(*spec).dump();
  } catch (const nlohmann::json::exception& e) {
    // Strings that are not UTF-8 cannot be written as JSON; YAML (above) keeps them.
    FUZZ_CHECK(e.id == 316);
    return 0;
  }
  auto from_json = ParseJobSpec(json, "canonical.json");
  if (!from_json.ok()) std::fprintf(stderr, "%s\n%s\n", json.c_str(), std::string(from_json.status().message()).c_str());
  FUZZ_CHECK(from_json.ok());
  FUZZ_CHECK(*from_json == *spec);
  return 0;
}
