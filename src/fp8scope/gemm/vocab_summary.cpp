#include "fp8scope/gemm/vocab_summary.hpp"

#include <fmt/format.h>

#include <algorithm>
#include <map>

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

std::string join(const std::vector<std::string>& v, const std::string& sep) {
  std::string out;
  for (std::size_t i = 0; i < v.size(); ++i) out += (i ? sep : "") + v[i];
  return out;
}

std::string join_numbers(const std::vector<long long>& v) {
  std::vector<std::string> s;
  for (long long x : v) s.push_back(std::to_string(x));
  if (s.size() <= 1) return join(s, "");
  return join(std::vector<std::string>(s.begin(), s.end() - 1), ", ") + " or " + s.back();
}

constexpr long long kMaxDivisor = 4096;

}  // namespace

DivisorAnalysis analyse_divisors(const std::vector<long long>& tested, const std::set<long long>& ok) {
  DivisorAnalysis a;
  a.all_ok = !tested.empty() && std::all_of(tested.begin(), tested.end(), [&](long long v) { return ok.count(v) > 0; });
  a.none_ok = std::none_of(tested.begin(), tested.end(), [&](long long v) { return ok.count(v) > 0; });
  for (long long p = 1; p <= kMaxDivisor && !tested.empty(); p *= 2) {
    bool exact = true, any_multiple = false, multiples_ok = true;
    for (long long v : tested) {
      const bool divisible = v % p == 0, works = ok.count(v) > 0;
      exact = exact && divisible == works;
      if (divisible) any_multiple = true, multiples_ok = multiples_ok && works;
    }
    if (exact) a.consistent.push_back(p);
    if (any_multiple && multiples_ok && !a.smallest_sufficient) a.smallest_sufficient = p;
  }
  for (std::size_t i = 0; i + 1 < a.consistent.size(); ++i)
    a.missing.push_back(fmt::format("V % {} == {}", a.consistent[i + 1], a.consistent[i]));
  return a;
}

