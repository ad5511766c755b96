// Sweep parsing: products, zips, ranges, defaults, and one precise message per mistake.
#include "fp8scope/core/config.hpp"
#include "fp8scope/core/error.hpp"

#include <gtest/gtest.h>

#include <fstream>

using namespace fp8scope::core;

namespace {
ProbeSchema schema() {
  ProbeSchema s;
  s.probe = "gemm";
  s.axes = {
      {"m", ParamSpec::Kind::integer, 64, {}, 1, 1e9, ""},
      {"n", ParamSpec::Kind::integer, 64, {}, 1, 1e9, ""},
      {"k", ParamSpec::Kind::integer, 64, {}, 1, 1e9, ""},
      {"dtype", ParamSpec::Kind::string, "e4m3", {"e4m3", "e5m2", "bf16", "fp16", "fp32"}, 0, 0, ""},
      {"fast_accum", ParamSpec::Kind::boolean, true, {}, 0, 0, ""},
  };
  s.settings = {{"warmup", ParamSpec::Kind::integer, 5, {}, 0, 1000, ""}, {"rel_noise", ParamSpec::Kind::number, 0.02, {}, 0, 1, ""}};
  return s;
}
std::string error_of(const json& doc) {
  try {
    parse_sweep(doc, schema());
  } catch (const InputError& e) {
    return e.what();
  }
  return "no error";
}
}  // namespace

TEST(Config, ProductOfAxesInSchemaOrder) {
  auto cfg = parse_sweep(json::parse(R"({"probe":"gemm","axes":{"dtype":["e4m3","bf16"],"m":[1,2,3]}})"), schema());
  auto pts = expand(cfg, schema());
  ASSERT_EQ(pts.size(), 6u);
  EXPECT_EQ(pts[0]["m"], 1);
  EXPECT_EQ(pts[0]["dtype"], "e4m3");
  EXPECT_EQ(pts[1]["dtype"], "bf16");  // dtype varies fastest: it comes after m in the schema
  EXPECT_EQ(pts[5]["m"], 3);
  EXPECT_EQ(pts[0]["k"], 64);  // default
  EXPECT_EQ(point_key(pts[0], schema()), "m=1,n=64,k=64,dtype=e4m3,fast_accum=true");
  EXPECT_EQ(cfg.settings["warmup"], 5);
}

TEST(Config, ZipTiesListsElementwise) {
  auto doc = json::parse(R"({"probe":"gemm","zip":[{"m":[1,2],"n":[3,4],"k":[5,6]}],"axes":{"dtype":["e4m3","bf16"]}})");
  auto pts = expand(parse_sweep(doc, schema()), schema());
  ASSERT_EQ(pts.size(), 4u);
  EXPECT_EQ(pts[0]["m"], 1);
  EXPECT_EQ(pts[0]["n"], 3);
  EXPECT_EQ(pts[2]["m"], 2);
  EXPECT_EQ(pts[2]["k"], 6);
}

TEST(Config, RangesAreInclusive) {
  auto pts = expand(parse_sweep(json::parse(R"({"probe":"gemm","axes":{"n":{"from":50257,"to":50264,"step":1}}})"), schema()), schema());
  ASSERT_EQ(pts.size(), 8u);
  EXPECT_EQ(pts.back()["n"], 50264);
  pts = expand(parse_sweep(json::parse(R"({"probe":"gemm","axes":{"k":{"from":4072,"to":4120,"step":8}}})"), schema()), schema());
  EXPECT_EQ(pts.size(), 7u);
}

TEST(Config, SettingsAreValidated) {
  auto cfg = parse_sweep(json::parse(R"({"probe":"gemm","settings":{"warmup":2}})"), schema());
  EXPECT_EQ(cfg.settings["warmup"], 2);
  EXPECT_EQ(cfg.settings["rel_noise"], 0.02);
  EXPECT_EQ(error_of(json::parse(R"({"probe":"gemm","settings":{"warmpu":2}})")),
            "settings.warmpu: unknown setting for probe 'gemm'; known: warmup, rel_noise");
  EXPECT_EQ(error_of(json::parse(R"({"probe":"gemm","settings":{"warmup":-1}})")), "settings.warmup: -1 is out of range [0, 1000]");
}

