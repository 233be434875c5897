#include "client/cli_util.h"

#include <iostream>

namespace d2lora::cli {

int Fail(const std::string& command, const absl::Status& status) {
  std::cerr << "d2lora " << command << ": error: " << status.message() << std::endl;
  return kExitError;
}

}  // namespace d2lora::cli
