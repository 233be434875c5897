// --allowed-path-root: lexical checks, ".." segments, and symlinks that point
// out of a root (or roots that are themselves symlinks), on a real filesystem.
#include "common/path_roots.h"

#include <gtest/gtest.h>

#include <unistd.h>

#include <filesystem>

#include "tests/support/test_support.h"

namespace d2lora {
namespace {

class PathRootsTest : public ::testing::Test {
 protected:
  void SetUp() override {
    std::filesystem::create_directories(dir_.file("root/data"));
    std::filesystem::create_directories(dir_.file("outside"));
    testing::WriteFile(dir_.file("root/data/train.jsonl"), "{}\n");
    testing::WriteFile(dir_.file("outside/secret"), "s\n");
    ASSERT_EQ(symlink(dir_.file("outside").c_str(), dir_.file("root/out").c_str()), 0);
    ASSERT_EQ(symlink(dir_.file("root/data").c_str(), dir_.file("root/alias").c_str()), 0);
    ASSERT_EQ(symlink(dir_.file("root").c_str(), dir_.file("root-link").c_str()), 0);
  }
  absl::StatusCode Code(const PathRoots& roots, const std::string& path) {
    return roots.Check("spec.model", path).code();
  }
  testing::TempDir dir_;
};

TEST_F(PathRootsTest, UnrestrictedStillNeedsAbsolutePathsWithoutDotDot) {
  PathRoots none = *PathRoots::Create({});
  EXPECT_FALSE(none.restricted());
  EXPECT_TRUE(none.Check("f", "/anywhere/x").ok());
  EXPECT_EQ(Code(none, "relative/x"), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(Code(none, ""), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(Code(none, "/a/../b"), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(Code(none, std::string(5000, '/')), absl::StatusCode::kInvalidArgument);
  EXPECT_TRUE(none.Check("f", "/a/..b/c..").ok());  // only a whole ".." segment counts
}

TEST_F(PathRootsTest, PathsMustStayInsideARoot) {
  auto roots = PathRoots::Create({dir_.file("root"), "/nonexistent-root/"});
  ASSERT_TRUE(roots.ok()) << roots.status();
  EXPECT_TRUE(roots->Check("f", dir_.file("root/data/train.jsonl")).ok());
  EXPECT_TRUE(roots->Check("f", dir_.file("root")).ok());
  EXPECT_TRUE(roots->Check("f", dir_.file("root/./data//new-file")).ok());  // need not exist
  EXPECT_TRUE(roots->Check("f", dir_.file("root/alias/train.jsonl")).ok());  // a link that stays inside
  EXPECT_TRUE(roots->Check("f", "/nonexistent-root/m").ok());
  EXPECT_EQ(Code(*roots, dir_.file("outside/secret")), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(Code(*roots, dir_.file("rootx/a")), absl::StatusCode::kInvalidArgument);  // prefix, not a parent
  EXPECT_EQ(Code(*roots, dir_.file("root/../outside/secret")), absl::StatusCode::kInvalidArgument);
  const absl::Status link = roots->Check("spec.data.train", dir_.file("root/out/secret"));
  EXPECT_EQ(link.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_NE(link.message().find("spec.data.train"), std::string::npos) << link;
  EXPECT_NE(link.message().find("symlinks followed"), std::string::npos) << link;
  // A path that does not exist yet, under a directory link that leads out.
  EXPECT_EQ(Code(*roots, dir_.file("root/out/new/file")), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(Code(*roots, dir_.file("root/out")), absl::StatusCode::kInvalidArgument);
}

TEST_F(PathRootsTest, ARootThatIsASymlinkWorksThroughEitherName) {
  auto roots = PathRoots::Create({dir_.file("root-link")});
  ASSERT_TRUE(roots.ok()) << roots.status();
  EXPECT_TRUE(roots->Check("f", dir_.file("root-link/data/train.jsonl")).ok());
  EXPECT_EQ(Code(*roots, dir_.file("root-link/out/secret")), absl::StatusCode::kInvalidArgument);
  // The real name lies outside the root as configured lexically.
  EXPECT_EQ(Code(*roots, dir_.file("root/data/train.jsonl")), absl::StatusCode::kInvalidArgument);
}

TEST_F(PathRootsTest, RootsMustBeAbsolute) {
  EXPECT_EQ(PathRoots::Create({"relative"}).status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(PathRoots::Create({""}).status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(PathRoots::Create({"/a/../b"}).status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_NE(PathRoots::Create({"rel"}).status().message().find("--allowed-path-root"), std::string::npos);
}

}  // namespace
}  // namespace d2lora
