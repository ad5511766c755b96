#!/usr/bin/env bash
# Submits a sweep as a Slurm job array of N shards and a merge job that runs after all of them.
# Usage: scripts/slurm/submit.sh CONFIG PREFIX N [extra sbatch options...]
set -euo pipefail
cfg=${1:?usage: submit.sh CONFIG PREFIX N}
prefix=${2:?}
n=${3:?}
shift 3
here=$(cd "$(dirname "$0")" && pwd)
array=$(sbatch --parsable --array=0-$((n - 1)) "$@" "$here/sweep.sbatch" "$cfg" "$prefix")
merge=$(sbatch --parsable --dependency=afterok:"$array" "$here/merge.sbatch" "$prefix" "$n")
echo "array job $array ($n shards), merge job $merge -> $prefix.json"
