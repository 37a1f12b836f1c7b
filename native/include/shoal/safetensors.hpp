// safetensors parsing: 8-byte little-endian header length, a JSON header, then the data region.
// The JSON parser is minimal on purpose (the header is a flat object of {dtype, shape, data_offsets}).
// The header is untrusted input: every dimension and offset is parsed as an exact integer, every size is
// computed with overflow checks, and a tensor whose bytes do not lie inside the data section is refused, so
// code that later trusts shape x dtype (the GEMMs) never reads past the image.
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
  /** The product of the dimensions; InvalidArgument (naming the tensor and its shape) past 2^63 - 1. */
  int64_t elements() const;
};

/** Bytes per element of a safetensors dtype ("F32" -> 4); InvalidArgument for an unknown dtype. */
size_t safetensorsDtypeSize(const std::string& dtype);
/** "[2, 3]": a shape as error messages print it. */
std::string formatShape(const std::vector<int64_t>& shape);

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
