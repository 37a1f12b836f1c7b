// A fast 64-bit content hash (XXH64) for blob identity: two loads under one name are the same blob only when
// their bytes hash the same. Not cryptographic: it tells a redeployed weights file from the old one, it does
// not defend against someone crafting a collision (they could change the weights directly).
#pragma once
#include <cstddef>
#include <cstdint>

namespace shoal {

uint64_t contentHash(const void* data, size_t bytes, uint64_t seed = 0);

}  // namespace shoal
