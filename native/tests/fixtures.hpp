// Shared test fixtures: deterministic random tensors and safetensors files in a temp directory.
#pragma once
#include <unistd.h>

#include <cstdint>
#include <fstream>
#include <string>
#include <vector>

#include "shoal/safetensors.hpp"

namespace fx {

using Tensors = std::vector<std::pair<std::string, std::pair<std::vector<int64_t>, std::vector<float>>>>;

struct Rng {
  uint64_t s;
  explicit Rng(uint64_t seed) : s(seed * 2654435761u + 1) {}
  float next() {  // uniform in [-1, 1)
    s ^= s << 13; s ^= s >> 7; s ^= s << 17;
    return static_cast<float>((s >> 11) * (1.0 / 9007199254740992.0)) * 2.f - 1.f;
  }
  std::vector<float> vec(size_t n, float scale = 1.f) {
    std::vector<float> v(n);
    for (auto& x : v) x = next() * scale;
    return v;
  }
};

inline std::string tempPath(const std::string& name) {
  return "/tmp/shoal-native-test-" + std::to_string(getpid()) + "-" + name;
}

inline std::string writeFile(const std::string& name, const Tensors& t) {
  auto img = shoal::writeSafetensors(t);
  std::string p = tempPath(name);
  std::ofstream(p, std::ios::binary).write(reinterpret_cast<const char*>(img.data()), static_cast<std::streamsize>(img.size()));
  return p;
}

}  // namespace fx
