// Deterministic shuffling: the same (seed, epoch) gives the same order on every
// platform and standard library, so every rank of a job, and a job resumed
// from a checkpoint, sees the same data order.
//
// The generator is std::mt19937_64 (its output sequence is fixed by the C++
// standard) seeded with EpochSeed(seed, epoch). std::uniform_int_distribution
// and std::shuffle are implementation-defined, so neither is used: draws in
// [0, n) come from UniformBelow (rejection sampling) and permutations from
// Shuffle (Fisher-Yates).
#pragma once

#include <cstdint>
#include <random>
#include <vector>

namespace d2lora::engine {

// SplitMix64's finaliser: z = x + 0x9E3779B97F4A7C15;
// z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9; z = (z ^ (z >> 27)) * 0x94D049BB133111EB;
// return z ^ (z >> 31).
uint64_t SplitMix64(uint64_t x);

// SplitMix64(seed ^ SplitMix64(uint64_t(epoch))).
uint64_t EpochSeed(uint64_t seed, int64_t epoch);

// Uniform in [0, n), n >= 1: draws x = rng() until x < 2^64 - (2^64 mod n),
// returns x mod n.
uint64_t UniformBelow(std::mt19937_64& rng, uint64_t n);

// Fisher-Yates: for i = size-1 down to 1, swap v[i] with v[UniformBelow(rng, i + 1)].
void Shuffle(std::vector<int64_t>& v, std::mt19937_64& rng);

// 0..n-1 shuffled by a generator seeded with EpochSeed(seed, epoch).
std::vector<int64_t> ShuffledOrder(int64_t n, uint64_t seed, int64_t epoch);

}  // namespace d2lora::engine
