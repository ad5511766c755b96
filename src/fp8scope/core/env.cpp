#include "fp8scope/core/env.hpp"

#include "fp8scope/core/runner.hpp"

#include <fmt/format.h>
#include <unistd.h>

#include <array>
#include <cstdio>
#include <cstdlib>
#include <ctime>

#ifndef FP8SCOPE_SOURCE_DIR
#define FP8SCOPE_SOURCE_DIR "."
#endif
#ifndef FP8SCOPE_BUILD_GIT_SHA
#define FP8SCOPE_BUILD_GIT_SHA "unknown"
#endif
#ifndef FP8SCOPE_BUILD_TYPE
#define FP8SCOPE_BUILD_TYPE "unknown"
#endif
#ifndef FP8SCOPE_VERSION
#define FP8SCOPE_VERSION "0.0.0"
#endif

namespace fp8scope::core {
namespace {

std::string run_command(const std::string& cmd) {
  std::string out;
  if (FILE* p = ::popen(cmd.c_str(), "r")) {
    std::array<char, 256> buf{};
    while (std::fgets(buf.data(), int(buf.size()), p)) out += buf.data();
    ::pclose(p);
  }
  while (!out.empty() && (out.back() == '\n' || out.back() == '\r')) out.pop_back();
  return out;
}

}  // namespace

std::string utc_now_iso8601() {
  std::time_t t = std::time(nullptr);
  std::tm tm{};
  ::gmtime_r(&t, &tm);
  char buf[32];
  std::strftime(buf, sizeof buf, "%Y-%m-%dT%H:%M:%SZ", &tm);
  return buf;
}

json host_env() {
  char host[256] = {};
  ::gethostname(host, sizeof host - 1);
  json e;
  e["host"] = host;
  e["fp8scope_version"] = FP8SCOPE_VERSION;
#if defined(__clang__)
  e["compiler"] = fmt::format("clang {}", __clang_version__);
#elif defined(__GNUC__)
  e["compiler"] = fmt::format("g++ {}", __VERSION__);
#endif
  e["build_type"] = FP8SCOPE_BUILD_TYPE;
  // The revision: FP8SCOPE_GIT_SHA wins (set by scripts that run a copied tree), then the
  // source tree's git, then what configure saw.
  const std::string src = FP8SCOPE_SOURCE_DIR;
  std::string sha, dirty;
  if (const char* s = std::getenv("FP8SCOPE_GIT_SHA"); s && *s) {
    sha = s;
    const char* d = std::getenv("FP8SCOPE_GIT_DIRTY");
    e["git_dirty"] = d && std::string(d) == "1";
    e["git_source"] = "environment";
  } else if (sha = run_command(fmt::format("git -C '{}' rev-parse --verify -q HEAD 2>/dev/null", src)); sha.size() == 40) {
    dirty = run_command(fmt::format("git -C '{}' status --porcelain --untracked-files=no 2>/dev/null", src));
    e["git_dirty"] = !dirty.empty();
    e["git_source"] = "worktree";
  } else {
    sha = FP8SCOPE_BUILD_GIT_SHA;
    e["git_dirty"] = nullptr;
    e["git_source"] = "configure";
  }
  e["git_sha"] = sha;
  e["time_utc"] = utc_now_iso8601();
  return e;
}

json capture_env(int device, bool in_child) {
  json e = host_env();
  json g;
  try {
    g = in_child ? run_in_child([device] { return gpu_env(device); }) : gpu_env(device);
  } catch (const std::exception& ex) {
    g = {{"gpu", nullptr}, {"gpu_reason", fmt::format("querying the GPU crashed: {}", ex.what())}};
  }
  for (auto it = g.begin(); it != g.end(); ++it) e[it.key()] = it.value();
  return e;
}

bool env_has_gpu(const json& env) { return env.contains("gpu") && env["gpu"].is_object(); }

}  // namespace fp8scope::core
