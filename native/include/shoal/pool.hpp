// A memory pool with a byte budget (one per replica) over a caching allocator with size classes.
// Blocks are rounded up to power-of-two-ish classes (4 steps per power of two, 512 B minimum) and, when
// freed, parked in a per-class free list so the next allocation of that class is a cache hit that does not
// reach cudaMalloc/malloc. The budget counts reserved bytes (live + cached): when a miss would cross it, the
// cache is released first; if live bytes alone would cross it the allocation fails with OutOfMemory.
#pragma once
#include <cstdint>
#include <functional>
#include <map>
#include <mutex>
#include <string>
#include <unordered_map>
#include <vector>

#include "shoal/backend.hpp"

namespace shoal {

struct PoolStats {
  uint64_t budget = 0;
  uint64_t used = 0;      // bytes in live blocks (class sizes)
  uint64_t requested = 0; // bytes callers asked for in live blocks
  uint64_t cached = 0;    // bytes parked in free lists
  uint64_t reserved = 0;  // used + cached: what the pool holds from the device
  uint64_t peak = 0;      // high-water mark of used
  uint64_t allocCount = 0, freeCount = 0, cacheHits = 0, cacheMisses = 0, liveBlocks = 0;
};

/** Rounds a request to its size class. */
uint64_t sizeClassOf(uint64_t bytes);

class Pool {
 public:
  /** onDevicePressure(bytes) is called when the device itself is full; it may free memory (evict blobs). */
  Pool(uint32_t id, Backend& backend, int device, uint64_t budget,
       std::function<void(uint64_t)> onDevicePressure = nullptr);
  ~Pool();
  Pool(const Pool&) = delete;
  Pool& operator=(const Pool&) = delete;

  /**
   * Scratch memory for one call (a family's inference workspace). Blocks taken through a lease belong to it and
   * are freed together when it ends. free() refuses their handles (InvalidHandle): JS sees the handles of the
   * same pool, and a block freed under a lease would make the lease's own free fail in its destructor.
   */
  class Lease {
   public:
    explicit Lease(Pool& pool) : pool_(pool) {}
    ~Lease();
    Lease(const Lease&) = delete;
    Lease& operator=(const Lease&) = delete;
    /** A block of at least `bytes` (0 is taken as 1). Throws OutOfMemory like alloc(). */
    void* take(uint64_t bytes);
    const std::vector<uint64_t>& handles() const { return handles_; }

   private:
    Pool& pool_;
    std::vector<uint64_t> handles_;
  };

  uint32_t id() const { return id_; }
  int device() const { return device_; }
  /** Returns a handle (never 0) the caller owns. Throws OutOfMemory{requested, used, budget}. */
  uint64_t alloc(uint64_t bytes);
  /** Frees a handle from alloc(); InvalidHandle when it is not live or belongs to a Lease. */
  void free(uint64_t handle);
  /** The device pointer of a live handle. */
  void* pointer(uint64_t handle) const;
  PoolStats stats() const;
  /** Returns cached blocks to the device. */
  void emptyCache();

 private:
  struct Block {
    void* ptr;
    uint64_t cls;
    uint64_t requested;
    bool leased;  // owned by a Lease: only the lease frees it
  };
  uint64_t allocBlock(uint64_t bytes, bool leased, void** ptr);
  void freeLocked(std::unordered_map<uint64_t, Block>::iterator it);
  void emptyCacheLocked();
  uint32_t id_;
  Backend& backend_;
  int device_;
  std::function<void(uint64_t)> onDevicePressure_;
  mutable std::mutex mu_;
  PoolStats st_;
  uint64_t nextHandle_ = 1;
  std::unordered_map<uint64_t, Block> live_;
  std::map<uint64_t, std::vector<void*>> freeLists_;
};

}  // namespace shoal
