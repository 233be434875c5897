#include "common/status_codes.h"

#include <gtest/gtest.h>

namespace d2lora {
namespace {

TEST(StatusCodesTest, EveryCodeByItsNameAndNothingElse) {
  for (int c = 0; c <= 16; ++c) {
    const auto code = static_cast<absl::StatusCode>(c);
    EXPECT_EQ(ParseStatusCode(absl::StatusCodeToString(code)), code) << c;
  }
  EXPECT_FALSE(ParseStatusCode("invalid_argument").has_value());  // the canonical spelling only
  EXPECT_FALSE(ParseStatusCode("").has_value());
  EXPECT_FALSE(ParseStatusCode("TEAPOT").has_value());
}

}  // namespace
}  // namespace d2lora
