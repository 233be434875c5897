// DESIGN §1: the training forward and backward never materialise dW or W' as a
// dense [out, in] matrix (D2-LoRA in the paper's form W* + dW, the default). Every ATen operator that runs during one training
// step of an adapted layer is observed through a RecordFunction callback; no
// operator may produce a new (non-view) tensor of the weight's size.
#include <ATen/record_function.h>
#include <gtest/gtest.h>
#include <torch/torch.h>

#include <mutex>
#include <string>
#include <vector>

#include "tests/worker/engine/adapters/adapter_test_util.h"
#include "worker/engine/adapters/adapted_linear.h"
#include "worker/engine/adapters/linear.h"

namespace d2lora::engine {
namespace {

constexpr int64_t kOut = 96, kIn = 80, kTokens = 6, kRank = 4;

std::mutex g_mu;
std::vector<std::string> g_weight_sized;  // operators that made a weight-sized tensor
int64_t g_ops_seen = 0;

bool AliasesAnInput(const at::Tensor& out, const at::RecordFunction& fn) {
  for (const c10::IValue& in : fn.inputs()) {
    if (in.isTensor() && in.toTensor().defined() && in.toTensor().is_alias_of(out)) return true;
  }
  return false;
}

void OnEnd(const at::RecordFunction& fn, at::ObserverContext*) {
  std::lock_guard<std::mutex> lock(g_mu);
  ++g_ops_seen;
  for (const c10::IValue& v : fn.outputs()) {
    if (!v.isTensor() || !v.toTensor().defined()) continue;
    const at::Tensor& t = v.toTensor();
    if (t.numel() >= kOut * kIn && !AliasesAnInput(t, fn)) {
      g_weight_sized.push_back(std::string(fn.name()) + " " + c10::str(t.sizes()));
    }
  }
}

class ObserveOps {
 public:
  ObserveOps() {
    {
      std::lock_guard<std::mutex> lock(g_mu);
      g_weight_sized.clear();
      g_ops_seen = 0;
    }
    handle_ = at::addGlobalCallback(
        at::RecordFunctionCallback(nullptr, &OnEnd).needsInputs(true).needsOutputs(true));
  }
  ~ObserveOps() { at::removeCallback(handle_); }

 private:
  at::CallbackHandle handle_;
};

class NoDenseUpdateTest : public ::testing::TestWithParam<std::tuple<AdapterMethod, NormGrad>> {};

TEST_P(NoDenseUpdateTest, TrainingStepMakesNoWeightSizedTensor) {
  auto [method, norm_grad] = GetParam();
  torch::manual_seed(5);
  Linear host(kIn, kOut, true);
  AdapterOptions o;
  o.method = method;
  o.r = kRank;
  o.alpha = 2.0 * kRank;
  o.norm_grad = norm_grad;
  auto adapter = CreateAdaptedLinear(*host, o, "layer");
  ASSERT_TRUE(adapter.ok()) << adapter.status();
  host->set_adapter(*adapter);
  testing::RandomizeAdapter(**adapter);
  torch::Tensor x = torch::randn({kTokens, kIn}).requires_grad_(true);

  std::vector<std::string> found;
  int64_t seen = 0;
  {
    ObserveOps observe;
    host->forward(x).pow(2).sum().backward();
    std::lock_guard<std::mutex> lock(g_mu);
    found = g_weight_sized;
    seen = g_ops_seen;
  }
  EXPECT_GT(seen, 5) << "the observer saw no operators: the test would pass vacuously";
  EXPECT_TRUE(found.empty()) << MethodName(method) << " made weight-sized tensors: " << found.front();
  for (auto& p : (*adapter)->parameters()) EXPECT_TRUE(p.grad().defined());
}

// The observer does see a dense path: the dense reference forward must trip it.
TEST(NoDenseUpdate, ObserverCatchesTheDenseReference) {
  torch::manual_seed(5);
  Linear host(kIn, kOut, true);
  AdapterOptions o;
  o.r = kRank;
  o.alpha = 2.0 * kRank;
  auto adapter = CreateAdaptedLinear(*host, o, "layer");
  ASSERT_TRUE(adapter.ok()) << adapter.status();
  testing::RandomizeAdapter(**adapter);
  torch::Tensor x = torch::randn({kTokens, kIn});
  size_t found = 0;
  {
    ObserveOps observe;
    DenseReferenceForward(**adapter, x).sum().backward();
    std::lock_guard<std::mutex> lock(g_mu);
    found = g_weight_sized.size();
  }
  EXPECT_GT(found, 0u);
}

INSTANTIATE_TEST_SUITE_P(Methods, NoDenseUpdateTest,
                         ::testing::Values(std::make_tuple(AdapterMethod::kD2Lora, NormGrad::kFull),
                                           std::make_tuple(AdapterMethod::kD2Lora, NormGrad::kDetached),
                                           std::make_tuple(AdapterMethod::kLora, NormGrad::kFull),
                                           std::make_tuple(AdapterMethod::kDora, NormGrad::kDetached),
                                           std::make_tuple(AdapterMethod::kDora, NormGrad::kFull)));

}  // namespace
}  // namespace d2lora::engine
