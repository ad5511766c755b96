// FP8 casts on the GPU against the host codec, value by value, and their statistics against
// counts made on the host; the transposing cast writes the exact transpose.
#include "fp8scope/core/cuda_util.hpp"
#include "fp8scope/fp8/cast.cuh"
#include "gpu_test_util.hpp"

#include <algorithm>
#include <cmath>
#include <random>
#include <stdexcept>
#include <tuple>
#include <vector>

using namespace fp8scope;
using fp8::Format;
using fp8::Overflow;

namespace {
std::vector<__nv_bfloat16> test_values(std::size_t n, std::uint64_t seed) {
  std::mt19937_64 rng(seed);
  std::normal_distribution<float> normal(0.0f, 1.0f);
  std::vector<__nv_bfloat16> v(n);
  for (std::size_t i = 0; i < n; ++i) {
    float x = normal(rng) * std::ldexp(1.0f, int(i % 48) - 30);  // 2^-30 .. 2^17: underflow to overflow
    if (i % 997 == 1) x = NAN;
    if (i % 991 == 2) x = -INFINITY;
    if (i % 983 == 3) x = 0.0f;
    v[i] = __float2bfloat16(x);
  }
  return v;
}
struct HostStats {
  float amax = 0;
  unsigned long long nonfinite = 0, saturated = 0, underflow = 0;
};
float to_float(__nv_bfloat16 x) { return __bfloat162float(x); }
float to_float(float x) { return x; }
void expect_same_stats(const fp8::CastStats& got, const fp8::CastStats& want) {
  EXPECT_EQ(got.amax, want.amax);
  EXPECT_EQ(got.nonfinite, want.nonfinite);
  EXPECT_EQ(got.saturated, want.saturated);
  EXPECT_EQ(got.underflow, want.underflow);
  EXPECT_EQ(got.nonfinite_out, want.nonfinite_out);
}
template <class T>
HostStats host_stats(const std::vector<T>& v, float scale, Format f, Overflow o) {
  HostStats s;
  for (auto b : v) {
    const float x = to_float(b);
    if (!std::isfinite(x)) {
      ++s.nonfinite;
      continue;
    }
    s.amax = std::max(s.amax, std::fabs(x));
    if (std::fabs(x * scale) > fp8::info(f).max) ++s.saturated;
    if (x != 0 && (fp8::encode(x * scale, f, o) & 0x7F) == 0) ++s.underflow;
  }
  return s;
}
}  // namespace

class CastGpu : public ::testing::TestWithParam<std::tuple<Format, Overflow>> {};

// The matrices of the one-launch tests (rows, cols, scale; the last above the grid's tiles, the
// small ones partial): per matrix its outputs and those of the one-by-one reference, a scale
// and a statistics slot each.
struct ManyMatrices {
  const std::vector<std::tuple<int, int, float>> shapes = {{2304, 768, 0.5f}, {136, 320, 3.0f}, {64, 8, 1.0f}, {1000, 3072, 0.25f}};
  const int n = int(shapes.size());
  std::vector<core::DeviceBuffer> in, out, out_t, ref, ref_t;
  core::DeviceBuffer scales{n * sizeof(float)}, st{n * sizeof(fp8::CastStats)}, ref_st{n * sizeof(fp8::CastStats)};
  fp8::ManyCastSizes sizes;
  ManyMatrices() {
    cudaMemset(st.get(), 0, st.size());
    cudaMemset(ref_st.get(), 0, ref_st.size());
    for (int i = 0; i < n; ++i) {
      const auto [rows, cols, scale] = shapes[std::size_t(i)];
      out.emplace_back(elements(i)), out_t.emplace_back(elements(i)), ref.emplace_back(elements(i)), ref_t.emplace_back(elements(i));
      cudaMemcpy(scales.as<float>() + i, &scale, sizeof scale, cudaMemcpyHostToDevice);
      sizes.add(rows, cols);
    }
  }
  std::size_t elements(int i) const {
    return std::size_t(std::get<0>(shapes[std::size_t(i)])) * std::size_t(std::get<1>(shapes[std::size_t(i)]));
  }
  int rows(int i) const { return std::get<0>(shapes[std::size_t(i)]); }
  int cols(int i) const { return std::get<1>(shapes[std::size_t(i)]); }
  const float* scale(int i) const { return scales.as<float>() + i; }
  fp8::CastStats* stats(int i) const { return st.as<fp8::CastStats>() + i; }
  fp8::CastStats* ref_stats(int i) const { return ref_st.as<fp8::CastStats>() + i; }
  std::uint8_t* o(int i) const { return out[std::size_t(i)].as<std::uint8_t>(); }
  // Matrix i cast one by one from FP32 (both copies, with statistics): the reference.
  void cast_reference(int i, const float* x, Format f, Overflow ov) const {
    fp8::quantize_transpose(ref[std::size_t(i)].as<std::uint8_t>(), ref_t[std::size_t(i)].as<std::uint8_t>(), x, rows(i), cols(i), scale(i),
                            f, ov, ref_stats(i), nullptr);
  }
  std::uint8_t* t(int i) const { return out_t[std::size_t(i)].as<std::uint8_t>(); }
  // Matrix i's row-major codes / transposed codes / statistics against the reference's.
  void expect_codes(int i) const {
    EXPECT_EQ(download<std::uint8_t>(out[std::size_t(i)], elements(i)), download<std::uint8_t>(ref[std::size_t(i)], elements(i)));
  }
  void expect_transposed(int i) const {
    EXPECT_EQ(download<std::uint8_t>(out_t[std::size_t(i)], elements(i)), download<std::uint8_t>(ref_t[std::size_t(i)], elements(i)));
  }
  void expect_stats(int i) const {
    expect_same_stats(download<fp8::CastStats>(st, std::size_t(n))[std::size_t(i)],
                      download<fp8::CastStats>(ref_st, std::size_t(n))[std::size_t(i)]);
  }
};

