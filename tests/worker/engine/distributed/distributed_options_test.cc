#include "worker/engine/distributed/distributed_options.h"

#include <map>
#include <string>

#include "gtest/gtest.h"
#include "tests/support/test_support.h"

namespace d2lora::engine {
namespace {

using Env = std::map<std::string, std::string>;

GetenvFn FakeEnv(Env env) {
  return [env](const std::string& name) -> std::optional<std::string> {
    auto it = env.find(name);
    if (it == env.end()) return std::nullopt;
    return it->second;
  };
}

// The error message of resolving `flags` against `env`; "" when it succeeds.
std::string ErrorOf(const DistributedFlags& flags, const Env& env) {
  absl::StatusOr<DistributedOptions> options = ResolveDistributedOptions(flags, FakeEnv(env));
  if (options.ok()) return "";
  EXPECT_EQ(options.status().code(), absl::StatusCode::kInvalidArgument) << options.status();
  return std::string(options.status().message());
}

TEST(DistributedOptionsTest, DefaultsWithEmptyEnvironment) {
  absl::StatusOr<DistributedOptions> options = ResolveDistributedOptions({}, FakeEnv({}));
  D2_ASSERT_OK(options.status());
  EXPECT_EQ(options->rank, 0);
  EXPECT_EQ(options->world_size, 1);
  EXPECT_EQ(options->local_rank, 0);
  EXPECT_EQ(options->master_addr, "127.0.0.1");
  EXPECT_EQ(options->master_port, 29500);
  EXPECT_EQ(options->timeout, std::chrono::milliseconds(300000));
  EXPECT_FALSE(options->use_agent_store);
}

// torchrun's agent store: torch/distributed/rendezvous.py compares the variable
// with "True" exactly and reads the attempt from TORCHELASTIC_RESTART_COUNT.
TEST(DistributedOptionsTest, TorchrunsAgentStore) {
  absl::StatusOr<DistributedOptions> options = ResolveDistributedOptions(
      {}, FakeEnv({{"TORCHELASTIC_USE_AGENT_STORE", "True"}, {"TORCHELASTIC_RESTART_COUNT", "2"}}));
  D2_ASSERT_OK(options.status());
  EXPECT_TRUE(options->use_agent_store);
  EXPECT_EQ(options->restart_count, 2);
  options = ResolveDistributedOptions({}, FakeEnv({{"TORCHELASTIC_USE_AGENT_STORE", "True"}}));
  D2_ASSERT_OK(options.status());
  EXPECT_EQ(options->restart_count, 0);
  for (const char* no : {"true", "1", "False"}) {
    options = ResolveDistributedOptions({}, FakeEnv({{"TORCHELASTIC_USE_AGENT_STORE", no}}));
    D2_ASSERT_OK(options.status());
    EXPECT_FALSE(options->use_agent_store) << no;
  }
  EXPECT_EQ(ErrorOf({}, {{"TORCHELASTIC_USE_AGENT_STORE", "True"}, {"TORCHELASTIC_RESTART_COUNT", "x"}}),
            "environment variable TORCHELASTIC_RESTART_COUNT = \"x\": not an integer");
  EXPECT_EQ(ErrorOf({}, {{"TORCHELASTIC_USE_AGENT_STORE", "True"}, {"TORCHELASTIC_RESTART_COUNT", "-1"}}),
            "environment variable TORCHELASTIC_RESTART_COUNT = \"-1\": the restart count must be >= 0");
}

TEST(DistributedOptionsTest, ReadsTorchrunEnvironment) {
  absl::StatusOr<DistributedOptions> options = ResolveDistributedOptions(
      {}, FakeEnv({{"RANK", "3"},
                   {"WORLD_SIZE", "4"},
                   {"LOCAL_RANK", "1"},
                   {"MASTER_ADDR", "10.0.0.7"},
                   {"MASTER_PORT", "1234"},
                   {"D2LORA_DIST_TIMEOUT_S", "2.5"}}));
  D2_ASSERT_OK(options.status());
  EXPECT_EQ(options->rank, 3);
  EXPECT_EQ(options->world_size, 4);
  EXPECT_EQ(options->local_rank, 1);
  EXPECT_EQ(options->master_addr, "10.0.0.7");
  EXPECT_EQ(options->master_port, 1234);
  EXPECT_EQ(options->timeout, std::chrono::milliseconds(2500));
}

TEST(DistributedOptionsTest, FlagsWinOverEnvironment) {
  DistributedFlags flags;
  flags.rank = 0;
  flags.world_size = 2;
  flags.local_rank = 1;
  flags.master_addr = "node0";
  flags.master_port = 4000;
  // The environment's values would be invalid: they must not even be parsed.
  absl::StatusOr<DistributedOptions> options = ResolveDistributedOptions(
      flags, FakeEnv({{"RANK", "x"},
                      {"WORLD_SIZE", "y"},
                      {"LOCAL_RANK", "z"},
                      {"MASTER_ADDR", "10.0.0.7"},
                      {"MASTER_PORT", "99999"}}));
  D2_ASSERT_OK(options.status());
  EXPECT_EQ(options->rank, 0);
  EXPECT_EQ(options->world_size, 2);
  EXPECT_EQ(options->local_rank, 1);
  EXPECT_EQ(options->master_addr, "node0");
  EXPECT_EQ(options->master_port, 4000);
}

TEST(DistributedOptionsTest, FlagsAndEnvironmentMix) {
  DistributedFlags flags;
  flags.rank = 1;
  absl::StatusOr<DistributedOptions> options =
      ResolveDistributedOptions(flags, FakeEnv({{"RANK", "0"}, {"WORLD_SIZE", "2"}}));
  D2_ASSERT_OK(options.status());
  EXPECT_EQ(options->rank, 1);
  EXPECT_EQ(options->world_size, 2);
}

TEST(DistributedOptionsTest, LocalRankDefaultsToRank) {
  absl::StatusOr<DistributedOptions> options =
      ResolveDistributedOptions({}, FakeEnv({{"RANK", "2"}, {"WORLD_SIZE", "3"}}));
  D2_ASSERT_OK(options.status());
  EXPECT_EQ(options->local_rank, 2);
}

TEST(DistributedOptionsTest, EmptyVariablesCountAsUnset) {
  absl::StatusOr<DistributedOptions> options =
      ResolveDistributedOptions({}, FakeEnv({{"RANK", ""}, {"MASTER_ADDR", ""}}));
  D2_ASSERT_OK(options.status());
  EXPECT_EQ(options->rank, 0);
  EXPECT_EQ(options->master_addr, "127.0.0.1");
}

TEST(DistributedOptionsTest, NonIntegerEnvironmentNamesVariableAndValue) {
  EXPECT_EQ(ErrorOf({}, {{"RANK", "x"}}), "environment variable RANK = \"x\": not an integer");
  EXPECT_EQ(ErrorOf({}, {{"WORLD_SIZE", "2.5"}}), "environment variable WORLD_SIZE = \"2.5\": not an integer");
  EXPECT_EQ(ErrorOf({}, {{"LOCAL_RANK", "one"}}), "environment variable LOCAL_RANK = \"one\": not an integer");
  EXPECT_EQ(ErrorOf({}, {{"MASTER_PORT", "80a"}}), "environment variable MASTER_PORT = \"80a\": not an integer");
}

TEST(DistributedOptionsTest, RankOutOfRange) {
  DistributedFlags flags;
  flags.rank = 3;
  flags.world_size = 2;
  EXPECT_EQ(ErrorOf(flags, {}), "--rank 3 is outside [0, world size 2)");
  flags.rank = -1;
  EXPECT_EQ(ErrorOf(flags, {}), "--rank -1 is outside [0, world size 2)");
  EXPECT_EQ(ErrorOf({}, {{"RANK", "2"}, {"WORLD_SIZE", "2"}}),
            "environment variable RANK = \"2\" is outside [0, world size 2)");
  // The default world size of 1 admits only rank 0.
  EXPECT_EQ(ErrorOf({}, {{"RANK", "1"}}), "environment variable RANK = \"1\" is outside [0, world size 1)");
}

TEST(DistributedOptionsTest, LocalRankOutOfRange) {
  DistributedFlags flags;
  flags.world_size = 2;
  flags.local_rank = 5;
  EXPECT_EQ(ErrorOf(flags, {}), "--local-rank 5 is outside [0, world size 2)");
  EXPECT_EQ(ErrorOf({}, {{"LOCAL_RANK", "-1"}}),
            "environment variable LOCAL_RANK = \"-1\" is outside [0, world size 1)");
}

TEST(DistributedOptionsTest, WorldSizeAtLeastOne) {
  DistributedFlags flags;
  flags.world_size = 0;
  EXPECT_EQ(ErrorOf(flags, {}), "--world-size 0: the world size must be at least 1");
  EXPECT_EQ(ErrorOf({}, {{"WORLD_SIZE", "-3"}}),
            "environment variable WORLD_SIZE = \"-3\": the world size must be at least 1");
}

TEST(DistributedOptionsTest, PortRange) {
  DistributedFlags flags;
  flags.master_port = 0;
  EXPECT_EQ(ErrorOf(flags, {}), "--master-port 0 is outside the port range [1, 65535]");
  flags.master_port = 65536;
  EXPECT_EQ(ErrorOf(flags, {}), "--master-port 65536 is outside the port range [1, 65535]");
  EXPECT_EQ(ErrorOf({}, {{"MASTER_PORT", "70000"}}),
            "environment variable MASTER_PORT = \"70000\" is outside the port range [1, 65535]");
  flags.master_port = 65535;
  EXPECT_EQ(ErrorOf(flags, {}), "");
}

TEST(DistributedOptionsTest, EmptyMasterAddrFlag) {
  DistributedFlags flags;
  flags.master_addr = "";
  EXPECT_EQ(ErrorOf(flags, {}), "--master-addr \"\": empty address");
}

TEST(DistributedOptionsTest, TimeoutVariable) {
  EXPECT_EQ(ErrorOf({}, {{"D2LORA_DIST_TIMEOUT_S", "soon"}}),
            "environment variable D2LORA_DIST_TIMEOUT_S = \"soon\": not a number of seconds");
  EXPECT_EQ(ErrorOf({}, {{"D2LORA_DIST_TIMEOUT_S", "0"}}),
            "environment variable D2LORA_DIST_TIMEOUT_S = \"0\": the timeout must be in (0, 1e9] seconds");
  EXPECT_EQ(ErrorOf({}, {{"D2LORA_DIST_TIMEOUT_S", "-5"}}),
            "environment variable D2LORA_DIST_TIMEOUT_S = \"-5\": the timeout must be in (0, 1e9] seconds");
  absl::StatusOr<DistributedOptions> options =
      ResolveDistributedOptions({}, FakeEnv({{"D2LORA_DIST_TIMEOUT_S", "60"}}));
  D2_ASSERT_OK(options.status());
  EXPECT_EQ(options->timeout, std::chrono::milliseconds(60000));
}

TEST(DistributedOptionsTest, RealEnvironmentIsTheDefault) {
  ::setenv("D2LORA_DIST_TIMEOUT_S", "7", 1);
  absl::StatusOr<DistributedOptions> options = ResolveDistributedOptions(DistributedFlags{});
  ::unsetenv("D2LORA_DIST_TIMEOUT_S");
  D2_ASSERT_OK(options.status());
  EXPECT_EQ(options->timeout, std::chrono::milliseconds(7000));
}

TEST(DistributedOptionsTest, Validate) {
  DistributedOptions options;
  D2_EXPECT_OK(ValidateDistributedOptions(options));
  options.world_size = 2;
  options.rank = 2;
  EXPECT_EQ(ValidateDistributedOptions(options).message(), "rank 2 is outside [0, world size 2)");
  options.rank = 1;
  options.local_rank = 7;
  EXPECT_EQ(ValidateDistributedOptions(options).message(), "local rank 7 is outside [0, world size 2)");
  options.local_rank = 0;
  options.master_port = 0;
  EXPECT_EQ(ValidateDistributedOptions(options).message(), "master port 0 is outside the port range [1, 65535]");
  options.master_port = 1;
  options.master_addr = "";
  EXPECT_EQ(ValidateDistributedOptions(options).message(), "master address is empty");
  options.master_addr = "h";
  options.timeout = std::chrono::milliseconds(0);
  EXPECT_EQ(ValidateDistributedOptions(options).message(), "distributed timeout 0 ms must be positive");
  options.timeout = std::chrono::milliseconds(1);
  options.world_size = 0;
  EXPECT_EQ(ValidateDistributedOptions(options).message(), "world size 0 must be at least 1");
}

}  // namespace
}  // namespace d2lora::engine
