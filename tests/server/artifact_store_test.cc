// The artifact store contract, run against both implementations, then the
// local store's own promises: no escape through symbolic links, sidecars
// repaired after a crash or damage, stale temporary files removed on reopen.
#include <stdlib.h>
#include <unistd.h>

#include <cctype>
#include <chrono>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <memory>
#include <sstream>
#include <string>
#include <thread>
#include <type_traits>
#include <vector>

#include "absl/strings/str_cat.h"
#include "common/sha256.h"
#include "gtest/gtest.h"
#include "server/artifact_store.h"
#include "server/artifact_store_local.h"
#include "server/artifact_store_memory.h"

namespace d2lora::server {
namespace {

namespace fs = std::filesystem;
using absl::StatusCode;

// A fresh folder under the test temporary directory, removed afterwards.
class ScratchDir {
 public:
  ScratchDir() {
    std::string templ = ::testing::TempDir() + "artifact_store_XXXXXX";
    if (::mkdtemp(templ.data()) == nullptr) ADD_FAILURE() << "mkdtemp failed for " << templ;
    path_ = templ;
  }
  ~ScratchDir() {
    std::error_code ec;
    fs::remove_all(path_, ec);  // never follows links
  }
  const std::string& path() const { return path_; }

 private:
  std::string path_;
};

std::string Slurp(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  std::ostringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

void Spit(const std::string& path, const std::string& contents) {
  std::ofstream out(path, std::ios::binary | std::ios::trunc);
  out << contents;
}

int64_t NowMs() {
  return std::chrono::duration_cast<std::chrono::milliseconds>(std::chrono::system_clock::now().time_since_epoch())
      .count();
}

// Writes `contents` in two pieces and commits.
absl::StatusOr<ArtifactInfo> Put(ArtifactStore& store, const std::string& key, const std::string& contents,
                                 const std::string& expected_sha256 = "") {
  auto writer = store.OpenWriter(key);
  if (!writer.ok()) return writer.status();
  const size_t half = contents.size() / 2;
  absl::Status st = (*writer)->Append(contents.substr(0, half));
  if (st.ok()) st = (*writer)->Append(contents.substr(half));
  if (!st.ok()) return st;
  return (*writer)->Commit(expected_sha256);
}

std::string ReadAll(ArtifactStore& store, const std::string& key) {
  auto data = store.Read(key, 0, 1 << 30);
  EXPECT_TRUE(data.ok()) << key << ": " << data.status();
  return data.ok() ? *data : "";
}

std::vector<std::string> Keys(ArtifactStore& store, const std::string& prefix) {
  auto list = store.List(prefix);
  EXPECT_TRUE(list.ok()) << list.status();
  std::vector<std::string> keys;
  if (list.ok()) {
    for (const ArtifactInfo& info : *list) keys.push_back(info.key);
  }
  return keys;
}

// How each implementation is made. `limit` (bytes, < 0 none) is the per-file
// limit of the local store and the capacity of the memory store: either way,
// one file larger than it cannot be written.
struct LocalStore {
  static std::unique_ptr<ArtifactStore> Make(const std::string& dir, int64_t limit) {
    LocalArtifactStore::Options options;
    options.root = dir + "/root";
    if (limit >= 0) options.max_file_bytes = limit;
    auto store = LocalArtifactStore::Create(options);
    EXPECT_TRUE(store.ok()) << store.status();
    return store.ok() ? std::move(*store) : nullptr;
  }
};

struct MemoryStore {
  static std::unique_ptr<ArtifactStore> Make(const std::string&, int64_t limit) {
    MemoryArtifactStore::Options options;
    options.capacity_bytes = limit;
    return std::make_unique<MemoryArtifactStore>(options);
  }
};

template <typename Impl>
class ArtifactStoreTest : public ::testing::Test {
 protected:
  void SetUp() override { store_ = Impl::Make(dir_.path(), -1); }
  std::unique_ptr<ArtifactStore> MakeStore(int64_t limit) { return Impl::Make(dir_.path() + "/limited", limit); }

  ScratchDir dir_;
  std::unique_ptr<ArtifactStore> store_;
};

using Implementations = ::testing::Types<LocalStore, MemoryStore>;
class ImplNames {
 public:
  template <typename T>
  static std::string GetName(int) {
    return std::is_same_v<T, LocalStore> ? "Local" : "Memory";
  }
};
TYPED_TEST_SUITE(ArtifactStoreTest, Implementations, ImplNames);

TYPED_TEST(ArtifactStoreTest, WriteCommitStatRead) {
  ArtifactStore& store = *this->store_;
  const int64_t before = NowMs();
  auto info = Put(store, "jobs/j1/adapter/adapter_model.safetensors", "hello, world");
  ASSERT_TRUE(info.ok()) << info.status();
  EXPECT_EQ(info->key, "jobs/j1/adapter/adapter_model.safetensors");
  EXPECT_EQ(info->size, 12);
  EXPECT_EQ(info->sha256, Sha256Hex("hello, world"));
  EXPECT_GE(info->mtime_ms, before - 1000);
  EXPECT_LE(info->mtime_ms, NowMs() + 1000);

  auto stat = store.Stat("jobs/j1/adapter/adapter_model.safetensors");
  ASSERT_TRUE(stat.ok()) << stat.status();
  EXPECT_EQ(stat->key, info->key);
  EXPECT_EQ(stat->size, 12);
  EXPECT_EQ(stat->sha256, info->sha256);
  EXPECT_EQ(stat->mtime_ms, info->mtime_ms);

  const std::string key = info->key;
  EXPECT_EQ(*store.Read(key, 0, 5), "hello");
  EXPECT_EQ(*store.Read(key, 7, 100), "world");
  EXPECT_EQ(*store.Read(key, 7, 0), "");
  EXPECT_EQ(*store.Read(key, 12, 10), "");
  EXPECT_EQ(*store.Read(key, 1000, 10), "");
  EXPECT_EQ(store.Read(key, -1, 10).status().code(), StatusCode::kInvalidArgument);
  EXPECT_EQ(store.Read(key, 0, -1).status().code(), StatusCode::kInvalidArgument);
  EXPECT_EQ(store.Stat("jobs/j1/missing").status().code(), StatusCode::kNotFound);
  EXPECT_EQ(store.Read("jobs/j1/missing", 0, 1).status().code(), StatusCode::kNotFound);
}

TYPED_TEST(ArtifactStoreTest, EmptyFileAndReplacement) {
  ArtifactStore& store = *this->store_;
  auto empty = Put(store, "e", "");
  ASSERT_TRUE(empty.ok()) << empty.status();
  EXPECT_EQ(empty->size, 0);
  EXPECT_EQ(empty->sha256, Sha256Hex(""));

  ASSERT_TRUE(Put(store, "k", "first version").ok());
  ASSERT_TRUE(Put(store, "k", "v2").ok());
  EXPECT_EQ(ReadAll(store, "k"), "v2");
  EXPECT_EQ(store.Stat("k")->sha256, Sha256Hex("v2"));
  EXPECT_EQ(store.Stat("k")->size, 2);
}

TYPED_TEST(ArtifactStoreTest, UncommittedWriterIsDiscarded) {
  ArtifactStore& store = *this->store_;
  {
    auto writer = store.OpenWriter("uploads/u1/train.jsonl");
    ASSERT_TRUE(writer.ok()) << writer.status();
    ASSERT_TRUE((*writer)->Append("half a file").ok());
  }
  EXPECT_EQ(store.Stat("uploads/u1/train.jsonl").status().code(), StatusCode::kNotFound);
  EXPECT_TRUE(Keys(store, "").empty());

  ASSERT_TRUE(Put(store, "k", "old").ok());
  {
    auto writer = store.OpenWriter("k");
    ASSERT_TRUE(writer.ok());
    ASSERT_TRUE((*writer)->Append("new, never committed").ok());
  }
  EXPECT_EQ(ReadAll(store, "k"), "old");
}

TYPED_TEST(ArtifactStoreTest, WriterIsFinishedByCommit) {
  ArtifactStore& store = *this->store_;
  auto writer = store.OpenWriter("k");
  ASSERT_TRUE(writer.ok());
  ASSERT_TRUE((*writer)->Append("x").ok());
  ASSERT_TRUE((*writer)->Commit().ok());
  EXPECT_EQ((*writer)->Append("y").code(), StatusCode::kFailedPrecondition);
  EXPECT_EQ((*writer)->Commit().status().code(), StatusCode::kFailedPrecondition);
  EXPECT_EQ(ReadAll(store, "k"), "x");
}

TYPED_TEST(ArtifactStoreTest, ExpectedShaMismatchIsDataLossAndKeepsOldContent) {
  ArtifactStore& store = *this->store_;
  ASSERT_TRUE(Put(store, "m/model.bin", "v1").ok());
  auto bad = Put(store, "m/model.bin", "v2", Sha256Hex("something else"));
  EXPECT_EQ(bad.status().code(), StatusCode::kDataLoss) << bad.status();
  EXPECT_EQ(ReadAll(store, "m/model.bin"), "v1");
  EXPECT_EQ(store.Stat("m/model.bin")->sha256, Sha256Hex("v1"));

  auto fresh = Put(store, "m/other.bin", "v2", Sha256Hex("nope"));
  EXPECT_EQ(fresh.status().code(), StatusCode::kDataLoss);
  EXPECT_EQ(store.Stat("m/other.bin").status().code(), StatusCode::kNotFound);

  // The right digest, in either case, commits.
  std::string upper = Sha256Hex("v2");
  for (char& c : upper) c = static_cast<char>(std::toupper(static_cast<unsigned char>(c)));
  auto good = Put(store, "m/model.bin", "v2", upper);
  ASSERT_TRUE(good.ok()) << good.status();
  EXPECT_EQ(ReadAll(store, "m/model.bin"), "v2");
}

TYPED_TEST(ArtifactStoreTest, ListsByPrefixSorted) {
  ArtifactStore& store = *this->store_;
  for (const char* key : {"uploads/u/train.jsonl", "jobs/10/x", "jobs/1/b/c", "jobs/1/a", "jobs/2"}) {
    ASSERT_TRUE(Put(store, key, key).ok()) << key;
  }
  using V = std::vector<std::string>;
  EXPECT_EQ(Keys(store, ""), (V{"jobs/1/a", "jobs/1/b/c", "jobs/10/x", "jobs/2", "uploads/u/train.jsonl"}));
  EXPECT_EQ(Keys(store, "jobs/1/"), (V{"jobs/1/a", "jobs/1/b/c"}));
  EXPECT_EQ(Keys(store, "jobs/1"), (V{"jobs/1/a", "jobs/1/b/c", "jobs/10/x"}));
  EXPECT_EQ(Keys(store, "jobs/1/b/c"), (V{"jobs/1/b/c"}));
  EXPECT_EQ(Keys(store, "j"), (V{"jobs/1/a", "jobs/1/b/c", "jobs/10/x", "jobs/2"}));
  EXPECT_TRUE(Keys(store, "nothing/").empty());
  EXPECT_TRUE(Keys(store, "jobs/2/").empty());  // a file, not a folder

  auto list = store.List("jobs/1/");
  ASSERT_TRUE(list.ok());
  ASSERT_EQ(list->size(), 2u);
  EXPECT_EQ((*list)[0].size, 8);
  EXPECT_EQ((*list)[0].sha256, Sha256Hex("jobs/1/a"));
  EXPECT_EQ(store.List("jobs//").status().code(), StatusCode::kInvalidArgument);
  EXPECT_EQ(store.List("/jobs").status().code(), StatusCode::kInvalidArgument);
  EXPECT_EQ(store.List("../").status().code(), StatusCode::kInvalidArgument);
}

TYPED_TEST(ArtifactStoreTest, DeletesFilesAndFolders) {
  ArtifactStore& store = *this->store_;
  for (const char* key : {"jobs/1/adapter/a.bin", "jobs/1/checkpoints/step-50/s.json", "jobs/10/x", "jobs/1.log"}) {
    ASSERT_TRUE(Put(store, key, "data").ok()) << key;
  }
  ASSERT_TRUE(store.Delete("jobs/1").ok());
  EXPECT_EQ(Keys(store, ""), (std::vector<std::string>{"jobs/1.log", "jobs/10/x"}));
  EXPECT_EQ(store.Stat("jobs/1/adapter/a.bin").status().code(), StatusCode::kNotFound);

  ASSERT_TRUE(store.Delete("jobs/1.log").ok());
  EXPECT_EQ(Keys(store, ""), (std::vector<std::string>{"jobs/10/x"}));
  EXPECT_TRUE(store.Delete("jobs/1.log").ok());  // nothing left: fine
  EXPECT_TRUE(store.Delete("never/was").ok());
  EXPECT_TRUE(store.Delete("jobs/10/x/below-a-file").ok());

  // A deleted key can be written again, as a file or as a folder.
  ASSERT_TRUE(Put(store, "jobs/1", "now a file").ok());
  EXPECT_EQ(ReadAll(store, "jobs/1"), "now a file");
  ASSERT_TRUE(store.Delete("jobs/10/x").ok());
  ASSERT_TRUE(store.Delete("jobs/10").ok());
  ASSERT_TRUE(Put(store, "jobs/10/x/y", "deeper").ok());
  EXPECT_EQ(ReadAll(store, "jobs/10/x/y"), "deeper");
}

TYPED_TEST(ArtifactStoreTest, FilesAndFoldersCannotShareAName) {
  ArtifactStore& store = *this->store_;
  ASSERT_TRUE(Put(store, "a", "file").ok());
  EXPECT_EQ(store.OpenWriter("a/b").status().code(), StatusCode::kFailedPrecondition);
  EXPECT_EQ(store.Stat("a/b").status().code(), StatusCode::kNotFound);
  ASSERT_TRUE(Put(store, "d/e", "file").ok());
  EXPECT_EQ(store.OpenWriter("d").status().code(), StatusCode::kFailedPrecondition);
  EXPECT_EQ(store.Stat("d").status().code(), StatusCode::kNotFound);
  EXPECT_EQ(store.Read("d", 0, 1).status().code(), StatusCode::kNotFound);

  // The same conflict arising while a writer is open is found by Commit().
  auto writer = store.OpenWriter("p/q");
  ASSERT_TRUE(writer.ok());
  ASSERT_TRUE((*writer)->Append("late").ok());
  ASSERT_TRUE(Put(store, "p", "file").ok());
  EXPECT_EQ((*writer)->Commit().status().code(), StatusCode::kFailedPrecondition);
  EXPECT_EQ(ReadAll(store, "p"), "file");
}

TYPED_TEST(ArtifactStoreTest, RejectsInvalidKeys) {
  ArtifactStore& store = *this->store_;
  const std::string seg255(255, 'a');
  const std::vector<std::string> bad = {
      "", "/abs", "a/../b", "a//b", ".", "..", "a/.", "../x", "a/", "x/.d2lora-meta/y", ".d2lora-tmp",
      "has space", "back\\slash", "tab\t", "ü", std::string(256, 'a'),
      absl::StrCat(seg255, "/", seg255, "/", seg255, "/", seg255, "/x")};  // 1025 bytes
  for (const std::string& key : bad) {
    SCOPED_TRACE(absl::StrCat("key \"", key, "\""));
    EXPECT_EQ(ValidateArtifactKey(key).code(), StatusCode::kInvalidArgument);
    EXPECT_EQ(store.OpenWriter(key).status().code(), StatusCode::kInvalidArgument);
    EXPECT_EQ(store.Stat(key).status().code(), StatusCode::kInvalidArgument);
    EXPECT_EQ(store.Read(key, 0, 1).status().code(), StatusCode::kInvalidArgument);
    EXPECT_EQ(store.Delete(key).code(), StatusCode::kInvalidArgument);
  }
  const std::vector<std::string> good = {"a", "jobs/j-1/adapter/adapter_model.safetensors", ".hidden", "a..b",
                                         "..a", "x/d2lora", "_-.", seg255,
                                         absl::StrCat(seg255, "/", seg255, "/", seg255, "/", seg255)};  // 1023
  for (const std::string& key : good) {
    EXPECT_TRUE(ValidateArtifactKey(key).ok()) << key;
  }
  auto info = Put(store, absl::StrCat(seg255, "/", seg255, "/", seg255, "/", seg255), "long");
  EXPECT_TRUE(info.ok()) << info.status();
  const std::string nul_key("nul\0x", 5);
  EXPECT_EQ(ValidateArtifactKey(nul_key).code(), StatusCode::kInvalidArgument);
}

TYPED_TEST(ArtifactStoreTest, FullStoreIsResourceExhaustedWithNothingVisible) {
  std::unique_ptr<ArtifactStore> store = this->MakeStore(100);
  ASSERT_NE(store, nullptr);
  ASSERT_TRUE(Put(*store, "k", "old").ok());

  auto writer = store->OpenWriter("big");
  ASSERT_TRUE(writer.ok());
  ASSERT_TRUE((*writer)->Append(std::string(60, 'x')).ok());
  EXPECT_EQ((*writer)->Append(std::string(60, 'x')).code(), StatusCode::kResourceExhausted);
  EXPECT_EQ((*writer)->Commit().status().code(), StatusCode::kResourceExhausted);  // the error sticks
  EXPECT_EQ(store->Stat("big").status().code(), StatusCode::kNotFound);
  EXPECT_EQ(Keys(*store, ""), std::vector<std::string>{"k"});

  EXPECT_EQ(Put(*store, "k", std::string(200, 'y')).status().code(), StatusCode::kResourceExhausted);
  EXPECT_EQ(ReadAll(*store, "k"), "old");

  // The space of a failed writer is free again.
  writer->reset();
  EXPECT_TRUE(Put(*store, "fits", std::string(90, 'z')).ok());
}

TYPED_TEST(ArtifactStoreTest, ConcurrentWriters) {
  ArtifactStore& store = *this->store_;
  constexpr int kThreads = 8;
  std::vector<std::thread> threads;
  std::vector<absl::Status> results(2 * kThreads);
  for (int t = 0; t < kThreads; ++t) {
    // Different keys, appended in many pieces.
    threads.emplace_back([&, t] {
      auto writer = store.OpenWriter(absl::StrCat("own/", t));
      if (!writer.ok()) return void(results[t] = writer.status());
      for (int i = 0; i < 50; ++i) {
        absl::Status st = (*writer)->Append(std::string(1000, static_cast<char>('a' + t)));
        if (!st.ok()) return void(results[t] = st);
      }
      results[t] = (*writer)->Commit().status();
    });
    // One key for all: the file is one writer's bytes whole, never a mix.
    threads.emplace_back([&, t] {
      results[kThreads + t] =
          Put(store, "shared", std::string(1000 + 10 * t, static_cast<char>('A' + t))).status();
    });
  }
  for (std::thread& thread : threads) thread.join();
  for (const absl::Status& st : results) EXPECT_TRUE(st.ok()) << st;
  for (int t = 0; t < kThreads; ++t) {
    EXPECT_EQ(ReadAll(store, absl::StrCat("own/", t)), std::string(50000, static_cast<char>('a' + t)));
  }
  const std::string shared = ReadAll(store, "shared");
  ASSERT_FALSE(shared.empty());
  const int winner = shared[0] - 'A';
  EXPECT_EQ(shared, std::string(1000 + 10 * winner, shared[0]));
  EXPECT_EQ(store.Stat("shared")->sha256, Sha256Hex(shared));
  EXPECT_EQ(Keys(store, "").size(), static_cast<size_t>(kThreads + 1));
}

TYPED_TEST(ArtifactStoreTest, LastCommitWins) {
  ArtifactStore& store = *this->store_;
  auto first = store.OpenWriter("k");
  auto second = store.OpenWriter("k");
  ASSERT_TRUE(first.ok() && second.ok());
  ASSERT_TRUE((*first)->Append("from the first writer").ok());
  ASSERT_TRUE((*second)->Append("second").ok());
  ASSERT_TRUE((*second)->Commit().ok());
  ASSERT_TRUE((*first)->Commit().ok());
  EXPECT_EQ(ReadAll(store, "k"), "from the first writer");
  EXPECT_EQ(store.Stat("k")->sha256, Sha256Hex("from the first writer"));
}

// ---- The local store on its own.

class LocalArtifactStoreTest : public ::testing::Test {
 protected:
  void SetUp() override { store_ = Open(); }
  std::unique_ptr<LocalArtifactStore> Open() {
    auto store = LocalArtifactStore::Create({root_});
    EXPECT_TRUE(store.ok()) << store.status();
    return store.ok() ? std::move(*store) : nullptr;
  }
  // Files in the reserved temporary folder.
  size_t TempFiles() const {
    size_t n = 0;
    for (const auto& entry : fs::directory_iterator(root_ + "/.d2lora-tmp")) n += entry.exists() ? 1 : 0;
    return n;
  }
  std::string Sidecar(const std::string& key) const { return root_ + "/.d2lora-meta/" + key; }

  ScratchDir dir_;
  ScratchDir outside_;
  const std::string root_ = dir_.path() + "/store";
  std::unique_ptr<LocalArtifactStore> store_;
};

TEST_F(LocalArtifactStoreTest, FilesLiveAtRootSlashKey) {
  ASSERT_TRUE(Put(*store_, "jobs/j/a.txt", "contents").ok());
  EXPECT_EQ(Slurp(root_ + "/jobs/j/a.txt"), "contents");
  EXPECT_TRUE(fs::exists(Sidecar("jobs/j/a.txt")));
  EXPECT_EQ(TempFiles(), 0u);
  ASSERT_TRUE(store_->Delete("jobs/j").ok());
  EXPECT_FALSE(fs::exists(root_ + "/jobs/j"));
  EXPECT_FALSE(fs::exists(root_ + "/.d2lora-meta/jobs/j"));
}

TEST_F(LocalArtifactStoreTest, NoTemporaryFileOutlivesAFailedWriter) {
  LocalArtifactStore::Options options{root_, 10};
  auto limited = LocalArtifactStore::Create(options);
  ASSERT_TRUE(limited.ok());
  auto writer = (*limited)->OpenWriter("k");
  ASSERT_TRUE(writer.ok());
  EXPECT_EQ(TempFiles(), 1u);
  EXPECT_EQ((*writer)->Append(std::string(11, 'x')).code(), StatusCode::kResourceExhausted);
  EXPECT_EQ(TempFiles(), 0u);  // gone at once, not when the writer is destroyed

  EXPECT_EQ(Put(**limited, "k", "abc", Sha256Hex("xyz")).status().code(), StatusCode::kDataLoss);
  EXPECT_EQ(TempFiles(), 0u);
  { ASSERT_TRUE((*limited)->OpenWriter("k").ok()); }
  EXPECT_EQ(TempFiles(), 0u);
  EXPECT_FALSE(fs::exists(root_ + "/k"));
}

TEST_F(LocalArtifactStoreTest, SymlinkedFolderPointingOutsideIsRefused) {
  Spit(outside_.path() + "/secret.txt", "secret");
  fs::create_directory_symlink(outside_.path(), root_ + "/evil");

  EXPECT_EQ(store_->Read("evil/secret.txt", 0, 100).status().code(), StatusCode::kPermissionDenied);
  EXPECT_EQ(store_->Stat("evil/secret.txt").status().code(), StatusCode::kPermissionDenied);
  EXPECT_EQ(store_->OpenWriter("evil/new.txt").status().code(), StatusCode::kPermissionDenied);
  EXPECT_EQ(store_->OpenWriter("evil/sub/new.txt").status().code(), StatusCode::kPermissionDenied);
  EXPECT_EQ(store_->List("evil/").status().code(), StatusCode::kPermissionDenied);
  EXPECT_TRUE(Keys(*store_, "").empty());  // a full listing skips links
  EXPECT_EQ(store_->Delete("evil/secret.txt").code(), StatusCode::kPermissionDenied);

  // A link planted while a writer is open is caught by Commit().
  auto writer = store_->OpenWriter("later/new.txt");
  ASSERT_TRUE(writer.ok());
  ASSERT_TRUE((*writer)->Append("escape attempt").ok());
  fs::create_directory_symlink(outside_.path(), root_ + "/later");
  EXPECT_EQ((*writer)->Commit().status().code(), StatusCode::kPermissionDenied);
  EXPECT_EQ(TempFiles(), 0u);

  // Deleting the link removes the link, never what it points to.
  EXPECT_TRUE(store_->Delete("evil").ok());
  EXPECT_FALSE(fs::exists(fs::symlink_status(root_ + "/evil")));
  EXPECT_EQ(Slurp(outside_.path() + "/secret.txt"), "secret");
  EXPECT_EQ(std::distance(fs::directory_iterator(outside_.path()), fs::directory_iterator()), 1);
}

TEST_F(LocalArtifactStoreTest, SymlinkedFileIsRefused) {
  Spit(outside_.path() + "/secret.txt", "secret");
  fs::create_symlink(outside_.path() + "/secret.txt", root_ + "/link.txt");
  EXPECT_EQ(store_->Read("link.txt", 0, 100).status().code(), StatusCode::kPermissionDenied);
  EXPECT_EQ(store_->Stat("link.txt").status().code(), StatusCode::kPermissionDenied);
  EXPECT_EQ(store_->OpenWriter("link.txt").status().code(), StatusCode::kPermissionDenied);
  EXPECT_EQ(Slurp(outside_.path() + "/secret.txt"), "secret");
}

TEST_F(LocalArtifactStoreTest, StatRepairsDamagedOrMissingSidecar) {
  ASSERT_TRUE(Put(*store_, "a/b.bin", "payload").ok());
  const std::string want = Sha256Hex("payload");

  Spit(Sidecar("a/b.bin"), "garbage");
  auto stat = store_->Stat("a/b.bin");
  ASSERT_TRUE(stat.ok()) << stat.status();
  EXPECT_EQ(stat->sha256, want);
  EXPECT_NE(Slurp(Sidecar("a/b.bin")).find(want), std::string::npos);  // repaired

  fs::remove(Sidecar("a/b.bin"));
  EXPECT_EQ(store_->Stat("a/b.bin")->sha256, want);
  EXPECT_TRUE(fs::exists(Sidecar("a/b.bin")));

  fs::remove_all(root_ + "/.d2lora-meta/a");
  auto list = store_->List("a/");
  ASSERT_TRUE(list.ok());
  ASSERT_EQ(list->size(), 1u);
  EXPECT_EQ((*list)[0].sha256, want);
  EXPECT_TRUE(fs::exists(Sidecar("a/b.bin")));
}

TEST_F(LocalArtifactStoreTest, SidecarOfAnotherFileIsNotTrusted) {
  // A crash after the sidecar of a new version was renamed into place but
  // before the file was: the sidecar describes a file that is not there.
  ASSERT_TRUE(Put(*store_, "k", "version 1").ok());
  ASSERT_TRUE(Put(*store_, "other", "version 2").ok());  // same size, other bytes
  fs::copy_file(Sidecar("other"), Sidecar("k"), fs::copy_options::overwrite_existing);
  store_ = Open();
  EXPECT_EQ(store_->Stat("k")->sha256, Sha256Hex("version 1"));
  EXPECT_EQ(store_->Stat("other")->sha256, Sha256Hex("version 2"));

  // A file replaced behind the store's back by another file (another inode)
  // is rehashed: its sidecar is about a file that is gone.
  Spit(root_ + "/k.new", "version three");
  fs::rename(root_ + "/k.new", root_ + "/k");
  EXPECT_EQ(store_->Stat("k")->sha256, Sha256Hex("version three"));
}

// The store never writes a committed file again: one whose size or mtime
// changed since its sidecar was written (same inode) is damaged. Stat (and so
// every download) is DATA_LOSS naming the file and what changed; List shows
// it, marked; deleting the sidecar (an operator accepting the new bytes) or
// storing the key again clears it. A same-size rewrite within one clock tick
// keeps size and mtime: only the SHA-256 a reader checks can tell (the CLI's
// download and the trainer's checkpoint checksums do).
TEST_F(LocalArtifactStoreTest, AFileChangedInPlaceIsDamaged) {
  ASSERT_TRUE(Put(*store_, "jobs/j/merged/model.safetensors", "weights").ok());
  ASSERT_TRUE(Put(*store_, "jobs/j/summary.json", "{}").ok());
  const std::string path = root_ + "/jobs/j/merged/model.safetensors";
  const auto before = fs::file_size(path);
  {
    std::fstream f(path, std::ios::in | std::ios::out | std::ios::binary);  // same inode, same size
    f.seekp(2);
    f.write("XX", 2);
  }
  // Whatever the clock's granularity: a new mtime.
  fs::last_write_time(path, fs::last_write_time(path) + std::chrono::seconds(5));
  ASSERT_EQ(fs::file_size(path), before);
  auto stat = store_->Stat("jobs/j/merged/model.safetensors");
  ASSERT_EQ(stat.status().code(), StatusCode::kDataLoss) << stat.status();
  EXPECT_NE(stat.status().message().find(path), std::string::npos) << stat.status();
  EXPECT_NE(stat.status().message().find("changed on disk after it was stored"), std::string::npos) << stat.status();
  store_ = Open();  // the same after a restart
  auto list = store_->List("jobs/j/");
  ASSERT_TRUE(list.ok()) << list.status();
  ASSERT_EQ(list->size(), 2u);
  EXPECT_EQ((*list)[0].key, "jobs/j/merged/model.safetensors");
  EXPECT_NE((*list)[0].damaged.find("changed on disk"), std::string::npos);
  EXPECT_EQ((*list)[0].sha256, Sha256Hex("weights")) << "the digest it was stored with";
  EXPECT_TRUE((*list)[1].damaged.empty());
  EXPECT_EQ(store_->Stat("jobs/j/summary.json")->sha256, Sha256Hex("{}"));

  fs::remove(Sidecar("jobs/j/merged/model.safetensors"));  // accepted by hand
  EXPECT_EQ(store_->Stat("jobs/j/merged/model.safetensors")->sha256, Sha256Hex("weXXhts"));
  {
    std::ofstream f(path, std::ios::app);  // grown in place: damaged again
    f << "!";
  }
  EXPECT_EQ(store_->Stat("jobs/j/merged/model.safetensors").status().code(), StatusCode::kDataLoss);
  ASSERT_TRUE(Put(*store_, "jobs/j/merged/model.safetensors", "weights 2").ok());  // stored again
  EXPECT_EQ(store_->Stat("jobs/j/merged/model.safetensors")->sha256, Sha256Hex("weights 2"));
}

TEST_F(LocalArtifactStoreTest, OrphanSidecarsDoNotBlockNewFiles) {
  // Sidecars left by a crash where a folder, or a file, is needed now.
  fs::create_directories(root_ + "/.d2lora-meta/x/y");
  Spit(root_ + "/.d2lora-meta/x/y/z", "stale");
  Spit(root_ + "/.d2lora-meta/f", "stale");
  ASSERT_TRUE(Put(*store_, "x", "file where sidecars had a folder").ok());
  ASSERT_TRUE(Put(*store_, "f/g", "file below a stale sidecar").ok());
  EXPECT_EQ(store_->Stat("x")->sha256, Sha256Hex("file where sidecars had a folder"));
  EXPECT_EQ(store_->Stat("f/g")->sha256, Sha256Hex("file below a stale sidecar"));
}

TEST_F(LocalArtifactStoreTest, ReopenSeesCommittedFilesAndRemovesStaleTemporaries) {
  ASSERT_TRUE(Put(*store_, "jobs/j/adapter.bin", "weights").ok());
  Spit(root_ + "/.d2lora-tmp/w-12345-deadbeef", "left by a crashed writer");
  fs::create_directories(root_ + "/.d2lora-tmp/odd-folder");
  auto live = store_->OpenWriter("jobs/j/log.txt");
  ASSERT_TRUE(live.ok());
  ASSERT_TRUE((*live)->Append("still writing").ok());
  EXPECT_EQ(TempFiles(), 3u);

  std::unique_ptr<LocalArtifactStore> reopened = Open();
  ASSERT_NE(reopened, nullptr);
  EXPECT_EQ(TempFiles(), 1u);  // the live writer's file is locked, so kept
  EXPECT_EQ(ReadAll(*reopened, "jobs/j/adapter.bin"), "weights");
  EXPECT_EQ(reopened->Stat("jobs/j/adapter.bin")->sha256, Sha256Hex("weights"));
  EXPECT_EQ(Keys(*reopened, ""), std::vector<std::string>{"jobs/j/adapter.bin"});

  ASSERT_TRUE((*live)->Commit().ok());
  EXPECT_EQ(ReadAll(*reopened, "jobs/j/log.txt"), "still writing");
  EXPECT_EQ(TempFiles(), 0u);
}

TEST_F(LocalArtifactStoreTest, ListSkipsWhatNoKeyCanName) {
  ASSERT_TRUE(Put(*store_, "ok.txt", "x").ok());
  Spit(root_ + "/has space.txt", "x");
  Spit(root_ + "/.d2lora-other", "x");
  fs::create_symlink(root_ + "/ok.txt", root_ + "/alias.txt");
  EXPECT_EQ(Keys(*store_, ""), std::vector<std::string>{"ok.txt"});
}

TEST_F(LocalArtifactStoreTest, CreateFailsOnAFile) {
  Spit(dir_.path() + "/plain", "x");
  EXPECT_FALSE(LocalArtifactStore::Create({dir_.path() + "/plain"}).ok());
  EXPECT_EQ(LocalArtifactStore::Create({""}).status().code(), StatusCode::kInvalidArgument);
}

TEST(MemoryArtifactStoreTest, CapacityCountsOpenWritersAndIsFreedByDelete) {
  MemoryArtifactStore store(MemoryArtifactStore::Options{100});
  ASSERT_TRUE(Put(store, "a", std::string(40, 'a')).ok());
  auto writer = store.OpenWriter("b");
  ASSERT_TRUE(writer.ok());
  ASSERT_TRUE((*writer)->Append(std::string(50, 'b')).ok());
  EXPECT_EQ(store.used_bytes(), 90);
  EXPECT_EQ(Put(store, "c", std::string(20, 'c')).status().code(), StatusCode::kResourceExhausted);
  writer->reset();
  EXPECT_EQ(store.used_bytes(), 40);
  ASSERT_TRUE(Put(store, "a", std::string(10, 'a')).ok());  // replacing frees the old bytes
  EXPECT_EQ(store.used_bytes(), 10);
  ASSERT_TRUE(store.Delete("a").ok());
  EXPECT_EQ(store.used_bytes(), 0);
}

}  // namespace
}  // namespace d2lora::server