TEST_P(CastGpu, QuantizeMatchesHostCodecAndCounts) {
  FP8SCOPE_REQUIRE_GPU();
  const auto [f, o] = GetParam();
  const std::size_t n = 1'000'003;  // not a multiple of 8: the tail path runs too
  const auto host = test_values(n, 3);
  const float scale = 3.0f;
  core::DeviceBuffer in(n * 2), out(n), sc(sizeof(float)), st(sizeof(fp8::CastStats));
  cudaMemcpy(in.get(), host.data(), n * 2, cudaMemcpyHostToDevice);
  cudaMemcpy(sc.get(), &scale, sizeof scale, cudaMemcpyHostToDevice);
  cudaMemset(st.get(), 0, st.size());
  fp8::quantize(out.as<std::uint8_t>(), in.as<__nv_bfloat16>(), std::int64_t(n), sc.as<float>(), f, o, st.as<fp8::CastStats>(), nullptr);
  ASSERT_EQ(cudaDeviceSynchronize(), cudaSuccess);
  std::vector<std::uint8_t> got(n);
  fp8::CastStats gs{};
  cudaMemcpy(got.data(), out.get(), n, cudaMemcpyDeviceToHost);
  cudaMemcpy(&gs, st.get(), sizeof gs, cudaMemcpyDeviceToHost);
  std::size_t bad = 0;
  for (std::size_t i = 0; i < n; ++i) {
    const std::uint8_t want = fp8::encode(__bfloat162float(host[i]) * scale, f, o);
    const bool both_nan = std::isnan(fp8::decode(want, f)) && std::isnan(fp8::decode(got[i], f));
    if (got[i] != want && !both_nan && bad++ < 5)
      ADD_FAILURE() << "i=" << i << " x=" << __bfloat162float(host[i]) << " got " << int(got[i]) << " want " << int(want);
  }
  EXPECT_EQ(bad, 0u);
  const HostStats hs = host_stats(host, scale, f, o);
  EXPECT_EQ(gs.amax, hs.amax);
  EXPECT_EQ(gs.nonfinite, hs.nonfinite);
  EXPECT_EQ(gs.saturated, hs.saturated);
  EXPECT_EQ(gs.underflow, hs.underflow);
  EXPECT_GT(hs.saturated, 0u);
  EXPECT_GT(hs.underflow, 0u);
}

