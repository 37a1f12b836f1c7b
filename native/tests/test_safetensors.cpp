// safetensors header parsing.
#include <cstring>

#include "shoal/errors.hpp"
#include "shoal/safetensors.hpp"
#include "test.hpp"

using namespace shoal;

TEST(roundtrip_header) {
  auto img = writeSafetensors({{"w", {{2, 3}, {1, 2, 3, 4, 5, 6}}}, {"b", {{3}, {7, 8, 9}}}});
  auto h = parseSafetensorsHeader(img.data(), img.size(), img.size());
  CHECK_EQ(h.tensors.size(), size_t(2));
  CHECK(h.dataOffset % 8 == 0);
  const TensorInfo& w = h.tensors.at("w");
  CHECK(w.shape == std::vector<int64_t>({2, 3}));
  float v;
  std::memcpy(&v, img.data() + w.begin + 4 * 5, 4);
  CHECK(v == 6.f);
  const TensorInfo& b = h.tensors.at("b");
  std::memcpy(&v, img.data() + b.begin, 4);
  CHECK(v == 7.f);
}

TEST(metadata_and_escapes) {
  std::string json = R"({"__metadata__":{"format":"pt"},"a\u0062":{"dtype":"F32","shape":[1],"data_offsets":[0,4]}})";
  std::vector<uint8_t> img(8 + json.size() + 4, 0);
  uint64_t len = json.size();
  for (int i = 0; i < 8; ++i) img[i] = static_cast<uint8_t>(len >> (8 * i));
  std::memcpy(img.data() + 8, json.data(), json.size());
  auto h = parseSafetensorsHeader(img.data(), img.size(), img.size());
  CHECK(h.metadata.at("format") == "pt");
  CHECK(h.tensors.count("ab") == 1);
}

TEST(rejects_bad_files) {
  std::vector<uint8_t> tiny(4, 0);
  CHECK_THROWS(parseSafetensorsHeader(tiny.data(), tiny.size(), tiny.size()), Error);
  auto img = writeSafetensors({{"w", {{2}, {1, 2}}}});
  img[0] = 0xff;  // header length past the end
  CHECK_THROWS(parseSafetensorsHeader(img.data(), img.size(), img.size()), Error);
  std::string json = R"({"w":{"dtype":"F32","shape":[3],"data_offsets":[0,4]}})";  // size mismatch
  std::vector<uint8_t> bad(8 + json.size() + 4, 0);
  bad[0] = static_cast<uint8_t>(json.size());
  std::memcpy(bad.data() + 8, json.data(), json.size());
  CHECK_THROWS(parseSafetensorsHeader(bad.data(), bad.size(), bad.size()), Error);
  std::string broken = R"({"w":{"dtype":"F32",)";
  std::vector<uint8_t> b2(8 + broken.size(), 0);
  b2[0] = static_cast<uint8_t>(broken.size());
  std::memcpy(b2.data() + 8, broken.data(), broken.size());
  CHECK_THROWS(parseSafetensorsHeader(b2.data(), b2.size(), b2.size()), Error);
}
