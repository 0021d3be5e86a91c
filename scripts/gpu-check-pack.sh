#!/usr/bin/env bash
# Packs the one folder the GPU check needs on the device (no network, no build there), for the
# device tool's `carry` (64 MiB in all, with the working tree that travels anyway):
#
#   reasonembed.xz      the CUDA build of reasonembed (scripts/build-cuda.sh), xz-compressed
#   minilm.tar.xz       all-MiniLM-L6-v2 with every word-embedding row zeroed except the tokens of
#                       the golden texts (the golden texts embed exactly as with the full model;
#                       the full 90 MB do not fit 64 MiB even compressed), stored as byte planes
#   fixtures/           the goldens and the tiny checkpoints the parity checks read
#   gpu-check.sh, gpu_check.py, gpu_check_peer.py, README.txt, manifest.json
#
# then prints every size and the total that will travel, and fails above 64 MiB.
#
#   scripts/gpu-check-pack.sh [--out .gpu-check] [--binary PATH | --cpu]
#
#   --binary PATH  pack this binary instead of building one (e.g. an earlier build-cuda.sh build)
#   --cpu          pack the CPU release build instead (to try the pack and its dry run here)
#
# Environment: that of scripts/build-cuda.sh (CUDA_WHEELS, CUDARC_CUDA_VERSION, CUDA_COMPUTE_CAP,
# CARGO_TARGET_DIR); MAX_PTX_ISA (default 9.0: the lent H200s' driver 580 loads PTX up to ISA 9.0,
# i.e. from nvcc 13.0 or older); REASONEMBED_CACHE (where MiniLM is, or is fetched to).
# The build takes 15-25 minutes cold on 2 cores (CARGO_BUILD_JOBS as usual); packing about 3.
set -euo pipefail
cd "$(dirname "$0")/.."
out=.gpu-check binary="" mode=cuda
while [ $# -gt 0 ]; do
    case "$1" in
        --out) out=$2; shift 2 ;;
        --binary) binary=$2; shift 2 ;;
        --cpu) mode=cpu; shift ;;
        -h | --help) sed -n '2,/^set -euo/p' "$0" | sed '$d; s/^# \{0,1\}//'; exit 0 ;;
        *) echo "unknown argument: $1 (see --help)" >&2; exit 2 ;;
    esac
done
target=${CARGO_TARGET_DIR:-target}
venv=.venv-cuda

if [ -z "$binary" ]; then
    if [ "$mode" = cuda ]; then
        scripts/build-cuda.sh "$venv"
    else
        cargo build --release -p reasonembed-cli
    fi
    binary=$target/release/reasonembed
fi
[ -x "$binary" ] || { echo "no binary at $binary" >&2; exit 1; }

# Run the binary here once (it must start, and it fetches MiniLM): a CUDA build needs the
# toolkit's libraries and a libcuda.so.1 (the link-time stub will do: `pull` never opens a GPU).
run_env=()
if readelf -d "$binary" | grep -q 'libcublas'; then
    mode=cuda
    cuda_root=$("$venv/bin/python" -c 'import nvidia, os; print(os.path.join(list(nvidia.__path__)[0], "cu13"))')
    stubdir=$(mktemp -d)
    trap 'rm -rf "$stubdir"' EXIT
    if [ -e "$cuda_root/lib/libcuda.so" ]; then ln -s "$cuda_root/lib/libcuda.so" "$stubdir/libcuda.so.1"; fi
    run_env=(env "LD_LIBRARY_PATH=$stubdir:$cuda_root/lib:${LD_LIBRARY_PATH:-}")
else
    mode=cpu
fi
version=$("${run_env[@]}" "$binary" --version)
minilm=$("${run_env[@]}" "$binary" pull minilm | tail -n1)
echo "packing $version ($mode) and MiniLM from $minilm into $out"

rm -rf "$out"
mkdir -p "$out"
python3 - "$binary" "$minilm" "$out" "$mode" "${MAX_PTX_ISA:-9.0}" <<'PY'
import datetime, hashlib, json, lzma, os, re, shutil, struct, subprocess, sys, tarfile
from pathlib import Path

sys.path.insert(0, "scripts")
import gpu_check  # noqa: E402  (slicing; the same code the check uses to read it back)

binary, minilm, out, mode, max_ptx = Path(sys.argv[1]), Path(sys.argv[2]), Path(sys.argv[3]), sys.argv[4], sys.argv[5]
MiB = 2**20

# The scripts and fixtures.
for name in ("gpu-check.sh", "gpu_check.py", "gpu_check_peer.py"):
    shutil.copy2(Path("scripts") / name, out / name)
golden_names = ["minilm"] + [f"tiny-{m}" for m in gpu_check.TINY_MODELS]
(out / "fixtures" / "goldens").mkdir(parents=True)
for name in golden_names:
    shutil.copy2(Path("fixtures/goldens") / f"{name}.json", out / "fixtures" / "goldens" / f"{name}.json")
for m in gpu_check.TINY_MODELS:
    shutil.copytree(Path("fixtures/models") / f"tiny-{m}", out / "fixtures" / "models" / f"tiny-{m}")

# The binary: the PTX it carries must be loadable by the device's driver.
data = binary.read_bytes()
ptx = sorted({f"{a.decode()}.{b.decode()}" for a, b in re.findall(rb"\n\.version (\d+)\.(\d+)\n", data)},
             key=lambda v: tuple(map(int, v.split("."))))
