#include "common/cgroup_limits.h"

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

// The memory limit is read the same way as the CPU limit.
using CgroupMemoryLimitTest = CgroupCpuLimitTest;

TEST_F(CgroupMemoryLimitTest, V2SmallestUpTheTreeAndMaxMeansNone) {
  Write("kubepods/pod1/memory.max", "8589934592");    // 8 GiB on the pod
  Write("kubepods/pod1/ctr/memory.max", "max");       // none on the container
  EXPECT_EQ(*CgroupMemoryLimit(root(), "0::/kubepods/pod1/ctr\n"), int64_t{8} << 30);
  Write("kubepods/pod1/ctr/memory.max", "1073741824");  // 1 GiB on the container
  EXPECT_EQ(*CgroupMemoryLimit(root(), "0::/kubepods/pod1/ctr\n"), int64_t{1} << 30);
  Write("b/memory.max", "max");
  EXPECT_FALSE(CgroupMemoryLimit(root(), "0::/b\n").has_value());
}

TEST_F(CgroupMemoryLimitTest, V2ContainerSeesItsCgroupAtTheRoot) {
  Write("memory.max", "2147483648");
  EXPECT_EQ(*CgroupMemoryLimit(root(), "0::/../host/path\n"), int64_t{2} << 30);
}

TEST_F(CgroupMemoryLimitTest, V1LimitInBytesAndItsNoLimitValue) {
  Write("memory/docker/x/memory.limit_in_bytes", "536870912");
  EXPECT_EQ(*CgroupMemoryLimit(root(), "12:pids:/docker/x\n9:memory:/docker/x\n"), int64_t{512} << 20);
  Write("memory/docker/x/memory.limit_in_bytes", "9223372036854771712");  // v1's "unlimited"
  EXPECT_FALSE(CgroupMemoryLimit(root(), "9:memory:/docker/x\n").has_value());
}

TEST_F(CgroupMemoryLimitTest, GarbageIsNoLimit) {
  Write("a/memory.max", "-5");
  EXPECT_FALSE(CgroupMemoryLimit(root(), "0::/a\n").has_value());
  Write("a/memory.max", "lots");
  EXPECT_FALSE(CgroupMemoryLimit(root(), "0::/a\n").has_value());
  EXPECT_FALSE(CgroupMemoryLimit(root() + "/missing", "0::/\n").has_value());
  // A CPU limit is no memory limit.
  Write("c/cpu.max", "100000 100000");
  EXPECT_FALSE(CgroupMemoryLimit(root(), "0::/c\n").has_value());
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
