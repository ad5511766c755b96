// probe_recipe: trains under FP8 scaling recipes (format, margin, amax history, algorithm,
// delayed/current scaling, saturation, variant) next to a high-precision twin, and records where
// NaNs start (step, layer, tensor, pass), the loss gap and every tensor's amax/scale history.
#include "fp8scope/core/probe_main.hpp"
#include "fp8scope/model/recipe_point.hpp"

using namespace fp8scope;

int main(int argc, char** argv) {
  core::ProbeDef def;
  def.schema.probe = "recipe";
  def.summary = "FP8 recipe sweep: NaN onset, loss gap to the high-precision twin, amax/scale histories";
  def.schema.axes = model::recipe_axes();
  def.schema.settings = model::recipe_settings();
  def.needs_gpu = false;
  def.check_point = model::check_recipe_point;
  def.make_point_fn = [](const core::ProbeContext& ctx) { return model::make_recipe_point_fn(ctx); };
  return core::probe_main(argc, argv, def);
}
