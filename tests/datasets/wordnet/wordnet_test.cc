#include "datasets/wordnet/wordnet.h"

#include <filesystem>
#include <string>
#include <vector>

#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "tests/datasets/wordnet/wordnet_test_data.h"
#include "tests/support/test_support.h"

namespace d2lora::datasets::wordnet {
namespace {

using ::d2lora::testing::TempDir;
using ::d2lora::testing::WriteFile;
using ::testing::ElementsAre;
using ::testing::HasSubstr;
using ::testing::StartsWith;

// A hand-written database: a noun chain with a multiword lemma and examples, a
// verb with frames and a hex lex_id, an antonym pair with a satellite whose
// words carry syntactic markers, an adverb with a pertainym, CRLF line ends.
testdata::Files SmallDatabase() {
  testdata::Files f;
  f.noun +=
      "00001740 03 n 01 entity 0 001 ~ 00002000 n 0000 | that which exists  \n"
      "00002000 05 n 02 animal 0 beast 0 002 @ 00001740 n 0000 ~ 00002100 n 0000 | a living organism  \n"
      "00002100 05 n 03 dog 0 domestic_dog 0 Canis_familiaris 0 002 @ 00002000 n 0000 + 00005000 v 0101 | a member "
      "of the genus Canis; \"the dog barked all night\"; \"a good dog\"  \n";
  f.verb +=
      "00005000 38 v 02 dog f chase 0 002 @ 00005100 v 0000 + 00002100 n 0101 02 + 08 00 + 11 02 | go after with "
      "the intent to catch; \"The policeman chased the mugger\"  \n"
      "00005100 38 v 01 pursue 0 000 01 + 08 00 | follow in or as if in pursuit  \n";
  f.adj +=
      "00003000 00 a 01 hot 0 002 ! 00003100 a 0101 & 00003200 a 0000 | used of physical heat; \"a hot stove\"  \n"
      "00003100 00 a 01 cold 0 001 ! 00003000 a 0101 | having a low temperature  \n"
      "00003200 00 s 03 red-hot 0 ready_to_hand(p) 0 galore(ip) 1 001 & 00003000 a 0000 | extremely hot  \n";
  f.adv = std::string(testdata::kHeader) + "00004000 02 r 01 hotly 0 001 \\ 00003000 a 0101 | in a hot manner  \r\n";
  return f;
}

TEST(WordNetTest, ParsesEveryKindOfLine) {
  TempDir dir;
  SmallDatabase().Write(dir.path());
  absl::StatusOr<WordNet> wn = LoadWordNet(dir.path());
  D2_ASSERT_OK(wn.status());
  ASSERT_EQ(wn->synsets.size(), 9u);
  EXPECT_EQ(wn->Count(Pos::kNoun), 3u);
  EXPECT_EQ(wn->Count(Pos::kVerb), 2u);
  EXPECT_EQ(wn->Count(Pos::kAdjective), 3u);
  EXPECT_EQ(wn->Count(Pos::kAdverb), 1u);
  EXPECT_EQ(wn->files[0], dir.path() + "/data.noun");

  const Synset& dog = wn->synsets[static_cast<size_t>(wn->Find(Pos::kNoun, 2100))];
  EXPECT_EQ(dog.offset, 2100u);
  EXPECT_EQ(dog.lex_filenum, 5);
  EXPECT_EQ(dog.line, 5);  // two header lines, then entity and animal
  ASSERT_EQ(dog.words.size(), 3u);
  EXPECT_EQ(dog.words[1].lemma, "domestic dog");
  EXPECT_EQ(dog.words[2].lemma, "Canis familiaris");
  EXPECT_EQ(dog.definition, "a member of the genus Canis");
  EXPECT_THAT(dog.examples, ElementsAre("the dog barked all night", "a good dog"));
  ASSERT_EQ(dog.pointers.size(), 2u);
  EXPECT_EQ(dog.pointers[0].symbol, "@");
  EXPECT_FALSE(dog.pointers[0].lexical());
  EXPECT_EQ(wn->synsets[static_cast<size_t>(dog.pointers[0].target_index)].words[0].lemma, "animal");
  const Pointer& derived = dog.pointers[1];
  EXPECT_EQ(derived.symbol, "+");
  EXPECT_EQ(derived.target_pos, Pos::kVerb);
  EXPECT_TRUE(derived.lexical());
  EXPECT_EQ(derived.source, 1);
  EXPECT_EQ(derived.target, 1);
  EXPECT_EQ(derived.target_index, wn->Find(Pos::kVerb, 5000));

  const Synset& chase = wn->synsets[static_cast<size_t>(wn->Find(Pos::kVerb, 5000))];
  EXPECT_EQ(chase.words[0].lex_id, 15);
  ASSERT_EQ(chase.frames.size(), 2u);
  EXPECT_EQ(chase.frames[0].frame, 8);
  EXPECT_EQ(chase.frames[0].word, 0);
  EXPECT_EQ(chase.frames[1].frame, 11);
  EXPECT_EQ(chase.frames[1].word, 2);
  EXPECT_EQ(chase.definition, "go after with the intent to catch");

  const Synset& hot = wn->synsets[static_cast<size_t>(wn->Find(Pos::kAdjective, 3000))];
  EXPECT_FALSE(hot.satellite);
  EXPECT_EQ(hot.pointers[0].symbol, "!");
  EXPECT_EQ(hot.pointers[0].target_index, wn->Find(Pos::kAdjective, 3100));
  const Synset& red_hot = wn->synsets[static_cast<size_t>(wn->Find(Pos::kAdjective, 3200))];
  EXPECT_TRUE(red_hot.satellite);
  EXPECT_EQ(red_hot.pos, Pos::kAdjective);
  ASSERT_EQ(red_hot.words.size(), 3u);
  EXPECT_EQ(red_hot.words[0].lemma, "red-hot");
  EXPECT_EQ(red_hot.words[0].marker, "");
  EXPECT_EQ(red_hot.words[1].lemma, "ready to hand");
  EXPECT_EQ(red_hot.words[1].marker, "p");
  EXPECT_EQ(red_hot.words[2].lemma, "galore");
  EXPECT_EQ(red_hot.words[2].marker, "ip");
  EXPECT_EQ(red_hot.words[2].lex_id, 1);

  const Synset& hotly = wn->synsets[static_cast<size_t>(wn->Find(Pos::kAdverb, 4000))];
  EXPECT_EQ(hotly.pointers[0].symbol, "\\");
  EXPECT_EQ(hotly.definition, "in a hot manner");  // the CR is gone

  EXPECT_EQ(wn->Find(Pos::kNoun, 3000), -1);  // an adjective's offset, not a noun's
  EXPECT_EQ(wn->Find(Pos::kNoun, 1), -1);
}

TEST(WordNetTest, SplitsGlossesIntoDefinitionAndExamples) {
  std::string def;
  std::vector<std::string> ex;
  SplitGloss("  a small feline  ", &def, &ex);
  EXPECT_EQ(def, "a small feline");
  EXPECT_TRUE(ex.empty());

  // A quoted phrase inside the definition is not an example.
  SplitGloss("a workplace; as in the expression \"on the job\";", &def, &ex);
  EXPECT_EQ(def, "a workplace; as in the expression \"on the job\"");
  EXPECT_TRUE(ex.empty());
  SplitGloss("progress (in the phrase \"make strides\"); \"they made big strides\"", &def, &ex);
  EXPECT_EQ(def, "progress (in the phrase \"make strides\")");
  EXPECT_THAT(ex, ElementsAre("they made big strides"));

  // A colon before the example; attributions and stray words are dropped.
  SplitGloss("female of domestic cattle: \"`moo-cow' is a child's term\"", &def, &ex);
  EXPECT_EQ(def, "female of domestic cattle");
  EXPECT_THAT(ex, ElementsAre("`moo-cow' is a child's term"));
  SplitGloss("a trait; \"the quality of mercy\"--Shakespeare; \"a second\" or \"a third\"", &def, &ex);
  EXPECT_EQ(def, "a trait");
  EXPECT_THAT(ex, ElementsAre("the quality of mercy", "a second", "a third"));

  // Only examples; an unterminated last example keeps its text.
  SplitGloss("\"just this\"; \"and an open one", &def, &ex);
  EXPECT_EQ(def, "");
  EXPECT_THAT(ex, ElementsAre("just this", "and an open one"));
}

struct BadLine {
  Pos pos;
  std::string line;
  std::string error;
};

TEST(WordNetTest, MalformedLinesNameFileLineAndField) {
  const std::vector<BadLine> cases = {
      {Pos::kNoun, "0000174 03 n 01 entity 0 000 | x", "synset_offset '0000174' is not 8 decimal digits"},
      {Pos::kNoun, "00001740 3 n 01 entity 0 000 | x", "lex_filenum '3' is not 2 decimal digits"},
      {Pos::kNoun, "00001740 03 v 01 entity 0 000 | x", "ss_type 'v' does not belong in data.noun (expected n)"},
      {Pos::kAdjective, "00001740 03 n 01 entity 0 000 | x",
       "ss_type 'n' does not belong in data.adj (expected a or s)"},
      {Pos::kNoun, "00001740 03 n 0g entity 0 000 | x", "w_cnt '0g' is not 2 hexadecimal digits"},
      {Pos::kNoun, "00001740 03 n 00 000 | x", "w_cnt is 0"},
      {Pos::kNoun, "00001740 03 n 02 entity 0", "line ends where word 2 was expected"},
      {Pos::kNoun, "00001740 03 n 01 entity", "line ends where lex_id of word 1 was expected"},
      {Pos::kNoun, "00001740 03 n 01 entity x 000 | x", "lex_id of word 1 'x' is not 1 hexadecimal digit"},
      {Pos::kNoun, "00001740 03 n 01 entity 0 1 | x", "p_cnt '1' is not 3 decimal digits"},
      {Pos::kNoun, "00001740 03 n 01 entity 0 002 ~ 00002000 n 0000 | x",
       "pointer 2: '|' is not a pointer symbol (p_cnt is 2)"},
      {Pos::kNoun, "00001740 03 n 01 entity 0 001 ~ 00002000 n 0000 ~ 00002100 n 0000 | x",
       "expected '|' before the gloss, found '~'"},
      {Pos::kNoun, "00001740 03 n 01 entity 0 001 ~ 2000 n 0000 | x",
       "pointer 1's synset_offset '2000' is not 8 decimal digits"},
      {Pos::kNoun, "00001740 03 n 01 entity 0 001 ~ 00002000 x 0000 | x",
       "pointer 1: pos 'x' is not n, v, a, s or r"},
      {Pos::kNoun, "00001740 03 n 01 entity 0 001 ~ 00002000 n 01 | x",
       "pointer 1's source/target '01' is not 4 hexadecimal digits"},
      {Pos::kNoun, "00001740 03 n 01 entity 0 001 ~ 00002000 n 0100 | x",
       "pointer 1: source/target 1/0 is neither semantic"},
      {Pos::kNoun, "00001740 03 n 01 entity 0 001 + 00002000 v 0301 | x",
       "pointer 1: source word 3 but the synset has 1 words"},
      {Pos::kNoun, "00001740 03 n 01 entity 0 000 that which exists", "expected '|' before the gloss, found 'that'"},
      {Pos::kVerb, "00005100 38 v 01 pursue 0 000 | follow", "f_cnt '|' is not 2 decimal digits"},
      {Pos::kVerb, "00005100 38 v 01 pursue 0 000 01 08 00 | follow", "frame 1: expected '+', found '08'"},
      {Pos::kVerb, "00005100 38 v 01 pursue 0 000 01 + 08 02 | follow",
       "frame 1: w_num 2 but the synset has 1 words"},
      {Pos::kVerb, "00005100 38 v 01 pursue 0 000 02 + 08 00 | follow", "frame 2: expected '+', found '|'"},
      {Pos::kAdjective, "00003200 00 s 01 (p) 0 000 | x", "word 1 is only a syntactic marker"},
  };
  for (const BadLine& c : cases) {
    std::string file(DataFileName(c.pos));
    std::string contents = std::string(testdata::kHeader) + c.line + "\n";
    absl::StatusOr<std::vector<Synset>> parsed = ParseDataFile(contents, file, c.pos);
    ASSERT_FALSE(parsed.ok()) << c.line;
    EXPECT_EQ(parsed.status().code(), absl::StatusCode::kInvalidArgument);
    EXPECT_THAT(std::string(parsed.status().message()), StartsWith(file + ":3: ")) << c.line;
    EXPECT_THAT(parsed.status().message(), HasSubstr(c.error)) << c.line;
  }
}

TEST(WordNetTest, RepeatedOffsetNamesBothLines) {
  std::string contents = std::string(testdata::kHeader) +
                         "00001740 03 n 01 entity 0 000 | x\n"
                         "\n"
                         "00001740 03 n 01 thing 0 000 | y\n";
  absl::StatusOr<std::vector<Synset>> parsed = ParseDataFile(contents, "data.noun", Pos::kNoun);
  ASSERT_FALSE(parsed.ok());
  EXPECT_EQ(parsed.status().message(), "data.noun:5: synset_offset 00001740 repeats line 3");
}

TEST(WordNetTest, UnresolvedPointersNameFileAndLine) {
  TempDir dir;
  testdata::Files f = SmallDatabase();
  f.noun += "00002200 05 n 01 cat 0 001 @ 00009999 n 0000 | a small feline\n";
  f.Write(dir.path());
  absl::StatusOr<WordNet> wn = LoadWordNet(dir.path());
  ASSERT_FALSE(wn.ok());
  EXPECT_EQ(wn.status().message(), dir.path() + "/data.noun:6: pointer 1 (@ 00009999 n) names no synset in " +
                                       dir.path() + "/data.noun");

  f = SmallDatabase();
  f.adj += "00003300 00 a 01 tepid 0 001 ! 00003100 a 0102 | moderately warm\n";
  f.Write(dir.path());
  wn = LoadWordNet(dir.path());
  ASSERT_FALSE(wn.ok());
  EXPECT_THAT(wn.status().message(),
              HasSubstr("/data.adj:6: pointer 1 (! 00003100 a) names target word 2 but that synset has 1 words"));
}

TEST(WordNetTest, MissingFileIsNamed) {
  TempDir dir;
  SmallDatabase().Write(dir.path());
  std::filesystem::remove(dir.file("data.verb"));
  absl::StatusOr<WordNet> wn = LoadWordNet(dir.path());
  ASSERT_FALSE(wn.ok());
  EXPECT_EQ(wn.status().code(), absl::StatusCode::kNotFound);
  EXPECT_THAT(wn.status().message(), HasSubstr(dir.path() + "/data.verb"));
}

TEST(WordNetTest, EmptyFilesAreAnEmptyDatabase) {
  TempDir dir;
  testdata::Files{}.Write(dir.path());
  absl::StatusOr<WordNet> wn = LoadWordNet(dir.path());
  D2_ASSERT_OK(wn.status());
  EXPECT_TRUE(wn->synsets.empty());
}

TEST(WordNetRealTest, ParsesWordNet30) {
  if (!testdata::HaveDebianWordNet()) {
    GTEST_SKIP() << "no WordNet in " << testdata::kDebianWordNet << " (Debian package wordnet-base)";
  }
  absl::StatusOr<WordNet> wn = LoadWordNet(testdata::kDebianWordNet);
  D2_ASSERT_OK(wn.status());
  EXPECT_EQ(wn->synsets.size(), 117659u);
  EXPECT_EQ(wn->Count(Pos::kNoun), 82115u);
  EXPECT_EQ(wn->Count(Pos::kVerb), 13767u);
  EXPECT_EQ(wn->Count(Pos::kAdjective), 18156u);
  EXPECT_EQ(wn->Count(Pos::kAdverb), 3621u);

  int dog_index = wn->Find(Pos::kNoun, 2084071);
  ASSERT_GE(dog_index, 0);
  const Synset& dog = wn->synsets[static_cast<size_t>(dog_index)];
  ASSERT_GE(dog.words.size(), 3u);
  EXPECT_EQ(dog.words[0].lemma, "dog");
  EXPECT_EQ(dog.words[1].lemma, "domestic dog");
  EXPECT_EQ(dog.words[2].lemma, "Canis familiaris");
  EXPECT_THAT(dog.definition, StartsWith("a member of the genus Canis"));
  EXPECT_FALSE(dog.examples.empty());
  std::vector<std::string> hypernyms;
  for (const Pointer& p : dog.pointers) {
    if (p.symbol == "@") hypernyms.push_back(wn->synsets[static_cast<size_t>(p.target_index)].words[0].lemma);
  }
  EXPECT_THAT(hypernyms, ElementsAre("canine", "domestic animal"));

  size_t satellites = 0, verb_frames = 0, markers = 0;
  for (const Synset& s : wn->synsets) {
    satellites += s.satellite;
    verb_frames += !s.frames.empty();
    for (const Word& w : s.words) {
      markers += !w.marker.empty();
      EXPECT_EQ(w.lemma.find('_'), std::string::npos) << w.lemma;
      EXPECT_EQ(w.lemma.find('('), std::string::npos) << w.lemma;
    }
  }
  EXPECT_EQ(satellites, 10693u);
  EXPECT_EQ(verb_frames, wn->Count(Pos::kVerb));
  EXPECT_GT(markers, 500u);
}

}  // namespace
}  // namespace d2lora::datasets::wordnet
