#!/usr/bin/env bash
# The image as users meet it (run by hand, not in CI; minutes): build, size, start-up times,
# the demo offline on a read-only input and a read-only image, and `bosh exec launch` with
# the container writing to an absolute folder outside the launch folder, and Singularity.def's
# %test body in the image (the SIF's root file system). Prints a table.
#
#   bash scripts/container_check.sh                 # build csale-app:<version>, then check it
#   SKIP_BUILD=1 bash scripts/container_check.sh    # check the image already built
#   DEMO_ITERS=2000 PAIN_ITERS=1000 ...             # permutations of the demo / pain runs
#
# Needs podman (installed by ../shared/tools/container-build) or docker (ENGINE=docker), and
# bosh (the project's .venv has it). bosh calls `docker`: a shim that runs the engine is put
# first on PATH for that step (Debian's podman-docker package does the same system-wide).
set -euo pipefail
cd "$(dirname "$0")/.."
VERSION=$(sed -n 's/^__version__ = "\(.*\)"$/\1/p' csale_app/_version.py)
TAG=csale-app:$VERSION
DEMO_ITERS=${DEMO_ITERS:-2000}
PAIN_ITERS=${PAIN_ITERS:-1000}
ENGINE=${ENGINE:-podman}
if [ "$ENGINE" = podman ]; then eng=(podman --runtime runc); else eng=("$ENGINE"); fi
PY=${PY:-.venv/bin/python}
BOSH=${BOSH:-.venv/bin/bosh}
work=$(mktemp -d /tmp/csale-container-check.XXXX)
rows=()
row() { rows+=("$(printf '| %s | %s | %s |' "$1" "$2" "$3")"); echo "container_check: $1: $2 ($3)" >&2; }
now() { date +%s.%N; }
dt() { python3 -c "print(f'{$2 - $1:.1f} s')"; }
fail=0

# -- 1. build ------------------------------------------------------------------------------
if [ -z "${SKIP_BUILD:-}" ]; then
  t0=$(now)
  ../shared/tools/container-build "$TAG" -- --build-arg "VERSION=$VERSION" >"$work/build.log" 2>&1 \
    || { tail -30 "$work/build.log"; echo "container_check: build failed ($work/build.log)" >&2; exit 1; }
  row "build (container-build $TAG)" "ok" "$(dt "$t0" "$(now)")"
fi
size=$("${eng[@]}" image inspect --format '{{.Size}}' "$TAG")
row "image size" "$(python3 -c "print(f'{$size/1e9:.2f} GB ({$size/2**30:.2f} GiB)')")" "$TAG"

run=("${eng[@]}" run --rm --network none --read-only --tmpfs /tmp -u "$(id -u):$(id -g)")

# -- 2. start-up -----------------------------------------------------------------------------
t0=$(now); "${run[@]}" "$TAG" --version >/dev/null; row "--version, fresh container" "ok" "$(dt "$t0" "$(now)")"

mkdir -p "$work/pain_in"
res=$("${run[@]}" --entrypoint /opt/venv/bin/python "$TAG" -c \
      'from csale_app.io.templates import nimare_resource_dir as d; print(d())')
"${eng[@]}" run --rm --network none -u "$(id -u):$(id -g)" -v "$work/pain_in:/out" \
  --entrypoint /bin/cp "$TAG" \
  "$res/nidm_pain_dset.json" /out/pain.json
pain() {  # $1 label, rest: extra engine options; a fresh container each time
  local label=$1; shift
  local out="$work/pain_$label"; rm -rf "$out"; mkdir -p "$out"
  local t0; t0=$(now)
  "${run[@]}" "$@" -v "$work/pain_in:/in:ro" -v "$out:/out" "$TAG" /in /out group \
    --analyses ale --n-iters "$PAIN_ITERS" --quiet
  dt "$t0" "$(now)"
}
row "pain ALE $PAIN_ITERS perms, fresh container, kernels from the image" "ok" "$(pain seeded)"
row "pain ALE $PAIN_ITERS perms, fresh container, empty numba cache (JIT)" "ok" \
    "$(pain jit -e NUMBA_CACHE_DIR=/tmp/empty-numba)"
# Reference outside a container: the image's own csale_app (the working tree may have moved
# on) with the project's .venv (the same locked versions), numba cache warmed first.
mkdir -p "$work/host_cache" "$work/host_code"
ctr=$("${eng[@]}" create "$TAG")
"${eng[@]}" cp "$ctr:/opt/venv/lib/python3.11/site-packages/csale_app" "$work/host_code/"
"${eng[@]}" rm "$ctr" >/dev/null
export PYTHONPATH="$work/host_code"
NUMBA_CACHE_DIR="$work/host_cache" "$PY" -m csale_app "$work/pain_in" "$work/pain_host0" group \
  --analyses ale --n-iters 50 --quiet
