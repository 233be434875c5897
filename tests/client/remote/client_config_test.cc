#include "client/remote/client_config.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <cstdlib>

#include "tests/client/remote/test_env.h"

namespace d2lora::cli {
namespace {

using ::testing::HasSubstr;

class ClientConfigTest : public remote_test::ScratchEnv {};

TEST_F(ClientConfigTest, DefaultsWithoutConfigFile) {
  auto options = ResolveClientOptions(ConnectionFlags{});
  ASSERT_TRUE(options.ok()) << options.status();
  EXPECT_EQ(options->endpoint, "localhost:50051");
  EXPECT_EQ(options->token, "");
  EXPECT_EQ(options->tls_ca_file, "");
  EXPECT_EQ(options->tls_server_name, "");
}

TEST_F(ClientConfigTest, ConfigFileUnderHome) {
  Write(".config/d2lora/token", "  s3cret \nsecond line\n");
  Write(".config/d2lora/config",
        "endpoint: coord.example:7000\ntoken_file: token\ntls_ca: certs/ca.pem\ntls_server_name: coord\n");
  EXPECT_EQ(ConfigFilePath(), dir() + "/.config/d2lora/config");
  auto options = ResolveClientOptions(ConnectionFlags{});
  ASSERT_TRUE(options.ok()) << options.status();
  EXPECT_EQ(options->endpoint, "coord.example:7000");
  EXPECT_EQ(options->token, "s3cret");
  EXPECT_EQ(options->tls_ca_file, dir() + "/.config/d2lora/certs/ca.pem");
  EXPECT_EQ(options->tls_server_name, "coord");
}

TEST_F(ClientConfigTest, XdgConfigHomeWinsOverHome) {
  Write(".config/d2lora/config", "endpoint: home:1\n");
  Write("xdg/d2lora/config", "endpoint: xdg:2\ntoken: abc\n");
  ::setenv("XDG_CONFIG_HOME", (dir() + "/xdg").c_str(), 1);
  auto options = ResolveClientOptions(ConnectionFlags{});
  ASSERT_TRUE(options.ok()) << options.status();
  EXPECT_EQ(options->endpoint, "xdg:2");
  EXPECT_EQ(options->token, "abc");
}

TEST_F(ClientConfigTest, EnvironmentBeatsConfigFileAndFlagsBeatEnvironment) {
  Write(".config/d2lora/config", "endpoint: file:1\ntoken: file-token\ntls_ca: /file/ca.pem\n");
  ::setenv("D2LORA_ENDPOINT", "env:2", 1);
  ::setenv("D2LORA_TOKEN", "env-token", 1);
  ::setenv("D2LORA_TLS_CA", "/env/ca.pem", 1);
  auto options = ResolveClientOptions(ConnectionFlags{});
  ASSERT_TRUE(options.ok()) << options.status();
  EXPECT_EQ(options->endpoint, "env:2");
  EXPECT_EQ(options->token, "env-token");
  EXPECT_EQ(options->tls_ca_file, "/env/ca.pem");

  ConnectionFlags flags;
  flags.endpoint = "flag:3";
  flags.token = "flag-token";
  flags.tls_ca = "/flag/ca.pem";
  flags.tls_server_name = "flag-name";
  options = ResolveClientOptions(flags);
  ASSERT_TRUE(options.ok()) << options.status();
  EXPECT_EQ(options->endpoint, "flag:3");
  EXPECT_EQ(options->token, "flag-token");
  EXPECT_EQ(options->tls_ca_file, "/flag/ca.pem");
  EXPECT_EQ(options->tls_server_name, "flag-name");
}

TEST_F(ClientConfigTest, TokenFileFlagBeatsEnvironment) {
  ::setenv("D2LORA_TOKEN", "env-token", 1);
  ConnectionFlags flags;
  flags.token_file = Write("tok", "from-file\n");
  auto options = ResolveClientOptions(flags);
  ASSERT_TRUE(options.ok()) << options.status();
  EXPECT_EQ(options->token, "from-file");

  flags.token_file = Write("empty", "\n");
  options = ResolveClientOptions(flags);
  ASSERT_FALSE(options.ok());
  EXPECT_THAT(std::string(options.status().message()), HasSubstr("empty"));
  EXPECT_THAT(std::string(options.status().message()), HasSubstr(flags.token_file));
}

TEST_F(ClientConfigTest, EmptyConfigFileIsFine) {
  Write(".config/d2lora/config", "# nothing yet\n");
  auto options = ResolveClientOptions(ConnectionFlags{});
  ASSERT_TRUE(options.ok()) << options.status();
  EXPECT_EQ(options->endpoint, "localhost:50051");
}

TEST_F(ClientConfigTest, UnknownKeyNamesFileAndKey) {
  const std::string path = Write(".config/d2lora/config", "endpoint: a:1\nendpiont: b:2\n");
  auto options = ResolveClientOptions(ConnectionFlags{});
  ASSERT_FALSE(options.ok());
  EXPECT_THAT(std::string(options.status().message()), HasSubstr(path));
  EXPECT_THAT(std::string(options.status().message()), HasSubstr("endpiont"));
}

TEST_F(ClientConfigTest, MalformedYamlNamesFile) {
  const std::string path = Write(".config/d2lora/config", "endpoint: [unclosed\n");
  auto options = ResolveClientOptions(ConnectionFlags{});
  ASSERT_FALSE(options.ok());
  EXPECT_THAT(std::string(options.status().message()), HasSubstr(path));
  EXPECT_THAT(std::string(options.status().message()), HasSubstr("malformed"));
}

TEST_F(ClientConfigTest, NonMappingAndNonStringValuesNameFile) {
  const std::string path = Write(".config/d2lora/config", "- endpoint\n- token\n");
  auto options = ResolveClientOptions(ConnectionFlags{});
  ASSERT_FALSE(options.ok());
  EXPECT_THAT(std::string(options.status().message()), HasSubstr(path));

  Write(".config/d2lora/config", "endpoint: {host: a}\n");
  options = ResolveClientOptions(ConnectionFlags{});
  ASSERT_FALSE(options.ok());
  EXPECT_THAT(std::string(options.status().message()), HasSubstr(path));
  EXPECT_THAT(std::string(options.status().message()), HasSubstr("endpoint"));
}

TEST_F(ClientConfigTest, TokenAndTokenFileTogetherIsAnError) {
  const std::string path = Write(".config/d2lora/config", "token: a\ntoken_file: b\n");
  auto config = LoadConfigFile(path);
  ASSERT_FALSE(config.ok());
  EXPECT_THAT(std::string(config.status().message()), HasSubstr(path));
}

TEST_F(ClientConfigTest, ExplicitConfigMustExist) {
  ::setenv("D2LORA_CONFIG", (dir() + "/nope.yaml").c_str(), 1);
  auto options = ResolveClientOptions(ConnectionFlags{});
  ASSERT_FALSE(options.ok());
  EXPECT_THAT(std::string(options.status().message()), HasSubstr("nope.yaml"));

  Write("nope.yaml", "endpoint: explicit:9\n");
  options = ResolveClientOptions(ConnectionFlags{});
  ASSERT_TRUE(options.ok()) << options.status();
  EXPECT_EQ(options->endpoint, "explicit:9");
}

TEST_F(ClientConfigTest, MissingTokenFileFromConfigNamesIt) {
  const std::string path = Write(".config/d2lora/config", "token_file: missing-token\n");
  auto options = ResolveClientOptions(ConnectionFlags{});
  ASSERT_FALSE(options.ok());
  EXPECT_THAT(std::string(options.status().message()), HasSubstr(path));
  EXPECT_THAT(std::string(options.status().message()), HasSubstr("missing-token"));
}

}  // namespace
}  // namespace d2lora::cli
