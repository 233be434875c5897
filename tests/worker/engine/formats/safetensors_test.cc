#include "worker/engine/formats/safetensors.h"

#include <torch/torch.h>

#include <cstring>
#include <filesystem>
#include <string>

#include "absl/strings/str_cat.h"
#include "gtest/gtest.h"
#include "nlohmann/json.hpp"
#include "tests/support/test_support.h"

namespace d2lora::engine {
namespace {

using ::d2lora::testing::ReadFile;
using ::d2lora::testing::TempDir;
using ::d2lora::testing::WriteFile;

std::string LengthPrefix(uint64_t n) {
  std::string s(8, '\0');
  for (int i = 0; i < 8; ++i) s[i] = static_cast<char>((n >> (8 * i)) & 0xff);
  return s;
}

// A safetensors file from a header string and raw data bytes.
std::string Craft(const std::string& header, const std::string& data = "") {
  return LengthPrefix(header.size()) + header + data;
}

std::string Bytes(const at::Tensor& t) {
  at::Tensor c = t.contiguous();
  return std::string(static_cast<const char*>(c.data_ptr()), c.numel() * c.element_size());
}

// Whether `status`'s message contains `phrase`, for EXPECT_TRUE.
::testing::AssertionResult MessageHas(const absl::Status& status, const std::string& phrase) {
  if (std::string(status.message()).find(phrase) != std::string::npos) return ::testing::AssertionSuccess();
  return ::testing::AssertionFailure() << "message of " << status << " lacks \"" << phrase << "\"";
}

class SafetensorsTest : public ::testing::Test {
 protected:
  TempDir dir_;
  std::string path_ = dir_.file("model.safetensors");

