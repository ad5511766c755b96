#include "fp8scope/core/fault_injection.hpp"

#include "fp8scope/core/error.hpp"

#include <fmt/format.h>

#include <sstream>

namespace fp8scope::core {

const char* to_string(DeviceFault f) {
  switch (f) {
    case DeviceFault::trap: return "trap";
    case DeviceFault::illegal_address: return "illegal_address";
    case DeviceFault::hang: return "hang";
  }
  return "?";
}

std::map<std::size_t, DeviceFault> parse_fault_plan(const std::string& spec, std::size_t points) {
  std::map<std::size_t, DeviceFault> plan;
  std::istringstream in(spec);
  for (std::string entry; std::getline(in, entry, ',');) {
    const auto colon = entry.find(':');
    const std::string where = fmt::format("settings.inject_faults: '{}'", entry);
    if (colon == std::string::npos) throw InputError(where + " is not INDEX:KIND (KIND: trap, illegal_address, hang)");
    std::size_t index = 0, used = 0;
    try {
      index = std::stoul(entry.substr(0, colon), &used);
    } catch (const std::exception&) {
      used = 0;
    }
    if (used == 0 || used != colon) throw InputError(where + ": the index is not a whole number");
    if (index >= points) throw InputError(fmt::format("{}: the sweep has {} points (0..{})", where, points, points - 1));
    const std::string kind = entry.substr(colon + 1);
    if (kind == "trap")
      plan[index] = DeviceFault::trap;
    else if (kind == "illegal_address")
      plan[index] = DeviceFault::illegal_address;
    else if (kind == "hang")
      plan[index] = DeviceFault::hang;
    else
      throw InputError(where + ": kind must be trap, illegal_address or hang");
  }
  return plan;
}

}  // namespace fp8scope::core
