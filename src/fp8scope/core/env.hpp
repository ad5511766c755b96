#pragma once
// Where a result was measured: host, build, source revision and (when there is one) the GPU.
#include <nlohmann/json.hpp>

#include <string>

namespace fp8scope::core {

using json = nlohmann::json;

// {host, compiler, build_type, fp8scope_version, git_sha, git_dirty, time_utc}.
json host_env();

// {"gpu": {...}} or {"gpu": null, "gpu_reason": "..."}; initialises CUDA in this process.
json gpu_env(int device = 0);

// host_env() + gpu_env(). With in_child, the GPU is queried in a child process so that
// this process stays free of CUDA (and can still fork crash-isolated workers).
json capture_env(int device = 0, bool in_child = true);

// True when env (as captured above) has a usable GPU.
bool env_has_gpu(const json& env);

std::string utc_now_iso8601();

}  // namespace fp8scope::core