TEST(Config, ErrorsNameThePathAndTheAllowedValues) {
  EXPECT_EQ(error_of(json::parse(R"({"probe":"gemm","axes":{"dtype":["e4m3","bf16","e5m3"]}})")),
            "axes.dtype[2]: 'e5m3' is not one of e4m3, e5m2, bf16, fp16, fp32");
  EXPECT_EQ(error_of(json::parse(R"({"probe":"gemm","axes":{"m":["big"]}})")), "axes.m[0]: 'big' is not an integer");
  EXPECT_EQ(error_of(json::parse(R"({"probe":"gemm","axes":{"m":[1.5]}})")), "axes.m[0]: 1.5 is not an integer");
  EXPECT_EQ(error_of(json::parse(R"({"probe":"gemm","axes":{"m":[0]}})")), "axes.m[0]: 0 is out of range [1, 1000000000]");
  EXPECT_EQ(error_of(json::parse(R"({"probe":"gemm","axes":{"mm":[1]}})")),
            "axes.mm: unknown axis for probe 'gemm'; known: m, n, k, dtype, fast_accum");
  EXPECT_EQ(error_of(json::parse(R"({"probe":"gemm","axes":{"fast_accum":["yes"]}})")), "axes.fast_accum[0]: 'yes' is not true or false");
  EXPECT_EQ(error_of(json::parse(R"({"probe":"gemm","extra":1})")),
            "extra: unknown key; a sweep has probe, name, description, settings, axes, zip");
  EXPECT_EQ(error_of(json::parse(R"({"probe":"vocab"})")), "probe: 'vocab' is not this probe; this is 'gemm'");
  EXPECT_EQ(error_of(json::parse(R"({"axes":{}})")), "probe: missing (a string naming the probe)");
  EXPECT_EQ(error_of(json::parse(R"([1,2])")), "(top level): a sweep file must be a JSON object");
  EXPECT_EQ(error_of(json::parse(R"({"probe":"gemm","zip":[{"m":[1,2],"n":[3]}]})")),
            "zip[0].n: has 1 values but zip[0].m has 2; zipped lists must be equally long");
  EXPECT_EQ(error_of(json::parse(R"({"probe":"gemm","axes":{"m":[1]},"zip":[{"m":[1]}]})")),
            "zip[0].m: axis given twice (in axes and/or zip groups)");
  EXPECT_EQ(error_of(json::parse(R"({"probe":"gemm","axes":{"m":[]}})")), "axes.m: an axis needs at least one value");
  EXPECT_EQ(error_of(json::parse(R"({"probe":"gemm","axes":{"m":{"from":5,"to":1}}})")), "axes.m: 'to' is below 'from'");
  EXPECT_EQ(error_of(json::parse(R"({"probe":"gemm","axes":{"m":{"from":1,"to":5,"stp":1}}})")),
            "axes.m.stp: unknown key; a range has from, to, step");
  EXPECT_EQ(error_of(json::parse(R"({"probe":"gemm","axes":{"m":{"from":1,"to":100000,"step":1},"n":{"from":1,"to":1000}}})")),
            "axes: the sweep has 100000000 points (limit 10000000)");
}

TEST(Config, FileErrors) {
  const std::string missing = "/nonexistent/sweep.json";
  try {
    load_sweep(missing, schema());
    FAIL();
  } catch (const InputError& e) {
    EXPECT_EQ(std::string(e.what()), missing + ": cannot open file");
  }
  const std::string bad = ::testing::TempDir() + "/bad.json";
  std::ofstream(bad) << "{\"probe\": \"gemm\",\n  \"axes\": {\"m\": [1,}\n}";
  try {
    load_sweep(bad, schema());
    FAIL();
  } catch (const InputError& e) {
    EXPECT_NE(std::string(e.what()).find("not valid JSON"), std::string::npos) << e.what();
    EXPECT_NE(std::string(e.what()).find("line 2"), std::string::npos) << e.what();
  }
}
