#include "common/text_format.h"

#include <gtest/gtest.h>

namespace d2lora {
namespace {

TEST(ParseBytes, ReadsBinaryAndDecimalUnits) {
  EXPECT_EQ(*ParseBytes("81920"), 81920);
  EXPECT_EQ(*ParseBytes("512B"), 512);
  EXPECT_EQ(*ParseBytes("80GiB"), int64_t{80} << 30);
  EXPECT_EQ(*ParseBytes(" 80 gib "), int64_t{80} << 30);
  EXPECT_EQ(*ParseBytes("1.5TiB"), int64_t{3} << 39);
  EXPECT_EQ(*ParseBytes("4KiB"), 4096);
  EXPECT_EQ(*ParseBytes("500MB"), 500000000);
  EXPECT_EQ(*ParseBytes("2kB"), 2000);
}

TEST(ParseBytes, RefusesWhatIsNotAWholePositiveSize) {
  for (const char* bad : {"", "GiB", "-1", "0", "0.5", "1.5", "80 GB/s", "80XB", "1e3", "9999999TiB", "1.2.3MB"}) {
    auto parsed = ParseBytes(bad);
    EXPECT_FALSE(parsed.ok()) << bad;
    EXPECT_NE(parsed.status().message().find(std::string("\"") + bad + "\""), std::string::npos)
        << parsed.status().message();
  }
}

TEST(FormatBytes, UsesBinaryUnits) {
  EXPECT_EQ(FormatBytes(1023), "1023 B");
  EXPECT_EQ(FormatBytes(1536), "1.5 KiB");
  EXPECT_EQ(FormatBytes(int64_t{5} << 30), "5.0 GiB");
}

}  // namespace
}  // namespace d2lora
