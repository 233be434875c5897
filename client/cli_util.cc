#include "client/cli_util.h"

#include <iostream>

#include "worker/engine/runtime.h"

namespace d2lora::cli {

int Fail(const std::string& command, const absl::Status& status) {
  std::cerr << "d2lora " << command << ": error: " << status.message() << std::endl;
  return kExitError;
}

void SetUpRuntime(int threads) {
  engine::ConfigureThreads(threads);
  if (absl::Status blas = engine::CheckOptimisedBlas(); !blas.ok()) {
    std::cerr << "d2lora: warning: " << blas.message() << std::endl;
  }
}

}  // namespace d2lora::cli
