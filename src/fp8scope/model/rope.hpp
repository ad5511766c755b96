#pragma once
// Rotary position embedding (Llama): channels (2i, 2i+1) of every q and k head at position t
// are rotated by the angle t * theta^(-2i / hs). One definition for the CPU reference
// (cpu/gpt_ref.cpp) and the GPU kernels, which read the angles' cosines and sines from a table
// computed here in double precision (an FP32 angle at t = 8191 would be off by ~1e-3 rad).
#include <vector>

namespace fp8scope::model {

// The rotation angle of channel pair i (0 <= i < hs / 2) at position t.
double rope_angle(int t, int i, int hs, double theta);

// [T][hs / 2][2]: cos and sin of rope_angle(t, i, hs, theta), rounded to FP32.
std::vector<float> rope_cos_sin(int T, int hs, double theta);

}  // namespace fp8scope::model
