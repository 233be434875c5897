#include "datasets/wordnet/wordnet_tasks.h"

#include <algorithm>
#include <filesystem>
#include <map>
#include <set>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "absl/strings/str_split.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "tests/datasets/wordnet/wordnet_test_data.h"
#include "tests/support/test_support.h"

namespace d2lora::datasets::wordnet {
namespace {

using ::d2lora::testing::ReadFile;
using ::d2lora::testing::TempDir;
using ::d2lora::testing::WriteFile;
using ::testing::HasSubstr;
using testdata::Line;
using testdata::Name;

WordNet Load(const testdata::Files& files) {
  TempDir dir;
  files.Write(dir.path());
  absl::StatusOr<WordNet> wn = LoadWordNet(dir.path());
  EXPECT_TRUE(wn.ok()) << wn.status();
  return wn.ok() ? std::move(*wn) : WordNet{};
}

// Every lemma of the synsets of `pos`.
std::set<std::string> LemmasOf(const WordNet& wn, Pos pos) {
  std::set<std::string> out;
  for (const Synset& s : wn.synsets) {
    if (s.pos != pos) continue;
    for (const Word& w : s.words) out.insert(w.lemma);
  }
  return out;
}

// The checks every question of every task must pass.
void ExpectWellFormed(const WordNet& wn, const TaskResult& r, const Options& o) {
  std::array<std::set<std::string>, 4> lemmas_of;
  for (Pos pos : kAllPos) lemmas_of[static_cast<size_t>(pos)] = LemmasOf(wn, pos);
  for (Split split : {Split::kTrain, Split::kValidation}) {
    std::set<std::string> seen_questions;
    for (const Question& q : r.splits[static_cast<size_t>(split)]) {
      SCOPED_TRACE(q.question);
      EXPECT_TRUE(seen_questions.insert(q.question).second) << "repeated question";
      ASSERT_EQ(q.choices.size(), static_cast<size_t>(o.choices));
      ASSERT_GE(q.label, 0);
      ASSERT_LT(q.label, o.choices);
      std::set<std::string> distinct(q.choices.begin(), q.choices.end());
      EXPECT_EQ(distinct.size(), q.choices.size()) << "choices repeat";
      std::vector<std::string> words;
      if (!q.choices_are_labels) words = q.choices;
      if (!q.word.empty()) words.push_back(q.word);
      for (const std::string& w : words) {
        EXPECT_TRUE(IsPlainLemma(w)) << w;
        EXPECT_EQ(WordSplit(w, o), split) << w << " is not a " << SplitName(split) << " word";
      }
      if (q.choices_are_labels) {
        EXPECT_TRUE(lemmas_of[static_cast<size_t>(q.pos)].count(q.word)) << q.word << " is no " << PosName(q.pos);
        continue;
      }
      for (const std::string& c : q.choices) {
        EXPECT_TRUE(lemmas_of[static_cast<size_t>(q.pos)].count(c)) << c << " is no " << PosName(q.pos);
      }
      if (!q.word.empty()) {
        EXPECT_EQ(std::count(q.choices.begin(), q.choices.end(), q.word), 0) << "the word is a choice";
      }
    }
  }
}

// Words of a result's questions (the question's word, every choice) by split.
std::array<std::set<std::string>, 2> WordsBySplit(const TaskResult& r) {
  std::array<std::set<std::string>, 2> out;
  for (size_t s = 0; s < 2; ++s) {
    for (const Question& q : r.splits[s]) {
      if (!q.word.empty()) out[s].insert(q.word);
      if (!q.choices_are_labels) out[s].insert(q.choices.begin(), q.choices.end());
    }
  }
  return out;
}

std::string Serialise(const TaskResult& r) {
  std::string out;
  for (const auto& split : r.splits) {
    out += "--\n";
    for (const Question& q : split) out += QuestionJsonLine(q) + "\n";
  }
  return out;
}

TEST(WordNetTasksTest, PlainLemmas) {
  for (const char* ok : {"dog", "domestic dog", "red-hot", "o'clock", "jack-in-the-box"}) {
    EXPECT_TRUE(IsPlainLemma(ok)) << ok;
  }
  for (const char* bad : {"", "Canis familiaris", "9-11", "a.d.", "dog ", " dog", "-ism", "dog-", "two  spaces",
                          "caf\xc3\xa9", "abcdefghijklmnopqrstuvwxyzabcde"}) {
    EXPECT_FALSE(IsPlainLemma(bad)) << bad;
  }
  EXPECT_TRUE(IsPlainLemma("abcdefghijklmnopqrstuvwxyzabcd"));  // 30 characters
}

TEST(WordNetTasksTest, WholeWords) {
  EXPECT_TRUE(ContainsWholeWord("a member of the genus Canis", "canis"));
  EXPECT_TRUE(ContainsWholeWord("Dog food", "dog"));
  EXPECT_TRUE(ContainsWholeWord("a dog's life", "dog"));
  EXPECT_TRUE(ContainsWholeWord("a well-being", "well"));
  EXPECT_TRUE(ContainsWholeWord("frozen ice cream.", "ice cream"));
  EXPECT_FALSE(ContainsWholeWord("dogma", "dog"));
  EXPECT_FALSE(ContainsWholeWord("a hotdog", "dog"));
  EXPECT_FALSE(ContainsWholeWord("ice-cold cream", "ice cream"));
  EXPECT_FALSE(ContainsWholeWord("anything", ""));
}

TEST(WordNetTasksTest, SplitMix64IsTheReferenceGenerator) {
  SplitMix64 rng(0);
  EXPECT_EQ(rng.Next(), 0xe220a8397b1dcdafULL);  // splitmix64's first output from state 0
  EXPECT_EQ(rng.Next(), 0x6e789e6aa1b965f4ULL);
  std::vector<int> counts(5, 0);
  for (int i = 0; i < 50000; ++i) {
    uint64_t v = rng.Uniform(5);
    ASSERT_LT(v, 5u);
    ++counts[v];
  }
  for (int c : counts) EXPECT_NEAR(c, 10000, 500);
  double d = rng.UniformDouble();
  EXPECT_GE(d, 0.0);
  EXPECT_LT(d, 1.0);
}

TEST(WordNetTasksTest, WordSplitIsSeededAndHasTheRightShare) {
  Options o;
  o.val_fraction = 0.25;
  int val = 0, moved = 0;
  Options other = o;
  other.seed = 2;
  for (int i = 0; i < 20000; ++i) {
    std::string w = Name("w", i);
    Split s = WordSplit(w, o);
    EXPECT_EQ(WordSplit(w, o), s);
    val += s == Split::kValidation;
    moved += WordSplit(w, other) != s;
  }
  EXPECT_NEAR(val, 5000, 300);
  EXPECT_GT(moved, 5000);  // another seed, another split
  o.val_fraction = 0;
  EXPECT_EQ(WordSplit("dog", o), Split::kTrain);
  o.val_fraction = 1;
  EXPECT_EQ(WordSplit("dog", o), Split::kValidation);
}

TEST(WordNetTasksTest, OptionsAreChecked) {
  Options o;
  D2_EXPECT_OK(o.Validate());
  o.val_fraction = 1.5;
  EXPECT_THAT(o.Validate().message(), HasSubstr("val_fraction 1.5 is not in [0, 1]"));
  o = Options();
  o.choices = 1;
  EXPECT_THAT(o.Validate().message(), HasSubstr("choices 1"));
  o = Options();
  o.max_val = -1;
  EXPECT_THAT(o.Validate().message(), HasSubstr("max_val -1 is negative"));
  EXPECT_FALSE(BuildTask(WordNet{}, Task::kDefinition, o).ok());
  EXPECT_EQ(*ParseTask("antonym"), Task::kAntonym);
  EXPECT_THAT(ParseTask("synonym").status().message(), HasSubstr("unknown task 'synonym'"));
}

TEST(WordNetTasksTest, GlossCorpusIsADictionary) {
  testdata::Files f;
  f.noun += Line(100, 'n', {"dog", "domestic dog", "Canis familiaris"}, {},
                 "a member of the genus Canis; \"the dog barked all night\"; \"a good dog\"");
  f.noun += Line(200, 'n', {"cat"}, {}, "a small feline");
  f.adj += Line(300, 's', {"ready to hand(p)"}, {}, "easy to reach");
  WordNet wn = Load(f);
  ASSERT_EQ(wn.synsets.size(), 3u);
  EXPECT_EQ(GlossText(wn.synsets[0]),
            "dog, domestic dog, Canis familiaris (noun): a member of the genus Canis; \"the dog barked all night\"; "
            "\"a good dog\"");
  EXPECT_EQ(GlossText(wn.synsets[1]), "cat (noun): a small feline");
  EXPECT_EQ(GlossText(wn.synsets[2]), "ready to hand (adjective): easy to reach");
  EXPECT_EQ(CorpusJsonLine(wn.synsets[1]), "{\"text\":\"cat (noun): a small feline\"}");
}

// Filler synsets so that every part of speech has a pool to draw from.
void AddFillers(testdata::Files* f, int n) {
  for (int i = 0; i < n; ++i) {
    std::string code = Name("x", i);
    f->noun += Line(static_cast<uint32_t>(900000 + 100 * i), 'n', {Name("fn", i)}, {}, "a filler thing " + code);
    f->verb += Line(static_cast<uint32_t>(900000 + 100 * i), 'v', {Name("fv", i)}, {}, "to fill " + code);
    f->adj += Line(static_cast<uint32_t>(900000 + 100 * i), 'a', {Name("fa", i)}, {}, "filling " + code);
  }
}

TEST(WordNetTasksTest, DefinitionQuestions) {
  testdata::Files f;
  // "dog" is in its own definition, so the answer is "hound"; "canine" shares
  // the definition of the second synset, so it is never a distractor there.
  f.noun += Line(100, 'n', {"dog", "hound"}, {}, "a dog that hunts by scent");
  f.noun += Line(200, 'n', {"wolf"}, {}, "a wild carnivorous mammal");
  f.noun += Line(300, 'n', {"canine"}, {}, "a wild carnivorous mammal");
  // Every lemma is given away: no question.
  f.noun += Line(400, 'n', {"crisis intervention", "crisis"}, {}, "help in a crisis");
  // Capitals and digits are not plain: no question.
  f.noun += Line(500, 'n', {"Rover", "k9"}, {}, "a famous animal");
  f.adj += Line(600, 'a', {"red-hot"}, {}, "extremely warm");
  AddFillers(&f, 20);
  WordNet wn = Load(f);
  Options o;
  o.val_fraction = 0;  // every word a training word: the rules alone decide
  absl::StatusOr<TaskResult> r = BuildTask(wn, Task::kDefinition, o);
  D2_ASSERT_OK(r.status());
  ExpectWellFormed(wn, *r, o);
  EXPECT_TRUE(r->validation().empty());
  std::map<std::string, const Question*> by_question;
  for (const Question& q : r->train()) by_question[q.question] = &q;

  ASSERT_TRUE(by_question.count("Which word means \"a dog that hunts by scent\"?"));
  const Question& hound = *by_question["Which word means \"a dog that hunts by scent\"?"];
  EXPECT_EQ(hound.answer(), "hound");
  EXPECT_EQ(hound.pos, Pos::kNoun);
  EXPECT_EQ(std::count(hound.choices.begin(), hound.choices.end(), "dog"), 0);

  // One question for the shared definition; neither of its synsets' words is a distractor.
  ASSERT_TRUE(by_question.count("Which word means \"a wild carnivorous mammal\"?"));
  const Question& wolf = *by_question["Which word means \"a wild carnivorous mammal\"?"];
  EXPECT_EQ(wolf.answer(), "wolf");
  for (uint64_t seed = 1; seed <= 50; ++seed) {  // so that a missed exclusion shows
    Options reseeded = o;
    reseeded.seed = seed;
    absl::StatusOr<TaskResult> rr = BuildTask(wn, Task::kDefinition, reseeded);
    D2_ASSERT_OK(rr.status());
    for (const Question& q : rr->train()) {
      if (q.question != wolf.question) continue;
      EXPECT_EQ(std::count(q.choices.begin(), q.choices.end(), "canine"), 0) << "seed " << seed;
    }
  }

  EXPECT_FALSE(by_question.count("Which word means \"help in a crisis\"?"));
  EXPECT_FALSE(by_question.count("Which word means \"a famous animal\"?"));

  const Question& red_hot = *by_question["Which word means \"extremely warm\"?"];
  EXPECT_EQ(red_hot.pos, Pos::kAdjective);
  for (const std::string& c : red_hot.choices) {
    EXPECT_TRUE(c == "red-hot" || c.rfind("fa", 0) == 0) << c;
  }

  for (const Question& q : r->train()) {
    std::string def = q.question.substr(18, q.question.size() - 20);
    EXPECT_FALSE(ContainsWholeWord(def, q.answer())) << q.question;
  }
  // 60 fillers + hound, wolf and red-hot.
  EXPECT_EQ(r->candidates, 63);
  EXPECT_EQ(r->straddling, 0);
  EXPECT_EQ(r->no_distractors, 0);
  EXPECT_EQ(r->train().size(), 63u);
}

testdata::Files Animals() {
  testdata::Files f;
  f.noun += Line(100, 'n', {"entity"}, {}, "that which exists");
  f.noun += Line(200, 'n', {"organism", "being"}, {{"@", 100, 'n'}}, "a living thing");
  f.noun += Line(300, 'n', {"animal", "beast"}, {{"@", 200, 'n'}}, "a living organism that moves");
  f.noun += Line(400, 'n', {"canine"}, {{"@", 300, 'n'}}, "a flesh-eating mammal");
  f.noun += Line(500, 'n', {"domestic animal"}, {{"@", 300, 'n'}}, "an animal kept by people");
  f.noun += Line(600, 'n', {"dog", "domestic dog"}, {{"@", 400, 'n'}, {"@", 500, 'n'}}, "a member of the genus Canis");
  f.noun += Line(700, 'n', {"pawl", "dog"}, {{"@", 800, 'n'}}, "a hinged catch");
  f.noun += Line(800, 'n', {"catch"}, {{"@", 100, 'n'}}, "a fastener");
  f.verb += Line(100, 'v', {"pursue"}, {}, "follow");
  f.verb += Line(200, 'v', {"dog", "chase"}, {{"@", 100, 'v'}}, "go after", "02 + 08 00 + 11 02");
  f.noun += Line(900, 'n', {"Fido"}, {{"@i", 600, 'n'}}, "a dog's name");
  return f;
}

TEST(WordNetTasksTest, HypernymQuestions) {
  testdata::Files f = Animals();
  AddFillers(&f, 20);
  WordNet wn = Load(f);
  Options o;
  o.val_fraction = 0;
  absl::StatusOr<TaskResult> r = BuildTask(wn, Task::kHypernym, o);
  D2_ASSERT_OK(r.status());
  ExpectWellFormed(wn, *r, o);
  std::map<std::string, const Question*> by_word;
  for (const Question& q : r->train()) by_word[q.word] = &q;

  // "dog": the sense where it comes first; every ancestor of every noun and
  // verb sense is kept out of the distractors.
  ASSERT_TRUE(by_word.count("dog"));
  const Question& dog = *by_word["dog"];
  EXPECT_EQ(dog.question, "What is \"dog\" a kind of?");
  EXPECT_EQ(dog.answer(), "canine");
  EXPECT_EQ(dog.pos, Pos::kNoun);
  const std::set<std::string> never = {"dog",   "domestic dog", "domestic animal", "animal", "beast", "organism",
                                       "being", "entity",       "catch",           "pawl",   "pursue"};
  // Over many seeds, so that a missed exclusion shows.
  for (uint64_t seed = 1; seed <= 50; ++seed) {
    Options reseeded = o;
    reseeded.seed = seed;
    absl::StatusOr<TaskResult> rr = BuildTask(wn, Task::kHypernym, reseeded);
    D2_ASSERT_OK(rr.status());
    ExpectWellFormed(wn, *rr, reseeded);
    for (const Question& q : rr->train()) {
      if (q.word != "dog") continue;
      EXPECT_EQ(q.answer(), "canine");
      for (const std::string& c : q.choices) {
        if (c != q.answer()) {
          EXPECT_FALSE(never.count(c)) << c << " (seed " << seed << ")";
        }
      }
    }
  }
  // Verbs too, and only nouns and verbs.
  ASSERT_TRUE(by_word.count("chase"));
  EXPECT_EQ(by_word["chase"]->answer(), "pursue");
  EXPECT_EQ(by_word["chase"]->pos, Pos::kVerb);
  EXPECT_FALSE(by_word.count("entity"));  // no hypernym
  EXPECT_FALSE(by_word.count("Fido"));    // not plain
  EXPECT_EQ(by_word["being"]->answer(), "entity");
  for (const Question& q : r->train()) EXPECT_NE(q.pos, Pos::kAdjective);
}

TEST(WordNetTasksTest, AntonymQuestions) {
  testdata::Files f;
  f.adj += Line(100, 'a', {"hot"}, {{"!", 200, 'a', 1, 1}, {"&", 300, 'a'}}, "used of physical heat");
  f.adj += Line(200, 'a', {"cold"}, {{"!", 100, 'a', 1, 1}, {"&", 400, 'a'}}, "having a low temperature");
  f.adj += Line(300, 's', {"red-hot", "scorching"}, {{"&", 100, 'a'}}, "extremely hot");
  f.adj += Line(400, 's', {"frigid", "icy(a)"}, {{"&", 200, 'a'}}, "extremely cold");
  f.adj += Line(500, 'a', {"hot", "spicy"}, {{"!", 600, 'a', 1, 2}}, "producing a burning sensation");
  f.adj += Line(600, 'a', {"bland", "mild"}, {{"!", 500, 'a', 2, 1}}, "not spicy");
  f.verb += Line(100, 'v', {"rise"}, {{"!", 200, 'v', 1, 1}}, "move upward");
  f.verb += Line(200, 'v', {"fall"}, {{"!", 100, 'v', 1, 1}}, "move downward");
  f.noun += Line(100, 'n', {"Heaven"}, {{"!", 200, 'n', 1, 1}}, "a place");
  f.noun += Line(200, 'n', {"Hell"}, {{"!", 100, 'n', 1, 1}}, "a place");
  AddFillers(&f, 20);
  WordNet wn = Load(f);
  Options o;
  o.val_fraction = 0;
  absl::StatusOr<TaskResult> r = BuildTask(wn, Task::kAntonym, o);
  D2_ASSERT_OK(r.status());
  ExpectWellFormed(wn, *r, o);
  std::map<std::string, const Question*> by_word;
  for (const Question& q : r->train()) by_word[q.word] = &q;
  ASSERT_TRUE(by_word.count("hot"));
  const Question& hot = *by_word["hot"];
  EXPECT_EQ(hot.question, "What is the opposite of \"hot\"?");
  EXPECT_EQ(hot.answer(), "cold");
  EXPECT_EQ(hot.pos, Pos::kAdjective);
  // Neither antonym of any sense, their synonyms nor the indirect antonyms,
  // over many seeds so that a missed exclusion shows.
  for (uint64_t seed = 1; seed <= 50; ++seed) {
    Options reseeded = o;
    reseeded.seed = seed;
    absl::StatusOr<TaskResult> rr = BuildTask(wn, Task::kAntonym, reseeded);
    D2_ASSERT_OK(rr.status());
    ExpectWellFormed(wn, *rr, reseeded);
    for (const Question& q : rr->train()) {
      if (q.word != "hot") continue;
      EXPECT_EQ(q.answer(), "cold");
      for (const std::string& c : q.choices) {
        if (c == "cold") continue;
        EXPECT_FALSE(c == "mild" || c == "bland" || c == "frigid" || c == "icy" || c == "hot") << c << " (seed " << seed
                                                                                               << ")";
      }
    }
  }
  EXPECT_EQ(by_word["cold"]->answer(), "hot");
  EXPECT_EQ(by_word["mild"]->answer(), "hot");
  EXPECT_EQ(by_word["rise"]->answer(), "fall");
  EXPECT_EQ(by_word["rise"]->pos, Pos::kVerb);
  EXPECT_FALSE(by_word.count("Heaven"));
  EXPECT_EQ(r->train().size(), 5u);  // hot, cold, mild, rise, fall ("bland" has no antonym pointer)
}

TEST(WordNetTasksTest, TooSmallPoolDropsTheQuestion) {
  testdata::Files f = Animals();  // eleven plain nouns: too few distractors for twelve choices
  WordNet wn = Load(f);
  Options o;
  o.val_fraction = 0;
  o.choices = 12;
  absl::StatusOr<TaskResult> r = BuildTask(wn, Task::kHypernym, o);
  D2_ASSERT_OK(r.status());
  EXPECT_TRUE(r->train().empty());
  EXPECT_GT(r->no_distractors, 0);
  EXPECT_EQ(r->no_distractors, r->candidates);
}

TEST(WordNetTasksTest, SplitsByWordAndIsDeterministic) {
  WordNet wn = Load(testdata::Generated(400, 150, 60));
  Options o;
  o.val_fraction = 0.3;
  o.seed = 7;
  for (Task task : kAllTasks) {
    SCOPED_TRACE(std::string(TaskName(task)));
    absl::StatusOr<TaskResult> r = BuildTask(wn, task, o);
    D2_ASSERT_OK(r.status());
    ExpectWellFormed(wn, *r, o);
    EXPECT_GT(r->train().size(), 20u);
    EXPECT_GT(r->validation().size(), 2u);
    EXPECT_EQ(r->candidates, static_cast<int64_t>(r->train().size() + r->validation().size()) + r->straddling +
                                 r->no_distractors + r->capped[0] + r->capped[1]);
    auto words = WordsBySplit(*r);
    std::vector<std::string> shared;
    std::set_intersection(words[0].begin(), words[0].end(), words[1].begin(), words[1].end(),
                          std::back_inserter(shared));
    EXPECT_TRUE(shared.empty()) << shared.size() << " words in both splits, e.g. " << shared.front();

    absl::StatusOr<TaskResult> again = BuildTask(wn, task, o);
    D2_ASSERT_OK(again.status());
    EXPECT_EQ(Serialise(*again), Serialise(*r));
    Options other = o;
    other.seed = 8;
    absl::StatusOr<TaskResult> reseeded = BuildTask(wn, task, other);
    D2_ASSERT_OK(reseeded.status());
    EXPECT_NE(Serialise(*reseeded), Serialise(*r));

    // Labels spread over every position.
    std::vector<int> labels(4, 0);
    for (const Question& q : r->train()) ++labels[static_cast<size_t>(q.label)];
    for (int l : labels) EXPECT_GT(l, 0);
  }
}

TEST(WordNetTasksTest, PartOfSpeechIsBalancedAndUnambiguous) {
  testdata::Files f = testdata::Generated(400, 150, 60);
  // "na" (noun 0) is a verb too, and "ra" (adverb 0) an adjective too: neither can be asked about.
  f.verb += testdata::Line(3999900, 'v', {"na"}, {}, "to do what na does");
  f.adj += testdata::Line(2999900, 'a', {"ra"}, {}, "of the kind of ra");
  WordNet wn = Load(f);
  Options o;
  o.val_fraction = 0.3;
  absl::StatusOr<TaskResult> r = BuildTask(wn, Task::kPartOfSpeech, o);
  D2_ASSERT_OK(r.status());
  ExpectWellFormed(wn, *r, o);
  for (const auto& split : r->splits) {
    std::array<int, 4> per_pos = {0, 0, 0, 0};
    for (size_t i = 0; i < split.size(); ++i) {  // interleaved: every 4 questions, one of each
      EXPECT_EQ(static_cast<size_t>(split[i].pos), i % 4) << i;
    }
    for (const Question& q : split) {
      SCOPED_TRACE(q.question);
      EXPECT_EQ(q.question, "What part of speech is \"" + q.word + "\"?");
      EXPECT_EQ(q.choices, (std::vector<std::string>{"noun", "verb", "adjective", "adverb"}));
      EXPECT_EQ(q.answer(), PosName(q.pos));
      EXPECT_NE(q.word, "na");
      EXPECT_NE(q.word, "ra");
      ++per_pos[static_cast<size_t>(q.pos)];
    }
    EXPECT_GT(per_pos[0], 5);
    for (int n : per_pos) EXPECT_EQ(n, per_pos[0]) << "not balanced";
  }
  // Caps: a quarter of the cap of each part of speech, a seeded sample.
  o.max_train = 21;
  o.max_val = 8;
  absl::StatusOr<TaskResult> capped = BuildTask(wn, Task::kPartOfSpeech, o);
  D2_ASSERT_OK(capped.status());
  EXPECT_EQ(capped->train().size(), 20u);
  EXPECT_EQ(capped->validation().size(), 8u);
  EXPECT_EQ(capped->capped[0], static_cast<int64_t>(r->train().size()) + r->capped[0] - 20);
  EXPECT_EQ(capped->capped[1], static_cast<int64_t>(r->validation().size()) + r->capped[1] - 8);
  ExpectWellFormed(wn, *capped, o);
  for (const auto& split : capped->splits) {
    std::array<size_t, 4> per_pos = {0, 0, 0, 0};
    for (const Question& q : split) ++per_pos[static_cast<size_t>(q.pos)];
    for (size_t n : per_pos) EXPECT_EQ(n, split.size() / 4);
  }
}

TEST(WordNetTasksTest, CategoryIsBalancedSoThatFrequencyTellsNothing) {
  // Nouns in five categories: 5 animal four times as common as 6 artifact,
  // 18 person and 20 plant; 4 act too rare to take part (fewer than 20 per
  // split); noun.Tops (3) is never asked about.
  testdata::Files f;
  auto off = [](int i) { return static_cast<uint32_t>(1000000 + 100 * i); };
  const int fields[] = {5, 5, 5, 5, 6, 18, 20, 3};
  for (int i = 0; i < 1200; ++i) {
    const int field = fields[i % 8];
    f.noun += Line(off(i), 'n', {Name("n", i), Name("other n", i)}, {},
                   absl::StrCat("a thing of field ", field, " numbered ", i), "", field);
  }
  for (int i = 0; i < 10; ++i) f.noun += Line(off(2000 + i), 'n', {Name("act", i)}, {}, "a rare act", "", 4);
  f.noun += Line(off(3000), 'n', {"Capital"}, {}, "only a proper noun", "", 5);  // no plain lemma
  WordNet wn = Load(f);
  EXPECT_EQ(NounCategory(3), "");
  EXPECT_EQ(NounCategory(4), "act");
  EXPECT_EQ(NounCategory(5), "animal");
  EXPECT_EQ(NounCategory(18), "person");
  EXPECT_EQ(NounCategory(28), "time");
  EXPECT_EQ(NounCategory(29), "");
  Options o;
  o.val_fraction = 0.3;
  o.choices = 3;
  absl::StatusOr<TaskResult> r = BuildTask(wn, Task::kCategory, o);
  D2_ASSERT_OK(r.status());
  ExpectWellFormed(wn, *r, o);
  EXPECT_EQ(r->candidates, 1050 + 10);
  const std::map<std::string, std::string> by_field = {{"5", "animal"}, {"6", "artifact"}, {"18", "person"},
                                                       {"20", "plant"}};
  for (const auto& split : r->splits) {
    ASSERT_FALSE(split.empty());
    std::map<std::string, int> answers, distractors;
    for (size_t i = 0; i < split.size(); ++i) {
      const Question& q = split[i];
      SCOPED_TRACE(q.question);
      EXPECT_THAT(q.question, HasSubstr("\"" + q.word + "\" means \"a thing of field "));
      EXPECT_THAT(q.question, HasSubstr("\". What kind of thing is it?"));
      const size_t at = q.question.find("field ") + 6;
      EXPECT_EQ(q.answer(), by_field.at(q.question.substr(at, q.question.find(' ', at) - at)));
      EXPECT_TRUE(q.choices_are_labels);
      ++answers[q.answer()];
      for (size_t c = 0; c < q.choices.size(); ++c) {
        if (static_cast<int>(c) != q.label) ++distractors[q.choices[c]];
      }
      if (i % 4 == 3) {  // interleaved: every 4 questions, one of each category
        std::set<std::string> block;
        for (size_t j = i - 3; j <= i; ++j) block.insert(split[j].answer());
        EXPECT_EQ(block.size(), 4u);
      }
    }
    // Four categories take part ("act" is too rare), each equally often the answer.
    EXPECT_EQ(answers.size(), 4u);
    EXPECT_EQ(answers.count("act"), 0u);
    for (const auto& [name, n] : answers) EXPECT_EQ(n, answers.begin()->second) << name;
    // Distractors are uniform: "animal", the common one, is no more often a distractor.
    for (const auto& [name, n] : distractors) {
      EXPECT_NEAR(n, static_cast<double>(split.size()) * 2 / 4, split.size() * 0.15) << name;
    }
  }
  // Deterministic; capped by a seeded sample, still balanced.
  absl::StatusOr<TaskResult> again = BuildTask(wn, Task::kCategory, o);
  D2_ASSERT_OK(again.status());
  EXPECT_EQ(Serialise(*again), Serialise(*r));
  o.max_train = 50;
  o.max_val = 21;
  absl::StatusOr<TaskResult> capped = BuildTask(wn, Task::kCategory, o);
  D2_ASSERT_OK(capped.status());
  EXPECT_EQ(capped->train().size(), 48u);
  EXPECT_EQ(capped->validation().size(), 20u);
  EXPECT_EQ(capped->capped[0] + 48, r->capped[0] + static_cast<int64_t>(r->train().size()));
  ExpectWellFormed(wn, *capped, o);
  // More choices than categories taking part: no question can be asked.
  o.choices = 5;
  absl::StatusOr<TaskResult> too_few = BuildTask(wn, Task::kCategory, o);
  D2_ASSERT_OK(too_few.status());
  EXPECT_TRUE(too_few->train().empty());
  EXPECT_EQ(too_few->no_distractors, 1060);
}

TEST(WordNetTasksTest, CapsTakeASeededSampleInOrder) {
  WordNet wn = Load(testdata::Generated(400, 150, 60));
  Options o;
  o.val_fraction = 0.3;
  absl::StatusOr<TaskResult> all = BuildTask(wn, Task::kDefinition, o);
  D2_ASSERT_OK(all.status());
  ASSERT_GT(all->train().size(), 50u);
  ASSERT_GT(all->validation().size(), 10u);
  o.max_train = 50;
  o.max_val = 10;
  absl::StatusOr<TaskResult> capped = BuildTask(wn, Task::kDefinition, o);
  D2_ASSERT_OK(capped.status());
  EXPECT_EQ(capped->train().size(), 50u);
  EXPECT_EQ(capped->validation().size(), 10u);
  EXPECT_EQ(capped->capped[0], static_cast<int64_t>(all->train().size()) - 50);
  EXPECT_EQ(capped->capped[1], static_cast<int64_t>(all->validation().size()) - 10);
  for (size_t s = 0; s < 2; ++s) {
    // A subsequence of the uncapped questions, not just their first ones.
    size_t j = 0;
    for (const Question& q : capped->splits[s]) {
      while (j < all->splits[s].size() && QuestionJsonLine(all->splits[s][j]) != QuestionJsonLine(q)) ++j;
      ASSERT_LT(j, all->splits[s].size()) << "not in order, or not one of the uncapped questions";
    }
    EXPECT_GT(j, capped->splits[s].size());
  }
  absl::StatusOr<TaskResult> again = BuildTask(wn, Task::kDefinition, o);
  D2_ASSERT_OK(again.status());
  EXPECT_EQ(Serialise(*again), Serialise(*capped));
  // Caps above the count keep everything.
  o.max_train = 1000000;
  o.max_val = 1000000;
  absl::StatusOr<TaskResult> loose = BuildTask(wn, Task::kDefinition, o);
  D2_ASSERT_OK(loose.status());
  EXPECT_EQ(Serialise(*loose), Serialise(*all));
}

std::vector<nlohmann::json> ReadJsonl(const std::string& path) {
  std::vector<nlohmann::json> out;
  for (absl::string_view line : absl::StrSplit(ReadFile(path), '\n', absl::SkipEmpty())) {
    out.push_back(nlohmann::json::parse(line));
  }
  return out;
}

TEST(WordNetTasksTest, WritesTheDatasetDirectory) {
  WordNet wn = Load(testdata::Generated(200, 60, 30));
  TempDir tmp;
  DatasetRequest req;
  req.out_dir = tmp.file("out");
  req.options.val_fraction = 0.3;
  req.wordnet_dir = "/some/where";
  absl::StatusOr<std::vector<WrittenFile>> written = WriteDataset(wn, req);
  D2_ASSERT_OK(written.status());
  ASSERT_EQ(written->size(), 12u);
  EXPECT_EQ((*written)[0].path, req.out_dir + "/corpus.jsonl");
  EXPECT_EQ((*written)[0].records, static_cast<int64_t>(wn.synsets.size()));
  EXPECT_EQ((*written)[1].path, req.out_dir + "/definition/train.jsonl");
  EXPECT_EQ((*written)[9].path, req.out_dir + "/category/train.jsonl");
  EXPECT_EQ((*written)[11].path, req.out_dir + "/stats.json");

  std::vector<nlohmann::json> corpus = ReadJsonl(req.out_dir + "/corpus.jsonl");
  ASSERT_EQ(corpus.size(), wn.synsets.size());
  EXPECT_EQ(corpus[0]["text"], GlossText(wn.synsets[0]));

  nlohmann::json stats = nlohmann::json::parse(ReadFile(req.out_dir + "/stats.json"));
  EXPECT_EQ(stats["seed"], 1);
  EXPECT_EQ(stats["wordnet_dir"], "/some/where");
  EXPECT_EQ(stats["synsets"]["total"], wn.synsets.size());
  EXPECT_EQ(stats["options"]["val_fraction"], 0.3);
  for (Task task : kAllTasks) {
    std::string name(TaskName(task));
    absl::StatusOr<TaskResult> r = BuildTask(wn, task, req.options);
    D2_ASSERT_OK(r.status());
    for (Split split : {Split::kTrain, Split::kValidation}) {
      std::string file = req.out_dir + "/" + name + "/" + std::string(SplitName(split)) + ".jsonl";
      std::vector<nlohmann::json> lines = ReadJsonl(file);
      const std::vector<Question>& qs = r->splits[static_cast<size_t>(split)];
      ASSERT_EQ(lines.size(), qs.size()) << file;
      EXPECT_EQ(stats["tasks"][name][std::string(SplitName(split))]["questions"], qs.size());
      for (size_t i = 0; i < lines.size(); ++i) {
        EXPECT_EQ(lines[i]["question"], qs[i].question);
        EXPECT_EQ(lines[i]["choices"].size(), 4u);
        EXPECT_EQ(lines[i]["label"], qs[i].label);
        EXPECT_EQ(lines[i]["choices"][static_cast<size_t>(qs[i].label)], qs[i].answer());
      }
    }
  }

  // Same request, byte-identical files.
  std::string first = ReadFile(req.out_dir + "/hypernym/train.jsonl");
  // A non-empty directory is refused, and left alone.
  absl::StatusOr<std::vector<WrittenFile>> again = WriteDataset(wn, req);
  ASSERT_FALSE(again.ok());
  EXPECT_EQ(again.status().code(), absl::StatusCode::kAlreadyExists);
  EXPECT_THAT(again.status().message(), HasSubstr(req.out_dir + " is not empty (--overwrite replaces it)"));
  WriteFile(req.out_dir + "/extra.txt", "mine");
  req.overwrite = true;
  req.tasks = {Task::kHypernym};
  D2_ASSERT_OK(WriteDataset(wn, req).status());
  EXPECT_EQ(ReadFile(req.out_dir + "/hypernym/train.jsonl"), first);
  EXPECT_FALSE(std::filesystem::exists(req.out_dir + "/extra.txt"));
  EXPECT_FALSE(std::filesystem::exists(req.out_dir + "/definition"));
  // No staging directories left behind.
  int entries = 0;
  for (const auto& e : std::filesystem::directory_iterator(tmp.path())) {
    ++entries;
    EXPECT_EQ(e.path().filename().string(), "out");
  }
  EXPECT_EQ(entries, 1);

  // An empty directory is fine without --overwrite; a file in its place is not.
  DatasetRequest empty = req;
  empty.overwrite = false;
  empty.out_dir = tmp.file("empty");
  std::filesystem::create_directory(empty.out_dir);
  D2_EXPECT_OK(WriteDataset(wn, empty).status());
  EXPECT_TRUE(std::filesystem::exists(empty.out_dir + "/stats.json"));
  empty.out_dir = tmp.file("slash") + "/";  // a trailing slash names the same directory
  D2_EXPECT_OK(WriteDataset(wn, empty).status());
  EXPECT_TRUE(std::filesystem::exists(tmp.file("slash") + "/stats.json"));
  empty.out_dir = tmp.file("file");
  WriteFile(empty.out_dir, "x");
  EXPECT_THAT(WriteDataset(wn, empty).status().message(), HasSubstr("exists and is not a directory"));
}

TEST(WordNetTasksRealTest, TasksOnWordNet30) {
  if (!testdata::HaveDebianWordNet()) {
    GTEST_SKIP() << "no WordNet in " << testdata::kDebianWordNet << " (Debian package wordnet-base)";
  }
  absl::StatusOr<WordNet> wn = LoadWordNet(testdata::kDebianWordNet);
  D2_ASSERT_OK(wn.status());
  Options o;  // the defaults: seed 1, 20% validation words, 4 choices
  struct Expect {
    Task task;
    size_t min_train, min_val;
  };
  for (const Expect& e : {Expect{Task::kDefinition, 20000, 5000}, Expect{Task::kHypernym, 20000, 2000},
                          Expect{Task::kAntonym, 2000, 100}}) {
    SCOPED_TRACE(std::string(TaskName(e.task)));
    absl::StatusOr<TaskResult> r = BuildTask(*wn, e.task, o);
    D2_ASSERT_OK(r.status());
    EXPECT_GE(r->train().size(), e.min_train);
    EXPECT_GE(r->validation().size(), e.min_val);
    auto words = WordsBySplit(*r);
    std::vector<std::string> shared;
    std::set_intersection(words[0].begin(), words[0].end(), words[1].begin(), words[1].end(),
                          std::back_inserter(shared));
    EXPECT_TRUE(shared.empty()) << shared.size() << " words in both splits, e.g. " << shared.front();
    for (size_t s = 0; s < 2; ++s) {
      std::set<std::string> questions;
      for (const Question& q : r->splits[s]) {
        ASSERT_EQ(q.choices.size(), 4u);
        EXPECT_TRUE(questions.insert(q.question).second) << q.question;
        EXPECT_EQ(WordSplit(q.answer(), o), static_cast<Split>(s)) << q.question;
        if (e.task == Task::kDefinition) {
          std::string def = q.question.substr(18, q.question.size() - 20);
          EXPECT_FALSE(ContainsWholeWord(def, q.answer())) << q.question;
        }
      }
    }
  }
}

}  // namespace
}  // namespace d2lora::datasets::wordnet