t0=$(now)
NUMBA_CACHE_DIR="$work/host_cache" "$PY" -m csale_app "$work/pain_in" "$work/pain_host" group \
  --analyses ale --n-iters "$PAIN_ITERS" --quiet
row "pain ALE $PAIN_ITERS perms, host .venv, warm numba cache (reference)" "ok" "$(dt "$t0" "$(now)")"
unset PYTHONPATH
desc=$(python3 -c "import json,sys; print(json.dumps(json.load(open(sys.argv[1]))['GeneratedBy'][0].get('Container')))" \
       "$work/pain_seeded/dataset_description.json")
row "GeneratedBy.Container" "$desc" "$ENGINE run"

# -- 3. the demo: offline, read-only input, read-only image, tmpfs /tmp ----------------------
mkdir -p "$work/demo_in" "$work/demo_out"
"${eng[@]}" run --rm --network none -u "$(id -u):$(id -g)" -v "$work/demo_in:/in" \
  --entrypoint /opt/venv/bin/python "$TAG" -m csale_app.io.demo_data /in >/dev/null
t0=$(now)
if "${run[@]}" -v "$work/demo_in:/in:ro" -v "$work/demo_out:/out" "$TAG" /in /out group \
     --roi cerebellum --n-iters "$DEMO_ITERS" --quiet; then
  n=$(find "$work/demo_out" -name '*_statmap.nii.gz' | wc -l)
  row "demo (nback+flanker, cerebellum, $DEMO_ITERS perms), --network none --read-only, input :ro" \
      "ok, $n maps, report $( [ -s "$work/demo_out/report.html" ] && echo yes || echo no)" \
      "$(dt "$t0" "$(now)")"
else
  row "demo, --network none --read-only, input :ro" "FAILED (exit $?)" "$(dt "$t0" "$(now)")"; fail=1
fi

# -- 4. bosh exec launch with the container, absolute output folder outside the launch folder --
shim="$work/shim"; mkdir -p "$shim"
printf '#!/bin/sh\nexec %s "$@"\n' "${eng[*]}" > "$shim/docker"; chmod +x "$shim/docker"
mkdir -p "$work/launch/pain_input" "$work/elsewhere/bosh_out"
cp "$work/pain_in/pain.json" "$work/launch/pain_input/"
cat > "$work/invocation.json" <<EOF
{"input_dir": "pain_input", "output_dir": "$work/elsewhere/bosh_out", "analysis_level": "group",
 "analyses": ["ale"], "n_iters": 50, "nprocs": 1, "quiet": true}
EOF
bosh_abs=$(realpath "$BOSH"); desc_abs=$(realpath boutiques.json)
t0=$(now)
set +e
(cd "$work/launch" && PATH="$shim:$PATH" "$bosh_abs" exec launch -u "$desc_abs" "$work/invocation.json") \
  >"$work/bosh.log" 2>&1
rc=$?
set -e
missing=$(grep -A3 -i "missing" "$work/bosh.log" | grep -c "$work" || true)
found=$(ls "$work/elsewhere/bosh_out" 2>/dev/null | tr '\n' ' ')
if [ $rc -eq 0 ] && [ -s "$work/elsewhere/bosh_out/dataset_description.json" ] \
   && [ -s "$work/elsewhere/bosh_out/report.html" ] && [ -d "$work/elsewhere/bosh_out/studyset-pain" ]; then
  row "bosh exec launch -u (container), output_dir absolute, outside the launch folder" \
      "ok, exit 0, on the host: ${found% }" "$(dt "$t0" "$(now)")"
else
  row "bosh exec launch -u (container)" "FAILED (exit $rc; see $work/bosh.log)" "$(dt "$t0" "$(now)")"
  fail=1
fi

# -- 5. Singularity.def %test in the image the SIF is built from (no apptainer here) ---------
body=$(awk '/^%test/{on=1; next} /^%/{on=0} on' Singularity.def)
t0=$(now)
if "${run[@]}" --entrypoint /bin/sh "$TAG" -c "$body" >"$work/sif_test.log" 2>&1; then
  row "Singularity.def %test body (sh, in $TAG, read-only, tmpfs /tmp)" "ok" "$(dt "$t0" "$(now)")"
else
  row "Singularity.def %test body" "FAILED (see $work/sif_test.log)" "$(dt "$t0" "$(now)")"
  fail=1
fi

echo
echo "csale-app container check, $(date -u +%Y-%m-%d), $ENGINE, $(nproc) CPUs, $TAG"
echo
echo "| check | result | time |"
echo "|---|---|---|"
printf '%s\n' "${rows[@]}"
echo
echo "(work folder: $work)"
exit $fail
