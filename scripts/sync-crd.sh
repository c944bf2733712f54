#!/usr/bin/env bash
# Copy the CRD (crds/whisperendpoints.yaml, the source of truth) into the Helm chart's crds/ folder.
# tests/chart/test_chart.py fails when the two differ by a single byte; run this after editing the CRD.
set -euo pipefail
. "$(dirname "$0")/common.sh"
cp "$ROOT/crds/whisperendpoints.yaml" "$ROOT/charts/kubewhisper/crds/whisperendpoints.yaml"
log "charts/kubewhisper/crds/whisperendpoints.yaml updated from crds/whisperendpoints.yaml"
