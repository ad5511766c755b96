#include "fp8scope/core/record.hpp"

#include "fp8scope/core/error.hpp"

namespace fp8scope::core {
namespace {
constexpr std::pair<Outcome, std::string_view> kNames[] = {
    {Outcome::ok, "ok"},
    {Outcome::heuristic_unsupported, "heuristic_unsupported"},
    {Outcome::no_algorithm, "no_algorithm"},
    {Outcome::run_rejected, "run_rejected"},
    {Outcome::incorrect, "incorrect"},
    {Outcome::nonfinite, "nonfinite"},
    {Outcome::oom, "oom"},
    {Outcome::crashed, "crashed"},
    {Outcome::skipped, "skipped"},
};
constexpr std::string_view kFixed[] = {"key", "params", "outcome", "reason"};
}  // namespace

std::string_view to_string(Outcome o) {
  for (auto& [v, n] : kNames)
    if (v == o) return n;
  return "?";
}

std::optional<Outcome> parse_outcome(std::string_view s) {
  for (auto& [v, n] : kNames)
    if (n == s) return v;
  return std::nullopt;
}

const std::vector<std::string>& outcome_names() {
  static const std::vector<std::string> names = [] {
    std::vector<std::string> v;
    for (auto& [o, n] : kNames) v.emplace_back(n);
    return v;
  }();
  return names;
}

json to_json(const Record& r) {
  json j = r.data.is_object() ? r.data : json::object();
  j["key"] = r.key;
  j["params"] = r.params;
  j["outcome"] = std::string(to_string(r.outcome));
  if (!r.reason.empty()) j["reason"] = r.reason;
  return j;
}

Record record_from_json(const json& j) {
  if (!j.is_object()) throw InputError("a record must be a JSON object");
  Record r;
  if (!j.contains("key") || !j["key"].is_string()) throw InputError("record without a string 'key'");
  r.key = j["key"].get<std::string>();
  if (!j.contains("outcome") || !j["outcome"].is_string()) throw InputError("record '" + r.key + "' has no 'outcome'");
  auto o = parse_outcome(j["outcome"].get<std::string>());
  if (!o) throw InputError("record '" + r.key + "': unknown outcome '" + j["outcome"].get<std::string>() + "'");
  r.outcome = *o;
  if (j.contains("params")) r.params = j["params"];
  if (j.contains("reason") && j["reason"].is_string()) r.reason = j["reason"].get<std::string>();
  for (auto it = j.begin(); it != j.end(); ++it) {
    bool fixed = false;
    for (auto f : kFixed) fixed = fixed || it.key() == f;
    if (!fixed) r.data[it.key()] = it.value();
  }
  return r;
}

Record make_record(std::string key, json params, Outcome o, std::string reason) {
  Record r;
  r.key = std::move(key);
  r.params = std::move(params);
  r.outcome = o;
  r.reason = std::move(reason);
  return r;
}

}  // namespace fp8scope::core
