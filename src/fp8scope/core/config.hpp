#pragma once
// Sweep files: a probe declares the parameters it understands (ProbeSchema); a JSON file
// names values for them. Axes combine as a cartesian product, `zip` groups tie lists
// element-wise. Everything is validated up front with the JSON path of the offending field.
#include "fp8scope/core/json_input.hpp"

#include <nlohmann/json.hpp>

#include <string>
#include <vector>

namespace fp8scope::core {

using json = nlohmann::json;

struct ParamSpec {
  enum class Kind { integer, number, string, boolean };
  std::string name;
  Kind kind = Kind::integer;
  json default_value;                // used when a sweep does not mention the parameter
  std::vector<std::string> choices;  // strings: the allowed values (empty = any)
  double min = -1e300, max = 1e300;  // numbers: inclusive bounds
  std::string help;
};

struct ProbeSchema {
  std::string probe;                // "gemm", "vocab", ...
  std::vector<ParamSpec> axes;      // may vary per point; order = order in the point key
  std::vector<ParamSpec> settings;  // one value per sweep
};

struct SweepConfig {
  std::string probe, name, description;
  json settings = json::object();  // every setting of the schema, defaults filled in
  // Each dimension of the product is one or more axes that move together: a plain axis is a
  // dimension of one name, a zip group a dimension of several.
  struct Dimension {
    std::vector<std::string> names;
    std::vector<std::vector<json>> rows;  // rows[i][j] = value of names[j] in the i-th entry
  };
  std::vector<Dimension> dims;
  json source;  // the file as read, stored in the result's meta
};

// Parses and validates; throws InputError("<path>: <problem>").
SweepConfig parse_sweep(const json& doc, const ProbeSchema& schema);
SweepConfig load_sweep(const std::string& path, const ProbeSchema& schema);

// One point = a JSON object with every axis of the schema.
std::vector<json> expand(const SweepConfig& cfg, const ProbeSchema& schema);

// A stable identity of a point: "name=value,name=value" in schema order.
std::string point_key(const json& point, const ProbeSchema& schema);

// A name that becomes a file name (a sweep's or suite's name): letters, digits, '.', '_', '-'
// and '+', not starting with '.' or '-', at most 200 characters; so it cannot climb out of
// the folder it is written to ("..", "/") or hide itself. InputError "<where>: ..." otherwise.
void check_plain_name(const std::string& name, const std::string& where);

// Validates a single value against a spec; `where` is the JSON path for the message.
json check_value(const json& v, const ParamSpec& spec, const std::string& where);

}  // namespace fp8scope::core