if mode == "cuda":
    if not ptx:
        sys.exit("no PTX found in the CUDA binary: is it a CUDA build?")
    if tuple(map(int, ptx[-1].split("."))) > tuple(map(int, max_ptx.split("."))):
        sys.exit(f"the binary carries PTX ISA {ptx[-1]}, newer than {max_ptx} (MAX_PTX_ISA) that the device's "
                 "driver loads: build with the CUDA 13.0 wheels (scripts/build-cuda.sh's default CUDA_WHEELS)")
print(f"binary: {len(data) / MiB:.1f} MiB, PTX ISA {', '.join(ptx) or 'none'}; compressing (xz -9e)…", flush=True)
xz = out / "reasonembed.xz"
if shutil.which("xz"):
    with open(xz, "wb") as f:
        subprocess.run(["xz", "-9e", "-T0", "-c", str(binary)], stdout=f, check=True)
else:
    xz.write_bytes(lzma.compress(data, preset=9 | lzma.PRESET_EXTREME))

# MiniLM: sliced to the golden texts' tokens, byte planes (the exponent bytes compress well
# apart from the mantissas), one tar.xz.
golden = json.loads(Path("fixtures/goldens/minilm.json").read_text())
staging = out / "minilm"
sliced = gpu_check.slice_minilm(minilm, staging, gpu_check.minilm_keep_ids(golden))
st = (staging / "model.safetensors").read_bytes()
(hlen,) = struct.unpack("<Q", st[:8])
head, body = st[: 8 + hlen], st[8 + hlen :]
assert len(body) % 4 == 0
(staging / "model.safetensors.planes").write_bytes(head + b"".join(body[i::4] for i in range(4)))
(staging / "model.safetensors").unlink()
gpu_check.unshuffle_safetensors(staging)  # round trip: the unpacked file must equal the sliced one
assert (staging / "model.safetensors").read_bytes() == st
(staging / "model.safetensors.planes").write_bytes(head + b"".join(body[i::4] for i in range(4)))
(staging / "model.safetensors").unlink()
print("MiniLM: compressing (xz -9e)…", flush=True)
with tarfile.open(out / "minilm.tar.xz", "w:xz", preset=9 | lzma.PRESET_EXTREME) as tar:
    tar.add(staging, arcname="minilm")
shutil.rmtree(staging)

git = lambda *a: subprocess.run(["git", *a], capture_output=True, text=True).stdout.strip()
(out / "README.txt").write_text(
    "The GPU check of reasonembed (scripts/gpu-check.sh in the repository; README 'GPU check').\n"
    "On the device, from the repository root, with this folder carried:\n\n"
    "    bash .gpu-check/gpu-check.sh --out \"$OUT\"\n\n"
    "Writes gpu-check.json, gpu-check.md and gpu-check.log into $OUT in at most --budget seconds (330).\n")
files = {str(p.relative_to(out)): p.stat().st_size for p in sorted(out.rglob("*")) if p.is_file()}
manifest = {
    "made": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
    "commit": git("rev-parse", "HEAD"), "dirty": bool(git("status", "--porcelain", "--untracked-files=no")),
    "build": ("scripts/build-cuda.sh: CUDA_WHEELS=" + os.environ.get("CUDA_WHEELS", "default (13.0)") + ", CUDARC_CUDA_VERSION="
              + os.environ.get("CUDARC_CUDA_VERSION", "default") + ", CUDA_COMPUTE_CAP=" + os.environ.get("CUDA_COMPUTE_CAP", "90"))
             if mode == "cuda" else "cargo build --release (CPU)",
    "mode": mode,
    "binary": {"bytes": len(data), "sha256": hashlib.sha256(data).hexdigest(), "ptx_isa": ptx},
    "minilm": sliced, "files": files,
}
(out / "manifest.json").write_text(json.dumps(manifest, indent=1) + "\n")

# What travels: the tracked files, untracked files git does not ignore, and this folder.
def sizes(args):
    names = subprocess.run(["git", "ls-files", "-z", *args], capture_output=True).stdout.split(b"\0")
    return sum(os.path.getsize(n) for n in names if n and os.path.isfile(n))
pack = sum(p.stat().st_size for p in out.rglob("*") if p.is_file())
tracked, untracked = sizes([]), sizes(["--others", "--exclude-standard"])
ignored = subprocess.run(["git", "check-ignore", "-q", str(out)]).returncode == 0
total = pack + tracked + (untracked if ignored else 0)
for name, size in sorted(files.items(), key=lambda kv: -kv[1])[:6]:
    print(f"  {size / MiB:8.2f} MiB  {out}/{name}")
print(f"pack {out}: {pack / MiB:.1f} MiB; tracked files {tracked / MiB:.1f} MiB; untracked, not ignored "
      f"{untracked / MiB:.1f} MiB; travels in all: {total / MiB:.1f} MiB of 64 MiB")
if not ignored:
    print(f"warning: {out} is not ignored by git: it travels as untracked files (counted above)")
if total > 64 * MiB:
    sys.exit("too big to carry: remove untracked files, or pack without MiniLM")
PY
echo "device run: the device tool's run with carry [\"$out\"] and command: bash $out/gpu-check.sh --out \"\$OUT\""
