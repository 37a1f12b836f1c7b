// Host backend: "device memory" is malloc'd host memory counted against a configured capacity, so budgets,
// eviction and OOM behave like on a GPU. Cross-process export is POSIX shared memory (see shm.hpp).
#include <atomic>
#include <cstdlib>
#include <cstring>
#include <mutex>

#include "host_kernels.hpp"
#include "shoal/errors.hpp"
#include "shoal/shm.hpp"

namespace shoal {

namespace {

class HostBackend : public Backend {
 public:
  HostBackend(uint64_t capacity, unsigned threads) : capacity_(capacity), threads_(threads), kernels_(threads_) {}
  const char* name() const override { return "host"; }
  std::vector<DeviceInfo> devices() override {
    std::lock_guard<std::mutex> lk(mu_);
    DeviceInfo d;
    d.index = 0;
    d.name = "host";
    d.backend = "host";
    d.totalBytes = capacity_;
    d.freeBytes = capacity_ - allocated_;
    return {d};
  }
  void* rawAlloc(int device, size_t bytes) override {
    check(device);
    {
      std::lock_guard<std::mutex> lk(mu_);
      if (allocated_ + bytes > capacity_) throw DeviceOutOfMemory("device host:0", bytes, allocated_, capacity_);
      allocated_ += bytes;
    }
    // 64-byte alignment keeps GEMM rows and safetensors payloads (8-byte aligned offsets) aligned;
    // aligned_alloc wants a size that is a multiple of the alignment.
    const size_t rounded = bytes == 0 ? 64 : (bytes + 63) / 64 * 64;
    void* p = std::aligned_alloc(64, rounded);
    if (!p) {
      std::lock_guard<std::mutex> lk(mu_);
      allocated_ -= bytes;
      throw DeviceOutOfMemory("device host:0 (malloc failed)", bytes, allocated_, capacity_);
    }
    return p;
  }
  void rawFree(int device, void* p, size_t bytes) override {
    check(device);
    std::free(p);
    std::lock_guard<std::mutex> lk(mu_);
    allocated_ -= bytes;
  }
  // memcpy with a null pointer is undefined even for 0 bytes (an empty std::vector has data() == nullptr).
  void copyToDevice(int, void* dst, const void* src, size_t n) override {
    if (n != 0) std::memcpy(dst, src, n);
  }
  void copyToHost(int, void* dst, const void* src, size_t n) override {
    if (n != 0) std::memcpy(dst, src, n);
  }
  void* hostAlloc(size_t bytes) override {
    void* p = std::malloc(bytes == 0 ? 1 : bytes);
    if (!p) throw OutOfMemory("host staging memory", bytes, 0, 0);
    return p;
  }
  void hostFree(void* p) override { std::free(p); }
  Kernels& kernels(int device) override {
    check(device);
    return kernels_;
  }
  // Host blobs are already shared through shm by name; the handle is the segment name.
  std::string exportShared(int, void*) override {
    throw invalidArgument("host backend shares blobs through POSIX shm segments, not pointer handles");
  }
  void* importShared(int, const std::string&) override {
    throw invalidArgument("host backend shares blobs through POSIX shm segments, not pointer handles");
  }
  void closeShared(int, void*) override {}
  bool hostAddressable() const override { return true; }
  void reserveExternal(int device, size_t bytes) override {
    check(device);
    std::lock_guard<std::mutex> lk(mu_);
    if (allocated_ + bytes > capacity_) throw DeviceOutOfMemory("device host:0", bytes, allocated_, capacity_);
    allocated_ += bytes;
  }
  void releaseExternal(int device, size_t bytes) override {
    check(device);
    std::lock_guard<std::mutex> lk(mu_);
    allocated_ -= bytes;
  }

 private:
  void check(int device) const {
    if (device != 0) throw invalidArgument("host backend has one device (0), got device " + std::to_string(device));
  }
  std::mutex mu_;
  uint64_t capacity_;
  uint64_t allocated_ = 0;
  ThreadPool threads_;
  HostKernels kernels_;
};

}  // namespace

std::unique_ptr<Backend> makeHostBackend(uint64_t capacityBytes, unsigned threads) {
  return std::make_unique<HostBackend>(capacityBytes, threads == 0 ? 1 : threads);
}

Activation parseActivation(const std::string& s) {
  if (s == "none" || s.empty()) return Activation::None;
  if (s == "relu") return Activation::Relu;
  if (s == "gelu") return Activation::Gelu;
  throw invalidArgument("unknown activation \"" + s + "\" (expected none, relu or gelu)");
}

const char* activationName(Activation a) {
  switch (a) {
    case Activation::Relu: return "relu";
    case Activation::Gelu: return "gelu";
    default: return "none";
  }
}

}  // namespace shoal
