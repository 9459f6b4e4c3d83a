#!/usr/bin/env bash
# Run the demo: ALE, C-SALE and MACM on NiMARE's n-back/flanker studyset (shipped with
# NiMARE, so no network), cerebellum ROI, the union of both studysets as the reference
# database. Writes demo_input/, demo_output/ (report: demo_output/report.html) and
# demo_output_macm_roi/ (MACM seeded by the cerebellum itself).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup_env.sh
ITERS="${DEMO_ITERS:-2000}"
.venv/bin/python -m csale_app.io.demo_data demo_input
# 1) ALE and C-SALE of both studysets in the cerebellum; MACM from the C-SALE clusters
#    (skipped, with the reason in the report, when C-SALE finds none)
.venv/bin/csale-app demo_input demo_output group --roi cerebellum --n-iters "$ITERS" \
  --overwrite "$@"
# 2) MACM of the n-back studyset seeded by the cerebellum ROI (whole-brain ALE and C-SALE
#    of the database experiments with a cerebellar focus)
.venv/bin/csale-app demo_input demo_output_macm_roi group --analyses macm --roi cerebellum \
  --macm-seed roi --studyset-label nback --n-iters "$ITERS" --overwrite "$@"
echo "reports: demo_output/report.html demo_output_macm_roi/report.html"
