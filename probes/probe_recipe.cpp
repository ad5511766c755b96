// probe_recipe: trains under FP8 scaling recipes (format, margin, amax history, algorithm,
// delayed/current scaling, saturation, variant) next to a high-precision twin, and records where
// NaNs start (step, layer, tensor, pass), the loss gap and every tensor's amax/scale history.
#include "fp8scope/core/probe_main.hpp"
#include "train/recipe_point.hpp"

using namespace fp8scope;

int main(int argc, char** argv) {
  core::ProbeDef def;
  def.schema.probe = "recipe";
  def.summary = "FP8 recipe sweep: NaN onset, loss gap to the high-precision twin, amax/scale histories";
  def.schema.axes = train::recipe_axes();
  def.schema.settings = train::recipe_settings();
  def.needs_gpu = false;
  def.check_point = train::check_recipe_point;
  def.make_point_fn = [](const core::ProbeContext& ctx) { return train::make_recipe_point_fn(ctx); };
  return core::probe_main(argc, argv, def);
}
