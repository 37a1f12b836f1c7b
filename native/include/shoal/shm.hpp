// POSIX shared memory (shm_open + mmap) keyed by a blob name, so two processes that open the same name
// map the same bytes. The creator unlinks the name when it is destroyed; mappings already open stay valid.
#pragma once
#include <cstddef>
#include <string>

namespace shoal {

class ShmSegment {
 public:
  /** Creates the segment; throws if it already exists. */
  static ShmSegment create(const std::string& key, size_t bytes);
  /** Opens an existing segment, learning its size from the segment itself. */
  static ShmSegment open(const std::string& key);
  /** True when a segment with this key exists. */
  static bool exists(const std::string& key);
  /** Removes the name (not the mappings). Missing names are ignored. */
  static void unlink(const std::string& key);
  /** The shm_open name for a key: "/shoal-" + key with characters outside [A-Za-z0-9._-] replaced. */
  static std::string segmentName(const std::string& key);

  ShmSegment() = default;
  ShmSegment(ShmSegment&& o) noexcept;
  ShmSegment& operator=(ShmSegment&& o) noexcept;
  ShmSegment(const ShmSegment&) = delete;
  ShmSegment& operator=(const ShmSegment&) = delete;
  ~ShmSegment();

  void* data() const { return data_; }
  size_t size() const { return size_; }
  bool owner() const { return owner_; }
  const std::string& key() const { return key_; }
  /** Removes the name now if this segment created it, and stops owning it: the mapping stays valid and a new
   *  segment may be created under the same key (a blob replaced while still referenced). */
  void disown();
  /** Unmaps without unlinking (eviction); the name stays openable. */
  void unmap();
  /** Maps the named segment again after unmap() (restore after eviction). */
  void remap();

 private:
  std::string key_;
  void* data_ = nullptr;
  size_t size_ = 0;
  bool owner_ = false;
};

}  // namespace shoal
