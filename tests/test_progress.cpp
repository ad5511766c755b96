// What a sweep prints per point: only the axes that vary, 120 columns at most, a status line
// with elapsed time and ETA on a terminal only.
#include "fp8scope/core/progress.hpp"

#include <gtest/gtest.h>

#include <cstdio>
#include <string>

using namespace fp8scope;
using core::json;

namespace {
core::ProbeSchema schema() {
  using K = core::ParamSpec::Kind;
  core::ProbeSchema s;
  s.probe = "t";
  s.axes = {{"backend", K::string, "gpu"},
            {"format", K::string, "e4m3", {"e4m3", "hybrid"}},
            {"margin", K::integer, 0},
            {"steps", K::integer, 20},
            {"a", K::string, "e4m3", {"e4m3", "bf16"}},
            {"fast_accum", K::string, "fprop", {"fprop", "none"}}};
  return s;
}
}  // namespace

TEST(Progress, LabelsNameOnlyTheAxesThatVary) {
  auto pt = [](const char* format, int margin, const char* a, const char* fa) {
    return json{{"backend", "gpu"}, {"format", format}, {"margin", margin}, {"steps", 20}, {"a", a}, {"fast_accum", fa}};
  };
  std::vector<json> pts = {pt("e4m3", 0, "e4m3", "fprop"), pt("hybrid", 0, "bf16", "fprop"), pt("hybrid", 2, "bf16", "none")};
  const auto l = core::varying_labels(pts, schema());
  ASSERT_EQ(l.size(), 3u);
  // "hybrid" and "bf16" name their axes; "e4m3" is a choice of two axes; numbers and "none" never do.
  EXPECT_EQ(l[0], "format=e4m3,margin=0,a=e4m3,fprop");
  EXPECT_EQ(l[2], "hybrid,margin=2,bf16,fast_accum=none");
  EXPECT_EQ(core::varying_labels({pts[0]}, schema())[0], "");  // one point: nothing varies
}

TEST(Progress, PointLinesFitTheWidthAndMarkCuts) {
  const std::string label(200, 'k'), detail(200, 'd');
  for (std::size_t width : {60u, 80u, 120u}) {
    const std::string line = core::point_line(7, 1200, "heuristic_unsupported", label, detail, width);
    EXPECT_EQ(line.size(), width) << line;
    EXPECT_NE(line.find("..."), std::string::npos);
    EXPECT_EQ(line.rfind("[   7/1200] heuristic_unsupported ", 0), 0u) << line;
  }
  // Short enough: nothing is cut, label and detail two spaces apart.
  EXPECT_EQ(core::point_line(3, 60, "ok", "format=e4m3", "loss 10.93 -> 2.13"), "[ 3/60] ok         format=e4m3  loss 10.93 -> 2.13");
  // A short detail leaves the label more than its 60 %.
  const std::string l2 = core::point_line(1, 9, "ok", std::string(150, 'k'), "1.2 ms", 100);
  EXPECT_EQ(l2.size(), 100u);
  EXPECT_NE(l2.find("...  1.2 ms"), std::string::npos) << l2;
  // width 0: -v's full keys are never cut.
  EXPECT_EQ(core::point_line(1, 1, "ok", label, detail, 0).size(), std::string("[1/1] ok         ").size() + 402);
}

TEST(Progress, DurationsAndEta) {
  EXPECT_EQ(core::format_duration(0), "0:00");
  EXPECT_EQ(core::format_duration(65.4), "1:05");
  EXPECT_EQ(core::format_duration(3723), "1:02:03");
  // 10 of 40 points ran in 20 s: 30 left at 2 s each.
  EXPECT_EQ(core::status_line(10, 40, 10, 20.0, ""), "[10/40] 0:20 elapsed, ETA 1:00");
  // Resumed points count as done but not in the rate.
  EXPECT_EQ(core::status_line(30, 40, 5, 10.0, "m=1"), "[30/40] 0:10 elapsed, ETA 0:20 (running m=1)");
  EXPECT_LE(core::status_line(1, 2, 1, 1.0, std::string(300, 'x')).size(), core::kLineWidth - 1);
}

TEST(Progress, StatusLineOnlyOnATerminal) {
  for (bool tty : {false, true}) {
    std::FILE* f = std::tmpfile();
    core::Progress p({"format=e4m3", "format=hybrid"}, tty, false, 120, f);
    p.starting(0, 0);
    p.finished(0, "ok", "1.0 ms");
    p.starting(1, 1);
    p.finished(1, "nonfinite", "NaN at step 3");
    std::rewind(f);
    std::string out;
    for (int c; (c = std::fgetc(f)) != EOF;) out += char(c);
    std::fclose(f);
    EXPECT_EQ(out.find("elapsed") != std::string::npos, tty) << out;
    EXPECT_EQ(out.find('\r') != std::string::npos, tty);
    EXPECT_NE(out.find("[2/2] nonfinite  format=hybrid  NaN at step 3\n"), std::string::npos) << out;
  }
}
