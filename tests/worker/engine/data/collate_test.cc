#include "worker/engine/data/collate.h"

#include <map>
#include <memory>

#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "tests/support/test_support.h"
#include "tests/worker/engine/data/byte_tokenizer.h"
#include "worker/engine/data/data_loader.h"

namespace d2lora::engine {
namespace {

using testing::ByteTokenizer;
using ::testing::HasSubstr;

std::vector<int64_t> Row(const torch::Tensor& t, int64_t row) {
  torch::Tensor r = t[row].contiguous();
  return std::vector<int64_t>(r.data_ptr<int64_t>(), r.data_ptr<int64_t>() + r.numel());
}

TEST(CollateTest, PaddingAndLabelsByHand) {
  std::vector<Example> examples(3);
  examples[0] = {{1, 5, 6}, {0, 1, 1}};
  examples[1] = {{1, 7}, {0, 1}};
  examples[2] = {{1, 8, 9, 10}, {0, 0, 1, 1}};
  Batch b = Collate(examples, {1, 0}, /*pad_id=*/0);
  EXPECT_EQ(b.input_ids.sizes(), (std::vector<int64_t>{2, 3}));
  EXPECT_EQ(b.input_ids.scalar_type(), torch::kInt64);
  EXPECT_EQ(b.attention_mask.scalar_type(), torch::kInt64);
  EXPECT_EQ(Row(b.input_ids, 0), (std::vector<int64_t>{1, 7, 0}));
  EXPECT_EQ(Row(b.input_ids, 1), (std::vector<int64_t>{1, 5, 6}));
  EXPECT_EQ(Row(b.attention_mask, 0), (std::vector<int64_t>{1, 1, 0}));
  EXPECT_EQ(Row(b.attention_mask, 1), (std::vector<int64_t>{1, 1, 1}));
  EXPECT_EQ(Row(b.labels, 0), (std::vector<int64_t>{-100, 7, -100}));
  EXPECT_EQ(Row(b.labels, 1), (std::vector<int64_t>{-100, 5, 6}));
  EXPECT_EQ(b.num_targets, 3);
  EXPECT_EQ(b.num_tokens, 5);

  b = Collate(examples, {2}, 99);
  EXPECT_EQ(Row(b.labels, 0), (std::vector<int64_t>{-100, -100, 9, 10}));
}

TEST(CollateTest, PadIdFallsBackToEosThenZero) {
  EXPECT_EQ(CollatePadId(ByteTokenizer(true, true, true)), 0);
  EXPECT_EQ(CollatePadId(ByteTokenizer(true, true, false)), 2);
  EXPECT_EQ(CollatePadId(ByteTokenizer(true, false, false)), 0);
}

std::shared_ptr<std::vector<Example>> MakeExamples(int64_t n) {
  auto examples = std::make_shared<std::vector<Example>>();
  for (int64_t i = 0; i < n; ++i) {
    Example ex;
    ex.ids.assign(static_cast<size_t>(2 + i % 7), 3 + i);  // the id names the example
    ex.loss_mask.assign(ex.ids.size(), 1);
    ex.loss_mask[0] = 0;
    examples->push_back(ex);
  }
  return examples;
}

// Example indices in a batch, from the id that names them.
std::vector<int64_t> Members(const Batch& b) {
  std::vector<int64_t> out;
  for (int64_t row = 0; row < b.input_ids.size(0); ++row) out.push_back(Row(b.input_ids, row)[0] - 3);
  return out;
}

TEST(DataLoaderTest, RanksTogetherCoverTheEpochOnce) {
  auto examples = MakeExamples(48);
  for (int64_t world : {1, 2, 4}) {
    BatchingOptions o;
    o.batch_size = 8;
    o.micro_batch_size = 2;
    o.world_size = world;
    o.group_factor = 2;
    std::map<int64_t, int> seen;
    for (int64_t rank = 0; rank < world; ++rank) {
      absl::StatusOr<DataLoader> loader = DataLoader::Create(examples, o, rank, 0);
      D2_ASSERT_OK(loader.status());
      ASSERT_EQ(loader->steps_per_epoch(), 6);
      for (int step = 0; step < 6; ++step) {
        StepBatches s = loader->Next();
        EXPECT_EQ(s.cursor, (DataCursor{0, step}));
        int64_t global_targets = 0;
        for (int64_t i : loader->GlobalBatch(s.cursor)) global_targets += (*examples)[i].num_targets();
        EXPECT_EQ(s.global_targets, global_targets);
        ASSERT_EQ(static_cast<int64_t>(s.micro_batches.size()), 8 / world / 2);
        for (const Batch& b : s.micro_batches) {
          for (int64_t i : Members(b)) ++seen[i];
        }
      }
      EXPECT_EQ(loader->cursor(), (DataCursor{1, 0}));
    }
    ASSERT_EQ(seen.size(), 48u);
    for (const auto& [i, count] : seen) EXPECT_EQ(count, 1);
  }
}

TEST(DataLoaderTest, ResumingMidEpochGivesTheSameBatches) {
  auto examples = MakeExamples(40);
  BatchingOptions o;
  o.batch_size = 4;
  o.micro_batch_size = 2;
  o.world_size = 2;
  absl::StatusOr<DataLoader> straight = DataLoader::Create(examples, o, 1, 0);
  D2_ASSERT_OK(straight.status());
  std::vector<std::vector<int64_t>> expected;
  DataCursor resume_at;
  for (int step = 0; step < 25; ++step) {  // 10 steps per epoch: into epoch 2
    StepBatches s = straight->Next();
    if (step == 13) resume_at = s.cursor;
    if (step >= 13) expected.push_back(Members(s.micro_batches[0]));
  }
  EXPECT_EQ(resume_at, (DataCursor{1, 3}));

  absl::StatusOr<DataLoader> resumed = DataLoader::Create(examples, o, 1, 0);
  D2_ASSERT_OK(resumed.status());
  D2_ASSERT_OK(resumed->Seek(resume_at));
  for (size_t i = 0; i < expected.size(); ++i) {
    EXPECT_EQ(Members(resumed->Next().micro_batches[0]), expected[i]) << i;
  }
  EXPECT_FALSE(resumed->Seek(DataCursor{0, 10}).ok());
}

TEST(DataLoaderTest, CreateErrors) {
  auto examples = MakeExamples(5);
  BatchingOptions o;
  o.batch_size = 8;
  o.micro_batch_size = 2;
  absl::StatusOr<DataLoader> loader = DataLoader::Create(examples, o, 0, 0);
  ASSERT_FALSE(loader.ok());
  EXPECT_THAT(loader.status().message(), HasSubstr("5 training examples are fewer than one batch"));
  o.batch_size = 4;
  EXPECT_THAT(DataLoader::Create(examples, o, 1, 0).status().message(), HasSubstr("rank 1"));
  o.micro_batch_size = 3;
  EXPECT_FALSE(DataLoader::Create(examples, o, 0, 0).ok());
}

}  // namespace
}  // namespace d2lora::engine
