#!/usr/bin/env bash
# Builds reasonembed with the `cuda` feature using a CUDA toolkit from PyPI wheels, for machines
# without a system toolkit (this works on a CPU-only machine too: the driver library is stubbed at
# link time; running needs a real GPU and its driver).
#
#   scripts/build-cuda.sh [VENV]       # VENV defaults to .venv-cuda; compute capability 90 (H100/H200)
#
# Environment: CUDA_COMPUTE_CAP (default 90), CUDA_WHEELS (the toolkit's pip requirements; default:
# CUDA 13.0, the versions PyTorch 2.11's cu130 wheels pin), CUDARC_CUDA_VERSION (default 13000,
# matching), CARGO_TARGET_DIR as usual.
#
# Why 13.0: candle's kernels are compiled to PTX, which the driver compiles at run time, and a
# driver loads only PTX of its own CUDA version or older (a 580 driver, CUDA 13.0, refuses the
# PTX of nvcc 13.1 and later: CUDA_ERROR_UNSUPPORTED_PTX_VERSION). The lent H200s run driver 580,
# and PyTorch 2.11 there brings exactly these cuBLAS / cudart / cuRAND / NVRTC libraries, which
# the binary then uses (scripts/gpu_check.py finds them). For a newer driver, set CUDA_WHEELS to
# newer wheels (unpinned names take the latest) and CUDARC_CUDA_VERSION to match (cudarc 0.19
# knows toolkits up to 13.4; the 13.5 wheels are compatible with 13040).
set -euo pipefail
cd "$(dirname "$0")/.."
VENV=${1:-.venv-cuda}
CUDA_WHEELS=${CUDA_WHEELS:-"nvidia-cuda-nvcc==13.0.88 nvidia-nvvm==13.0.88 nvidia-cuda-crt==13.0.88 nvidia-cuda-runtime==13.0.96 \
nvidia-cuda-cccl==13.0.85 nvidia-cublas==13.1.0.3 nvidia-cuda-nvrtc==13.0.88 nvidia-curand==10.4.0.35"}
if [ ! -x "$VENV/bin/pip" ]; then python3 -m venv "$VENV"; fi
# shellcheck disable=SC2086 # a list of requirements
"$VENV/bin/pip" install -q $CUDA_WHEELS
CUDA_ROOT=$("$VENV/bin/python" -c 'import nvidia, os; print(os.path.join(nvidia.__path__[0], "cu13"))')
export CUDA_ROOT PATH="$CUDA_ROOT/bin:$PATH"
export CUDARC_CUDA_VERSION=${CUDARC_CUDA_VERSION:-13000} CUDA_COMPUTE_CAP=${CUDA_COMPUTE_CAP:-90}

# The wheels ship only versioned libraries; the linker wants the plain names.
for lib in cublas cublasLt cudart curand nvrtc; do
    target=$(ls "$CUDA_ROOT/lib/lib$lib.so."* | head -n1)
    ln -sf "$(basename "$target")" "$CUDA_ROOT/lib/lib$lib.so"
done
# No driver on a build machine: link against a stub libcuda (cudarc loads the real driver at run
# time); if the link asks for driver symbols (cu*), the stub exports them and we link again.
export LIBRARY_PATH="$CUDA_ROOT/lib:${LIBRARY_PATH:-}" LD_LIBRARY_PATH="$CUDA_ROOT/lib:${LD_LIBRARY_PATH:-}"
if ! ldconfig -p | grep -q 'libcuda.so '; then
    stub=$(mktemp -d)
    echo 'int reasonembed_cuda_stub(void) { return 0; }' > "$stub/stub.c"
    gcc -shared -fPIC -Wl,-soname,libcuda.so.1 -o "$CUDA_ROOT/lib/libcuda.so" "$stub/stub.c"
fi
log=$(mktemp)
stub_src=$(mktemp)
echo 'int reasonembed_cuda_stub(void) { return 0; }' > "$stub_src"
# The linker reports a bounded number of missing symbols per run: add them and link again.
# Without the default `mkl` feature: the GPU binary needs no CPU BLAS, and MKL's static archives
# would make it too big to carry to the device (scripts/gpu-check-pack.sh, 64 MiB).
for attempt in 1 2 3 4 5 6 7 8 9 10; do
    if cargo build --release -p reasonembed-cli --no-default-features --features cuda 2> >(tee "$log" >&2); then
        break
    fi
    missing=$(grep -oE "undefined (symbol: |reference to .)cu[A-Za-z0-9_]+" "$log" | grep -oE "cu[A-Za-z0-9_]+$" | sort -u)
    if [ -z "$missing" ] || [ "$attempt" = 10 ]; then exit 1; fi
    for s in $missing; do echo "int $s(void) { return 999; }"; done >> "$stub_src"
    sort -u "$stub_src" -o "$stub_src"
    gcc -shared -fPIC -x c -Wl,-soname,libcuda.so.1 -o "$CUDA_ROOT/lib/libcuda.so" "$stub_src"
done
echo "built with CUDA; at run time it needs the NVIDIA driver (libcuda.so.1) and LD_LIBRARY_PATH=$CUDA_ROOT/lib"
