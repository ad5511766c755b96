#include "fp8scope/core/runner.hpp"

#include "fp8scope/core/progress.hpp"

#include <fmt/format.h>
#include <poll.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <cstdio>
#include <cstring>
#include <stdexcept>

namespace fp8scope::core {
namespace {

bool g_restart_requested = false;

// An exception that escapes a point function leaves the worker in a state nobody checked (a
// CUDA context with a sticky error, half-built objects): the point is `crashed` and the next
// point gets a fresh worker.
Record run_guarded(const PointFn& fn, const json& point, const std::string& key) {
  try {
    return fn(point, key);
  } catch (const std::exception& e) {
    g_restart_requested = true;
    return make_record(key, point, Outcome::crashed, fmt::format("exception: {}", e.what()));
  }
}

bool write_all(int fd, const std::string& s) {
  std::size_t off = 0;
  while (off < s.size()) {
    ssize_t n = ::write(fd, s.data() + off, s.size() - off);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) return false;
    off += std::size_t(n);
  }
  return true;
}

// Reads one '\n'-terminated line; false on EOF or timeout (timed_out tells which).
bool read_line(int fd, std::string& buf, std::string& line, double timeout_s, bool& timed_out) {
  timed_out = false;
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::duration<double>(timeout_s);
  for (;;) {
    if (auto nl = buf.find('\n'); nl != std::string::npos) {
      line = buf.substr(0, nl);
      buf.erase(0, nl + 1);
      return true;
    }
    const auto left = std::chrono::duration_cast<std::chrono::milliseconds>(deadline - std::chrono::steady_clock::now()).count();
    if (left <= 0) {
      timed_out = true;
      return false;
    }
    pollfd p{fd, POLLIN, 0};
    int r = ::poll(&p, 1, int(std::min<long long>(left, 1 << 30)));
    if (r < 0 && errno == EINTR) continue;
    if (r == 0) continue;  // loop re-checks the deadline
    char chunk[65536];
    ssize_t n = ::read(fd, chunk, sizeof chunk);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) return false;
    buf.append(chunk, std::size_t(n));
  }
}

std::string describe_exit(int status) {
  if (WIFSIGNALED(status)) return fmt::format("worker killed by signal {} ({})", WTERMSIG(status), strsignal(WTERMSIG(status)));
  if (WIFEXITED(status)) return fmt::format("worker exited with code {}", WEXITSTATUS(status));
  return "worker ended";
}

class Worker {
 public:
  Worker(const std::vector<json>& points, const std::vector<std::string>& keys, const PointFn& fn) {
    int down[2], up[2];
    if (::pipe(down) != 0 || ::pipe(up) != 0) throw std::runtime_error("pipe() failed");
    std::fflush(nullptr);  // no buffered output duplicated into the child
    pid_ = ::fork();
    if (pid_ < 0) throw std::runtime_error("fork() failed");
    if (pid_ == 0) {
      ::close(down[1]);
      ::close(up[0]);
      serve(down[0], up[1], points, keys, fn);
    }
    ::close(down[0]);
    ::close(up[1]);
    to_ = down[1];
    from_ = up[0];
  }
  ~Worker() { stop(); }

  // Sends a point; returns the reply line, or nullopt if the worker died or timed out
  // (crash_reason and crash_data say how).
  std::optional<std::string> run(std::size_t index, double timeout_s) {
    if (!write_all(to_, fmt::format("{}\n", index))) return died(false);
    std::string line;
    bool timed_out = false;
    if (!read_line(from_, buf_, line, timeout_s, timed_out)) return died(timed_out, timeout_s);
    return line;
  }
  bool alive() const { return pid_ > 0; }
  std::string crash_reason;
  json crash_data;

  void stop() {
    if (pid_ <= 0) return;
    ::close(to_);
    ::close(from_);
    int status = 0;
    ::waitpid(pid_, &status, 0);  // closing the pipe makes a healthy worker exit
    pid_ = -1;
  }

