#include "worker/engine/data/batching.h"

#include <algorithm>
#include <map>
#include <numeric>
#include <random>
#include <set>

#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "tests/support/test_support.h"
#include "worker/engine/data/shuffle.h"

namespace d2lora::engine {
namespace {

using ::testing::ElementsAre;
using ::testing::HasSubstr;

std::vector<int64_t> RandomLengths(int64_t n, uint32_t seed) {
  std::mt19937 gen(seed);
  std::vector<int64_t> lengths(static_cast<size_t>(n));
  for (int64_t& l : lengths) l = 1 + static_cast<int64_t>(gen() % 200);
  return lengths;
}

TEST(ShuffleTest, GeneratorsAreTheSpecifiedOnes) {
  EXPECT_EQ(SplitMix64(0), 0xE220A8397B1DCDAFULL);  // SplitMix64's first output from state 0
  std::mt19937_64 rng;                              // the standard pins its 10000th output
  rng.discard(9999);
  EXPECT_EQ(rng(), 9981545732273789042ULL);
}

TEST(ShuffleTest, UniformBelowStaysInRange) {
  std::mt19937_64 rng(1);
  std::vector<int> counts(3, 0);
  for (int i = 0; i < 3000; ++i) ++counts[UniformBelow(rng, 3)];
  for (int c : counts) EXPECT_GT(c, 800);
  EXPECT_EQ(UniformBelow(rng, 1), 0u);
  EXPECT_LT(UniformBelow(rng, ~uint64_t{0}), ~uint64_t{0});
}

TEST(ShuffleTest, DeterministicPerSeedAndEpochAndDifferentAcrossEpochs) {
  const std::vector<int64_t> a = ShuffledOrder(100, 42, 0);
  EXPECT_EQ(a, ShuffledOrder(100, 42, 0));
  EXPECT_NE(a, ShuffledOrder(100, 42, 1));
  EXPECT_NE(a, ShuffledOrder(100, 43, 0));
  std::vector<int64_t> sorted = a;
  std::sort(sorted.begin(), sorted.end());
  std::vector<int64_t> identity(100);
  std::iota(identity.begin(), identity.end(), 0);
  EXPECT_EQ(sorted, identity);
  EXPECT_NE(a, identity);
  EXPECT_TRUE(ShuffledOrder(0, 1, 0).empty());
  EXPECT_THAT(ShuffledOrder(1, 1, 0), ElementsAre(0));
}

TEST(BatchingTest, ValidateOptions) {
  BatchingOptions o;
  D2_EXPECT_OK(ValidateBatching(o));
  o.batch_size = 0;
  EXPECT_THAT(ValidateBatching(o).message(), HasSubstr("batch_size = 0: must be >= 1"));
  o = BatchingOptions();
  o.batch_size = 16;
  o.micro_batch_size = 4;
  o.world_size = 3;
  EXPECT_THAT(ValidateBatching(o).message(),
              HasSubstr("batch_size = 16: must be divisible by micro_batch_size * world_size = 4 * 3"));
  o.world_size = 0;
  EXPECT_THAT(ValidateBatching(o).message(), HasSubstr("world_size = 0"));
  o = BatchingOptions();
  o.group_factor = -1;
  EXPECT_FALSE(ValidateBatching(o).ok());
}

TEST(BatchingTest, StepsPerEpochDropsTheIncompleteBatch) {
  EXPECT_EQ(StepsPerEpoch(100, 16), 6);
  EXPECT_EQ(StepsPerEpoch(96, 16), 6);
  EXPECT_EQ(StepsPerEpoch(15, 16), 0);
  EXPECT_EQ(StepsPerEpoch(0, 16), 0);
}

TEST(BatchingTest, EpochPlanIsDeterministicAndDiffersAcrossEpochs) {
  const std::vector<int64_t> lengths = RandomLengths(96, 3);
  BatchingOptions o;
  o.batch_size = 8;
  o.micro_batch_size = 2;
  o.group_factor = 3;
  EXPECT_EQ(EpochBatches(lengths, o, 0), EpochBatches(lengths, o, 0));
  EXPECT_NE(EpochBatches(lengths, o, 0), EpochBatches(lengths, o, 1));
  o.seed = 7;
  BatchingOptions other = o;
  other.seed = 8;
  EXPECT_NE(EpochBatches(lengths, o, 0), EpochBatches(lengths, other, 0));
}

TEST(BatchingTest, EveryExampleOncePerEpochAcrossRanksAndMicroBatches) {
  const int64_t n = 96;
  const std::vector<int64_t> lengths = RandomLengths(n, 5);
  for (int64_t world : {1, 2, 4}) {
    for (int64_t k : {0, 1, 50}) {
      BatchingOptions o;
      o.batch_size = 16;
      o.micro_batch_size = 2;
      o.world_size = world;
      o.group_factor = k;
      D2_ASSERT_OK(ValidateBatching(o));
      for (int64_t epoch : {0, 1}) {
        std::map<int64_t, int> seen;
        const auto batches = EpochBatches(lengths, o, epoch);
        ASSERT_EQ(static_cast<int64_t>(batches.size()), StepsPerEpoch(n, o.batch_size));
        for (const auto& global : batches) {
          ASSERT_EQ(global.size(), 16u);
          for (int64_t rank = 0; rank < world; ++rank) {
            const std::vector<int64_t> slice = RankSlice(global, rank, world);
            ASSERT_EQ(static_cast<int64_t>(slice.size()), 16 / world);
            const auto micros = MicroBatches(slice, o.micro_batch_size);
            ASSERT_EQ(static_cast<int64_t>(micros.size()), 16 / world / 2);
            for (const auto& micro : micros) {
              ASSERT_EQ(micro.size(), 2u);
              for (int64_t i : micro) ++seen[i];
            }
          }
        }
        ASSERT_EQ(static_cast<int64_t>(seen.size()), n) << "world " << world << " K " << k;
        for (const auto& [i, count] : seen) EXPECT_EQ(count, 1) << "example " << i;
      }
    }
  }
}

TEST(BatchingTest, UnionOfRankSlicesIsTheOneRankBatch) {
  const std::vector<int64_t> lengths = RandomLengths(64, 9);
  BatchingOptions one;
  one.batch_size = 8;
  one.micro_batch_size = 1;
  const auto reference = EpochBatches(lengths, one, 2);
  for (int64_t world : {2, 4}) {
    BatchingOptions o = one;
    o.world_size = world;
    const auto batches = EpochBatches(lengths, o, 2);
    ASSERT_EQ(batches.size(), reference.size());
    for (size_t step = 0; step < batches.size(); ++step) {
      std::vector<int64_t> joined;
      for (int64_t rank = 0; rank < world; ++rank) {
        for (const auto& micro : MicroBatches(RankSlice(batches[step], rank, world), 1)) {
          joined.insert(joined.end(), micro.begin(), micro.end());
        }
      }
      EXPECT_EQ(joined, reference[step]) << "world " << world << " step " << step;
    }
  }
}

TEST(BatchingTest, LengthGroupingSortsWithinBatchesButNotAcrossThem) {
  const std::vector<int64_t> lengths = RandomLengths(160, 11);
  BatchingOptions o;
  o.batch_size = 8;
  o.micro_batch_size = 8;
  o.group_factor = 50;  // one chunk: the whole epoch sorted, then the batch order shuffled
  const auto batches = EpochBatches(lengths, o, 0);
  std::vector<int64_t> firsts;
  int64_t padding = 0;
  for (const auto& b : batches) {
    for (size_t i = 1; i < b.size(); ++i) EXPECT_GE(lengths[b[i - 1]], lengths[b[i]]);
    firsts.push_back(lengths[b.front()]);
    for (int64_t i : b) padding += lengths[b.front()] - lengths[i];
  }
  EXPECT_FALSE(std::is_sorted(firsts.begin(), firsts.end()));
  EXPECT_FALSE(std::is_sorted(firsts.rbegin(), firsts.rend()));

  o.group_factor = 0;
  int64_t random_padding = 0;
  for (const auto& b : EpochBatches(lengths, o, 0)) {
    const int64_t longest = lengths[*std::max_element(
        b.begin(), b.end(), [&](int64_t x, int64_t y) { return lengths[x] < lengths[y]; })];
    for (int64_t i : b) random_padding += longest - lengths[i];
  }
  EXPECT_LT(padding * 4, random_padding);
}

TEST(BatchingTest, IncompleteLastBatchIsDropped) {
  const std::vector<int64_t> lengths = RandomLengths(21, 1);
  BatchingOptions o;
  o.batch_size = 4;
  o.micro_batch_size = 2;
  const auto batches = EpochBatches(lengths, o, 0);
  ASSERT_EQ(batches.size(), 5u);
  std::set<int64_t> seen;
  for (const auto& b : batches) seen.insert(b.begin(), b.end());
  EXPECT_EQ(seen.size(), 20u);
}

TEST(DataCursorTest, AdvancesAcrossEpochsAndRoundTrips) {
  DataCursor c;
  c = NextCursor(c, 3);
  EXPECT_EQ(c, (DataCursor{0, 1}));
  c = NextCursor(NextCursor(c, 3), 3);
  EXPECT_EQ(c, (DataCursor{1, 0}));
  EXPECT_EQ(CursorToGlobalStep(DataCursor{2, 1}, 3), 7);
  EXPECT_EQ(CursorFromGlobalStep(7, 3), (DataCursor{2, 1}));
  absl::StatusOr<DataCursor> back = CursorFromJson(CursorToJson(DataCursor{4, 5}));
  D2_ASSERT_OK(back.status());
  EXPECT_EQ(*back, (DataCursor{4, 5}));
  EXPECT_FALSE(CursorFromJson(nlohmann::json{{"epoch", 1}}).ok());
  EXPECT_FALSE(CursorFromJson(nlohmann::json{{"epoch", -1}, {"step", 0}}).ok());
  EXPECT_FALSE(CursorFromJson(nlohmann::json::array()).ok());
}

}  // namespace
}  // namespace d2lora::engine
