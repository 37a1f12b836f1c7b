// The device abstraction: raw memory, copies, compute kernels and cross-process export for one backend.
// Pointers handed out by a backend live in that backend's memory space (device memory for CUDA, host
// memory for the host backend); kernels take pointers from the same space.
#pragma once
#include <cstddef>
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

namespace shoal {

enum class Activation { None = 0, Relu = 1, Gelu = 2 };

struct DeviceInfo {
  int index = 0;
  std::string name;
  std::string backend;  // "cuda" | "host"
  int ccMajor = 0, ccMinor = 0;
  uint64_t totalBytes = 0, freeBytes = 0;
};

/** One independent GEMM of a grouped launch: C = act(alpha * A B + beta * C + bias), A [m x k], B [k x n]. */
struct GemmSegment {
  int m = 0, n = 0, k = 0;
  const float* A = nullptr;
  const float* B = nullptr;
  const float* bias = nullptr;
  float* C = nullptr;
  Activation act = Activation::None;
  float alpha = 1.f, beta = 0.f;
};

/** Compute kernels, all float32 row-major. Batched GEMM: C_b = act(alpha * A_b B_b + beta * C_b + bias). */
class Kernels {
 public:
  virtual ~Kernels() = default;
  virtual void gemm(int batch, int m, int n, int k, const float* A, int64_t strideA, const float* B, int64_t strideB,
                    const float* bias, float* C, int64_t strideC, Activation act, float alpha, float beta) = 0;
  virtual void layerNorm(int rows, int cols, const float* x, const float* gamma, const float* beta, float eps,
                         float* y) = 0;
  virtual void softmax(int rows, int cols, const float* x, float* y) = 0;
  virtual void activate(int64_t count, float* y, Activation act) = 0;
  /**
   * Many small GEMMs with different weights (per-variant adapter and head work, Punica's SGMV idea) in one
   * call, so a backend can run them together instead of one launch or one thread-pool round each.
   * The default runs them one after another.
   */
  virtual void groupedGemm(const std::vector<GemmSegment>& segs) {
    for (const GemmSegment& g : segs)
      gemm(1, g.m, g.n, g.k, g.A, 0, g.B, 0, g.bias, g.C, 0, g.act, g.alpha, g.beta);
  }
  /** Y[m x n] += scale * (X[m x k] A[k x r]) B[r x n]; tmp holds m x r floats. */
  void lora(int m, int n, int k, int r, const float* X, const float* A, const float* B, float scale, float* Y,
            float* tmp) {
    gemm(1, m, r, k, X, 0, A, 0, nullptr, tmp, 0, Activation::None, 1.0f, 0.0f);
    gemm(1, m, n, r, tmp, 0, B, 0, nullptr, Y, 0, Activation::None, scale, 1.0f);
  }
};

class Backend {
 public:
  virtual ~Backend() = default;
  virtual const char* name() const = 0;
  virtual std::vector<DeviceInfo> devices() = 0;
  /** Raw device allocation; throws DeviceOutOfMemory when the device is full. */
  virtual void* rawAlloc(int device, size_t bytes) = 0;
  virtual void rawFree(int device, void* p, size_t bytes) = 0;
  virtual void copyToDevice(int device, void* dst, const void* src, size_t n) = 0;
  virtual void copyToHost(int device, void* dst, const void* src, size_t n) = 0;
  /** Host staging memory for evicted blobs: pinned on CUDA, plain on host. */
  virtual void* hostAlloc(size_t bytes) = 0;
  virtual void hostFree(void* p) = 0;
  virtual Kernels& kernels(int device) = 0;
  /** Cross-process export: an opaque handle another process passes to importShared. */
  virtual std::string exportShared(int device, void* p) = 0;
  virtual void* importShared(int device, const std::string& handle) = 0;
  virtual void closeShared(int device, void* p) = 0;
  /** True when device pointers are directly readable by the CPU (host backend). */
  virtual bool hostAddressable() const = 0;
  /**
   * Counts memory the backend did not allocate itself against the device (a POSIX shm blob on the host
   * backend), so capacity and eviction see it. Throws DeviceOutOfMemory. CUDA: a no-op, the driver counts.
   */
  virtual void reserveExternal(int device, size_t bytes) {
    (void)device;
    (void)bytes;
  }
  virtual void releaseExternal(int device, size_t bytes) {
    (void)device;
    (void)bytes;
  }
};

/** Host backend: one pseudo device "host" with `capacityBytes` of accounted memory. */
std::unique_ptr<Backend> makeHostBackend(uint64_t capacityBytes, unsigned threads);

/** Whether this build has CUDA compiled in. */
bool cudaCompiledIn();
/** The CUDA backend, or nullptr with `reason` set when CUDA is not compiled in or no device/driver works. */
std::unique_ptr<Backend> makeCudaBackend(std::string* reason);

Activation parseActivation(const std::string& s);
const char* activationName(Activation a);

}  // namespace shoal
