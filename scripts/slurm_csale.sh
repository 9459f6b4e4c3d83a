#!/usr/bin/env bash
# csale-app on a Dask cluster inside one SLURM allocation (README: "A SLURM batch script").
#
#   sbatch scripts/slurm_csale.sh INPUT_DIR OUTPUT_DIR [csale-app options ...]
#
# One scheduler (on the batch node, written to a scheduler file), one Dask worker per SLURM
# task (srun; --cpus-per-task threads each), and csale-app pointed at the scheduler file.
# GPU nodes: one worker per GPU, e.g. `#SBATCH --ntasks-per-node=4 --gpus-per-task=1`
# (srun sets CUDA_VISIBLE_DEVICES for each task) and `--device cuda` for csale-app.
# If the allocation ends mid-run (wall time, pre-emption), finished permutation chunks are
# kept in the work folder: submit the same job again (or run csale-app without a cluster)
# and it resumes with identical results.
#
#SBATCH --job-name=csale-app
#SBATCH --nodes=4
#SBATCH --ntasks-per-node=1
#SBATCH --cpus-per-task=16
#SBATCH --mem=32G
#SBATCH --time=04:00:00
set -euo pipefail

if [ $# -lt 2 ]; then
  echo "usage: sbatch $0 INPUT_DIR OUTPUT_DIR [csale-app options ...]" >&2
  exit 64
fi
IN=$1 OUT=$2
shift 2

DASK=${DASK:-dask}                      # the dask CLI of the environment holding csale-app
CSALE_APP=${CSALE_APP:-csale-app}
WORKERS=${SLURM_NTASKS:-1}
THREADS=${SLURM_CPUS_PER_TASK:-1}
SCHEDULER_FILE=${SCHEDULER_FILE:-$HOME/.csale-dask/scheduler-${SLURM_JOB_ID:-$$}.json}
mkdir -p "$(dirname "$SCHEDULER_FILE")"
rm -f "$SCHEDULER_FILE"                 # never connect to an old job's scheduler

pids=()
cleanup() {                             # SLURM ends the steps too; this is for early exits
  for pid in "${pids[@]}"; do kill "$pid" 2>/dev/null || true; done
  wait 2>/dev/null || true
  rm -f "$SCHEDULER_FILE"
}
trap cleanup EXIT

# the scheduler: one task on the batch node, sharing it with a worker (--overlap)
srun --overlap --nodes=1 --ntasks=1 --cpus-per-task=1 \
  $DASK scheduler --scheduler-file "$SCHEDULER_FILE" --no-dashboard &
pids+=($!)

# the workers: one per task, each with all its task's cores (one chunk at a time per
# worker, numba on its threads); they find the scheduler through the file
srun --overlap --ntasks="$WORKERS" --cpus-per-task="$THREADS" \
  $DASK worker --scheduler-file "$SCHEDULER_FILE" --nworkers 1 --nthreads "$THREADS" \
  --memory-limit 0 --no-dashboard &
pids+=($!)

# csale-app waits (--dask-timeout) for the scheduler file and for a first worker
status=0
"$CSALE_APP" "$IN" "$OUT" group --dask-scheduler-file "$SCHEDULER_FILE" \
  --dask-timeout "${DASK_TIMEOUT:-300}" "$@" || status=$?
exit "$status"
