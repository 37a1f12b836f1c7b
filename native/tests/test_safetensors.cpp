// safetensors header parsing.
#include <cstdio>
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

// ---- crafted headers: every size derived from the header is checked before anything trusts it ----

namespace {

// A file image with the given JSON header and `dataBytes` zero bytes of data.
std::vector<uint8_t> crafted(const std::string& json, size_t dataBytes) {
  std::vector<uint8_t> img(8 + json.size() + dataBytes, 0);
  const uint64_t len = json.size();
  for (int i = 0; i < 8; ++i) img[i] = static_cast<uint8_t>(len >> (8 * i));
  std::memcpy(img.data() + 8, json.data(), json.size());
  return img;
}

// The message of the shoal::Error parsing `img` throws; fails the test when it parses or throws anything else.
std::string parseError(const std::vector<uint8_t>& img) {
  try {
    parseSafetensorsHeader(img.data(), img.size(), img.size());
  } catch (const Error& e) {
    CHECK(e.code() == ErrorCode::InvalidArgument);
    return e.what();
  }
  throw t::Failure{"expected the header to be rejected"};
}

bool has(const std::string& s, const std::string& part) {
  if (s.find(part) != std::string::npos) return true;
  std::printf("  message \"%s\" lacks \"%s\"\n", s.c_str(), part.c_str());
  return false;
}

std::string tensor(const std::string& shape, const std::string& offsets, const std::string& dtype = "F32") {
  return R"({"w":{"dtype":")" + dtype + R"(","shape":)" + shape + R"(,"data_offsets":)" + offsets + "}}";
}

}  // namespace

TEST(overflowing_dims_are_rejected) {
  // 2^62 x 4 elements wraps to 0 in 64 bits: unchecked, it matched an empty data range.
  std::string m = parseError(crafted(tensor("[4611686018427387904,4]", "[0,0]"), 0));
  CHECK(has(m, "tensor \"w\""));
  CHECK(has(m, "[4611686018427387904, 4]"));
  CHECK(has(m, "2^63-1 elements"));
  // 2^62 + 1 F32 elements are 2^64 + 4 bytes, which wraps to 4: unchecked, a 4-byte tensor the GEMM read as 2^62.
  m = parseError(crafted(tensor("[4611686018427387905]", "[0,4]"), 4));
  CHECK(has(m, "tensor \"w\""));
  CHECK(has(m, "4611686018427387905 elements x 4 bytes"));
  CHECK(has(m, "past 2^64 bytes"));
  // Three dims whose product overflows only at the last one.
  m = parseError(crafted(tensor("[65536,65536,4294967296]", "[0,0]"), 0));
  CHECK(has(m, "[65536, 65536, 4294967296]"));
  // A single dim past int64 (a double would have rounded it; the text is read exactly).
  m = parseError(crafted(tensor("[9223372036854775808]", "[0,0]"), 0));
  CHECK(has(m, "shape[0] = 9223372036854775808 is past 2^63-1"));
  m = parseError(crafted(tensor("[99999999999999999999999]", "[0,0]"), 0));
  CHECK(has(m, "shape[0]"));
}

TEST(byte_size_past_the_data_section_is_rejected) {
  std::string m = parseError(crafted(tensor("[1000,1000]", "[0,16]"), 16));
  CHECK(has(m, "tensor \"w\" (F32, shape [1000, 1000]) needs 4000000 bytes but the data section holds 16"));
  // data_offsets themselves past the data section, and reversed.
  m = parseError(crafted(tensor("[1024]", "[0,4096]"), 16));
  CHECK(has(m, "data_offsets[1] = 4096 is past the data section size (16)"));
  m = parseError(crafted(tensor("[1]", "[8,4]"), 16));
  CHECK(has(m, "end before they begin"));
  // The dtype size counts: 4 F64 elements are 32 bytes, not 16.
  m = parseError(crafted(tensor("[4]", "[0,16]", "F64"), 64));
  CHECK(has(m, "needs 32 bytes but data_offsets [0, 16) hold 16"));
  m = parseError(crafted(tensor("[4]", "[0,16]", "Q4"), 16));
  CHECK(has(m, "unknown dtype \"Q4\""));
}

TEST(negative_and_non_integer_dims_are_rejected) {
  std::string m = parseError(crafted(tensor("[2,-3]", "[0,0]"), 0));
  CHECK(has(m, "tensor \"w\" shape[1] is negative (-3)"));
  m = parseError(crafted(tensor("[1.5]", "[0,4]"), 4));
  CHECK(has(m, "shape[0] must be a non-negative integer, got 1.5"));
  m = parseError(crafted(tensor("[1e3]", "[0,4000]"), 4000));
  CHECK(has(m, "got 1e3"));
  m = parseError(crafted(tensor(R"(["4"])", "[0,16]"), 16));
  CHECK(has(m, "got a string"));
  m = parseError(crafted(tensor("[4]", "[-4,16]"), 16));
  CHECK(has(m, "data_offsets[0] is negative (-4)"));
  m = parseError(crafted(tensor("4", "[0,16]"), 16));
  CHECK(has(m, "shape must be an array"));
  // Malformed numbers and escapes are shoal errors too, never std::invalid_argument escaping the parser.
  parseError(crafted(tensor("[-]", "[0,0]"), 0));
  parseError(crafted(R"({"\uZZZZ":{"dtype":"F32","shape":[1],"data_offsets":[0,4]}})", 4));
}

TEST(structural_header_errors_are_rejected) {
  std::string m = parseError(crafted(R"({"w":{"dtype":"F32","data_offsets":[0,4]}})", 4));
  CHECK(has(m, "lacks dtype, shape or data_offsets"));
  m = parseError(crafted(R"({"w":{"dtype":"F32","shape":[1],"data_offsets":[0,4]},"w":{"dtype":"F32","shape":[1],"data_offsets":[0,4]}})", 4));
  CHECK(has(m, "appears twice"));
  m = parseError(crafted(R"({"w":{"dtype":"F32","shape":[1],"data_offsets":[0]}})", 4));
  CHECK(has(m, "data_offsets must be an array [begin, end]"));
}

TEST(zero_sized_tensors_and_checked_elements) {
  // An empty tensor is legal safetensors; the family rejects zero-width layers itself.
  auto h = parseSafetensorsHeader(crafted(tensor("[0,4]", "[0,0]"), 0).data(), 8 + tensor("[0,4]", "[0,0]").size(),
                                  8 + tensor("[0,4]", "[0,0]").size());
  CHECK_EQ(h.tensors.at("w").elements(), int64_t(0));
  TensorInfo t;
  t.name = "big";
  t.shape = {int64_t(1) << 40, int64_t(1) << 40};
  CHECK_THROWS(t.elements(), Error);
  t.shape = {3, -1};
  CHECK_THROWS(t.elements(), Error);
  CHECK(safetensorsDtypeSize("BF16") == 2);
  CHECK_THROWS(safetensorsDtypeSize("F4"), Error);
}
