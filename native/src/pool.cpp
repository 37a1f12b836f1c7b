#include "shoal/pool.hpp"

#include "shoal/errors.hpp"

namespace shoal {

uint64_t sizeClassOf(uint64_t bytes) {
  constexpr uint64_t kMin = 512;
  if (bytes <= kMin) return kMin;
  uint64_t p = 1;
  while (p * 2 <= bytes) p *= 2;  // largest power of two <= bytes
  const uint64_t step = p / 4;
  return (bytes + step - 1) / step * step;
}

Pool::Pool(uint32_t id, Backend& backend, int device, uint64_t budget, std::function<void(uint64_t)> onDevicePressure)
    : id_(id), backend_(backend), device_(device), onDevicePressure_(std::move(onDevicePressure)) {
  st_.budget = budget;
}

Pool::~Pool() {
  std::lock_guard<std::mutex> lk(mu_);
  for (auto& [h, b] : live_) backend_.rawFree(device_, b.ptr, b.cls);
  live_.clear();
  emptyCacheLocked();
}

uint64_t Pool::alloc(uint64_t bytes) { return allocBlock(bytes, false, nullptr); }

uint64_t Pool::allocBlock(uint64_t bytes, bool leased, void** out) {
  if (bytes == 0) throw invalidArgument("pool " + std::to_string(id_) + ": cannot allocate 0 bytes");
  // Anything this large cannot fit any device; checking here keeps the size-class arithmetic from overflowing.
  if (bytes > (uint64_t(1) << 56)) {
    std::lock_guard<std::mutex> lk(mu_);
    throw OutOfMemory("pool " + std::to_string(id_), bytes, st_.used, st_.budget);
  }
  const uint64_t cls = sizeClassOf(bytes);
  std::lock_guard<std::mutex> lk(mu_);
  void* ptr = nullptr;
  auto it = freeLists_.find(cls);
  if (it != freeLists_.end() && !it->second.empty()) {
    ptr = it->second.back();
    it->second.pop_back();
    st_.cached -= cls;
    ++st_.cacheHits;
  } else {
    if (st_.used + st_.cached + cls > st_.budget) emptyCacheLocked();
    if (st_.used + cls > st_.budget) {
      throw OutOfMemory("pool " + std::to_string(id_), bytes, st_.used, st_.budget);
    }
    try {
      ptr = backend_.rawAlloc(device_, cls);
    } catch (const DeviceOutOfMemory&) {
      // The device is full, not the pool: drop our cache and let the owner evict idle blobs, then retry once.
      emptyCacheLocked();
      if (onDevicePressure_) onDevicePressure_(cls);
      ptr = backend_.rawAlloc(device_, cls);
    }
    ++st_.cacheMisses;
  }
  const uint64_t h = nextHandle_++;
  live_.emplace(h, Block{ptr, cls, bytes, leased});
  if (out) *out = ptr;
  st_.used += cls;
  st_.requested += bytes;
  st_.reserved = st_.used + st_.cached;
  if (st_.used > st_.peak) st_.peak = st_.used;
  ++st_.allocCount;
  st_.liveBlocks = live_.size();
  return h;
}

void Pool::free(uint64_t handle) {
  std::lock_guard<std::mutex> lk(mu_);
  auto it = live_.find(handle);
  if (it == live_.end()) {
    throw invalidHandle("pool " + std::to_string(id_) + ": allocation handle " + std::to_string(handle) +
                        " is not live (double free or never allocated)");
  }
  if (it->second.leased) {
    throw invalidHandle("pool " + std::to_string(id_) + ": allocation handle " + std::to_string(handle) +
                        " is owned by an in-flight inference workspace (a lease) and is freed when that call ends; "
                        "free only handles that alloc() returned");
  }
  freeLocked(it);
}

void Pool::freeLocked(std::unordered_map<uint64_t, Block>::iterator it) {
  Block b = it->second;
  live_.erase(it);
  freeLists_[b.cls].push_back(b.ptr);
  st_.used -= b.cls;
  st_.requested -= b.requested;
  st_.cached += b.cls;
  st_.reserved = st_.used + st_.cached;
  ++st_.freeCount;
  st_.liveBlocks = live_.size();
}

void* Pool::Lease::take(uint64_t bytes) {
  handles_.reserve(handles_.size() + 1);  // push_back below cannot throw and strand the block
  void* ptr = nullptr;
  handles_.push_back(pool_.allocBlock(bytes == 0 ? 1 : bytes, true, &ptr));
  return ptr;
}

Pool::Lease::~Lease() {
  // Cannot fail: free() refuses leased handles, so every handle taken here is still live and ours.
  std::lock_guard<std::mutex> lk(pool_.mu_);
  for (uint64_t h : handles_) {
    auto it = pool_.live_.find(h);
    if (it != pool_.live_.end()) pool_.freeLocked(it);
  }
}

void* Pool::pointer(uint64_t handle) const {
  std::lock_guard<std::mutex> lk(mu_);
  auto it = live_.find(handle);
  if (it == live_.end()) {
    throw invalidHandle("pool " + std::to_string(id_) + ": allocation handle " + std::to_string(handle) + " is not live");
  }
  return it->second.ptr;
}

PoolStats Pool::stats() const {
  std::lock_guard<std::mutex> lk(mu_);
  return st_;
}

void Pool::emptyCache() {
  std::lock_guard<std::mutex> lk(mu_);
  emptyCacheLocked();
}

void Pool::emptyCacheLocked() {
  for (auto& [cls, list] : freeLists_) {
    for (void* p : list) backend_.rawFree(device_, p, cls);
    st_.cached -= cls * list.size();
  }
  freeLists_.clear();
  st_.reserved = st_.used + st_.cached;
}

}  // namespace shoal
