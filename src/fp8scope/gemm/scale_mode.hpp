#pragma once
// The GEMM probe's view of operand scaling: the scale modes (fp8/block_scale.hpp, shared with
// the CPU FP8 emulation) and what a point's inputs are.
#include "fp8scope/fp8/block_scale.hpp"

#include <optional>
#include <string>

namespace fp8scope::gemm {

using fp8::block_dequant;
using fp8::BlockQuantized;
using fp8::parse_scale_mode;
using fp8::quantize_blocks;
using fp8::scale_geometry;
using fp8::scale_mode_names;
using fp8::ScaleGeometry;
using fp8::ScaleMode;
using fp8::to_string;

// What the inputs of a GEMM point are:
//   fp8_exact: codes drawn directly (N(0,1) at a fixed scale), so the reference sees exactly
//              what the GEMM sees and only the GEMM's own rounding is measured; with a block
//              mode each block gets a random power-of-two scale (a layout mistake cannot hide).
//   normal:    FP32 N(0,1) values quantised by the operand's scale mode.
//   outliers:  FP32 values whose magnitude varies per row (2^+-6), per 128x128 tile (2^+-5) and
//              per 1x128 block (2^+-4) -- the structure of real activations and gradients --
//              quantised by the operand's scale mode; the error against the unquantised product
//              shows what finer scales buy.
enum class InputPattern : std::uint8_t { fp8_exact, normal, outliers };

std::string to_string(InputPattern p);
std::optional<InputPattern> parse_input_pattern(const std::string& s);

}  // namespace fp8scope::gemm
