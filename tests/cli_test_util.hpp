#pragma once
// Running the executables as a user does, for the command-line tests: a command's exit code,
// stdout and stderr; files written into the test's temporary folder.
#include <gtest/gtest.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <array>
#include <cstdio>
#include <fstream>
#include <string>

namespace fp8scope::test {
struct Exec {
  int code;
  std::string out, err;
};
inline Exec run(const std::string& args) {
  // ctest runs tests in parallel processes: every call gets its own stderr file.
  static int calls = 0;
  const std::string errf = ::testing::TempDir() + "/cli_stderr_" + std::to_string(::getpid()) + "_" + std::to_string(calls++) + ".txt";
  const std::string cmd = args + " 2>" + errf;
  Exec r{};
  FILE* p = ::popen(cmd.c_str(), "r");
  std::array<char, 4096> buf{};
  while (std::fgets(buf.data(), int(buf.size()), p)) r.out += buf.data();
  int status = ::pclose(p);
  r.code = WIFEXITED(status) ? WEXITSTATUS(status) : -1;
  std::ifstream e(errf);
  r.err.assign(std::istreambuf_iterator<char>(e), {});
  return r;
}
inline std::string write(const std::string& name, const std::string& text) {
  const std::string path = ::testing::TempDir() + "/" + name;
  std::ofstream(path) << text;
  return path;
}
inline int lines(const std::string& s) { return int(std::count(s.begin(), s.end(), '\n')); }
inline const std::string kProbe = PROBE_SELFTEST;
inline const std::string kTool = FP8SCOPE_EXE;
}  // namespace fp8scope::test
