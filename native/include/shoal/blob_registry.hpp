// Named weight blobs loaded once per device and shared by reference.
// A blob is the whole image of a safetensors file (or a caller's buffer) in device memory. Replicas take
// references (acquire/release); a blob with zero references stays resident as cache until the device needs
// the memory, then the least recently used idle blobs are evicted to host memory (pinned on CUDA) and
// restored on the next acquire. Shared blobs live in memory other processes can map by the blob's name
// (POSIX shm on the host backend, a CUDA IPC handle published through shm on CUDA) and are never evicted.
//
// A name is deduplicated only while its content is the same: a blob is identified by its name plus a hash of
// its bytes (and, for files, the path and what stat says: device, inode, size, mtime, ctime). Loading a name
// whose file or buffer changed (a redeployed family) loads the new bytes under that name; blobs still
// referenced by families built on the old bytes keep them ("retired") until their last reference goes.
#pragma once
#include <chrono>
#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <vector>

#include "shoal/backend.hpp"
#include "shoal/safetensors.hpp"
#include "shoal/shm.hpp"

namespace shoal {

enum class BlobState { Resident, Evicted };

struct BlobInfo {
  std::string name;
  uint64_t bytes = 0;
  uint32_t refs = 0;
  std::string state;  // "resident" | "evicted"
  bool shared = false;
  bool attached = false;  // opened from another process's segment
  uint32_t tensors = 0;
  uint64_t evictions = 0, restores = 0;
};

struct RegistryStats {
  uint64_t blobs = 0, refs = 0;
  uint64_t residentBytes = 0;  // device bytes held by blobs (each blob once, however many refs)
  uint64_t idleBytes = 0;      // resident bytes of blobs with zero refs (evictable cache)
  uint64_t evictedBytes = 0;   // bytes parked in host memory
  uint64_t retired = 0;         // replaced blobs still held by references (their bytes count above)
  uint64_t loads = 0, dedupedLoads = 0, evictions = 0, restores = 0;
  uint64_t reloads = 0;         // loads that replaced a blob of the same name whose content had changed
  uint64_t rehashedLoads = 0;   // loads of a known file that had to be read again to compare its content
};

/** What stat says about a weights file; equal stamps mean the file was not rewritten in between. */
struct FileStamp {
  std::string path;
  uint64_t dev = 0, ino = 0, size = 0;
  int64_t mtimeNs = 0, ctimeNs = 0;
  bool operator==(const FileStamp& o) const {
    return path == o.path && dev == o.dev && ino == o.ino && size == o.size && mtimeNs == o.mtimeNs &&
           ctimeNs == o.ctimeNs;
  }
  bool operator!=(const FileStamp& o) const { return !(*this == o); }
};

/** What a held reference sees: stable while the reference is held. */
struct BlobView {
  const std::string* name;
  const uint8_t* data;  // device pointer to the file image
  uint64_t bytes;
  const SafetensorsHeader* header;  // empty tensors map for non-safetensors buffers
};

class BlobRegistry {
 public:
  /**
   * `racyWindow`: a file modified less than this long before it was loaded may be rewritten again within the
   * filesystem's timestamp granularity without its stamp changing (git's "racy clean" problem), so the next
   * load of its name reads it again and compares content instead of trusting the stamp.
   */
  BlobRegistry(Backend& backend, int device, std::chrono::nanoseconds racyWindow = std::chrono::seconds(2));
  ~BlobRegistry();

  /**
   * Loads a safetensors file as `name`. When the name exists and the file is unchanged (same stamp, or the
   * same bytes), returns the existing blob: loaded once per device. When the content changed, the new bytes
   * replace the blob under that name; references taken before keep the old bytes until released.
   */
  BlobInfo loadFile(const std::string& name, const std::string& path, bool shared);
  /** Like loadFile: deduplicated when the bytes are the same, replaced when they differ. */
  BlobInfo loadBuffer(const std::string& name, const uint8_t* data, size_t bytes, bool shared);
  /** Maps a shared blob another process published under `name`. */
  BlobInfo attachShared(const std::string& name);

  uint64_t acquire(const std::string& name);
  void release(uint64_t ref);
  BlobView view(uint64_t ref) const;
  /** A float32 tensor of a held blob, checked against the expected shape (empty = any). */
  const float* tensorF32(uint64_t ref, const std::string& tensor, const std::vector<int64_t>& shape,
                         std::vector<int64_t>* actual = nullptr) const;

  /** Evicts idle blobs (LRU first) until `bytes` were freed or none are left; returns bytes freed. */
  uint64_t evictFor(uint64_t bytes);
  /** Evicts one idle blob by name; false when it has references, is shared or is already evicted. */
  bool evict(const std::string& name);
  /** Removes an idle blob entirely. */
  void drop(const std::string& name);

  BlobInfo info(const std::string& name) const;
  std::vector<BlobInfo> list() const;
  RegistryStats stats() const;

 private:
  struct Blob;
  struct Source {
    uint64_t hash = 0;
    bool file = false;
    FileStamp stamp;
    bool trusted = false;  // the stamp alone may identify the content on the next load
  };
  BlobInfo loadImage(const std::string& name, std::vector<uint8_t> image, bool shared, const Source& src);
  void retireLocked(std::unique_ptr<Blob> b);
  BlobInfo infoLocked(const Blob& b) const;
  void* allocDeviceLocked(uint64_t bytes);
  void reserveExternalLocked(uint64_t bytes);
  uint64_t evictLocked(uint64_t bytes);
  void evictBlobLocked(Blob& b);
  void freeBlobLocked(Blob& b);

  Backend& backend_;
  int device_;
  mutable std::mutex mu_;
  std::chrono::nanoseconds racyWindow_;
  std::map<std::string, std::unique_ptr<Blob>> blobs_;
  std::vector<std::unique_ptr<Blob>> retired_;  // replaced under their name, freed on their last release
  std::map<uint64_t, Blob*> refs_;
  uint64_t nextRef_ = 1;
  uint64_t tick_ = 0;
  RegistryStats counters_;
};

}  // namespace shoal
