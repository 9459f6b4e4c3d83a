#!/usr/bin/env bash
# Run the demo: ALE, C-SALE and MACM on NiMARE's n-back/flanker studyset (shipped with
# NiMARE, so no network), cerebellum ROI. Writes demo_input/ and three output folders:
#   demo_output/                  ALE + C-SALE of both studysets, union of both as the
#                                 reference database, MACM from the C-SALE clusters
#                                 (report: demo_output/report.html)
#   demo_output_nback_vs_flanker/ C-SALE of n-back against the flanker base rate
#   demo_output_macm/             MACM (whole-brain ALE + C-SALE over the union database)
#                                 seeded by the n-back C-SALE clusters of the run before
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup_env.sh
ITERS="${DEMO_ITERS:-2000}"
.venv/bin/python -m csale_app.io.demo_data demo_input
# 1) ALE and C-SALE of both studysets in the cerebellum; MACM from the C-SALE clusters
#    (skipped, with the reason in the report, when C-SALE finds none)
.venv/bin/csale-app demo_input demo_output group --roi cerebellum --n-iters "$ITERS" \
  --overwrite "$@"
# 2) n-back against a base rate built from the flanker studyset alone (--database): the
#    cerebellar convergence specific to n-back relative to flanker
.venv/bin/csale-app demo_input demo_output_nback_vs_flanker group --analyses csale \
  --roi cerebellum --studyset-label nback --database demo_input/flanker.tsv \
  --n-iters "$ITERS" --overwrite "$@"
# 3) MACM seeded by those significant C-SALE clusters, over the union database
#    (needs at least 1,002 iterations: p < 0.001 cannot occur with fewer, and the app
#    refuses them)
mkdir -p demo_seed
cp demo_output_nback_vs_flanker/studyset-nback/studyset-nback_space-MNI152NLin6Asym_res-2_meta-csale_stat-z_desc-thresholded_statmap.nii.gz \
  demo_seed/nback_csale_clusters.nii.gz
if ! .venv/bin/python -c "import sys, nibabel as nib; sys.exit(not nib.load(sys.argv[1]).get_fdata().any())" \
    demo_seed/nback_csale_clusters.nii.gz; then
  echo "demo: C-SALE found no n-back cluster against flanker; MACM step skipped" >&2
  exit 0
fi
.venv/bin/csale-app demo_input demo_output_macm group --analyses macm --macm-seed roi \
  --roi demo_seed/nback_csale_clusters.nii.gz --studyset-label nback --n-iters "$ITERS" \
  --overwrite "$@"
echo "reports: demo_output/report.html demo_output_nback_vs_flanker/report.html demo_output_macm/report.html"
