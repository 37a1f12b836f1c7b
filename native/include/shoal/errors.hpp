// Typed errors of the native core. The N-API binding maps each code to a shoal error class
// (OutOfMemory -> OutOfMemoryError with {requested, used, budget}); C++ tests catch them directly.
#pragma once
#include <cstdint>
#include <stdexcept>
#include <string>

namespace shoal {

enum class ErrorCode { InvalidArgument, InvalidHandle, OutOfMemory, NotFound, Io, Backend };

inline const char* errorCodeName(ErrorCode c) {
  switch (c) {
    case ErrorCode::InvalidArgument: return "ERR_INVALID_ARGUMENT";
    case ErrorCode::InvalidHandle: return "ERR_INVALID_HANDLE";
    case ErrorCode::OutOfMemory: return "ERR_OUT_OF_MEMORY";
    case ErrorCode::NotFound: return "ERR_NOT_FOUND";
    case ErrorCode::Io: return "ERR_IO";
    case ErrorCode::Backend: return "ERR_BACKEND";
  }
  return "ERR_BACKEND";
}

class Error : public std::runtime_error {
 public:
  Error(ErrorCode code, const std::string& msg) : std::runtime_error(msg), code_(code) {}
  ErrorCode code() const { return code_; }

 private:
  ErrorCode code_;
};

/** An allocation past a budget. `scope` names what was full ("pool 3", "device host:0"). */
class OutOfMemory : public Error {
 public:
  OutOfMemory(std::string scope, uint64_t requested, uint64_t used, uint64_t budget)
      : Error(ErrorCode::OutOfMemory, "out of memory in " + scope + ": requested=" + std::to_string(requested) +
                                          " used=" + std::to_string(used) + " budget=" + std::to_string(budget)),
        scope(std::move(scope)), requested(requested), used(used), budget(budget) {}
  std::string scope;
  uint64_t requested, used, budget;
};

/** Raised by a backend's raw allocation when the device itself is full (not a pool budget). */
class DeviceOutOfMemory : public OutOfMemory {
 public:
  using OutOfMemory::OutOfMemory;
};

inline Error invalidArgument(const std::string& m) { return Error(ErrorCode::InvalidArgument, m); }
inline Error invalidHandle(const std::string& m) { return Error(ErrorCode::InvalidHandle, m); }
inline Error notFound(const std::string& m) { return Error(ErrorCode::NotFound, m); }
inline Error ioError(const std::string& m) { return Error(ErrorCode::Io, m); }
inline Error backendError(const std::string& m) { return Error(ErrorCode::Backend, m); }

}  // namespace shoal
