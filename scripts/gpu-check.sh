#!/usr/bin/env bash
# The GPU check of the CUDA build (issue 13): parity, serving, embedding throughput and a training
# step against PyTorch on one GPU, bounded to --budget seconds (default 330); the report lands in
# --out (default $OUT): gpu-check.json, gpu-check.md, gpu-check.log. All the work is in
# gpu_check.py beside this file (and gpu_check_peer.py, the PyTorch side); see its --help.
#
#   On the device, from the folder scripts/gpu-check-pack.sh made (it holds a copy of this script):
#     bash .gpu-check/gpu-check.sh --out "$OUT"
#   The dry run (CI: tiny shapes on the CPU; no PyTorch needed, its side is then skipped):
#     scripts/gpu-check.sh --cpu --tiny [--binary target/debug/reasonembed] [--out DIR]
#
# PYTHON picks the interpreter (default python3: on the device, the one that holds PyTorch).
set -euo pipefail
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
exec "${PYTHON:-python3}" "$here/gpu_check.py" "$@"
