#pragma once
// The verdict of a vocab sweep, computed from its records (never written by hand): per
// format, which roles fail for which V and why, the powers of two p for which "V % p == 0" is
// exactly the availability the records show (several when the sweep lacks the V that would
// tell them apart, and then it says which V), and the verdict on the seed's claim "FP8 needs a
// vocab divisible by 32" on the GPU and cuBLASLt version that ran it.
#include "fp8scope/core/record.hpp"

#include <optional>
#include <set>
#include <string>
#include <vector>

namespace fp8scope::gemm {

struct DivisorAnalysis {
  // Powers of two p (1 .. 4096) for which every tested V runs every role exactly when
  // V % p == 0. They always form a run p_lo .. p_hi (doubling); more than one means the
  // records cannot tell them apart.
  std::vector<long long> consistent;
  // What would tell adjacent candidates p and 2p apart: a V with V % 2p == p ("V % 32 == 16").
  std::vector<std::string> missing;
  // The smallest p whose every tested multiple runs every role (some multiple tested).
  std::optional<long long> smallest_sufficient;
  bool all_ok = false, none_ok = false;
};
DivisorAnalysis analyse_divisors(const std::vector<long long>& tested, const std::set<long long>& ok);

// "FP8 needs V divisible by d (and a multiple of d works)", judged from the records:
// confirmed (a V divisible by d/2 but not d fails and every tested multiple of d works),
// refuted (a V not divisible by d works, or a multiple of d fails), undecided (the records fit
// d and other divisors: says which and what V would decide), not tested.
struct ClaimVerdict {
  std::string verdict;  // confirmed, refuted, undecided, not tested
  std::string because;
};
ClaimVerdict judge_divisibility_claim(const std::vector<long long>& tested, const std::set<long long>& ok, long long d);

core::json summarize_vocab(const std::vector<core::Record>& records, const core::json& env);

}  // namespace fp8scope::gemm
