#include "fp8scope/gemm/vocab_summary.hpp"

#include <fmt/format.h>

#include <map>
#include <set>

namespace fp8scope::gemm {
using core::json;
using core::Outcome;

namespace {

struct PerV {
  bool measured = false;  // at least one role not skipped
  bool all_ok = true;
  std::vector<json> failures;
};

std::string where_measured(const json& env) {
  if (!env.contains("gpu") || !env["gpu"].is_object()) return "no GPU";
  return fmt::format("{} (cuBLASLt {})", env["gpu"].value("name", "?"), env["gpu"].value("cublaslt_version", 0));
}

}  // namespace

json summarize_vocab(const std::vector<core::Record>& records, const json& env) {
  std::map<std::string, std::map<long long, PerV>> by_format;
  for (const auto& r : records) {
    if (!r.params.contains("vocab") || !r.params.contains("format")) continue;
    PerV& pv = by_format[r.params["format"].get<std::string>()][r.params["vocab"].get<long long>()];
    if (r.outcome == Outcome::skipped) continue;
    pv.measured = true;
    if (r.outcome != Outcome::ok) {
      pv.all_ok = false;
      pv.failures.push_back({{"role", r.params.value("role", "?")},
                             {"outcome", std::string(core::to_string(r.outcome))},
                             {"reason", r.reason},
                             {"dimensions", r.data.value("vocab_dimensions", "")}});
    }
  }
  json out = json::object();
  out["measured_on"] = where_measured(env);
  for (auto& [format, vs] : by_format) {
    json f;
    std::vector<long long> tested, ok, failing;
    std::set<std::string> failing_roles;
    json failures = json::array();
    for (auto& [v, pv] : vs) {
      if (!pv.measured) continue;
      tested.push_back(v);
      (pv.all_ok ? ok : failing).push_back(v);
      for (auto& fl : pv.failures) {
        failing_roles.insert(fl["role"].get<std::string>());
        json e = fl;
        e["vocab"] = v;
        failures.push_back(e);
      }
    }
    f["tested"] = tested.size();
    f["all_roles_ok"] = ok;
    f["failing"] = failing;
    f["failing_roles"] = failing_roles;
    f["failures"] = failures;
    if (tested.empty()) {
      f["verdict"] = fmt::format("{}: not measured ({})", format, where_measured(env));
      out[format] = f;
      continue;
    }
    // Smallest power of two p such that every tested V divisible by p has all roles available.
    json p_min = nullptr;
    bool exact = false;
    for (long long p = 1; p <= 4096; p *= 2) {
      bool any = false, all = true, rest_fail = true;
      for (long long v : tested) {
        const bool ok_v = std::find(ok.begin(), ok.end(), v) != ok.end();
        if (v % p == 0) {
          any = true;
          all = all && ok_v;
        } else {
          rest_fail = rest_fail && !ok_v;
        }
      }
      if (any && all) {
        p_min = p;
        exact = rest_fail;  // "V % p == 0" is then exactly the condition, over the tested V
        break;
      }
    }
    f["smallest_pow2_divisor"] = p_min;
    f["divisor_is_exact"] = exact;
    // "Divisible by 32": required = every tested V not divisible by 32 fails;
    // sufficient = every tested V divisible by 32 works.
    bool any32 = false, any_not32 = false, required = true, sufficient = true;
    for (long long v : tested) {
      const bool ok_v = std::find(ok.begin(), ok.end(), v) != ok.end();
      if (v % 32 == 0)
        any32 = true, sufficient = sufficient && ok_v;
      else
        any_not32 = true, required = required && !ok_v;
    }
    std::string d32;
    if (!any32 || !any_not32)
      d32 = "cannot be judged (the sweep needs V both divisible and not divisible by 32)";
    else if (required && sufficient)
      d32 = "required and sufficient";
    else if (sufficient)
      d32 = "sufficient but not required";
    else if (required)
      d32 = "required but not sufficient";
    else
      d32 = "neither required nor sufficient";
    f["divisible_by_32"] = d32;
    std::string roles;
    for (auto& r : failing_roles) roles += (roles.empty() ? "" : ", ") + r;
    std::string text =
        fmt::format("{} on {}: every LM-head role ran for {} of {} vocab sizes.", format, where_measured(env), ok.size(), tested.size());
    if (!failing.empty()) {
      const json& ex = failures[0];
      text += fmt::format(" Failing roles: {} (e.g. V={} {}: {}; {}).", roles, ex["vocab"].get<long long>(), ex["role"].get<std::string>(),
                          ex["outcome"].get<std::string>(), ex["dimensions"].get<std::string>());
    }
    if (!p_min.is_null())
      text += p_min.get<long long>() == 1
                  ? std::string(" Every tested V works.")
                  : fmt::format(" Smallest power-of-two divisor of V that makes every role available: {}{}.", p_min.get<long long>(),
                                exact ? " (and every tested V not divisible by it fails)" : "");
    else
      text += " No power-of-two divisor makes every role available over the tested V.";
    text += fmt::format(" \"Vocab divisible by 32\" is {} here.", d32);
    f["verdict"] = text;
    out[format] = f;
  }
  return out;
}

}  // namespace fp8scope::gemm
