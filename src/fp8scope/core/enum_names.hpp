#pragma once
// Names of enum values from one table per enum: value -> name ("?" when absent) and
// name -> value (nullopt when unknown), so each enum's spelling is written once.
#include <cstddef>
#include <optional>
#include <string>
#include <utility>

namespace fp8scope::core {

template <class E, std::size_t N>
std::string name_of(const std::pair<E, const char*> (&table)[N], E value) {
  for (const auto& [v, n] : table)
    if (v == value) return n;
  return "?";
}

template <class E, std::size_t N>
std::optional<E> value_of(const std::pair<E, const char*> (&table)[N], const std::string& name) {
  for (const auto& [v, n] : table)
    if (name == n) return v;
  return std::nullopt;
}

}  // namespace fp8scope::core
