#include "tests/gpu/check_setup.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cmath>
#include <random>
#include <string>

#include <nlohmann/json.hpp>

#include "tests/worker/engine/model/random_weights.h"
#include "worker/engine/torch_guard.h"

namespace d2lora::gpucheck {

absl::StatusOr<model::ModelConfig> TinyConfig(const TinyShape& shape) {
  const nlohmann::json j = {
      {"architectures", {"LlamaForCausalLM"}},
      {"model_type", "llama"},
      {"vocab_size", shape.vocab},
      {"hidden_size", shape.hidden},
      {"intermediate_size", shape.intermediate},
      {"num_hidden_layers", shape.layers},
      {"num_attention_heads", shape.heads},
      {"num_key_value_heads", shape.kv_heads},
      {"rms_norm_eps", 1e-5},
      {"rope_theta", 10000.0},
      {"max_position_embeddings", 512},
      {"tie_word_embeddings", false},
      {"bos_token_id", 1},
      {"eos_token_id", 2},
      {"torch_dtype", "float32"},
      {"hidden_act", "silu"},
  };
  return model::ParseModelConfig(j.dump(), "gpu_checks/tiny config.json");
}

absl::StatusOr<engine::CausalLM> RandomModel(const model::ModelConfig& config, torch::ScalarType dtype,
                                             uint64_t seed) {
  return engine::GuardTorch("building a random tiny model", [&]() -> absl::StatusOr<engine::CausalLM> {
    engine::CausalLM model(config, torch::TensorOptions().dtype(dtype));
    engine::testing::RandomizeWeights(model, seed, /*bf16_exact=*/true);
    return model;
  });
}

std::vector<engine::Example> CountingExamples(int n, int64_t len, int64_t vocab, uint64_t seed) {
  std::mt19937_64 rng(seed);
  const int64_t span = vocab - 3;
  std::vector<engine::Example> out;
  for (int i = 0; i < n; ++i) {
    engine::Example e;
    const int64_t l = len - static_cast<int64_t>(rng() % 4);
    int64_t tok = 3 + static_cast<int64_t>(rng() % static_cast<uint64_t>(span));
    for (int64_t t = 0; t < l; ++t) {
      e.ids.push_back(tok);
      e.loss_mask.push_back(t == 0 ? 0 : 1);
      tok = 3 + (tok - 3 + 1) % span;
    }
    out.push_back(std::move(e));
  }
  return out;
}

int FreeLoopbackPort() {
  const int fd = ::socket(AF_INET, SOCK_STREAM, 0);
  if (fd < 0) return 0;
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  addr.sin_port = 0;
  int port = 0;
  socklen_t len = sizeof(addr);
  if (::bind(fd, reinterpret_cast<sockaddr*>(&addr), sizeof(addr)) == 0 &&
      ::getsockname(fd, reinterpret_cast<sockaddr*>(&addr), &len) == 0) {
    port = ntohs(addr.sin_port);
  }
  ::close(fd);
  return port;
}

std::string DtypeName(torch::ScalarType dtype) {
  switch (dtype) {
    case torch::kFloat32: return "fp32";
    case torch::kBFloat16: return "bf16";
    case torch::kHalf: return "fp16";
    case torch::kFloat64: return "fp64";
    default: return c10::toString(dtype);
  }
}

double MaxAbsDiff(const torch::Tensor& a, const torch::Tensor& b) {
  return (a.to(torch::kCPU, torch::kFloat64) - b.to(torch::kCPU, torch::kFloat64)).abs().max().item<double>();
}

}  // namespace d2lora::gpucheck