  // Writes `contents`, opens it, and expects an InvalidArgument error whose
  // message holds the path and every phrase.
  void ExpectBad(const std::string& contents, const std::vector<std::string>& phrases) {
    WriteFile(path_, contents);
    auto file = SafetensorsFile::Open(path_);
    ASSERT_FALSE(file.ok());
    EXPECT_EQ(file.status().code(), absl::StatusCode::kInvalidArgument) << file.status();
    EXPECT_TRUE(MessageHas(file.status(), path_));
    for (const std::string& p : phrases) EXPECT_TRUE(MessageHas(file.status(), p));
  }
};

NamedTensors AllDtypes() {
  torch::manual_seed(7);
  NamedTensors t;
  t.emplace_back("f32", torch::randn({3, 5}));
  t.emplace_back("f16", torch::randn({4, 3}).to(torch::kHalf));
  t.emplace_back("bf16", torch::randn({7}).to(torch::kBFloat16));
  t.emplace_back("f64", torch::randn({2, 3, 2}, torch::kDouble));
  t.emplace_back("i64", torch::randint(-1000000, 1000000, {5}, torch::kLong));
  t.emplace_back("i32", torch::randint(-1000, 1000, {3, 1}, torch::kInt));
  t.emplace_back("u8", torch::randint(0, 256, {9}, torch::kByte));
  t.emplace_back("bool", torch::randint(0, 2, {2, 2}, torch::kLong).to(torch::kBool));
  t.emplace_back("scalar", torch::tensor(3.25f).reshape({}));
  t.emplace_back("empty", torch::zeros({0, 4}, torch::kHalf));
  t.emplace_back("empty_end", torch::zeros({2, 0}));
  t.emplace_back("odd_u8", torch::randint(0, 256, {3}, torch::kByte));  // leaves the next tensor misaligned
  t.emplace_back("after_odd", torch::randn({2}, torch::kDouble));
  t.emplace_back("transposed", torch::randn({3, 4}).t());
  return t;
}

TEST_F(SafetensorsTest, RoundTripIsBitExactForEveryDtype) {
  NamedTensors tensors = AllDtypes();
  std::map<std::string, std::string> metadata = {{"format", "pt"}, {"note", "héllo \"quoted\""}};
  D2_ASSERT_OK(WriteSafetensors(path_, tensors, metadata));

  auto file = SafetensorsFile::Open(path_);
  D2_ASSERT_OK(file.status());
  EXPECT_EQ((*file)->path(), path_);
  EXPECT_EQ((*file)->metadata(), metadata);
  ASSERT_EQ((*file)->entries().size(), tensors.size());
  for (size_t i = 1; i < (*file)->entries().size(); ++i) {
    EXPECT_LE((*file)->entries()[i - 1].end, (*file)->entries()[i].begin);
  }
  for (const auto& [name, want] : tensors) {
    SCOPED_TRACE(name);
    ASSERT_TRUE((*file)->Contains(name));
    const SafetensorsEntry* e = (*file)->Find(name);
    EXPECT_EQ(e->dtype, want.scalar_type());
    EXPECT_EQ(e->shape, want.sizes().vec());
    auto got = (*file)->Get(name);
    D2_ASSERT_OK(got.status());
    EXPECT_TRUE(got->device().is_cpu());
    EXPECT_EQ(got->scalar_type(), want.scalar_type());
    EXPECT_EQ(got->sizes(), want.sizes());
    EXPECT_EQ(Bytes(*got), Bytes(want));
  }
  auto scalar = (*file)->Get("scalar");
  D2_ASSERT_OK(scalar.status());
  EXPECT_EQ(scalar->dim(), 0);
  EXPECT_EQ(scalar->item<float>(), 3.25f);
  EXPECT_EQ((*file)->Get("empty")->numel(), 0);
}

TEST_F(SafetensorsTest, NoMetadataMeansNoMetadataKey) {
  D2_ASSERT_OK(WriteSafetensors(path_, {{"a", torch::ones({2})}}));
  std::string raw = ReadFile(path_);
  EXPECT_EQ(raw.find("__metadata__"), std::string::npos);
  auto file = SafetensorsFile::Open(path_);
  D2_ASSERT_OK(file.status());
  EXPECT_TRUE((*file)->metadata().empty());
}

TEST_F(SafetensorsTest, WrittenHeaderParsesAndDataIsAligned) {
  NamedTensors tensors = AllDtypes();
  D2_ASSERT_OK(WriteSafetensors(path_, tensors, {{"format", "pt"}}));
  std::string raw = ReadFile(path_);
  ASSERT_GE(raw.size(), 8u);
  uint64_t n = 0;
  for (int i = 7; i >= 0; --i) n = (n << 8) | static_cast<uint8_t>(raw[i]);
  EXPECT_EQ((8 + n) % 8, 0u);
  ASSERT_LE(8 + n, raw.size());
  nlohmann::ordered_json header = nlohmann::ordered_json::parse(raw.substr(8, n));
  ASSERT_TRUE(header.is_object());
  EXPECT_EQ(header["__metadata__"]["format"], "pt");
  // Tensors appear in the given order, contiguously, and fill the rest of the file.
  uint64_t offset = 0;
  size_t i = 0;
  for (const auto& [key, value] : header.items()) {
    if (key == "__metadata__") continue;
    ASSERT_LT(i, tensors.size());
    EXPECT_EQ(key, tensors[i].first);
    EXPECT_EQ(value["dtype"], *SafetensorsDtypeName(tensors[i].second.scalar_type()));
    EXPECT_EQ(value["shape"].get<std::vector<int64_t>>(), tensors[i].second.sizes().vec());
    EXPECT_EQ(value["data_offsets"][0].get<uint64_t>(), offset);
    offset += tensors[i].second.numel() * tensors[i].second.element_size();
    EXPECT_EQ(value["data_offsets"][1].get<uint64_t>(), offset);
    ++i;
  }
  EXPECT_EQ(i, tensors.size());
  EXPECT_EQ(8 + n + offset, raw.size());
}

TEST_F(SafetensorsTest, InPlaceOpsDoNotReachTheFile) {
  D2_ASSERT_OK(WriteSafetensors(path_, {{"w", torch::arange(6, torch::kFloat).reshape({2, 3})}}));
  const std::string before = ReadFile(path_);
  at::Tensor t;
  {
    auto file = SafetensorsFile::Open(path_);
    D2_ASSERT_OK(file.status());
    auto got = (*file)->Get("w");
    D2_ASSERT_OK(got.status());
    t = *got;
    // Aligned data is not copied: two Gets see the same bytes.
    EXPECT_EQ((*file)->Get("w")->data_ptr(), t.data_ptr());
  }  // the file object is gone; the tensor keeps the mapping alive
  t.add_(100);
  t.mul_(2);
  EXPECT_EQ(t[1][2].item<float>(), 210.0f);
  EXPECT_EQ(ReadFile(path_), before);
  auto again = SafetensorsFile::Open(path_);
  D2_ASSERT_OK(again.status());
  EXPECT_TRUE(torch::equal(*(*again)->Get("w"), torch::arange(6, torch::kFloat).reshape({2, 3})));
}

TEST_F(SafetensorsTest, MisalignedDataIsCopied) {
  // Header of odd length puts the data area at an odd address.
  std::string header = R"({"w":{"dtype":"F32","shape":[2],"data_offsets":[0,8]}})";
  if ((8 + header.size()) % 2 == 0) header += " ";
  float values[2] = {1.5f, -2.0f};
  WriteFile(path_, Craft(header, std::string(reinterpret_cast<const char*>(values), sizeof(values))));
  auto file = SafetensorsFile::Open(path_);
  D2_ASSERT_OK(file.status());
  auto got = (*file)->Get("w");
  D2_ASSERT_OK(got.status());
  EXPECT_EQ(reinterpret_cast<uintptr_t>(got->data_ptr()) % 4, 0u);
  EXPECT_EQ(got->data_ptr<float>()[0], 1.5f);
  EXPECT_EQ(got->data_ptr<float>()[1], -2.0f);
}

TEST_F(SafetensorsTest, GapsBetweenTensorsAndEmptyTensorsInsideOthersAreFine) {
  std::string header =
      R"({"a":{"dtype":"U8","shape":[2],"data_offsets":[4,6]},)"
      R"("z":{"dtype":"F32","shape":[0],"data_offsets":[5,5]}})";
  WriteFile(path_, Craft(header, "\x01\x02\x03\x04\x05\x06\x07"));
  auto file = SafetensorsFile::Open(path_);
  D2_ASSERT_OK(file.status());
  EXPECT_EQ(Bytes(*(*file)->Get("a")), "\x05\x06");
  EXPECT_EQ((*file)->Get("z")->numel(), 0);
}

TEST_F(SafetensorsTest, GetUnknownNameIsNotFound) {
  D2_ASSERT_OK(WriteSafetensors(path_, {{"a", torch::ones({1})}}));
  auto file = SafetensorsFile::Open(path_);
  D2_ASSERT_OK(file.status());
  EXPECT_FALSE((*file)->Contains("b"));
  EXPECT_EQ((*file)->Find("b"), nullptr);
  auto got = (*file)->Get("b");
  ASSERT_FALSE(got.ok());
  EXPECT_EQ(got.status().code(), absl::StatusCode::kNotFound);
  EXPECT_TRUE(MessageHas(got.status(), path_));
  EXPECT_TRUE(MessageHas(got.status(), "'b'"));
}

TEST_F(SafetensorsTest, MissingFileIsNotFound) {
  auto file = SafetensorsFile::Open(dir_.file("nope.safetensors"));
  ASSERT_FALSE(file.ok());
  EXPECT_EQ(file.status().code(), absl::StatusCode::kNotFound);
  EXPECT_TRUE(MessageHas(file.status(), "nope.safetensors"));
}

TEST_F(SafetensorsTest, WriteReplacesAtomicallyAndLeavesNoTemporaries) {
  D2_ASSERT_OK(WriteSafetensors(path_, {{"a", torch::ones({4})}}));
  D2_ASSERT_OK(WriteSafetensors(path_, {{"b", torch::zeros({2}, torch::kLong)}}));
  int count = 0;
  for (const auto& entry : std::filesystem::directory_iterator(dir_.path())) {
    (void)entry;
    ++count;
  }
  EXPECT_EQ(count, 1);
  auto file = SafetensorsFile::Open(path_);
  D2_ASSERT_OK(file.status());
  EXPECT_FALSE((*file)->Contains("a"));
  EXPECT_TRUE((*file)->Contains("b"));
}

TEST_F(SafetensorsTest, WriteRefusesBadInput) {
  auto expect_bad = [&](const NamedTensors& t, const std::string& phrase) {
    absl::Status s = WriteSafetensors(path_, t);
    EXPECT_EQ(s.code(), absl::StatusCode::kInvalidArgument) << s;
    EXPECT_TRUE(MessageHas(s, path_));
    EXPECT_TRUE(MessageHas(s, phrase));
  };
  expect_bad({{"a", torch::ones({1})}, {"a", torch::ones({1})}}, "'a' appears twice");
  expect_bad({{"", torch::ones({1})}}, "empty name");
  expect_bad({{"__metadata__", torch::ones({1})}}, "reserved");
  expect_bad({{"c", torch::ones({1}, torch::kComplexFloat)}}, "'c'");
  expect_bad({{"s", torch::ones({1}, torch::kShort)}}, "'s'");
  expect_bad({{"u", at::Tensor()}}, "undefined");
  EXPECT_FALSE(std::filesystem::exists(path_));
  EXPECT_EQ(std::distance(std::filesystem::directory_iterator(dir_.path()), std::filesystem::directory_iterator{}), 0);
}

TEST_F(SafetensorsTest, DtypeNames) {
  EXPECT_EQ(*SafetensorsDtypeName(c10::ScalarType::Float), "F32");
  EXPECT_EQ(*SafetensorsDtypeName(c10::ScalarType::Half), "F16");
  EXPECT_EQ(*SafetensorsDtypeName(c10::ScalarType::BFloat16), "BF16");
  EXPECT_EQ(*SafetensorsDtypeName(c10::ScalarType::Double), "F64");
  EXPECT_EQ(*SafetensorsDtypeName(c10::ScalarType::Long), "I64");
  EXPECT_EQ(*SafetensorsDtypeName(c10::ScalarType::Int), "I32");
  EXPECT_EQ(*SafetensorsDtypeName(c10::ScalarType::Byte), "U8");
  EXPECT_EQ(*SafetensorsDtypeName(c10::ScalarType::Bool), "BOOL");
  EXPECT_EQ(SafetensorsDtypeName(c10::ScalarType::Char).status().code(), absl::StatusCode::kInvalidArgument);
}

// --- Corrupt files -----------------------------------------------------------

const char kGoodEntry[] = R"("w":{"dtype":"F32","shape":[2,2],"data_offsets":[0,16]})";

TEST_F(SafetensorsTest, TruncatedBelowEightBytes) {
  ExpectBad("", {"too short"});
  ExpectBad(std::string("\x05\x00\x00", 3), {"3 bytes", "too short"});
}

TEST_F(SafetensorsTest, HeaderLengthTooLarge) {
  ExpectBad(LengthPrefix(kMaxSafetensorsHeaderBytes + 1) + "{}", {"header length", "exceeds the limit"});
  ExpectBad(LengthPrefix(~uint64_t{0}) + "{}", {"header length", "exceeds the limit"});
}

TEST_F(SafetensorsTest, HeaderBeyondFileEnd) {
  ExpectBad(LengthPrefix(100) + "{}", {"header length 100", "past the end of the file"});
}

TEST_F(SafetensorsTest, InvalidJson) {
  ExpectBad(Craft("{\"w\": "), {"not valid JSON"});
  ExpectBad(Craft("\xff\xfe"), {"not valid JSON"});
  ExpectBad(Craft(""), {"not valid JSON"});
}

TEST_F(SafetensorsTest, JsonNotAnObject) {
  ExpectBad(Craft("[1, 2]"), {"not a JSON object"});
  ExpectBad(Craft("\"w\""), {"not a JSON object"});
}

TEST_F(SafetensorsTest, EntryNotAnObject) {
  ExpectBad(Craft(R"({"w": [1]})"), {"tensor 'w'", "not a JSON object"});
}

TEST_F(SafetensorsTest, UnknownDtype) {
  ExpectBad(Craft(R"({"w":{"dtype":"F8_E4M3","shape":[2],"data_offsets":[0,2]}})", "ab"),
            {"tensor 'w'", "unsupported dtype", "F8_E4M3"});
  ExpectBad(Craft(R"({"w":{"dtype":3,"shape":[2],"data_offsets":[0,2]}})", "ab"), {"tensor 'w'", "dtype"});
}

TEST_F(SafetensorsTest, NegativeOrNonIntegerShape) {
  ExpectBad(Craft(R"({"w":{"dtype":"U8","shape":[-2],"data_offsets":[0,0]}})"),
            {"tensor 'w'", "shape", "non-negative integer"});
  ExpectBad(Craft(R"({"w":{"dtype":"U8","shape":[1.5],"data_offsets":[0,0]}})"),
            {"tensor 'w'", "shape", "non-negative integer"});
  ExpectBad(Craft(R"({"w":{"dtype":"U8","shape":["2"],"data_offsets":[0,2]}})", "ab"),
            {"tensor 'w'", "shape", "non-negative integer"});
  ExpectBad(Craft(R"({"w":{"dtype":"U8","shape":2,"data_offsets":[0,2]}})", "ab"),
            {"tensor 'w'", "shape is not an array"});
  ExpectBad(Craft(R"({"w":{"dtype":"U8","shape":[18446744073709551615],"data_offsets":[0,2]}})", "ab"),
            {"tensor 'w'", "shape"});
}

TEST_F(SafetensorsTest, OffsetsWrongSize) {
  ExpectBad(Craft(absl::StrCat("{", R"("w":{"dtype":"F32","shape":[2,2],"data_offsets":[0,12]})", "}"),
                  std::string(16, '\0')),
            {"tensor 'w'", "data_offsets [0, 12] hold 12 bytes but F32 [2, 2] needs 16"});
  // numel * element size overflows 64 bits.
  ExpectBad(Craft(R"({"w":{"dtype":"F64","shape":[4294967296,4294967296],"data_offsets":[0,0]}})"),
            {"tensor 'w'", "too large"});
  ExpectBad(Craft(R"({"w":{"dtype":"F64","shape":[2305843009213693952],"data_offsets":[0,0]}})"),
            {"tensor 'w'", "too large"});
}

TEST_F(SafetensorsTest, MalformedOffsets) {
  ExpectBad(Craft(R"({"w":{"dtype":"U8","shape":[2],"data_offsets":[0,1,2]}})", "ab"),
            {"tensor 'w'", "data_offsets must be [begin, end]"});
  ExpectBad(Craft(R"({"w":{"dtype":"U8","shape":[2],"data_offsets":[-1,1]}})", "ab"),
            {"tensor 'w'", "data_offsets must be [begin, end]"});
  ExpectBad(Craft(R"({"w":{"dtype":"U8","shape":[0],"data_offsets":[2,1]}})", "ab"),
            {"tensor 'w'", "end before they begin"});
}

TEST_F(SafetensorsTest, OffsetsBeyondData) {
  ExpectBad(Craft(absl::StrCat("{", kGoodEntry, "}"), std::string(15, '\0')),
            {"tensor 'w'", "data_offsets [0, 16]", "past the end of the data area (15 bytes)"});
  ExpectBad(Craft(R"({"w":{"dtype":"U8","shape":[0],"data_offsets":[9,9]}})", "ab"),
            {"tensor 'w'", "past the end of the data area"});
}

TEST_F(SafetensorsTest, OverlappingTensors) {
  ExpectBad(Craft(absl::StrCat("{", kGoodEntry, R"(,"v":{"dtype":"F16","shape":[2],"data_offsets":[12,16]}})"),
                  std::string(16, '\0')),
            {"tensor 'v'", "overlap tensor 'w'"});
  // A later tensor inside a long earlier one overlaps it even if an empty range lies between.
  ExpectBad(Craft(R"({"a":{"dtype":"U8","shape":[8],"data_offsets":[0,8]},)"
                  R"("b":{"dtype":"U8","shape":[1],"data_offsets":[2,3]},)"
                  R"("c":{"dtype":"U8","shape":[0],"data_offsets":[1,1]}})",
                  std::string(8, '\0')),
            {"tensor 'b'", "overlap tensor 'a'"});
}

TEST_F(SafetensorsTest, MetadataMustMapStringsToStrings) {
  ExpectBad(Craft(R"({"__metadata__":{"format":1}})"), {"__metadata__", "'format'", "not a string"});
  ExpectBad(Craft(R"({"__metadata__":["pt"]})"), {"__metadata__", "not a JSON object"});
}

TEST_F(SafetensorsTest, MissingOrExtraField) {
  ExpectBad(Craft(R"({"w":{"dtype":"F32","data_offsets":[0,0]}})"), {"tensor 'w'", "missing field 'shape'"});
  ExpectBad(Craft(R"({"w":{"shape":[],"data_offsets":[0,0]}})"), {"tensor 'w'", "missing field 'dtype'"});
  ExpectBad(Craft(R"({"w":{"dtype":"F32","shape":[]}})"), {"tensor 'w'", "missing field 'data_offsets'"});
  ExpectBad(Craft(R"({"w":{"dtype":"U8","shape":[],"data_offsets":[0,1],"x":1}})", "a"),
            {"tensor 'w'", "unknown field 'x'"});
}

TEST_F(SafetensorsTest, EmptyTensorNameIsRefused) {
  ExpectBad(Craft(R"({"":{"dtype":"U8","shape":[],"data_offsets":[0,1]}})", "a"), {"empty name"});
}

TEST_F(SafetensorsTest, BoolBytesMustBeZeroOrOne) {
  WriteFile(path_, Craft(R"({"b":{"dtype":"BOOL","shape":[3],"data_offsets":[0,3]}})", std::string("\x01\x00\x02", 3)));
  auto file = SafetensorsFile::Open(path_);
  D2_ASSERT_OK(file.status());
  auto got = (*file)->Get("b");
  ASSERT_FALSE(got.ok());
  EXPECT_EQ(got.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_TRUE(MessageHas(got.status(), path_));
  EXPECT_TRUE(MessageHas(got.status(), "tensor 'b'"));
}

TEST_F(SafetensorsTest, ADirectoryIsRefused) {
  auto file = SafetensorsFile::Open(dir_.path());
  ASSERT_FALSE(file.ok());
  EXPECT_TRUE(MessageHas(file.status(), dir_.path()));
}

}  // namespace
}  // namespace d2lora::engine
