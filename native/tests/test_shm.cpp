// Cross-process sharing on the host backend: two processes (fork) opening the same blob name map the
// same bytes through POSIX shared memory.
#include <sys/wait.h>
#include <unistd.h>

#include "shoal/blob_registry.hpp"
#include "shoal/errors.hpp"
#include "shoal/shm.hpp"
#include "test.hpp"

using namespace shoal;

static std::string uniqueName(const char* tag) { return std::string("test-") + tag + "-" + std::to_string(getpid()); }

TEST(segment_create_open_unlink) {
  std::string key = uniqueName("seg");
  {
    ShmSegment a = ShmSegment::create(key, 4096);
    static_cast<char*>(a.data())[100] = 'x';
    ShmSegment b = ShmSegment::open(key);
    CHECK_EQ(b.size(), size_t(4096));
    CHECK(static_cast<char*>(b.data())[100] == 'x');
    CHECK_THROWS(ShmSegment::create(key, 10), Error);
    CHECK(ShmSegment::exists(key));
  }
  CHECK(!ShmSegment::exists(key));  // the creator unlinked it
}

TEST(two_processes_map_the_same_blob_bytes) {
  std::string name = uniqueName("blob");
  auto be = makeHostBackend(1 << 20, 1);
  BlobRegistry reg(*be, 0);
  auto img = writeSafetensors({{"w", {{4}, {5.f, 0.f, 0.f, 0.f}}}});
  BlobInfo info = reg.loadBuffer(name, img.data(), img.size(), true);
  CHECK(info.shared && !info.attached);
  uint64_t ref = reg.acquire(name);
  float* w = const_cast<float*>(reg.tensorF32(ref, "w", {4}));

  pid_t pid = fork();
  if (pid == 0) {
    int code = 0;
    try {
      auto cbe = makeHostBackend(1 << 20, 1);
      BlobRegistry creg(*cbe, 0);
      // Loading the same name with shared=true maps the existing segment instead of copying.
      BlobInfo ci = creg.loadBuffer(name, img.data(), img.size(), true);
      if (!ci.attached) code = 2;
      uint64_t r = creg.acquire(name);
      float* cw = const_cast<float*>(creg.tensorF32(r, "w", {4}));
      if (cw[0] != 5.f) code = 3;
      cw[1] = 42.f;  // visible to the parent if and only if the bytes are shared
      creg.release(r);
    } catch (...) {
      code = 4;
    }
    _exit(code);
  }
  int status = 0;
  waitpid(pid, &status, 0);
  CHECK(WIFEXITED(status));
  CHECK_EQ(WEXITSTATUS(status), 0);
  CHECK(w[1] == 42.f);

  // attachShared (no source at all) also finds it by name.
  pid = fork();
  if (pid == 0) {
    int code = 0;
    try {
      auto cbe = makeHostBackend(1 << 20, 1);
      BlobRegistry creg(*cbe, 0);
      BlobInfo ci = creg.attachShared(name);
      uint64_t r = creg.acquire(name);
      if (ci.tensors != 1 || creg.tensorF32(r, "w", {4})[1] != 42.f) code = 5;
      creg.release(r);
    } catch (...) {
      code = 6;
    }
    _exit(code);
  }
  waitpid(pid, &status, 0);
  CHECK_EQ(WEXITSTATUS(status), 0);
  reg.release(ref);
}

TEST(attach_missing_name_is_not_found) {
  auto be = makeHostBackend(1 << 20, 1);
  BlobRegistry reg(*be, 0);
  CHECK_THROWS(reg.attachShared(uniqueName("missing")), Error);
}
