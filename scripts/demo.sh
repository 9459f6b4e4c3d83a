#!/usr/bin/env bash
# Run the demo: ALE, C-SALE and MACM on NiMARE's n-back/flanker studyset (shipped with
# NiMARE, so no network), cerebellum ROI. Writes demo_input/ and demo_output/.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup_env.sh
.venv/bin/python -m csale_app.io.demo_data demo_input
exec .venv/bin/csale-app demo_input demo_output group --roi cerebellum \
  --n-iters "${DEMO_ITERS:-2000}" --overwrite "$@"