// Shapes: one the generic kernel takes (77 columns), and the tiled fast path (multiples of 8)
// with partial tiles and a batch of matrices; the plain FP8 transpose on the same shapes (its
// 128 x 128 path where both sides are multiples of 16: 96 x 64 and 1040 x 2064, partial tiles).
TEST_P(CastGpu, TransposeIsExact) {
  FP8SCOPE_REQUIRE_GPU();
  const auto [f, o] = GetParam();
  for (auto [rows, cols, batch] : {std::make_tuple(300, 77, 1), std::make_tuple(320, 136, 1), std::make_tuple(2056, 1096, 1),
                                   std::make_tuple(96, 64, 3), std::make_tuple(1040, 2064, 1)}) {
    SCOPED_TRACE(::testing::Message() << rows << "x" << cols << " x" << batch);
    const std::size_t per = std::size_t(rows) * cols, n = per * std::size_t(batch);
    const auto host = test_values(n, 5);
    const float scale = 0.5f;
    core::DeviceBuffer in(n * 2), out(n), out_t(n), back(n), sc(sizeof(float)), st(sizeof(fp8::CastStats));
    cudaMemcpy(in.get(), host.data(), n * 2, cudaMemcpyHostToDevice);
    cudaMemcpy(sc.get(), &scale, sizeof scale, cudaMemcpyHostToDevice);
    cudaMemset(st.get(), 0, st.size());
    fp8::quantize_transpose(out.as<std::uint8_t>(), out_t.as<std::uint8_t>(), in.as<__nv_bfloat16>(), rows, cols, sc.as<float>(), f, o,
                            st.as<fp8::CastStats>(), nullptr, batch);
    // Transposing the transpose (per matrix) gives the row-major cast back.
    for (int b = 0; b < batch; ++b)
      fp8::transpose_fp8(back.as<std::uint8_t>() + per * std::size_t(b), out_t.as<std::uint8_t>() + per * std::size_t(b), cols, rows,
                         nullptr);
    ASSERT_EQ(cudaDeviceSynchronize(), cudaSuccess);
    std::vector<std::uint8_t> a(n), t(n), bk(n);
    fp8::CastStats gs{};
    cudaMemcpy(a.data(), out.get(), n, cudaMemcpyDeviceToHost);
    cudaMemcpy(t.data(), out_t.get(), n, cudaMemcpyDeviceToHost);
    cudaMemcpy(bk.data(), back.get(), n, cudaMemcpyDeviceToHost);
    cudaMemcpy(&gs, st.get(), sizeof gs, cudaMemcpyDeviceToHost);
    for (int b = 0; b < batch; ++b)
      for (int r = 0; r < rows; ++r)
        for (int c = 0; c < cols; ++c) {
          const std::size_t i = per * std::size_t(b) + std::size_t(r) * cols + c;
          ASSERT_EQ(a[i], t[per * std::size_t(b) + std::size_t(c) * rows + r]) << b << ":" << r << "," << c;
          ASSERT_EQ(a[i], bk[i]) << b << ":" << r << "," << c;
          const std::uint8_t want = fp8::encode(__bfloat162float(host[i]) * scale, f, o);
          if (!(std::isnan(fp8::decode(want, f)) && std::isnan(fp8::decode(a[i], f)))) ASSERT_EQ(a[i], want) << r << "," << c;
        }
    const HostStats hs = host_stats(host, scale, f, o);
    EXPECT_EQ(gs.amax, hs.amax);
    EXPECT_EQ(gs.nonfinite, hs.nonfinite);
    EXPECT_EQ(gs.saturated, hs.saturated);
    EXPECT_EQ(gs.underflow, hs.underflow);
  }
}