 private:
  [[noreturn]] static void serve(int in, int out, const std::vector<json>& points, const std::vector<std::string>& keys,
                                 const PointFn& fn) {
    std::string buf, line;
    bool timed_out;
    while (read_line(in, buf, line, 1e9, timed_out)) {
      const std::size_t i = std::stoul(line);
      Record r = run_guarded(fn, points[i], keys[i]);
      const bool restart = g_restart_requested;
      json reply = {{"record", to_json(r)}, {"restart", restart}};
      if (!write_all(out, reply.dump() + "\n") || restart) break;
    }
    std::fflush(nullptr);
    ::_exit(0);  // skip the parent's destructors and atexit handlers
  }

  std::nullopt_t died(bool timed_out, double timeout_s = 0) {
    int status = 0;
    if (timed_out) ::kill(pid_, SIGKILL);
    ::waitpid(pid_, &status, 0);
    ::close(to_);
    ::close(from_);
    pid_ = -1;
    crash_data = json::object();
    if (timed_out) {
      crash_reason = fmt::format("timed out after {:.0f} s; worker killed", timeout_s);
      crash_data["timeout_s"] = timeout_s;
    } else {
      crash_reason = describe_exit(status);
      if (WIFSIGNALED(status)) crash_data["signal"] = WTERMSIG(status);
      if (WIFEXITED(status)) crash_data["exit_code"] = WEXITSTATUS(status);
    }
    return std::nullopt;
  }

  pid_t pid_ = -1;
  int to_ = -1, from_ = -1;
  std::string buf_;
};

// What a point's line says after its label: for `ok` the headline figure (its probe's
// "headline"), otherwise first the reason of the outcome (where the NaN started, what
// cuBLASLt said), which a cut to the line's width must not drop.
std::string point_detail(const Record& r) {
  const std::string headline = r.data.contains("headline") && r.data["headline"].is_string() ? r.data["headline"].get<std::string>() : "";
  if (headline.empty() || r.reason.empty()) return headline + r.reason;
  return r.outcome == Outcome::ok ? headline + "; " + r.reason : r.reason + "; " + headline;
}

}  // namespace

void request_worker_restart() { g_restart_requested = true; }

SweepSummary run_sweep(const std::vector<json>& points, const std::vector<std::string>& keys, const PointFn& fn, JsonlWriter& writer,
                       const RunnerOptions& opt) {
  ::signal(SIGPIPE, SIG_IGN);  // a dead worker must not take the parent with it
  SweepSummary s;
  s.total = points.size();
  Progress progress(opt.labels.size() == points.size() ? opt.labels : keys, opt.tty, opt.quiet);
  std::unique_ptr<Worker> worker;
  for (std::size_t i = 0; i < points.size(); ++i) {
    if (writer.done(keys[i])) {
      ++s.resumed;
      progress.resumed();
      continue;
    }
    progress.starting(i, s.ran + s.resumed);
    Record r;
    if (!opt.isolate) {
      r = run_guarded(fn, points[i], keys[i]);
    } else {
      if (!worker || !worker->alive()) {
        worker = std::make_unique<Worker>(points, keys, fn);
        ++s.workers_started;
      }
      if (auto line = worker->run(i, opt.point_timeout_s)) {
        json reply = json::parse(*line);
        r = record_from_json(reply["record"]);
        if (reply.value("restart", false)) worker.reset();
      } else {
        r = make_record(keys[i], points[i], Outcome::crashed, worker->crash_reason);
        r.data["crash"] = worker->crash_data;
        worker.reset();
      }
    }
    writer.append(r);
    ++s.ran;
    ++s.by_outcome[std::string(to_string(r.outcome))];
    progress.finished(i, to_string(r.outcome), point_detail(r));
  }
  return s;
}

json run_in_child(const std::function<json()>& fn, double timeout_s) {
  ::signal(SIGPIPE, SIG_IGN);
  std::vector<json> none{json::object()};
  std::vector<std::string> keys{"child"};
  PointFn wrap = [&](const json&, const std::string& key) {
    Record r = make_record(key, json::object(), Outcome::ok);
    r.data["value"] = fn();
    return r;
  };
  Worker w(none, keys, wrap);
  auto line = w.run(0, timeout_s);
  if (!line) throw std::runtime_error(w.crash_reason);
  Record r = record_from_json(json::parse(*line)["record"]);
  if (r.outcome != Outcome::ok) throw std::runtime_error(r.reason);
  return r.data["value"];
}

}  // namespace fp8scope::core
