#include "server/scheduler.h"

#include <gtest/gtest.h>

namespace d2lora::server {
namespace {

TEST(PlaceJobsTest, PacksRanksOntoTheFewestWorkers) {
  auto p = PlaceJobs({{"j", 3}}, {{"a", {0}, 1}, {"b", {0, 1, 2}, 4}});
  ASSERT_EQ(p.size(), 1u);
  EXPECT_EQ(p[0].ranks, (std::vector<std::pair<std::string, int>>{{"b", 0}, {"b", 1}, {"b", 2}}));
}

TEST(PlaceJobsTest, AHeadThatDoesNotFitHoldsBackTheQueue) {
  auto p = PlaceJobs({{"big", 3}, {"small", 1}}, {{"a", {0, 1}, 2}, {"b", {}, 2}});
  EXPECT_TRUE(p.empty());
}

TEST(PlaceJobsTest, AJobLargerThanTheClusterIsPassedOver) {
  auto p = PlaceJobs({{"huge", 9}, {"small", 1}, {"pair", 2}}, {{"a", {0, 1}, 2}});
  ASSERT_EQ(p.size(), 1u);
  EXPECT_EQ(p[0].job_id, "small");  // then "pair" waits for two free slots
}

TEST(PlaceJobsTest, NoSlotIsGivenTwice) {
  auto p = PlaceJobs({{"x", 1}, {"y", 1}, {"z", 1}}, {{"a", {0, 1}, 2}});
  ASSERT_EQ(p.size(), 2u);
  EXPECT_NE(p[0].ranks[0], p[1].ranks[0]);
}

TEST(PlaceJobsTest, WorkersWithAsManyFreeSlotsGoInTheOrderGiven) {
  auto p = PlaceJobs({{"one", 1}, {"two", 2}}, {{"c", {0}, 1}, {"a", {0}, 1}, {"b", {0, 1}, 2}, {"d", {0}, 1}});
  ASSERT_EQ(p.size(), 2u);
  EXPECT_EQ(p[0].ranks, (std::vector<std::pair<std::string, int>>{{"b", 0}}));
  EXPECT_EQ(p[1].ranks, (std::vector<std::pair<std::string, int>>{{"c", 0}, {"a", 0}}));
}

TEST(PlaceJobsTest, RanksGoOnlyOnSlotsTheMemoryPlanFits) {
  const int64_t gib = int64_t{1} << 30;
  WorkerSlots small{"small", {0, 1}, 2, {{0, 4 * gib}, {1, 4 * gib}}};
  WorkerSlots big{"big", {0}, 1, {{0, 16 * gib}}};
  WorkerSlots unknown{"unknown", {0}, 1, {}};  // advertises nothing: fits any job
  QueuedJob heavy{"heavy", 1, {}, 8 * gib};
  auto p = PlaceJobs({heavy}, {small, big});
  ASSERT_EQ(p.size(), 1u);
  EXPECT_EQ(p[0].ranks, (std::vector<std::pair<std::string, int>>{{"big", 0}}));  // not the worker with more free slots

  // Two ranks of 8 GiB: one slot fits, so the job waits at the head (the big
  // slot is busy) and holds back the queue behind it.
  QueuedJob pair{"pair", 2, {}, 8 * gib};
  WorkerSlots big_busy{"big", {}, 1, {{0, 16 * gib}}};
  WorkerSlots big2{"big2", {0}, 1, {{0, 16 * gib}}};
  EXPECT_TRUE(PlaceJobs({pair, {"light", 1}}, {small, big_busy, big2}).empty());
  // A job larger than every slot that fits it is passed over; light jobs run.
  auto q = PlaceJobs({{"huge", 1, {}, 32 * gib}, {"light", 1}}, {small, big});
  ASSERT_EQ(q.size(), 1u);
  EXPECT_EQ(q[0].job_id, "light");
  // A slot advertising nothing takes it; a job with no plan goes anywhere.
  auto r = PlaceJobs({{"huge", 1, {}, 32 * gib}, {"any", 2}}, {small, unknown});
  ASSERT_EQ(r.size(), 2u);
  EXPECT_EQ(r[0].ranks, (std::vector<std::pair<std::string, int>>{{"unknown", 0}}));
  EXPECT_EQ(r[1].ranks, (std::vector<std::pair<std::string, int>>{{"small", 0}, {"small", 1}}));
}

TEST(ElasticFallbackSizesTest, SizesThatSplitTheBatchFromMinUp) {
  EXPECT_EQ(ElasticFallbackSizes(4, 1, 16), (std::vector<int>{2, 1}));  // 3 does not split 16
  EXPECT_EQ(ElasticFallbackSizes(4, 2, 12), (std::vector<int>{3, 2}));
  EXPECT_TRUE(ElasticFallbackSizes(2, 2, 16).empty());  // min = world size: never fewer
  EXPECT_TRUE(ElasticFallbackSizes(1, 0, 16).empty());
}

TEST(FittingSizeTest, FullSizeThenTheLargestFallbackThatFits) {
  const QueuedJob e{"e", 4, {2, 1}};
  EXPECT_EQ(FittingSize(e, 5), 4);
  EXPECT_EQ(FittingSize(e, 3), 2);
  EXPECT_EQ(FittingSize(e, 1), 1);
  EXPECT_EQ(FittingSize(e, 0), 0);
  EXPECT_EQ(FittingSize({"rigid", 2, {}}, 1), 0);
  EXPECT_EQ(SmallestSize(e), 1);
  EXPECT_EQ(SmallestSize({"rigid", 2, {}}), 2);
}

TEST(PlaceJobsTest, AnElasticJobStartsOnTheLargestFallbackThatFits) {
  // 4 ranks wanted, 3 free: the fallbacks 3 (not allowed: say the batch does not split) are absent, 2 fits.
  auto p = PlaceJobs({{"e", 4, {2, 1}}, {"small", 1}}, {{"a", {0, 1}, 2}, {"b", {0}, 1}});
  ASSERT_EQ(p.size(), 2u);
  EXPECT_EQ(p[0].job_id, "e");
  EXPECT_EQ(p[0].world_size, 2);
  EXPECT_EQ(p[0].ranks, (std::vector<std::pair<std::string, int>>{{"a", 0}, {"a", 1}}));
  EXPECT_EQ(p[1].job_id, "small");
  EXPECT_EQ(p[1].world_size, 1);
}

TEST(PlaceJobsTest, AnElasticJobTakesItsFullSizeWhenItFits) {
  auto p = PlaceJobs({{"e", 2, {1}}}, {{"a", {0}, 1}, {"b", {0}, 1}});
  ASSERT_EQ(p.size(), 1u);
  EXPECT_EQ(p[0].world_size, 2);
}

TEST(PlaceJobsTest, AnElasticJobLargerThanTheClusterRunsSmaller) {
  // A worker is gone for good: 2 ranks wanted, 1 slot in the whole cluster.
  auto p = PlaceJobs({{"e", 2, {1}}, {"rigid", 2}}, {{"a", {0}, 1}});
  ASSERT_EQ(p.size(), 1u);
  EXPECT_EQ(p[0].job_id, "e");
  EXPECT_EQ(p[0].world_size, 1);
}

TEST(PlaceJobsTest, NoFallbackSmallEnoughHoldsBackTheQueue) {
  auto p = PlaceJobs({{"e", 4, {3}}, {"small", 1}}, {{"a", {0, 1}, 2}, {"b", {}, 2}});
  EXPECT_TRUE(p.empty());
}

}  // namespace
}  // namespace d2lora::server
