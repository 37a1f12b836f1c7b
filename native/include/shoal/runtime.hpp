// The process-wide native runtime: the active backend, one blob registry per device, and the handle
// tables for pools and families. Handles are small integers; an unknown or released handle raises
// InvalidHandle, never a crash. The N-API binding and the C++ tests both drive this class.
#pragma once
#include <cstdint>
#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <vector>

#include "shoal/backend.hpp"
#include "shoal/blob_registry.hpp"
#include "shoal/family.hpp"
#include "shoal/pool.hpp"

namespace shoal {

struct RuntimeOptions {
  /** "auto" tries CUDA then host; "host" skips CUDA. */
  std::string backend = "auto";
  uint64_t hostCapacityBytes = 1ull << 30;
  unsigned threads = 0;  // 0 = hardware concurrency
};

struct BackendReport {
  std::string active;         // "cuda" | "host"
  bool cudaCompiledIn = false;
  std::string cudaFallbackReason;  // why CUDA is not active; empty when it is
  unsigned threads = 0;
};

class Runtime {
 public:
  explicit Runtime(const RuntimeOptions& opts);
  ~Runtime();

  Backend& backend() { return *backend_; }
  /** The blob registry of one device; InvalidArgument for a device that does not exist. */
  BlobRegistry& blobs(int device = 0);
  int deviceCount() const { return static_cast<int>(registries_.size()); }
  const BackendReport& report() const { return report_; }

  uint32_t createPool(uint64_t budget, int device);
  std::shared_ptr<Pool> pool(uint32_t id) const;
  void destroyPool(uint32_t id);
  std::vector<std::shared_ptr<Pool>> pools() const;

  uint32_t loadFamily(const FamilySpec& spec, uint32_t poolId);
  std::shared_ptr<Family> family(uint32_t id) const;
  void releaseFamily(uint32_t id);

 private:
  BackendReport report_;
  std::unique_ptr<Backend> backend_;
  std::vector<std::unique_ptr<BlobRegistry>> registries_;
  mutable std::mutex mu_;
  uint32_t nextPool_ = 1, nextFamily_ = 1;
  std::map<uint32_t, std::shared_ptr<Pool>> pools_;
  std::map<uint32_t, std::shared_ptr<Family>> families_;
};

}  // namespace shoal
