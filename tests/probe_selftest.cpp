// A probe for tests: each point does what its `action` says (succeed, abort, segfault, hang),
// so the command line, crash isolation and resume can be tested end to end without a GPU.
#include "fp8scope/core/probe_main.hpp"

#include <csignal>
#include <cstdlib>
#include <thread>

using namespace fp8scope::core;

int main(int argc, char** argv) {
  ProbeDef def;
  def.schema.probe = "selftest";
  def.schema.axes = {{"i", ParamSpec::Kind::integer, 0, {}, 0, 1e6, "point number"},
                     {"action", ParamSpec::Kind::string, "ok", {"ok", "abort", "segv", "hang"}, 0, 0, "what the point does"}};
  def.schema.settings = {{"value", ParamSpec::Kind::number, 1.0, {}, 0, 100, "copied into each record"}};
  def.summary = "test probe whose points succeed, abort, segfault or hang on demand";
  def.needs_gpu = false;
  def.make_point_fn = [](const ProbeContext& ctx) {
    const double value = ctx.settings["value"];
    return [value](const json& p, const std::string& key) {
      const std::string a = p["action"];
      if (a == "abort") std::abort();
      if (a == "segv") std::raise(SIGSEGV);
      if (a == "hang") std::this_thread::sleep_for(std::chrono::hours(1));
      Record r = make_record(key, p, Outcome::ok);
      r.data["metrics"] = {{"value", value}};
      return r;
    };
  };
  return probe_main(argc, argv, def);
}
