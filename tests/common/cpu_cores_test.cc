#include "common/cpu_cores.h"

#include <gtest/gtest.h>
#include <sched.h>
#include <unistd.h>

#include <filesystem>
#include <fstream>
#include <string>

namespace d2lora {
namespace {

namespace fs = std::filesystem;

class CgroupCpuLimitTest : public ::testing::Test {
 protected:
  void SetUp() override {
    root_ = fs::path(::testing::TempDir()) / ("cgroup_" + std::to_string(::getpid()) + "_" +
                                              ::testing::UnitTest::GetInstance()->current_test_info()->name());
    fs::remove_all(root_);
    fs::create_directories(root_);
  }
  void TearDown() override { fs::remove_all(root_); }

  void Write(const std::string& relative, const std::string& text) {
    fs::path p = root_ / relative;
    fs::create_directories(p.parent_path());
    std::ofstream(p) << text << "\n";
  }
  std::string root() const { return root_.string(); }

  fs::path root_;
};

TEST_F(CgroupCpuLimitTest, V2QuotaOfTheProcessCgroup) {
  Write("kubepods/pod1/ctr/cpu.max", "150000 100000");
  EXPECT_DOUBLE_EQ(*CgroupCpuLimit(root(), "0::/kubepods/pod1/ctr\n"), 1.5);
}

TEST_F(CgroupCpuLimitTest, V2MaxMeansNoLimit) {
  Write("a/cpu.max", "max 100000");
  EXPECT_FALSE(CgroupCpuLimit(root(), "0::/a\n").has_value());
}

TEST_F(CgroupCpuLimitTest, V2SmallestLimitUpTheTreeWins) {
  Write("a/cpu.max", "100000 100000");       // 1 core on the parent
  Write("a/b/cpu.max", "400000 100000");     // 4 on the child
  EXPECT_DOUBLE_EQ(*CgroupCpuLimit(root(), "0::/a/b\n"), 1.0);
}

TEST_F(CgroupCpuLimitTest, V2ContainerSeesItsCgroupAtTheRoot) {
  // Inside a container's cgroup namespace the named path is not mounted.
  Write("cpu.max", "200000 100000");
  EXPECT_DOUBLE_EQ(*CgroupCpuLimit(root(), "0::/../host/path\n"), 2.0);
}

TEST_F(CgroupCpuLimitTest, V1CfsQuota) {
  Write("cpu,cpuacct/docker/x/cpu.cfs_quota_us", "50000");
  Write("cpu,cpuacct/docker/x/cpu.cfs_period_us", "100000");
  EXPECT_DOUBLE_EQ(*CgroupCpuLimit(root(), "12:pids:/docker/x\n4:cpu,cpuacct:/docker/x\n0::/docker/x\n"), 0.5);
}

TEST_F(CgroupCpuLimitTest, V1MinusOneMeansNoLimit) {
  Write("cpu/cpu.cfs_quota_us", "-1");
  Write("cpu/cpu.cfs_period_us", "100000");
  EXPECT_FALSE(CgroupCpuLimit(root(), "1:cpu:/\n").has_value());
}

TEST_F(CgroupCpuLimitTest, GarbageIsNoLimit) {
  Write("a/cpu.max", "lots");
  EXPECT_FALSE(CgroupCpuLimit(root(), "0::/a\n").has_value());
  EXPECT_FALSE(CgroupCpuLimit(root(), "not a cgroup file").has_value());
  EXPECT_FALSE(CgroupCpuLimit(root() + "/missing", "0::/\n").has_value());
}

TEST(AvailableCpuCores, AtLeastOneAndNoMoreThanTheAffinityMask) {
  cpu_set_t set;
  CPU_ZERO(&set);
  ASSERT_EQ(sched_getaffinity(0, sizeof(set), &set), 0);
  const int cores = AvailableCpuCores();
  EXPECT_GE(cores, 1);
  EXPECT_LE(cores, CPU_COUNT(&set));
}

}  // namespace
}  // namespace d2lora