// Several matrices in one launch (the model's block weights) give, matrix by matrix, the codes,
// transposes and statistics of quantize_transpose, each with its own scale.
// A slice of columns of a wider matrix (the FP8 head's wgrad transposes its gradient so):
// out_t[c][r] = in[r][c0 + c], the slice's first column at a multiple of 16, a partial tile on
// both sides, and a stride or width that is not a multiple of 16 refused.
TEST(TransposeFp8Columns, IsTheSlicesExactTranspose) {
  FP8SCOPE_REQUIRE_GPU();
  const int rows = 272, ld = 1056;
  std::vector<std::uint8_t> host(std::size_t(rows) * ld);
  std::mt19937 rng(3);
  for (auto& b : host) b = std::uint8_t(rng());
  core::DeviceBuffer in(host.size()), out(host.size());
  cudaMemcpy(in.get(), host.data(), host.size(), cudaMemcpyHostToDevice);
  for (auto [c0, cols] : {std::make_pair(0, 256), std::make_pair(256, 640), std::make_pair(1024, 32), std::make_pair(0, 1056)}) {
    SCOPED_TRACE(::testing::Message() << "columns " << c0 << " + " << cols);
    cudaMemset(out.get(), 0, out.size());
    fp8::transpose_fp8_columns(out.as<std::uint8_t>(), in.as<std::uint8_t>() + c0, rows, cols, ld, nullptr);
    ASSERT_EQ(cudaDeviceSynchronize(), cudaSuccess);
    std::vector<std::uint8_t> t(std::size_t(rows) * cols);
    cudaMemcpy(t.data(), out.get(), t.size(), cudaMemcpyDeviceToHost);
    for (int c = 0; c < cols; ++c)
      for (int r = 0; r < rows; ++r) ASSERT_EQ(t[std::size_t(c) * rows + r], host[std::size_t(r) * ld + c0 + c]) << r << "," << c;
  }
  EXPECT_THROW(fp8::transpose_fp8_columns(out.as<std::uint8_t>(), in.as<std::uint8_t>(), rows, 40, ld, nullptr), std::invalid_argument);
  EXPECT_THROW(fp8::transpose_fp8_columns(out.as<std::uint8_t>(), in.as<std::uint8_t>(), rows, 32, 1000, nullptr), std::invalid_argument);
}

TEST_P(CastGpu, ManyMatricesInOneLaunchMatchOneByOne) {
  FP8SCOPE_REQUIRE_GPU();
  const auto [f, o] = GetParam();
  ManyMatrices m;
  std::vector<fp8::CastTransposeJob> jobs;
  for (int i = 0; i < m.n; ++i) {
    const auto host = test_values(m.elements(i), 11 + std::uint64_t(i));
    m.in.emplace_back(m.elements(i) * 2);
    cudaMemcpy(m.in.back().get(), host.data(), m.elements(i) * 2, cudaMemcpyHostToDevice);
    const auto* x = m.in.back().as<__nv_bfloat16>();
    jobs.push_back({x, m.o(i), m.t(i), m.scale(i), m.stats(i), m.rows(i), m.cols(i)});
    fp8::quantize_transpose(m.ref[std::size_t(i)].as<std::uint8_t>(), m.ref_t[std::size_t(i)].as<std::uint8_t>(), x, m.rows(i), m.cols(i),
                            m.scale(i), f, o, m.ref_stats(i), nullptr);
  }
  core::DeviceBuffer d_jobs(jobs.size() * sizeof(fp8::CastTransposeJob));
  cudaMemcpy(d_jobs.get(), jobs.data(), d_jobs.size(), cudaMemcpyHostToDevice);
  fp8::quantize_transpose_many(d_jobs.as<fp8::CastTransposeJob>(), m.n, m.sizes.max_tiles, f, o, nullptr);
  ASSERT_EQ(cudaDeviceSynchronize(), cudaSuccess);
  for (int i = 0; i < m.n; ++i) {
    SCOPED_TRACE(::testing::Message() << "matrix " << i);
    m.expect_codes(i), m.expect_transposed(i), m.expect_stats(i);
  }
}

