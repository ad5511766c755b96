#include "merge_cmd.hpp"

#include "fp8scope/core/error.hpp"
#include "fp8scope/core/result_store.hpp"

#include <fmt/format.h>

#include <map>
#include <set>

namespace fp8scope::app {
using core::InputError;
using core::json;

namespace {
std::string gpu_name(const core::ResultFile& f) {
  return f.env.contains("gpu") && f.env["gpu"].is_object() ? f.env["gpu"].value("name", std::string()) : std::string();
}
}  // namespace

int run_merge(const MergeArgs& a) {
  std::vector<core::ResultFile> files;
  for (auto& p : a.shards) files.push_back(core::read_results(p));
  const json& m0 = files.front().meta;
  if (!m0.contains("shard")) throw InputError(a.shards.front() + ": not a shard (its meta has no 'shard'; was it run with --shard?)");
  const int count = m0["shard"].value("count", 0);
  std::map<int, std::size_t> by_index;
  for (std::size_t i = 0; i < files.size(); ++i) {
    const json& m = files[i].meta;
    const std::string& path = a.shards[i];
    if (!m.contains("shard")) throw InputError(path + ": not a shard (its meta has no 'shard')");
    if (m.value("probe", std::string()) != m0.value("probe", std::string()) || m.value("config", json()) != m0.value("config", json()))
      throw InputError(fmt::format("{}: a different sweep than {} (probe or config differ)", path, a.shards.front()));
    if (m["shard"].value("count", 0) != count)
      throw InputError(fmt::format("{}: split into {} shards, {} into {}", path, m["shard"].value("count", 0), a.shards.front(), count));
    if (files[i].schema_version != files.front().schema_version) throw InputError(path + ": another schema version");
    if (gpu_name(files[i]) != gpu_name(files.front()))
      throw InputError(
          fmt::format("{}: measured on '{}', {} on '{}'", path, gpu_name(files[i]), a.shards.front(), gpu_name(files.front())));
    const int index = m["shard"].value("index", -1);
    if (!by_index.emplace(index, i).second)
      throw InputError(fmt::format("{}: shard {} given twice (also {})", path, index, a.shards[by_index[index]]));
  }
  std::vector<int> missing;
  for (int i = 0; i < count; ++i)
    if (!by_index.count(i)) missing.push_back(i);
  if (!missing.empty() && !a.allow_partial)
    throw InputError(fmt::format("shards missing: {} of {} (use --allow-partial to merge anyway)", fmt::join(missing, ", "), count));

  // Shard s holds points s, s+N, s+2N, ...: interleave back into the sweep's order.
  core::ResultFile out = files.front();
  out.records.clear();
  std::set<std::string> seen;
  std::size_t longest = 0;
  for (auto& f : files) longest = std::max(longest, f.records.size());
  for (std::size_t k = 0; k < longest; ++k)
    for (auto& [index, i] : by_index)
      if (k < files[i].records.size()) {
        const auto& r = files[i].records[k];
        if (!seen.insert(r.key).second) throw InputError(fmt::format("{}: point '{}' is in more than one shard", a.shards[i], r.key));
        out.records.push_back(r);
      }
  out.meta["shard"] = {
      {"merged_from", count}, {"present", by_index.size()}, {"missing", missing}, {"total_points", m0["shard"].value("total_points", 0)}};
  json shard_envs = json::array();
  for (auto& [index, i] : by_index)
    shard_envs.push_back(
        {{"index", index},
         {"file", a.shards[i]},
         {"host", files[i].env.value("host", "")},
         {"device", files[i].meta.value("device", 0)},
         {"gpu_pci_bus_id",
          files[i].env.contains("gpu") && files[i].env["gpu"].is_object() ? files[i].env["gpu"].value("pci_bus_id", "") : ""}});
  out.meta["shards"] = shard_envs;
  core::write_json_file(a.out, core::to_json(out));
  fmt::print("fp8scope merge: {} shards, {} points -> {}\n", by_index.size(), out.records.size(), a.out);
  return 0;
}

}  // namespace fp8scope::app
