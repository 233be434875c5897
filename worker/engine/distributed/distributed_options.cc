#include "worker/engine/distributed/distributed_options.h"

#include <algorithm>
#include <cmath>
#include <cstdlib>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "common/status_macros.h"

namespace d2lora::engine {
namespace {

// One resolved setting and where it came from, for error messages:
// `--rank 3` or `environment variable RANK = "3"`.
template <typename T>
struct Sourced {
  T value{};
  std::string source;
};

std::string FlagSource(const std::string& flag, const std::string& value) { return absl::StrCat(flag, " ", value); }

std::string EnvSource(const std::string& var, const std::string& value) {
  return absl::StrCat("environment variable ", var, " = \"", value, "\"");
}

// An unset or empty variable reads as nullopt.
std::optional<std::string> Env(const GetenvFn& getenv_fn, const std::string& var) {
  std::optional<std::string> value = getenv_fn ? getenv_fn(var) : std::nullopt;
  if (value && value->empty()) return std::nullopt;
  return value;
}

// Flag, else environment variable, else `fallback`.
absl::StatusOr<Sourced<int64_t>> ResolveInt(const std::optional<int64_t>& flag, const std::string& flag_name,
                                            const std::string& var, const GetenvFn& getenv_fn, int64_t fallback,
                                            const std::string& fallback_source) {
  if (flag) return Sourced<int64_t>{*flag, FlagSource(flag_name, std::to_string(*flag))};
  if (std::optional<std::string> text = Env(getenv_fn, var)) {
    int64_t value = 0;
    if (!absl::SimpleAtoi(*text, &value)) {
      return absl::InvalidArgumentError(absl::StrCat(EnvSource(var, *text), ": not an integer"));
    }
    return Sourced<int64_t>{value, EnvSource(var, *text)};
  }
  return Sourced<int64_t>{fallback, fallback_source};
}

absl::Status CheckRankRange(const Sourced<int64_t>& rank, int64_t world_size) {
  if (rank.value < 0 || rank.value >= world_size) {
    return absl::InvalidArgumentError(
        absl::StrCat(rank.source, " is outside [0, world size ", world_size, ")"));
  }
  return absl::OkStatus();
}

}  // namespace

std::optional<std::string> GetenvOrNullopt(const std::string& name) {
  const char* value = std::getenv(name.c_str());
  if (value == nullptr || *value == '\0') return std::nullopt;
  return std::string(value);
}

absl::StatusOr<DistributedOptions> ResolveDistributedOptions(const DistributedFlags& flags,
                                                             const GetenvFn& getenv_fn) {
  const DistributedOptions defaults;
  DistributedOptions out;

  D2_ASSIGN_OR_RETURN(Sourced<int64_t> world_size,
                      ResolveInt(flags.world_size, "--world-size", "WORLD_SIZE", getenv_fn, defaults.world_size,
                                 "the default world size 1"));
  if (world_size.value < 1) {
    return absl::InvalidArgumentError(absl::StrCat(world_size.source, ": the world size must be at least 1"));
  }
  D2_ASSIGN_OR_RETURN(Sourced<int64_t> rank, ResolveInt(flags.rank, "--rank", "RANK", getenv_fn, defaults.rank,
                                                        "the default rank 0"));
  D2_RETURN_IF_ERROR(CheckRankRange(rank, world_size.value));
  D2_ASSIGN_OR_RETURN(Sourced<int64_t> local_rank,
                      ResolveInt(flags.local_rank, "--local-rank", "LOCAL_RANK", getenv_fn, rank.value,
                                 absl::StrCat("local rank ", rank.value, " (defaulted to the rank)")));
  D2_RETURN_IF_ERROR(CheckRankRange(local_rank, world_size.value));
  out.world_size = world_size.value;
  out.rank = rank.value;
  out.local_rank = local_rank.value;

  if (flags.master_addr) {
    if (flags.master_addr->empty()) return absl::InvalidArgumentError("--master-addr \"\": empty address");
    out.master_addr = *flags.master_addr;
  } else if (std::optional<std::string> addr = Env(getenv_fn, "MASTER_ADDR")) {
    out.master_addr = *addr;
  }

  std::optional<int64_t> port_flag;
  if (flags.master_port) port_flag = *flags.master_port;
  D2_ASSIGN_OR_RETURN(Sourced<int64_t> port, ResolveInt(port_flag, "--master-port", "MASTER_PORT", getenv_fn,
                                                        defaults.master_port, "the default port"));
  if (port.value < 1 || port.value > 65535) {
    return absl::InvalidArgumentError(absl::StrCat(port.source, " is outside the port range [1, 65535]"));
  }
  out.master_port = static_cast<int>(port.value);

  // torch compares with the string "True" exactly; anything else is "no".
  out.use_agent_store = Env(getenv_fn, "TORCHELASTIC_USE_AGENT_STORE") == std::optional<std::string>("True");
  if (out.use_agent_store) {
    D2_ASSIGN_OR_RETURN(Sourced<int64_t> restarts,
                        ResolveInt(std::nullopt, "", "TORCHELASTIC_RESTART_COUNT", getenv_fn, 0,
                                   "the default restart count 0"));
    if (restarts.value < 0) {
      return absl::InvalidArgumentError(absl::StrCat(restarts.source, ": the restart count must be >= 0"));
    }
    out.restart_count = restarts.value;
  }

  if (std::optional<std::string> text = Env(getenv_fn, "D2LORA_DIST_TIMEOUT_S")) {
    double seconds = 0;
    const std::string source = EnvSource("D2LORA_DIST_TIMEOUT_S", *text);
    if (!absl::SimpleAtod(*text, &seconds) || !std::isfinite(seconds)) {
      return absl::InvalidArgumentError(absl::StrCat(source, ": not a number of seconds"));
    }
    // Up to ~31 years: keeps the milliseconds far from overflow.
    if (seconds <= 0 || seconds > 1e9) {
      return absl::InvalidArgumentError(absl::StrCat(source, ": the timeout must be in (0, 1e9] seconds"));
    }
    out.timeout = std::chrono::milliseconds(std::max<int64_t>(1, std::llround(seconds * 1000.0)));
  }

  D2_RETURN_IF_ERROR(ValidateDistributedOptions(out));
  return out;
}

absl::Status ValidateDistributedOptions(const DistributedOptions& options) {
  if (options.world_size < 1) {
    return absl::InvalidArgumentError(absl::StrCat("world size ", options.world_size, " must be at least 1"));
  }
  if (options.rank < 0 || options.rank >= options.world_size) {
    return absl::InvalidArgumentError(
        absl::StrCat("rank ", options.rank, " is outside [0, world size ", options.world_size, ")"));
  }
  if (options.local_rank < 0 || options.local_rank >= options.world_size) {
    return absl::InvalidArgumentError(absl::StrCat("local rank ", options.local_rank, " is outside [0, world size ",
                                                   options.world_size, ")"));
  }
  if (options.master_addr.empty()) return absl::InvalidArgumentError("master address is empty");
  if (options.master_port < 1 || options.master_port > 65535) {
    return absl::InvalidArgumentError(
        absl::StrCat("master port ", options.master_port, " is outside the port range [1, 65535]"));
  }
  if (options.timeout.count() <= 0) {
    return absl::InvalidArgumentError(
        absl::StrCat("distributed timeout ", options.timeout.count(), " ms must be positive"));
  }
  return absl::OkStatus();
}

}  // namespace d2lora::engine