// The casts from FP32 (a weight cast from its FP32 master): the host codec's code of every
// value (full FP32 precision, underflow to overflow, NaN and infinity) and its statistics, for
// the vector loop (with a tail), the tile loop (partial tiles, more tiles than the grid) and the
// element-wise fallback (a width not a multiple of 8), row-major and transposed, or transposed only.
TEST_P(CastGpu, Fp32CastsMatchTheHostCodecAndCounts) {
  FP8SCOPE_REQUIRE_GPU();
  const auto [f, o] = GetParam();
  const float scale = 3.0f;
  core::DeviceBuffer sc(sizeof(float));
  cudaMemcpy(sc.get(), &scale, sizeof scale, cudaMemcpyHostToDevice);
  auto values = [](std::size_t n, std::uint64_t seed) {
    std::mt19937_64 rng(seed);
    std::normal_distribution<float> normal(0.0f, 1.0f);
    std::vector<float> v(n);
    for (std::size_t i = 0; i < n; ++i) v[i] = normal(rng) * std::ldexp(1.0f, int(i % 48) - 30);
    v[1] = NAN, v[2] = -INFINITY, v[3] = 0.0f;
    return v;
  };
  auto check_stats = [&](const core::DeviceBuffer& st, const std::vector<float>& host) {
    fp8::CastStats g{};
    cudaMemcpy(&g, st.get(), sizeof g, cudaMemcpyDeviceToHost);
    const HostStats h = host_stats(host, scale, f, o);
    EXPECT_EQ(g.amax, h.amax);
    EXPECT_EQ(g.nonfinite, h.nonfinite);
    EXPECT_EQ(g.saturated, h.saturated);
    EXPECT_EQ(g.underflow, h.underflow);
  };
  {  // vector loop
    const std::size_t n = 1'000'003;
    const auto host = values(n, 21);
    core::DeviceBuffer in(n * 4), out(n), st(sizeof(fp8::CastStats));
    cudaMemcpy(in.get(), host.data(), n * 4, cudaMemcpyHostToDevice);
    cudaMemset(st.get(), 0, st.size());
    fp8::quantize(out.as<std::uint8_t>(), in.as<float>(), std::int64_t(n), sc.as<float>(), f, o, st.as<fp8::CastStats>(), nullptr);
    ASSERT_EQ(cudaDeviceSynchronize(), cudaSuccess);
    std::vector<std::uint8_t> got(n);
    cudaMemcpy(got.data(), out.get(), n, cudaMemcpyDeviceToHost);
    for (std::size_t i = 0; i < n; ++i) ASSERT_EQ(got[i], fp8::encode(host[i] * scale, f, o)) << "element " << i << " x=" << host[i];
    check_stats(st, host);
  }
  for (const auto& [rows, cols] : std::vector<std::pair<int, int>>{{2056, 1096}, {100, 36}}) {  // tile loop, fallback
    SCOPED_TRACE(::testing::Message() << rows << " x " << cols);
    const std::size_t n = std::size_t(rows) * cols;
    const auto host = values(n, 22);
    core::DeviceBuffer in(n * 4), out(n), out_t(n), only_t(n), st(sizeof(fp8::CastStats));
    cudaMemcpy(in.get(), host.data(), n * 4, cudaMemcpyHostToDevice);
    cudaMemset(st.get(), 0, st.size());
    fp8::quantize_transpose(out.as<std::uint8_t>(), out_t.as<std::uint8_t>(), in.as<float>(), rows, cols, sc.as<float>(), f, o,
                            st.as<fp8::CastStats>(), nullptr);
    fp8::quantize_transpose(nullptr, only_t.as<std::uint8_t>(), in.as<float>(), rows, cols, sc.as<float>(), f, o, nullptr, nullptr);
    ASSERT_EQ(cudaDeviceSynchronize(), cudaSuccess);
    std::vector<std::uint8_t> a(n), at(n), ot(n);
    cudaMemcpy(a.data(), out.get(), n, cudaMemcpyDeviceToHost);
    cudaMemcpy(at.data(), out_t.get(), n, cudaMemcpyDeviceToHost);
    cudaMemcpy(ot.data(), only_t.get(), n, cudaMemcpyDeviceToHost);
    for (int r = 0; r < rows; ++r)
      for (int c = 0; c < cols; ++c) {
        const std::uint8_t want = fp8::encode(host[std::size_t(r) * cols + c] * scale, f, o);
        ASSERT_EQ(a[std::size_t(r) * cols + c], want) << "(" << r << ", " << c << ")";
        ASSERT_EQ(at[std::size_t(c) * rows + r], want) << "transposed (" << r << ", " << c << ")";
      }
    EXPECT_EQ(ot, at);
    check_stats(st, host);
  }
}

