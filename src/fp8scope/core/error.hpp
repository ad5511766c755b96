#pragma once
// Errors that are the user's to fix (bad config, bad flags, bad result files). Every
// executable turns them into one line on stderr and exit code 2; anything else is a bug.
#include <stdexcept>
#include <string>

namespace fp8scope::core {

inline constexpr int kExitBadInput = 2;

class InputError : public std::runtime_error {
 public:
  using std::runtime_error::runtime_error;
};

}  // namespace fp8scope::core
