// Built when no CUDA compiler was found: the CUDA backend reports why it is absent.
#include "shoal/backend.hpp"

namespace shoal {

bool cudaCompiledIn() { return false; }

std::unique_ptr<Backend> makeCudaBackend(std::string* reason) {
  if (reason) *reason = "CUDA not compiled in (no CUDA compiler at build time)";
  return nullptr;
}

}  // namespace shoal