namespace {
// FP32 matrices that are not BF16 values, uploaded into m.in; returns their device pointers.
std::vector<const float*> upload_fp32_matrices(ManyMatrices& m) {
  std::vector<const float*> x;
  for (int i = 0; i < m.n; ++i) {
    const auto host_bf16 = test_values(m.elements(i), 31 + std::uint64_t(i));
    std::vector<float> host(m.elements(i));
    for (std::size_t k = 0; k < host.size(); ++k)
      host[k] = __bfloat162float(host_bf16[k]) * (1.0f + 1e-3f * float(k % 7));  // not BF16 values
    m.in.emplace_back(host.size() * 4);
    cudaMemcpy(m.in.back().get(), host.data(), host.size() * 4, cudaMemcpyHostToDevice);
    x.push_back(m.in.back().as<float>());
  }
  return x;
}

core::DeviceBuffer upload_jobs(const std::vector<fp8::CastJobF32>& jobs) {
  core::DeviceBuffer d(jobs.size() * sizeof(fp8::CastJobF32));
  cudaMemcpy(d.get(), jobs.data(), d.size(), cudaMemcpyHostToDevice);
  return d;
}

// ManyMatrices' matrices from FP32 cast in one launch (launch(m, jobs), a job per matrix from
// job(m, i, x)) beside the one-by-one reference, then check(m, i) per matrix.
template <class Job, class Launch, class Check>
void many_fp32_against_one_by_one(Format f, Overflow o, Job job, Launch launch, Check check) {
  ManyMatrices m;
  const std::vector<const float*> x = upload_fp32_matrices(m);
  std::vector<fp8::CastJobF32> jobs;
  for (int i = 0; i < m.n; ++i) {
    jobs.push_back(job(m, i, x[std::size_t(i)]));
    m.cast_reference(i, x[std::size_t(i)], f, o);
  }
  const core::DeviceBuffer d_jobs = upload_jobs(jobs);
  launch(m, d_jobs.as<fp8::CastJobF32>());
  ASSERT_EQ(cudaDeviceSynchronize(), cudaSuccess);
  for (int i = 0; i < m.n; ++i) {
    SCOPED_TRACE(::testing::Message() << "matrix " << i);
    check(m, i);
  }
}
}  // namespace

// A layer's weights cast from their FP32 masters in one launch (quantize_many): matrix by
// matrix the codes and statistics of quantize_transpose from FP32, row-major only (forward,
// with statistics), transposed only (backward, none) or both. The blocks take several tiles
// each (per_block 3 here), the small matrices' fewer blocks.
TEST_P(CastGpu, ManyFp32MatricesInOneLaunchMatchOneByOne) {
  FP8SCOPE_REQUIRE_GPU();
  const auto [f, o] = GetParam();
  many_fp32_against_one_by_one(
      f, o,
      [](const ManyMatrices& m, int i, const float* x) {  // 0 and 2 row-major with statistics, 1 transposed only, 3 both
        return fp8::CastJobF32{
            x, i == 1 ? nullptr : m.o(i), i % 2 ? m.t(i) : nullptr, m.scale(i), i == 1 ? nullptr : m.stats(i), m.rows(i), m.cols(i)};
      },
      [&](const ManyMatrices& m, const fp8::CastJobF32* jobs) { fp8::quantize_many(jobs, m.n, m.sizes, f, o, nullptr); },
      [](const ManyMatrices& m, int i) {
        if (i != 1) m.expect_codes(i), m.expect_stats(i);
        if (i == 1) EXPECT_EQ(download<fp8::CastStats>(m.st, std::size_t(m.n))[1].amax, 0.0f);  // no statistics asked for
        if (i % 2) m.expect_transposed(i);
      });
}

// The forward casts of a layer's weights (quantize_rows_many, the vector loop in chunks): the
// codes and statistics of quantize_transpose from FP32, matrix by matrix; chunks of 16384
// elements here, the last of a matrix partial and some matrices smaller than one.
TEST_P(CastGpu, ManyFp32MatricesRowMajorMatchOneByOne) {
  FP8SCOPE_REQUIRE_GPU();
  const auto [f, o] = GetParam();
  many_fp32_against_one_by_one(
      f, o,
      [](const ManyMatrices& m, int i, const float* x) {
        return fp8::CastJobF32{x, m.o(i), nullptr, m.scale(i), m.stats(i), m.rows(i), m.cols(i)};
      },
      [&](const ManyMatrices& m, const fp8::CastJobF32* jobs) { fp8::quantize_rows_many(jobs, m.n, m.sizes, f, o, nullptr); },
      [](const ManyMatrices& m, int i) { m.expect_codes(i), m.expect_stats(i); });
}

INSTANTIATE_TEST_SUITE_P(Formats, CastGpu,
                         ::testing::Combine(::testing::Values(Format::e4m3, Format::e5m2),
                                            ::testing::Values(Overflow::satfinite, Overflow::nosat)),
                         [](const auto& info) {
                           return std::string(fp8::name(std::get<0>(info.param))) + "_" + std::string(fp8::name(std::get<1>(info.param)));
                         });
