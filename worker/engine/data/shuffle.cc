#include "worker/engine/data/shuffle.h"

#include <numeric>
#include <utility>

namespace d2lora::engine {

uint64_t SplitMix64(uint64_t x) {
  uint64_t z = x + 0x9E3779B97F4A7C15ULL;
  z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ULL;
  z = (z ^ (z >> 27)) * 0x94D049BB133111EBULL;
  return z ^ (z >> 31);
}

uint64_t EpochSeed(uint64_t seed, int64_t epoch) {
  return SplitMix64(seed ^ SplitMix64(static_cast<uint64_t>(epoch)));
}

uint64_t UniformBelow(std::mt19937_64& rng, uint64_t n) {
  // 2^64 mod n, computed in 64 bits as (2^64 - n) mod n.
  const uint64_t rem = (0 - n) % n;
  const uint64_t limit = 0 - rem;  // 2^64 - rem (0 means 2^64: accept every draw)
  while (true) {
    const uint64_t x = rng();
    if (limit == 0 || x < limit) return x % n;
  }
}

void Shuffle(std::vector<int64_t>& v, std::mt19937_64& rng) {
  for (size_t i = v.size(); i > 1; --i) {
    const size_t j = static_cast<size_t>(UniformBelow(rng, i));
    std::swap(v[i - 1], v[j]);
  }
}

std::vector<int64_t> ShuffledOrder(int64_t n, uint64_t seed, int64_t epoch) {
  std::vector<int64_t> order(static_cast<size_t>(n > 0 ? n : 0));
  std::iota(order.begin(), order.end(), int64_t{0});
  std::mt19937_64 rng(EpochSeed(seed, epoch));
  Shuffle(order, rng);
  return order;
}

}  // namespace d2lora::engine