ClaimVerdict judge_divisibility_claim(const std::vector<long long>& tested, const std::set<long long>& ok, long long d) {
  if (tested.empty()) return {"not tested", "no vocab size was measured"};
  auto works = [&](long long v) { return ok.count(v) > 0; };
  // A V not divisible by d that works refutes "needs d"; a multiple of d that fails refutes
  // "d is enough" (the seed: "50304 works").
  for (long long v : tested)
    if (v % d != 0 && works(v)) return {"refuted", fmt::format("V={} is not a multiple of {} and runs every role", v, d)};
  for (long long v : tested)
    if (v % d == 0 && !works(v)) return {"refuted", fmt::format("V={} is a multiple of {} and a role fails", v, d)};
  const bool any_multiple = std::any_of(tested.begin(), tested.end(), [&](long long v) { return v % d == 0; });
  const bool any_other = std::any_of(tested.begin(), tested.end(), [&](long long v) { return v % d != 0; });
  if (!any_multiple || !any_other) return {"undecided", fmt::format("the sweep needs V both divisible and not divisible by {}", d)};
  // d is necessary and sufficient over the tested V. It is the condition (not d/2 or a
  // larger power) only if the records rule the neighbours out.
  const DivisorAnalysis a = analyse_divisors(tested, ok);
  if (a.consistent.size() == 1 && a.consistent[0] == d)
    return {"confirmed",
            fmt::format("every tested V runs every role exactly when V % {} == 0, and a V with V % {} == {} fails", d, d, d / 2)};
  return {"undecided", fmt::format("the records fit V % p == 0 for p = {}: this sweep has no V with {}", join_numbers(a.consistent),
                                   join(a.missing, ", or "))};
}

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
    std::vector<long long> tested, ok_list, failing;
    std::set<long long> ok;
    std::set<std::string> failing_roles;
    json failures = json::array();
    for (auto& [v, pv] : vs) {
      if (!pv.measured) continue;
      tested.push_back(v);
      if (pv.all_ok)
        ok.insert(v), ok_list.push_back(v);
      else
        failing.push_back(v);
      for (auto& fl : pv.failures) {
        failing_roles.insert(fl["role"].get<std::string>());
        json e = fl;
        e["vocab"] = v;
        failures.push_back(e);
      }
    }
    f["tested"] = tested.size();
    f["all_roles_ok"] = ok_list;
    f["failing"] = failing;
    f["failing_roles"] = failing_roles;
    f["failures"] = failures;
    if (tested.empty()) {
      f["verdict"] = fmt::format("{}: not measured ({})", format, where_measured(env));
      f["divisible_by_32"] = {{"verdict", "not tested"}, {"because", "no vocab size was measured"}};
      out[format] = f;
      continue;
    }
    const DivisorAnalysis a = analyse_divisors(tested, ok);
    f["consistent_divisors"] = a.consistent;
    f["undecided_without"] = a.missing;
    f["smallest_sufficient_divisor"] = a.smallest_sufficient ? json(*a.smallest_sufficient) : json(nullptr);
    const ClaimVerdict c32 = judge_divisibility_claim(tested, ok, 32);
    f["divisible_by_32"] = {{"verdict", c32.verdict}, {"because", c32.because}};

    std::string text = fmt::format("{} on {}: every LM-head role ran for {} of {} vocab sizes.", format, where_measured(env),
                                   ok_list.size(), tested.size());
    if (!failing.empty()) {
      const json& ex = failures[0];
      text += fmt::format(" Failing roles: {} (e.g. V={} {}: {}; {}).",
                          join(std::vector<std::string>(failing_roles.begin(), failing_roles.end()), ", "), ex["vocab"].get<long long>(),
                          ex["role"].get<std::string>(), ex["outcome"].get<std::string>(), ex["dimensions"].get<std::string>());
    }
    if (a.all_ok) {
      text += " Every tested V works.";
    } else if (a.none_ok) {
      text += " No tested V works.";
    } else if (a.consistent.size() == 1) {
      text += fmt::format(" Availability is exactly V % {} == 0 over the tested V.", a.consistent[0]);
    } else if (!a.consistent.empty()) {
      text += fmt::format(" The records fit V % p == 0 for p = {} and cannot tell them apart: this sweep has no V with {}.",
                          join_numbers(a.consistent), join(a.missing, ", or "));
    } else {
      text += " No power-of-two divisor of V matches the availability exactly";
      text += a.smallest_sufficient ? fmt::format("; every tested multiple of {} works.", *a.smallest_sufficient) : ".";
    }
    text += fmt::format(" \"Vocab divisible by 32\": {} ({}).", c32.verdict, c32.because);
    // What to pad a failing V to: the next multiple of a divisor the records allow, the
    // largest of them (safe while the records cannot tell the candidates apart) unless the
    // sweep ran a smaller candidate's multiple and saw it work.
    json padding = json::array();
    std::vector<std::string> pads;
    std::vector<long long> divisors = a.consistent;
    if (divisors.empty() && a.smallest_sufficient) divisors.push_back(*a.smallest_sufficient);
    for (long long v : failing) {
      if (divisors.empty()) break;
      json e = {{"vocab", v}};
      const long long safe = (v + divisors.back() - 1) / divisors.back() * divisors.back();
      e["pad_to"] = safe, e["evidence"] = fmt::format("the next multiple of {}; not run in this sweep", divisors.back());
      std::string text_pad = fmt::format("{} -> {} (untested)", v, safe);
      for (auto d = divisors.rbegin(); d != divisors.rend(); ++d)
        if (const long long to = (v + *d - 1) / *d * *d; ok.count(to)) {
          e["pad_to"] = to, e["evidence"] = fmt::format("the next multiple of {}; ran every role", *d);
          text_pad = fmt::format("{} -> {}", v, to);
          break;
        }
      pads.push_back(text_pad);
      padding.push_back(e);
    }
    f["padding"] = padding;
    if (!pads.empty()) {
      if (pads.size() > 6) pads.resize(6), pads.push_back("...");
      text += fmt::format(" Padding: {}.", join(pads, ", "));
    }
    f["verdict"] = text;
    out[format] = f;
  }
  return out;
}

}  // namespace fp8scope::gemm
