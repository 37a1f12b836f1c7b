// A minimal test harness: TEST(name) registers a case, CHECK fails it with file:line, main runs them all.
#pragma once
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <functional>
#include <string>
#include <vector>

namespace t {
struct Case { const char* name; std::function<void()> fn; };
inline std::vector<Case>& cases() { static std::vector<Case> c; return c; }
struct Reg { Reg(const char* n, std::function<void()> f) { cases().push_back({n, std::move(f)}); } };
struct Failure { std::string what; };

// The exit status of a binary that cannot run here (a CUDA test without a device): native/CMakeLists.txt gives it
// to ctest as SKIP_RETURN_CODE, so ctest reports the test as skipped instead of passed.
constexpr int kSkipExitCode = 77;
[[noreturn]] inline void skipAll(const std::string& why) {
  std::printf("SKIP %s\n", why.c_str());
  std::fflush(stdout);
  std::exit(kSkipExitCode);
}
}  // namespace t

#define TEST(name) static void name(); static t::Reg reg_##name(#name, name); static void name()
#define CHECK(cond) do { if (!(cond)) throw t::Failure{std::string(__FILE__) + ":" + std::to_string(__LINE__) + ": CHECK(" #cond ")"}; } while (0)
#define CHECK_EQ(a, b) do { auto va_ = (a); auto vb_ = (b); if (!(va_ == vb_)) throw t::Failure{std::string(__FILE__) + ":" + std::to_string(__LINE__) + ": " #a " == " #b " (" + std::to_string(va_) + " vs " + std::to_string(vb_) + ")"}; } while (0)
#define CHECK_THROWS(expr, Type) do { bool thrown_ = false; try { expr; } catch (const Type&) { thrown_ = true; } if (!thrown_) throw t::Failure{std::string(__FILE__) + ":" + std::to_string(__LINE__) + ": expected " #Type " from " #expr}; } while (0)

int main() {
  int failed = 0;
  for (auto& c : t::cases()) {
    try {
      c.fn();
      std::printf("ok   %s\n", c.name);
    } catch (const t::Failure& f) {
      ++failed;
      std::printf("FAIL %s: %s\n", c.name, f.what.c_str());
    } catch (const std::exception& e) {
      ++failed;
      std::printf("FAIL %s: unexpected exception: %s\n", c.name, e.what());
    }
  }
  std::printf("%zu tests, %d failed\n", t::cases().size(), failed);
  return failed == 0 ? 0 : 1;
}
