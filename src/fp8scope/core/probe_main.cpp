#include "fp8scope/core/probe_main.hpp"

#include "fp8scope/core/error.hpp"
#include "fp8scope/core/fault_injection.hpp"
#include "fp8scope/core/progress.hpp"
#include "fp8scope/core/runner.hpp"

#include <fmt/format.h>
#include <CLI/CLI.hpp>

#include <unistd.h>

#include <filesystem>
#include <sstream>

#ifndef FP8SCOPE_VERSION
#define FP8SCOPE_VERSION "0.0.0"
#endif

namespace fp8scope::core {
namespace {

std::string describe_params(const std::vector<ParamSpec>& specs) {
  std::string out;
  for (auto& s : specs) {
    out += fmt::format("  {:<20} default {}", s.name, s.default_value.dump());
    if (!s.choices.empty()) {
      out += " (";
      for (std::size_t i = 0; i < s.choices.size(); ++i) out += (i ? "|" : "") + s.choices[i];
      out += ")";
    }
    if (!s.help.empty()) out += "  " + s.help;
    out += "\n";
  }
  return out;
}

int run(int argc, char** argv, const ProbeDef& def) {
  const std::string exe = "probe_" + def.schema.probe;
  // Every probe takes the test-only fault injection (fault_injection.hpp).
  ProbeSchema schema = def.schema;
  schema.settings.push_back({"inject_faults",
                             ParamSpec::Kind::string,
                             "",
                             {},
                             0,
                             0,
                             "test only: INDEX:KIND,... makes point INDEX of the sweep fault the GPU (trap, illegal_address) or hang"});
  CLI::App app{fmt::format("{}: {}", exe, def.summary), exe};
  app.set_version_flag("--version", std::string("fp8scope ") + FP8SCOPE_VERSION);
  std::string config_path, out;
  bool resume = false, no_isolate = false, list = false, quiet = false, verbose = false;
  double timeout_s = 900;
  int device = 0;
  app.add_option("-c,--config", config_path, "sweep file (JSON)")->required();
  app.add_option("-o,--out", out,
                 "output prefix: writes PREFIX.jsonl while running, PREFIX.json at the end "
                 "(default: results/<sweep name>)");
  app.add_flag("--resume", resume, "skip points already in PREFIX.jsonl");
  app.add_flag("--no-isolate", no_isolate, "run points in this process (a crash then ends the sweep)");
  app.add_option("--point-timeout", timeout_s, "seconds before a silent point is killed and recorded as crashed")
      ->check(CLI::PositiveNumber);
  app.add_option("--device", device, "CUDA device index")->check(CLI::NonNegativeNumber);
  std::string shard_arg;
  app.add_option("--shard", shard_arg,
                 "run only shard I of N (I/N, 0-based): points I, I+N, I+2N, ... "
                 "(merge the shards with `fp8scope merge`)");
  app.add_flag("--list", list, "print the points of the sweep (probe_train: with each GPU point's device memory estimate) and exit");
  app.add_flag("-q,--quiet", quiet, "no line per point");
  app.add_flag("-v,--verbose", verbose, "print each point's full key (default: only the axes that vary in the sweep, 120 columns)");
  app.footer("Axes:\n" + describe_params(schema.axes) + "Settings:\n" + describe_params(schema.settings));
  try {
    app.parse(argc, argv);
  } catch (const CLI::ParseError& e) {
    if (e.get_exit_code() == 0) return app.exit(e);
    fmt::print(stderr, "{}: {}\n", exe, e.what());
    return kExitBadInput;
  }

  int shard_index = 0, shard_count = 1;
  if (!shard_arg.empty()) {
    char slash = 0;
    std::istringstream in(shard_arg);
    if (!(in >> shard_index >> slash >> shard_count) || slash != '/' || !in.eof() || shard_count < 1 || shard_index < 0 ||
        shard_index >= shard_count)
      throw InputError(fmt::format("--shard: '{}' is not I/N with 0 <= I < N", shard_arg));
  }
  const SweepConfig cfg = load_sweep(config_path, schema);
  const std::vector<json> all_points = expand(cfg, schema);
  const auto faults = parse_fault_plan(cfg.settings["inject_faults"].get<std::string>(), all_points.size());
  // Round-robin: neighbouring points (often similar in cost) go to different shards.
  std::vector<json> points;
  for (std::size_t i = std::size_t(shard_index); i < all_points.size(); i += std::size_t(shard_count)) points.push_back(all_points[i]);
  std::vector<std::string> keys;
  for (auto& p : points) keys.push_back(point_key(p, schema));
  if (list) {
    for (std::size_t i = 0; i < keys.size(); ++i) {
      const std::string d = def.describe_point ? def.describe_point(points[i]) : std::string();
      fmt::print("{}{}{}\n", keys[i], d.empty() ? "" : "  ", d);
    }
    return 0;
  }
  if (out.empty()) out = "results/" + (cfg.name.empty() ? def.schema.probe : cfg.name);

  const json env = capture_env(device, !no_isolate);
  // A machine with GPUs and an index it does not have is a usage error, not a sweep of
  // skipped points (without any GPU every point is skipped, with the reason).
  if (env.value("gpu_count", 0) > 0 && !env_has_gpu(env)) throw InputError(env.value("gpu_reason", std::string("--device: no such GPU")));
  if (def.check_point)
    for (std::size_t i = 0; i < points.size(); ++i)
      if (auto problem = def.check_point(points[i], cfg.settings, env); !problem.empty())
        throw InputError(fmt::format("{}: point {} ({}): {}", config_path, i, keys[i], problem));
  json meta;
  meta["probe"] = def.schema.probe;
  meta["sweep"] = cfg.name;
  meta["description"] = cfg.description;
  meta["config_path"] = config_path;
  meta["config"] = cfg.source;
  meta["settings"] = cfg.settings;
  json args = json::array();
  for (int i = 0; i < argc; ++i) args.push_back(argv[i]);
  meta["argv"] = args;
  meta["git_sha"] = env.value("git_sha", "");
  meta["git_dirty"] = env.value("git_dirty", json());
  meta["started_utc"] = utc_now_iso8601();
  meta["device"] = device;
  meta["shard"] = {{"index", shard_index}, {"count", shard_count}, {"total_points", all_points.size()}};
  JsonlWriter writer(out, resume, {{"schema_version", kSchemaVersion}, {"meta", meta}, {"env", env}});

  const bool have_gpu = env_has_gpu(env);
  fmt::print("{}: sweep '{}' with {} points -> {}.json{}\n", exe, cfg.name, points.size(), out,
             writer.resumed() ? fmt::format(" (resuming: {} already recorded)", writer.resumed()) : "");
  if (have_gpu)
    fmt::print("{}: GPU {} ({} SMs, cuBLASLt {})\n", exe, env["gpu"].value("name", "?"), env["gpu"].value("sm_count", 0),
               env["gpu"].value("cublaslt_version", 0));

  RunnerOptions opt;
  opt.isolate = !no_isolate;
  opt.point_timeout_s = timeout_s;
  opt.quiet = quiet;
  opt.tty = ::isatty(STDOUT_FILENO) != 0;
  if (!verbose) {
    // Labelled by the axes that vary over the whole sweep, so every shard labels a point alike.
    const std::vector<std::string> all = varying_labels(all_points, schema);
    for (std::size_t i = std::size_t(shard_index); i < all.size(); i += std::size_t(shard_count)) opt.labels.push_back(all[i]);
  }
  PointFn fn;
  if (def.needs_gpu && !have_gpu) {
    const std::string why = "no GPU: " + env.value("gpu_reason", std::string("unknown"));
    // The whole reason is in every record; the terminal gets it within the line width.
    fmt::print("{}\n", fit_width(fmt::format("{}: SKIPPED all points, {}", exe, why)));
    opt.isolate = false;
    opt.quiet = true;
    fn = [why](const json& p, const std::string& k) { return make_record(k, p, Outcome::skipped, why); };
  } else {
    // The measuring function is built lazily inside the process that runs points, so a
    // worker initialises CUDA itself and the parent never does.
    ProbeContext ctx{cfg.settings, env, device};
    auto maker = def.make_point_fn;
    auto impl = std::make_shared<std::function<Record(const json&, const std::string&)>>();
    std::map<std::string, DeviceFault> fault_at;  // by point key
    for (auto& [i, f] : faults) fault_at[point_key(all_points[i], schema)] = f;
    fn = [ctx, maker, impl, fault_at](const json& p, const std::string& k) {
      if (auto it = fault_at.find(k); it != fault_at.end()) {
        // The fault leaves the context unusable: the point is crashed, the worker retires.
        const std::string error = inject_device_fault(it->second, ctx.device);
        request_worker_restart();
        return make_record(k, p, Outcome::crashed, fmt::format("injected device fault ({}): {}", to_string(it->second), error));
      }
      if (!*impl) *impl = maker(ctx);
      return (*impl)(p, k);
    };
  }
  SweepSummary s = run_sweep(points, keys, fn, writer, opt);

  meta["finished_utc"] = utc_now_iso8601();
  ResultFile folded = fold_results(out, meta);
  if (def.on_finished) {
    def.on_finished(folded);
    write_json_file(out + ".json", to_json(folded));
  }
  std::map<std::string, std::size_t> totals;
  for (auto& r : folded.records) ++totals[std::string(to_string(r.outcome))];
  std::string tally;
  for (auto& [k, v] : totals) tally += fmt::format(" {}={}", k, v);
  fmt::print("{}: done: {} points ({} run now, {} resumed, {} worker processes);{}\n", exe, s.total, s.ran, s.resumed, s.workers_started,
             tally);
  fmt::print("{}: wrote {}.json\n", exe, out);
  return 0;
}

}  // namespace

int probe_main(int argc, char** argv, const ProbeDef& def) {
  try {
    return run(argc, argv, def);
  } catch (const InputError& e) {
    fmt::print(stderr, "probe_{}: {}\n", def.schema.probe, e.what());
    return kExitBadInput;
  } catch (const std::filesystem::filesystem_error& e) {
    fmt::print(stderr, "probe_{}: {}\n", def.schema.probe, e.what());
    return kExitBadInput;
  }
}

}  // namespace fp8scope::core
