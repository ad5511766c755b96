#include "fp8scope/model/data.hpp"

#include "fp8scope/core/error.hpp"

#include <fmt/format.h>

#include <algorithm>
#include <cerrno>
#include <cmath>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <map>
#include <tuple>

namespace fp8scope::model {

MarkovTokens::MarkovTokens(int vocab, std::uint64_t seed, int branching)
    : vocab_(vocab), branching_(std::min(branching, vocab)), rng_(seed) {
  // Successors are drawn with Zipf weights over the vocabulary, so frequent tokens exist.
  std::vector<double> zipf(static_cast<std::size_t>(vocab), 0.0);
  for (int i = 0; i < vocab; ++i) zipf[std::size_t(i)] = 1.0 / (i + 1);
  std::discrete_distribution<int> pick(zipf.begin(), zipf.end());
  successors_.resize(std::size_t(vocab) * branching_);
  for (auto& s : successors_) s = pick(rng_);
  double total = 0;
  for (int r = 0; r < branching_; ++r) total += 1.0 / (r + 1);
  double acc = 0;
  for (int r = 0; r < branching_; ++r) {
    const double p = 1.0 / (r + 1) / total;
    acc += p;
    cdf_.push_back(acc);
    entropy_ -= p * std::log(p);
  }
}

int MarkovTokens::next(int token) {
  const double u = std::uniform_real_distribution<double>(0.0, 1.0)(rng_);
  int r = 0;
  while (r + 1 < branching_ && u > cdf_[std::size_t(r)]) ++r;
  return successors_[std::size_t(token) * branching_ + r];
}

void MarkovTokens::next_batch(int B, int T, std::vector<int>& in, std::vector<int>& tg) {
  in.resize(std::size_t(B) * T);
  tg.resize(std::size_t(B) * T);
  for (int b = 0; b < B; ++b) {
    int tok = state_;
    for (int t = 0; t < T; ++t) {
      in[std::size_t(b) * T + t] = tok;
      tok = next(tok);
      tg[std::size_t(b) * T + t] = tok;
    }
    state_ = tok;
  }
}

std::string MarkovTokens::describe() const {
  return fmt::format("synthetic Markov chain (vocab {}, {} successors per token, entropy rate {:.3f} nats)", vocab_, branching_, entropy_);
}

TokenFile::TokenFile(const std::string& path, int vocab, const std::string& dtype) : path_(path) {
  std::error_code ec;
  if (!std::filesystem::exists(path, ec)) throw core::InputError(fmt::format("{}: token file does not exist", path));
  if (std::filesystem::is_directory(path, ec)) throw core::InputError(fmt::format("{}: is a directory, not a token file", path));
  std::ifstream in(path, std::ios::binary);
  if (!in) throw core::InputError(fmt::format("{}: cannot read token file ({})", path, std::strerror(errno)));
  std::vector<char> bytes((std::istreambuf_iterator<char>(in)), {});
  std::size_t start = 0;
  int width = dtype == "u32" ? 4 : 2;
  if (bytes.size() >= 1024) {
    std::int32_t header[3];
    std::memcpy(header, bytes.data(), sizeof header);
    if (header[0] == 20240520) {
      if (header[1] != 1 && header[1] != 2)
        throw core::InputError(fmt::format("{}: llm.c header version {} is not 1 (uint16) or 2 (uint32)", path, header[1]));
      width = header[1] == 1 ? 2 : 4;
      start = 1024;
      const std::size_t n = std::size_t(header[2]);
      if (bytes.size() < start + n * width)
        throw core::InputError(fmt::format("{}: header says {} tokens but the file is shorter", path, n));
      bytes.resize(start + n * width);
    }
  }
  if ((bytes.size() - start) % std::size_t(width) != 0)
    throw core::InputError(fmt::format("{}: size is not a whole number of {}-byte tokens", path, width));
  const std::size_t n = (bytes.size() - start) / std::size_t(width);
  tokens_.resize(n);
  for (std::size_t i = 0; i < n; ++i) {
    std::uint32_t v = 0;
    std::memcpy(&v, bytes.data() + start + i * width, std::size_t(width));
    if (v >= std::uint32_t(vocab))
      throw core::InputError(fmt::format("{}: token {} at position {} is not below vocab {}", path, v, i, vocab));
    tokens_[i] = v;
  }
  if (tokens_.size() < 2) throw core::InputError(fmt::format("{}: fewer than 2 tokens", path));
}

std::string check_token_file(const std::string& path, int vocab, const std::string& dtype, std::int64_t min_tokens) {
  static std::map<std::tuple<std::string, int, std::string>, std::pair<std::string, std::size_t>> seen;
  auto key = std::make_tuple(path, vocab, dtype);
  auto it = seen.find(key);
  if (it == seen.end()) {
    std::pair<std::string, std::size_t> answer{"", 0};
    try {
      answer.second = TokenFile(path, vocab, dtype).size();
    } catch (const core::InputError& e) {
      answer.first = e.what();
    }
    it = seen.emplace(key, answer).first;
  }
  if (!it->second.first.empty()) return it->second.first;
  if (std::int64_t(it->second.second) < min_tokens)
    return fmt::format("{}: {} tokens, fewer than one batch needs ({} = batch x seq_len + 1)", path, it->second.second, min_tokens);
  return {};
}

void TokenFile::next_batch(int B, int T, std::vector<int>& in, std::vector<int>& tg) {
  in.resize(std::size_t(B) * T);
  tg.resize(std::size_t(B) * T);
  for (int b = 0; b < B; ++b) {
    if (pos_ + std::size_t(T) + 1 > tokens_.size()) pos_ = 0;  // wrap to the start
    for (int t = 0; t < T; ++t) {
      in[std::size_t(b) * T + t] = int(tokens_[(pos_ + std::size_t(t)) % tokens_.size()]);
      tg[std::size_t(b) * T + t] = int(tokens_[(pos_ + std::size_t(t) + 1) % tokens_.size()]);
    }
    pos_ += std::size_t(T);
  }
}

std::string TokenFile::describe() const { return fmt::format("token file {} ({} tokens)", path_, tokens_.size()); }

}  // namespace fp8scope::model
