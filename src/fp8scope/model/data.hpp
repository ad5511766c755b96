#pragma once
// Training data: a deterministic synthetic stream with learnable structure, and a reader of
// token files (flat uint16/uint32 arrays; llm.c's .bin header is recognised).
#include <cstdint>
#include <random>
#include <string>
#include <vector>

namespace fp8scope::model {

class TokenSource {
 public:
  virtual ~TokenSource() = default;
  // inputs and targets: B*T tokens each, row-major [B][T]; targets are inputs shifted by one.
  virtual void next_batch(int B, int T, std::vector<int>& inputs, std::vector<int>& targets) = 0;
  virtual std::string describe() const = 0;
};

// A sparse random Markov chain: every token has `branching` successors, drawn at random from
// a Zipf-like distribution over the vocabulary, taken with Zipf probabilities (1/rank). A
// model can learn it; the loss floor is the chain's entropy rate (about 1.6 nats for 8).
class MarkovTokens final : public TokenSource {
 public:
  MarkovTokens(int vocab, std::uint64_t seed, int branching = 8);
  void next_batch(int B, int T, std::vector<int>& inputs, std::vector<int>& targets) override;
  std::string describe() const override;
  double entropy_rate() const { return entropy_; }

 private:
  int next(int token);
  int vocab_, branching_;
  std::vector<int> successors_;  // [vocab][branching]
  std::vector<double> cdf_;      // over the branching successors
  std::mt19937_64 rng_;
  int state_ = 0;
  double entropy_ = 0;
};

// "" when `path` is a token file TokenFile reads (see below) with at least min_tokens tokens
// all below vocab; else one line "<path>: <problem>". The answer for a (path, vocab, dtype)
// is kept, so a sweep of many points over one file reads it once.
std::string check_token_file(const std::string& path, int vocab, const std::string& dtype, std::int64_t min_tokens);

class TokenFile final : public TokenSource {
 public:
  // dtype "u16", "u32" or "auto" (llm.c header: magic 20240520, version 1 = uint16, 2 = uint32;
  // without a header "auto" means uint16). Throws core::InputError for unreadable files and
  // tokens >= vocab.
  TokenFile(const std::string& path, int vocab, const std::string& dtype = "auto");
  void next_batch(int B, int T, std::vector<int>& inputs, std::vector<int>& targets) override;
  std::string describe() const override;
  std::size_t size() const { return tokens_.size(); }

 private:
  std::string path_;
  std::vector<std::uint32_t> tokens_;
  std::size_t pos_ = 0;
};

}  // namespace fp8scope::model
