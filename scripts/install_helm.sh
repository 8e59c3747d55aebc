#!/usr/bin/env bash
# Fetch the pinned, checksum-verified Helm into .cache/helm/helm and print its path.
# The k8s tests call the same code themselves; this is for running helm by hand.
set -euo pipefail
cd "$(dirname "$0")/.."
exec .venv/bin/python -m ml_platform.devtools.helm
