// safetensors parsing: 8-byte little-endian header length, a JSON header, then the data region.
// The JSON parser is minimal on purpose (the header is a flat object of {dtype, shape, data_offsets}).
#pragma once
#include <cstddef>
#include <cstdint>
#include <map>
#include <string>
#include <vector>

namespace shoal {

struct TensorInfo {
  std::string name;
  std::string dtype;  // "F32", "F16", ...
  std::vector<int64_t> shape;
  uint64_t begin = 0, end = 0;  // byte offsets from the start of the whole file
  int64_t elements() const {
    int64_t n = 1;
    for (auto d : shape) n *= d;
    return n;
  }
};

struct SafetensorsHeader {
  uint64_t dataOffset = 0;  // 8 + header length
  std::map<std::string, TensorInfo> tensors;
  std::map<std::string, std::string> metadata;
};

/** Parses the header from the first bytes of a file; `available` bytes must cover the whole header. */
SafetensorsHeader parseSafetensorsHeader(const uint8_t* bytes, size_t available, uint64_t fileSize);
/** Reads the 8-byte length prefix (little-endian). */
uint64_t safetensorsHeaderLength(const uint8_t* first8);

/** Writes a safetensors file image of F32 tensors (used by tests and the family generator). */
std::vector<uint8_t> writeSafetensors(const std::vector<std::pair<std::string, std::pair<std::vector<int64_t>, std::vector<float>>>>& tensors);

}  // namespace shoal
