//! An empty library: the build script does the work. It fetches Intel oneMKL
//! as the PyPI wheel `mkl-static` (version and sha256 pinned in `build.rs`)
//! into the user cache once, and links its static archives into every binary
//! that depends on this crate (candle-core's `mkl` feature does, through
//! `extern crate intel_mkl_src`). `MKLROOT` points it at an installed MKL
//! instead.
#![no_std]
