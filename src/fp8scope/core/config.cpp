#include "fp8scope/core/config.hpp"

#include "fp8scope/core/error.hpp"

#include <fmt/format.h>

#include <algorithm>
#include <cmath>
#include <fstream>
#include <map>
#include <set>
#include <sstream>

namespace fp8scope::core {
namespace {

constexpr std::size_t kMaxPoints = 10'000'000;  // a typo in a range should not eat the disk

std::string kind_name(ParamSpec::Kind k) {
  switch (k) {
    case ParamSpec::Kind::integer: return "an integer";
    case ParamSpec::Kind::number: return "a number";
    case ParamSpec::Kind::string: return "a string";
    case ParamSpec::Kind::boolean: return "true or false";
  }
  return "?";
}

std::string join(const std::vector<std::string>& v) {
  std::string out;
  for (std::size_t i = 0; i < v.size(); ++i) out += (i ? ", " : "") + v[i];
  return out;
}

std::string shown(const json& v) { return v.is_string() ? "'" + v.get<std::string>() + "'" : v.dump(); }

const ParamSpec* find(const std::vector<ParamSpec>& specs, const std::string& name) {
  for (const auto& s : specs)
    if (s.name == name) return &s;
  return nullptr;
}

std::vector<std::string> names(const std::vector<ParamSpec>& specs) {
  std::vector<std::string> out;
  for (const auto& s : specs) out.push_back(s.name);
  return out;
}

[[noreturn]] void fail(const std::string& where, const std::string& what) { throw InputError(fmt::format("{}: {}", where, what)); }

// A list of values for one axis: [v, ...], a bare scalar, or {"from":a,"to":b,"step":s}.
std::vector<json> axis_values(const json& v, const ParamSpec& spec, const std::string& where) {
  std::vector<json> out;
  if (v.is_array()) {
    if (v.empty()) fail(where, "an axis needs at least one value");
    for (std::size_t i = 0; i < v.size(); ++i) out.push_back(check_value(v[i], spec, fmt::format("{}[{}]", where, i)));
    return out;
  }
  if (v.is_object()) {
    if (spec.kind != ParamSpec::Kind::integer && spec.kind != ParamSpec::Kind::number)
      fail(where, "a range {from,to,step} needs a numeric parameter");
    for (auto it = v.begin(); it != v.end(); ++it)
      if (it.key() != "from" && it.key() != "to" && it.key() != "step")
        fail(where + "." + it.key(), "unknown key; a range has from, to, step");
    for (const char* k : {"from", "to"})
      if (!v.contains(k)) fail(where, fmt::format("a range needs '{}'", k));
    const json from = check_value(v["from"], spec, where + ".from");
    const json to = check_value(v["to"], spec, where + ".to");
    const json step = v.contains("step") ? v["step"] : json(1);
    if (!step.is_number() || step.get<double>() <= 0) fail(where + ".step", "must be a number > 0");
    const double a = from.get<double>(), b = to.get<double>(), s = step.get<double>();
    if (b < a) fail(where, "'to' is below 'from'");
    if ((b - a) / s > double(kMaxPoints)) fail(where, "range has too many values");
    if (spec.kind == ParamSpec::Kind::integer && std::floor(s) != s) fail(where + ".step", "must be an integer for an integer parameter");
    for (double x = a; x <= b + 1e-9 * std::abs(s); x += s)
      out.push_back(spec.kind == ParamSpec::Kind::integer ? json(std::llround(x)) : json(x));
    return out;
  }
  out.push_back(check_value(v, spec, where));
  return out;
}

json settings_with_defaults(const json& doc, const ProbeSchema& schema) {
  json out = json::object();
  for (const auto& s : schema.settings) out[s.name] = s.default_value;
  if (!doc.contains("settings")) return out;
  const json& given = doc["settings"];
  if (!given.is_object()) fail("settings", "must be an object");
  for (auto it = given.begin(); it != given.end(); ++it) {
    const ParamSpec* spec = find(schema.settings, it.key());
    if (!spec)
      fail("settings." + it.key(), fmt::format("unknown setting for probe '{}'; known: {}", schema.probe, join(names(schema.settings))));
    out[it.key()] = check_value(it.value(), *spec, "settings." + it.key());
  }
  return out;
}

}  // namespace

void check_plain_name(const std::string& name, const std::string& where) {
  const bool chars_ok = std::all_of(name.begin(), name.end(), [](char c) {
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '.' || c == '_' || c == '-' || c == '+';
  });
  if (name.empty() || name.size() > 200 || !chars_ok || name[0] == '.' || name[0] == '-')
    fail(where, fmt::format("{} is not a plain file name (letters, digits, '.', '_', '-', '+'; not starting with '.' or '-'; "
                            "at most 200 characters): it names the result files",
                            shown(json(name))));
}

json check_value(const json& v, const ParamSpec& spec, const std::string& where) {
  switch (spec.kind) {
    case ParamSpec::Kind::integer: {
      if (!v.is_number() || (v.is_number_float() && std::floor(v.get<double>()) != v.get<double>()))
        fail(where, fmt::format("{} is not {}", shown(v), kind_name(spec.kind)));
      const double x = v.get<double>();
      if (x < spec.min || x > spec.max) fail(where, fmt::format("{} is out of range [{}, {}]", shown(v), spec.min, spec.max));
      return json(static_cast<long long>(x));
    }
    case ParamSpec::Kind::number: {
      if (!v.is_number()) fail(where, fmt::format("{} is not {}", shown(v), kind_name(spec.kind)));
      const double x = v.get<double>();
      if (!std::isfinite(x) || x < spec.min || x > spec.max)
        fail(where, fmt::format("{} is out of range [{}, {}]", shown(v), spec.min, spec.max));
      return v;
    }
    case ParamSpec::Kind::string: {
      if (!v.is_string()) fail(where, fmt::format("{} is not {}", shown(v), kind_name(spec.kind)));
      if (!spec.choices.empty()) {
        bool ok = false;
        for (const auto& c : spec.choices) ok = ok || c == v.get<std::string>();
        if (!ok) fail(where, fmt::format("{} is not one of {}", shown(v), join(spec.choices)));
      }
      return v;
    }
    case ParamSpec::Kind::boolean:
      if (!v.is_boolean()) fail(where, fmt::format("{} is not {}", shown(v), kind_name(spec.kind)));
      return v;
  }
  return v;
}

SweepConfig parse_sweep(const json& doc, const ProbeSchema& schema) {
  if (!doc.is_object()) fail("(top level)", "a sweep file must be a JSON object");
  static const std::set<std::string> top = {"probe", "name", "description", "settings", "axes", "zip"};
  for (auto it = doc.begin(); it != doc.end(); ++it)
    if (!top.count(it.key())) fail(it.key(), "unknown key; a sweep has probe, name, description, settings, axes, zip");

  SweepConfig cfg;
  cfg.source = doc;
  if (!doc.contains("probe") || !doc["probe"].is_string()) fail("probe", "missing (a string naming the probe)");
  cfg.probe = doc["probe"].get<std::string>();
  if (cfg.probe != schema.probe) fail("probe", fmt::format("'{}' is not this probe; this is '{}'", cfg.probe, schema.probe));
  if (doc.contains("name")) {
    if (!doc["name"].is_string()) fail("name", "must be a string");
    cfg.name = doc["name"].get<std::string>();
    check_plain_name(cfg.name, "name");
  }
  if (doc.contains("description")) {
    if (!doc["description"].is_string()) fail("description", "must be a string");
    cfg.description = doc["description"].get<std::string>();
  }
  cfg.settings = settings_with_defaults(doc, schema);

  // Which dimension each axis belongs to; -1 = not mentioned (takes its default).
  std::map<std::string, int> owner;
  std::vector<SweepConfig::Dimension> dims;
  auto claim = [&](const std::string& name, const std::string& where) {
    if (!find(schema.axes, name))
      fail(where, fmt::format("unknown axis for probe '{}'; known: {}", schema.probe, join(names(schema.axes))));
    if (owner.count(name)) fail(where, "axis given twice (in axes and/or zip groups)");
    owner[name] = static_cast<int>(dims.size());
  };

  if (doc.contains("axes")) {
    const json& axes = doc["axes"];
    if (!axes.is_object()) fail("axes", "must be an object of axis name -> values");
    for (auto it = axes.begin(); it != axes.end(); ++it) {
      const std::string where = "axes." + it.key();
      claim(it.key(), where);
      SweepConfig::Dimension d{{it.key()}, {}};
      for (auto& v : axis_values(it.value(), *find(schema.axes, it.key()), where)) d.rows.push_back({v});
      dims.push_back(std::move(d));
    }
  }
  if (doc.contains("zip")) {
    const json& zip = doc["zip"];
    if (!zip.is_array()) fail("zip", "must be a list of groups, each an object of equal-length lists");
    for (std::size_t g = 0; g < zip.size(); ++g) {
      const std::string gw = fmt::format("zip[{}]", g);
      if (!zip[g].is_object() || zip[g].empty()) fail(gw, "must be a non-empty object of equal-length lists");
      SweepConfig::Dimension d;
      std::vector<std::vector<json>> cols;
      for (auto it = zip[g].begin(); it != zip[g].end(); ++it) {
        const std::string where = gw + "." + it.key();
        claim(it.key(), where);
        if (!it.value().is_array()) fail(where, "a zip member must be a list");
        d.names.push_back(it.key());
        cols.push_back(axis_values(it.value(), *find(schema.axes, it.key()), where));
        if (cols.back().size() != cols.front().size())
          fail(where, fmt::format("has {} values but {}.{} has {}; zipped lists must be equally long", cols.back().size(), gw,
                                  d.names.front(), cols.front().size()));
      }
      for (std::size_t r = 0; r < cols.front().size(); ++r) {
        std::vector<json> row;
        for (auto& c : cols) row.push_back(c[r]);
        d.rows.push_back(std::move(row));
      }
      dims.push_back(std::move(d));
    }
  }
  // Order dimensions by their first axis in schema order, so points and keys are stable
  // whatever order the file lists them in.
  auto rank = [&](const SweepConfig::Dimension& d) {
    std::size_t best = schema.axes.size();
    for (auto& n : d.names)
      for (std::size_t i = 0; i < schema.axes.size(); ++i)
        if (schema.axes[i].name == n) best = std::min(best, i);
    return best;
  };
  std::stable_sort(dims.begin(), dims.end(), [&](auto& a, auto& b) { return rank(a) < rank(b); });

  double total = 1;
  for (auto& d : dims) total *= double(d.rows.size());
  if (total > double(kMaxPoints)) fail("axes", fmt::format("the sweep has {:.0f} points (limit {})", total, kMaxPoints));
  cfg.dims = std::move(dims);
  return cfg;
}

SweepConfig load_sweep(const std::string& path, const ProbeSchema& schema) {
  const json doc = read_json_file(path);
  try {
    return parse_sweep(doc, schema);
  } catch (const InputError& e) {
    throw InputError(fmt::format("{}: {}", path, e.what()));
  }
}

std::vector<json> expand(const SweepConfig& cfg, const ProbeSchema& schema) {
  json base = json::object();
  for (const auto& a : schema.axes) base[a.name] = a.default_value;
  std::vector<json> points{base};
  for (const auto& d : cfg.dims) {
    std::vector<json> next;
    next.reserve(points.size() * d.rows.size());
    for (const auto& p : points)
      for (const auto& row : d.rows) {
        json q = p;
        for (std::size_t j = 0; j < d.names.size(); ++j) q[d.names[j]] = row[j];
        next.push_back(std::move(q));
      }
    points = std::move(next);
  }
  return points;
}

std::string point_key(const json& point, const ProbeSchema& schema) {
  std::string key;
  for (const auto& a : schema.axes) {
    if (!key.empty()) key += ',';
    const json& v = point.at(a.name);
    key += a.name + "=" + (v.is_string() ? v.get<std::string>() : v.dump());
  }
  return key;
}

}  // namespace fp8scope::core
