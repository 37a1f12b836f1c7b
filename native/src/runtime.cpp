#include "shoal/runtime.hpp"

#include <thread>

#include "shoal/errors.hpp"

namespace shoal {

Runtime::Runtime(const RuntimeOptions& opts) {
  report_.cudaCompiledIn = cudaCompiledIn();
  report_.threads = opts.threads != 0 ? opts.threads : std::max(1u, std::thread::hardware_concurrency());
  if (opts.backend != "auto" && opts.backend != "host" && opts.backend != "cuda") {
    throw invalidArgument("backend must be auto, cuda or host, got \"" + opts.backend + "\"");
  }
  if (opts.backend == "host") {
    report_.cudaFallbackReason = "host backend requested";
  } else {
    backend_ = makeCudaBackend(&report_.cudaFallbackReason);
    if (!backend_ && opts.backend == "cuda") throw backendError("CUDA backend requested but unavailable: " + report_.cudaFallbackReason);
  }
  if (!backend_) backend_ = makeHostBackend(opts.hostCapacityBytes, report_.threads);
  report_.active = backend_->name();
  const size_t n = backend_->devices().size();
  for (size_t d = 0; d < n; ++d) registries_.push_back(std::make_unique<BlobRegistry>(*backend_, static_cast<int>(d)));
}

BlobRegistry& Runtime::blobs(int device) {
  if (device < 0 || device >= deviceCount()) {
    throw invalidArgument("device " + std::to_string(device) + " does not exist (" + std::to_string(deviceCount()) +
                          " " + backend_->name() + " devices)");
  }
  return *registries_[static_cast<size_t>(device)];
}

Runtime::~Runtime() {
  // Families hold blob refs and pools; drop them before the registry and the backend.
  families_.clear();
  pools_.clear();
  registries_.clear();
  backend_.reset();
}

uint32_t Runtime::createPool(uint64_t budget, int device) {
  BlobRegistry* reg = &blobs(device);  // validates the device
  std::lock_guard<std::mutex> lk(mu_);
  const uint32_t id = nextPool_++;
  // When the device itself is full, idle blobs on it are evicted to host memory before the pool gives up.
  pools_.emplace(id, std::make_shared<Pool>(id, *backend_, device, budget, [reg](uint64_t b) { reg->evictFor(b); }));
  return id;
}

std::shared_ptr<Pool> Runtime::pool(uint32_t id) const {
  std::lock_guard<std::mutex> lk(mu_);
  auto it = pools_.find(id);
  if (it == pools_.end()) throw invalidHandle("pool " + std::to_string(id) + " does not exist or was destroyed");
  return it->second;
}

void Runtime::destroyPool(uint32_t id) {
  std::shared_ptr<Pool> p;
  {
    std::lock_guard<std::mutex> lk(mu_);
    auto it = pools_.find(id);
    if (it == pools_.end()) throw invalidHandle("pool " + std::to_string(id) + " does not exist or was destroyed");
    p = std::move(it->second);
    pools_.erase(it);
  }
  // Families still using it keep it alive through their shared_ptr.
}

std::vector<std::shared_ptr<Pool>> Runtime::pools() const {
  std::lock_guard<std::mutex> lk(mu_);
  std::vector<std::shared_ptr<Pool>> out;
  for (auto& [id, p] : pools_) out.push_back(p);
  return out;
}

uint32_t Runtime::loadFamily(const FamilySpec& spec, uint32_t poolId) {
  auto p = pool(poolId);
  auto fam = std::make_shared<Family>(spec, blobs(p->device()), p, *backend_);
  std::lock_guard<std::mutex> lk(mu_);
  const uint32_t id = nextFamily_++;
  families_.emplace(id, std::move(fam));
  return id;
}

std::shared_ptr<Family> Runtime::family(uint32_t id) const {
  std::lock_guard<std::mutex> lk(mu_);
  auto it = families_.find(id);
  if (it == families_.end()) throw invalidHandle("family " + std::to_string(id) + " does not exist or was released");
  return it->second;
}

void Runtime::releaseFamily(uint32_t id) {
  std::shared_ptr<Family> f;
  {
    std::lock_guard<std::mutex> lk(mu_);
    auto it = families_.find(id);
    if (it == families_.end()) throw invalidHandle("family " + std::to_string(id) + " does not exist or was released");
    f = std::move(it->second);
    families_.erase(it);
  }
}

}  // namespace shoal
