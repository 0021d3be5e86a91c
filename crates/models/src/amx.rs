//! A bf16 GEMM on Intel AMX tiles, for the bf16 dense layers of the packed
//! path: `C += A · Wᵀ` with `A` bf16 rows, `W` a layer's weight packed once
//! into tiles ([`AmxWeight`]) and `C` f32. MKL's bf16 GEMM reaches about half
//! of what the tiles can do on our shapes (and PyTorch's oneDNN about twice
//! MKL's rate), so the packed path runs its own kernel where the CPU has AMX.
//!
//! The kernel holds a 32 × 32 block of `C` in four tiles, and for each step
//! of 32 along the depth loads two 16-row tiles of `A` and two 16-column tiles
//! of `W` and issues four `TDPBF16PS`. Both operands are laid out tile by
//! tile in the order the kernel reads them ([`AmxWeight`] once per layer,
//! [`AmxRows`] per block of rows, while rounding them to bf16), and blocks go
//! column panel by column panel, so a panel of the weight (32 columns) stays
//! in the L2 cache for every row of `A`; meanwhile the kernel asks for the
//! next panel there (a large layer's weight comes from the L3 cache, and the
//! hardware prefetchers stop at each page). A depth past [`PASS_STEPS`] steps
//! goes in passes, so that the part of `A` a pass reads stays in the L2
//! cache too (shorter passes, to keep a panel in the L1 cache, were slower:
//! each pass loads and stores `C` again). Products sum in f32, the order
//! along the depth fixed, so results do not depend on the number of threads.
//!
//! f32 layers at [`crate::MatmulPrecision::High`] run here too, each value
//! split into two bf16 ones and the depth tripled
//! ([`AmxWeight::from_f32_split`], [`AmxRows::pack_split`]; the rows store
//! `[hi | lo]`, and the kernel reads their `hi` twice).
//!
//! x86_64 Linux only (elsewhere [`available`] is false): a process must ask
//! the kernel for the tile state before its first AMX instruction
//! ([`available`] does, once).

#[cfg(all(target_arch = "x86_64", target_os = "linux"))]
use std::arch::asm;

use rayon::prelude::*;

/// Rows and columns of a block of `C` (two tiles each way).
pub(crate) const BLOCK: usize = 32;
/// Depth of one step: 32 bf16 values, one 64-byte tile row.
const STEP: usize = 32;
/// Steps of the depth per pass over `C`: 3,072 values, so a block of 128
/// rows reads 768 KB of `A` per pass (a split f32 layer 3,072 wide is 9,216
/// deep; in one pass its rows fell out of the L2 cache, 30 % slower).
const PASS_STEPS: usize = 96;
/// Lines of the next weight panel that the kernel asks for per step: a
/// quarter of a step's 32, so that four blocks of rows (128) fetch it all.
const PREFETCH_LINES: usize = 8;

/// One 64-byte tile row.
#[derive(Clone, Copy)]
#[repr(C, align(64))]
struct Line([u16; 32]);

/// Whether this process may run AMX-BF16 instructions: the CPU has them, the
/// kernel has enabled their state, and it granted this process the tile data
/// (`arch_prctl(ARCH_REQ_XCOMP_PERM, XFEATURE_XTILEDATA)`). Decided once.
/// `REASONEMBED_AMX=off` says no, so that the MKL path that CPUs without AMX
/// take can be run (and tested) on one with it.
pub(crate) fn available() -> bool {
    static AVAILABLE: std::sync::OnceLock<bool> = std::sync::OnceLock::new();
    #[cfg(all(target_arch = "x86_64", target_os = "linux"))]
    return *AVAILABLE.get_or_init(|| {
        std::env::var_os("REASONEMBED_AMX").is_none_or(|v| v != "off") && cpu_has_amx_bf16() && request_tile_data()
    });
    #[cfg(not(all(target_arch = "x86_64", target_os = "linux")))]
    false
}

/// CPUID (AMX-BF16 and AMX-TILE) and XCR0 (tile state enabled by the OS).
#[cfg(all(target_arch = "x86_64", target_os = "linux"))]
fn cpu_has_amx_bf16() -> bool {
    use std::arch::x86_64::{__cpuid_count, _xgetbv};
    if !std::arch::is_x86_feature_detected!("xsave") {
        return false;
    }
    // SAFETY: CPUID is always available on x86_64, and leaf 7 is read only
    // when the maximum leaf reaches it; XGETBV is available once OSXSAVE is
    // set, which `xsave` detection checks.
    unsafe {
        if __cpuid_count(0, 0).eax < 7 {
            return false;
        }
        let tile_and_bf16 = (1 << 24) | (1 << 22);
        let os_state = 0b11 << 17;
        __cpuid_count(7, 0).edx & tile_and_bf16 == tile_and_bf16 && _xgetbv(0) & os_state == os_state
    }
}

/// Asks Linux for the AMX tile data state for this process.
#[cfg(all(target_arch = "x86_64", target_os = "linux"))]
fn request_tile_data() -> bool {
    const ARCH_PRCTL: i64 = 158;
    const ARCH_REQ_XCOMP_PERM: i64 = 0x1023;
    const XFEATURE_XTILEDATA: i64 = 18;
    let ret: i64;
    // SAFETY: the arch_prctl system call with these arguments only changes
    // this process's permitted XSAVE features; rcx and r11 are clobbered by
    // `syscall`.
    unsafe {
        asm!(
            "syscall",
            inlateout("rax") ARCH_PRCTL => ret,
            in("rdi") ARCH_REQ_XCOMP_PERM,
            in("rsi") XFEATURE_XTILEDATA,
            lateout("rcx") _,
            lateout("r11") _,
            options(nostack),
        )
    };
    ret == 0
}

/// A weight `W` (`n × k`, bf16) in tiles: panel by panel of 32 output
/// columns, step by step of 32 along the depth, two tiles of 16 columns
/// each, each tile 16 rows of `(W[j][2r], W[j][2r+1])` pairs for its
/// columns `j` (the "VNNI" layout `TDPBF16PS` takes). Zero past `n` and `k`.
#[derive(Debug)]
pub(crate) struct AmxWeight {
    lines: Vec<Line>,
    n: usize,
    k: usize,
}

impl std::fmt::Debug for Line {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Line")
    }
}

impl AmxWeight {
    /// `W` (`n × k`) from bf16 bits, row-major: a layer's weight.
    pub fn from_bf16(bits: &[u16], n: usize, k: usize) -> Self {
        assert_eq!(bits.len(), n * k, "AmxWeight: the weight is not n × k");
        let mut w = Self::zeroed(n, k);
        pack_weight_rows(&mut w.lines, n, k, |col, depth, out| {
            out.copy_from_slice(&bits[col * k + depth..][..out.len()])
        });
        w
    }

    /// `W` (`n × k`) from f32 rows `ld` apart in `x` (`W[j][i] = x[j·ld + i]`),
    /// rounded to bf16: attention's keys.
    pub fn from_f32_rows(x: &[f32], n: usize, k: usize, ld: usize) -> Self {
        let mut w = Self::zeroed(n, k);
        pack_f32_rows(&mut w.lines, x, n, k, ld);
        w
    }

    /// `W = Xᵀ` (`n × k`) from f32 rows `ld` apart in `x` (`W[j][i] =
    /// x[i·ld + j]`), rounded to bf16: attention's values. With `rest`, what
    /// that rounding leaves, rounded (the `lo` of [`split_bf16`]).
    pub fn from_f32_columns(x: &[f32], n: usize, k: usize, ld: usize, rest: bool) -> Self {
        let mut w = Self::zeroed(n, k);
        pack_f32_columns(&mut w.lines, x, n, k, ld, rest);
        w
    }

    /// `W` (`n × k`, f32 rows) for f32 accuracy from bf16 products: each
    /// row as `[hi | hi | lo]` ([`split_bf16`]), each part padded to whole
    /// steps ([`split_depth`]), to meet rows packed by
    /// [`AmxRows::pack_split`] (`[hi | lo | hi]`), so that one product sums
    /// `hi·hi + lo·hi + hi·lo`: all of `a·w` but `lo·lo` and the rounding of
    /// each `lo`, about 2⁻¹⁷ of it. Panel by panel on rayon's threads,
    /// straight from `x` (a 0.6B model's split weights are gigabytes,
    /// packed on first use).
    pub fn from_f32_split(x: &[f32], n: usize, k: usize) -> Self {
        assert_eq!(x.len(), n * k, "AmxWeight: the weight is not n × k");
        let mut w = Self::zeroed(n, split_depth(k));
        if k > 0 {
            let panel_lines = split_depth(k) / STEP * 2 * 16;
            w.lines
                .par_chunks_mut(panel_lines)
                .zip(x.par_chunks(BLOCK * k))
                .for_each(|(lines, rows)| pack_split_rows(lines, rows, rows.len() / k, k, k));
        }
        w
    }

    /// [`AmxWeight::from_f32_split`] of rows `ld` apart in `x`, on this
    /// thread: attention's keys.
    pub fn from_f32_split_rows(x: &[f32], n: usize, k: usize, ld: usize) -> Self {
        let mut w = Self::zeroed(n, split_depth(k));
        pack_split_rows(&mut w.lines, x, n, k, ld);
        w
    }

    /// Zeroed tiles, from zeroed pages (no pass of its own writes them: their
    /// first writes, in the packers, fault them in).
    fn zeroed(n: usize, k: usize) -> Self {
        let len = n.div_ceil(BLOCK) * k.div_ceil(STEP) * 2 * 16;
        let layout = std::alloc::Layout::array::<Line>(len).expect("AmxWeight: tiles too large");
        let lines = if len == 0 {
            Vec::new()
        } else {
            // SAFETY: the layout is `len` lines, not empty; a line of zeros
            // is a valid `Line`; the vector owns the allocation, made with
            // the global allocator and this very layout.
            unsafe {
                let ptr = std::alloc::alloc_zeroed(layout).cast::<Line>();
                if ptr.is_null() {
                    std::alloc::handle_alloc_error(layout);
                }
                Vec::from_raw_parts(ptr, len, len)
            }
        };
        Self { lines, n, k }
    }
}

/// `n` rows of `k` values, `ld` apart in `x`, into zeroed tiles as
/// [`AmxWeight::from_f32_split`] lays them out: each row as
/// `[hi | hi | lo]`, each part padded to whole steps.
#[multiversion::multiversion(targets("x86_64+avx512f+avx512bw+avx512vl+fma", "x86_64+avx2+fma"))]
fn pack_split_rows(lines: &mut [Line], x: &[f32], n: usize, k: usize, ld: usize) {
    let part = k.next_multiple_of(STEP);
    pack_weight_rows(lines, n, split_depth(k), |col, depth, bits| {
        // A step lies in one part: the values of `depth % part` onwards.
        let (which, at) = (depth / part, depth % part);
        let values = &x[col * ld..][at.min(k)..(at + bits.len()).min(k)];
        for (b, &v) in bits.iter_mut().zip(values) {
            let (hi, lo) = split_bf16(v);
            *b = if which == 2 { lo } else { hi };
        }
    });
}

/// [`AmxWeight::from_f32_rows`] into zeroed tiles.
#[multiversion::multiversion(targets("x86_64+avx512f+avx512bw+avx512vl+fma", "x86_64+avx2+fma"))]
fn pack_f32_rows(lines: &mut [Line], x: &[f32], n: usize, k: usize, ld: usize) {
    pack_weight_rows(lines, n, k, |col, depth, bits| {
        if depth == 0 {
            prefetch(x, (col + PREFETCH_ROWS) * ld, k);
        }
        let values = &x[col * ld + depth..][..bits.len()];
        bits.iter_mut().zip(values).for_each(|(b, &v)| *b = bf16_bits(v));
    });
}

/// Rows of `W` into zeroed tiles, 16 rows (one tile's columns) and one step
/// at a time: `row(col, depth, bits)` fills `bits` with `W[col][depth..]`
/// (one step, or the rest of the depth); the block of value pairs is
/// transposed in registers, then written line by line.
#[inline(always)]
fn pack_weight_rows(lines: &mut [Line], n: usize, k: usize, row: impl Fn(usize, usize, &mut [u16])) {
    let steps = k.div_ceil(STEP);
    for col0 in (0..n).step_by(16) {
        let (panel, half) = (col0 / BLOCK, col0 % BLOCK / 16);
        for step in 0..steps {
            let depth = step * STEP;
            let len = STEP.min(k - depth);
            // pairs[j][r]: the bits of W[col0 + j][depth + 2r] and the next value.
            let mut pairs = [[0u32; 16]; 16];
            for (j, pair_row) in pairs.iter_mut().enumerate().take(n - col0) {
                let mut bits = [0u16; STEP];
                row(col0 + j, depth, &mut bits[..len]);
                for (r, p) in pair_row.iter_mut().enumerate() {
                    *p = u32::from(bits[2 * r]) | u32::from(bits[2 * r + 1]) << 16;
                }
            }
            let tile = ((panel * steps + step) * 2 + half) * 16;
            for (r, line) in lines[tile..tile + 16].iter_mut().enumerate() {
                for (j, slot) in line.0.chunks_exact_mut(2).enumerate() {
                    let p = pairs[j][r];
                    (slot[0], slot[1]) = (p as u16, (p >> 16) as u16);
                }
            }
        }
    }
}

/// [`AmxWeight::from_f32_columns`] into zeroed tiles: two rows of `X` (two
/// steps of depth) interleaved into one line per 16 columns.
#[multiversion::multiversion(targets("x86_64+avx512f+avx512bw+avx512vl+fma", "x86_64+avx2+fma"))]
fn pack_f32_columns(lines: &mut [Line], x: &[f32], n: usize, k: usize, ld: usize, rest: bool) {
    let round = |v: f32| if rest { split_bf16(v).1 } else { bf16_bits(v) };
    let steps = k.div_ceil(STEP);
    for depth in (0..k).step_by(2) {
        for ahead in [depth + PREFETCH_ROWS, depth + PREFETCH_ROWS + 1] {
            prefetch(x, ahead * ld, n);
        }
        let (step, r) = (depth / STEP, depth % STEP / 2);
        let first = &x[depth * ld..][..n];
        let second = (depth + 1 < k).then(|| &x[(depth + 1) * ld..][..n]);
        for cols in 0..n.div_ceil(16) {
            let (at, len) = (cols * 16, 16.min(n - cols * 16));
            let (mut a, mut b) = ([0u16; 16], [0u16; 16]);
            a.iter_mut().zip(&first[at..at + len]).for_each(|(d, &v)| *d = round(v));
            if let Some(second) = second {
                b.iter_mut()
                    .zip(&second[at..at + len])
                    .for_each(|(d, &v)| *d = round(v));
            }
            let line = &mut lines[((cols / 2 * steps + step) * 2 + cols % 2) * 16 + r].0;
            for (slot, (a, b)) in line.chunks_exact_mut(2).zip(a.iter().zip(&b)) {
                (slot[0], slot[1]) = (*a, *b);
            }
        }
    }
}

/// The tile configuration: palette 1, tiles 0–7 of 16 rows × 64 bytes.
#[cfg(all(target_arch = "x86_64", target_os = "linux"))]
#[repr(C, align(64))]
struct TileConfig {
    palette: u8,
    start_row: u8,
    reserved: [u8; 14],
    colsb: [u16; 16],
    rows: [u8; 16],
}

#[cfg(all(target_arch = "x86_64", target_os = "linux"))]
const CONFIG: TileConfig = TileConfig {
    palette: 1,
    start_row: 0,
    reserved: [0; 14],
    colsb: [64, 64, 64, 64, 64, 64, 64, 64, 0, 0, 0, 0, 0, 0, 0, 0],
    rows: [16, 16, 16, 16, 16, 16, 16, 16, 0, 0, 0, 0, 0, 0, 0, 0],
};

/// Rows of `A` (f32 in, bf16 out) in tiles: chunk by chunk of 32 rows, step
/// by step of 32 along the depth, two tiles of 16 rows each; zero past the
/// last row and past the depth. Kept and refilled by [`AmxRows::pack`].
#[derive(Debug, Default)]
pub(crate) struct AmxRows {
    lines: Vec<Line>,
    m: usize,
    /// The depth stored per row.
    k: usize,
    /// Split rows ([`AmxRows::pack_split`]): `[hi | lo]` stored, read as
    /// `[hi | lo | hi]`.
    split: bool,
}

impl AmxRows {
    /// Packs `m` rows of `k` values, `lda` apart in `x`, rounded to bf16
    /// ([`bf16_bits`]).
    pub fn pack(&mut self, x: &[f32], m: usize, k: usize, lda: usize) {
        self.reset(m, k);
        pack_rows(&mut self.lines, x, m, k, lda);
    }

    /// Packs `m` rows of `k` bf16 values that `row(r, bits)` writes into
    /// `bits` (`k` long): for a producer that rounds as it goes, so that its
    /// f32 output is never stored.
    pub fn pack_bits(&mut self, m: usize, k: usize, mut row: impl FnMut(usize, &mut [u16])) {
        self.reset(m, k);
        let steps = k.div_ceil(STEP);
        let mut bits = vec![0u16; k];
        for r in 0..m {
            row(r, &mut bits);
            for (step, values) in bits.chunks(STEP).enumerate() {
                let dest = &mut self.lines[line_of(r, step, steps)].0;
                // A whole step as one array: a copy of a slice's length would
                // be a call to `memmove` per 64 bytes.
                match <&[u16; STEP]>::try_from(values) {
                    Ok(step) => *dest = *step,
                    Err(_) => {
                        dest[..values.len()].copy_from_slice(values);
                        dest[values.len()..].fill(0);
                    }
                }
            }
        }
    }

    /// Packs `m` rows of `k` f32 values, `lda` apart in `x`, each as
    /// `[hi | lo]` ([`split_bf16`]), each part padded to whole steps; the
    /// kernel reads them as `[hi | lo | hi]`, rows [`split_depth`] deep for
    /// a weight from [`AmxWeight::from_f32_split`], so `hi` is stored once.
    pub fn pack_split(&mut self, x: &[f32], m: usize, k: usize, lda: usize) {
        self.reset_split(m, k);
        for r0 in (0..m).step_by(BLOCK) {
            split_into_lines(&mut self.lines, &x[r0 * lda..], lda, k, r0, BLOCK.min(m - r0));
        }
    }

    /// [`AmxRows::pack_split`] of `m` rows of `k` values that `row(r,
    /// values)` writes into `values` (`k` long): for a producer such as a
    /// prologue, whose f32 output then stays in the L2 cache, a block of
    /// rows at a time.
    pub fn pack_split_with(&mut self, m: usize, k: usize, mut row: impl FnMut(usize, &mut [f32])) {
        self.reset_split(m, k);
        let mut values = vec![0f32; BLOCK * k];
        for r0 in (0..m).step_by(BLOCK) {
            let rows = BLOCK.min(m - r0);
            for (i, out) in values.chunks_mut(k.max(1)).take(rows).enumerate() {
                row(r0 + i, out);
            }
            split_into_lines(&mut self.lines, &values, k, k, r0, rows);
        }
    }

    /// Tiles for `m` rows of `k` values. The packers write every line of a
    /// row (a last, partial step padded with zeros); here only the lines of
    /// the rows past `m` are zeroed, so that no line is written twice (the
    /// tiles of a block are megabytes, and each write a trip to memory).
    fn reset(&mut self, m: usize, k: usize) {
        let (chunks, steps) = (m.div_ceil(BLOCK), k.div_ceil(STEP));
        // Grown, never shrunk: the lines past this block's are never read,
        // and a shrunk buffer has the next, deeper block zero megabytes of
        // lines that its packer then overwrites.
        let len = chunks * steps * 2 * 16;
        if self.lines.len() < len {
            self.lines.resize(len, Line([0; 32]));
        }
        for r in m..chunks * BLOCK {
            for step in 0..steps {
                self.lines[line_of(r, step, steps)] = Line([0; 32]);
            }
        }
        (self.m, self.k, self.split) = (m, k, false);
    }

    /// [`AmxRows::reset`] for split rows of `k` values: `[hi | lo]`.
    fn reset_split(&mut self, m: usize, k: usize) {
        self.reset(m, 2 * k.next_multiple_of(STEP));
        self.split = true;
    }

    /// Steps the kernel reads per row, and after how many it reads the
    /// stored steps again from the start (split rows: `[hi | lo]`, then
    /// `hi` again).
    fn steps(&self) -> (usize, usize) {
        let stored = self.k.div_ceil(STEP);
        (if self.split { stored / 2 * 3 } else { stored }, stored)
    }
}

/// The line of `A`'s tiles that holds row `r`'s values of `step`, with
/// `steps` steps per row.
#[inline(always)]
fn line_of(r: usize, step: usize, steps: usize) -> usize {
    let (chunk, half, line) = (r / BLOCK, r % BLOCK / 16, r % 16);
    ((chunk * steps + step) * 2 + half) * 16 + line
}

/// `v` as the sum of two bf16 values, their bits `(hi, lo)`: `hi` is `v`
/// rounded ([`bf16_bits`]), `lo` what is left, rounded; together they hold
/// about 16 of `v`'s 24 significant bits.
#[inline(always)]
pub(crate) fn split_bf16(v: f32) -> (u16, u16) {
    let hi = bf16_bits(v);
    (hi, bf16_bits(v - f32::from_bits(u32::from(hi) << 16)))
}

/// The depth of a split product of depth `k` ([`AmxRows::pack_split`]):
/// three parts, each padded to whole steps so that every part starts a step.
pub(crate) fn split_depth(k: usize) -> usize {
    3 * k.next_multiple_of(STEP)
}

/// Rows `r0..r0 + rows` (at most a block's, within one block; `k` values
/// each, `lda` apart in `x`) split ([`split_bf16`]) straight into their
/// lines of `A`'s tiles as `[hi | lo]`. Step by step, so that each part's
/// lines are written in the order they lie in memory (rows written one by
/// one touched lines 2 KB apart and waited on each write's fetch).
#[multiversion::multiversion(targets("x86_64+avx512f+avx512bw+avx512vl+fma", "x86_64+avx2+fma"))]
fn split_into_lines(lines: &mut [Line], x: &[f32], lda: usize, k: usize, r0: usize, rows: usize) {
    let part = k.div_ceil(STEP);
    for step in 0..part {
        let depth = step * STEP;
        let len = STEP.min(k - depth);
        for i in 0..rows {
            let (mut hi, mut lo) = ([0u16; STEP], [0u16; STEP]);
            for ((h, l), &v) in hi.iter_mut().zip(&mut lo).zip(&x[i * lda + depth..][..len]) {
                (*h, *l) = split_bf16(v);
            }
            let r = r0 + i;
            lines[line_of(r, step, 2 * part)].0 = hi;
            lines[line_of(r, part + step, 2 * part)].0 = lo;
        }
    }
}

/// The rows of [`AmxRows::pack`] into their tiles.
#[multiversion::multiversion(targets("x86_64+avx512f+avx512bw+avx512vl+fma", "x86_64+avx2+fma"))]
fn pack_rows(lines: &mut [Line], x: &[f32], m: usize, k: usize, lda: usize) {
    let steps = k.div_ceil(STEP);
    for (r, row) in x.chunks(lda).take(m).enumerate() {
        prefetch(x, (r + PREFETCH_ROWS) * lda, k);
        for (step, values) in row[..k].chunks(STEP).enumerate() {
            let dest = &mut lines[line_of(r, step, steps)].0;
            dest.iter_mut().zip(values).for_each(|(d, &v)| *d = bf16_bits(v));
            dest[values.len()..].fill(0);
        }
    }
}

/// Rows ahead that a packer asks for ([`prefetch`]).
const PREFETCH_ROWS: usize = 4;

/// Asks for `x[at..at + len]` (what exists of it) in the L1 cache ahead of
/// use. Rows `lda` apart lie in different pages, where the hardware
/// prefetchers stop: each row read cold would wait a full L3 trip.
#[inline(always)]
fn prefetch(x: &[f32], at: usize, len: usize) {
    #[cfg(target_arch = "x86_64")]
    for i in (at..x.len().min(at.saturating_add(len))).step_by(16) {
        // SAFETY: `i` is inside `x`; a prefetch only hints.
        unsafe { std::arch::x86_64::_mm_prefetch::<{ std::arch::x86_64::_MM_HINT_T0 }>(x.as_ptr().add(i).cast()) }
    }
}

/// `v` rounded to bf16 (to nearest, ties to even), as its bits; NaN stays
/// NaN. The rounding of every bf16 product of the packed path.
#[inline(always)]
pub(crate) fn bf16_bits(v: f32) -> u16 {
    let b = v.to_bits();
    let rounded = (b.wrapping_add(0x7fff + ((b >> 16) & 1)) >> 16) as u16;
    if v.is_nan() { (b >> 16) as u16 | 0x40 } else { rounded }
}

/// `C = A · Wᵀ`, or `C += A · Wᵀ` with `accumulate`, for the first `n`
/// columns of `W` (up to its width rounded up to 32: the columns past its
/// width give 0) and the first `a`'s depth of `W`'s depth: `c` holds `a`'s
/// rows `ldc` apart, the first `n` values of each the output.
///
/// # Panics
/// If AMX is not [`available`], `A` is deeper than `W`, `n` too wide, or
/// `c` too short.
pub(crate) fn gemm(a: &AmxRows, w: &AmxWeight, c: &mut [f32], ldc: usize, n: usize, accumulate: bool) {
    assert!(available(), "amx::gemm: AMX is not available");
    let m = a.m;
    // Steps read per row of `A`, and stored (split rows read `hi` twice).
    let (steps, stored) = a.steps();
    let a_depth = if a.split { steps * STEP } else { a.k };
    assert!(a_depth <= w.k, "amx::gemm: A is deeper than W");
    assert!(
        n <= w.n.next_multiple_of(BLOCK),
        "amx::gemm: W has fewer than {n} columns"
    );
    assert!(
        ldc >= n && (m == 0 || c.len() >= (m - 1) * ldc + n),
        "amx::gemm: C is too short"
    );
    let panel_steps = w.k.div_ceil(STEP);
    if m == 0 || n == 0 || steps == 0 {
        if !accumulate {
            c.chunks_mut(ldc).take(m).for_each(|row| row[..n].fill(0.0));
        }
        return;
    }
    #[cfg(not(all(target_arch = "x86_64", target_os = "linux")))]
    unreachable!("AMX is available only on x86_64 Linux");
    #[cfg(all(target_arch = "x86_64", target_os = "linux"))]
    let mut edge = [0f32; BLOCK * BLOCK];
    #[cfg(all(target_arch = "x86_64", target_os = "linux"))]
    // SAFETY: `available` holds; the configuration is a valid palette-1
    // one; the tiles read lie inside `a` and `w` (both padded to whole
    // blocks and steps; split rows read their first half again after their
    // stored steps, never past them), and the blocks written lie inside `c`
    // (checked above) or `edge`.
    unsafe {
        asm!("ldtilecfg [{}]", in(reg) &CONFIG, options(nostack, readonly));
        let panels = n.div_ceil(BLOCK);
        for first in (0..steps).step_by(PASS_STEPS) {
            let (depth, accumulate) = (PASS_STEPS.min(steps - first), accumulate || first > 0);
            for p in 0..panels {
                let (col, cols) = (p * BLOCK, BLOCK.min(n - p * BLOCK));
                let w_tiles = w.lines.as_ptr().add((p * panel_steps + first) * 32);
                // The next panel's tiles of this pass (the last panel has none).
                let next = if p + 1 < panels {
                    w_tiles.add(panel_steps * 32)
                } else {
                    w_tiles
                };
                for r0 in (0..m).step_by(BLOCK) {
                    let rows = BLOCK.min(m - r0);
                    // Split rows read their stored steps again after them.
                    let a_start = a.lines.as_ptr().add(r0 / BLOCK * stored * 32);
                    let (a_tiles, rewind) = if first < stored {
                        (a_start.add(first * 32), stored - first)
                    } else {
                        (a_start.add((first - stored) * 32), usize::MAX)
                    };
                    // Four blocks of rows ask for a quarter of them each.
                    let ahead = next.add(r0 / BLOCK % 4 * depth * PREFETCH_LINES);
                    if rows == BLOCK && cols == BLOCK {
                        let c = c.as_mut_ptr().add(r0 * ldc + col);
                        block((a_tiles, a_start, rewind), w_tiles, c, ldc, depth, accumulate, ahead);
                    } else {
                        for r in 0..rows {
                            let start = &c[(r0 + r) * ldc + col..][..cols];
                            let edge = &mut edge[r * BLOCK..][..cols];
                            if accumulate {
                                edge.copy_from_slice(start)
                            } else {
                                edge.fill(0.0)
                            }
                        }
                        block(
                            (a_tiles, a_start, rewind),
                            w_tiles,
                            edge.as_mut_ptr(),
                            BLOCK,
                            depth,
                            true,
                            ahead,
                        );
                        for r in 0..rows {
                            c[(r0 + r) * ldc + col..][..cols].copy_from_slice(&edge[r * BLOCK..][..cols]);
                        }
                    }
                }
            }
        }
        asm!("tilerelease", options(nostack, nomem));
    }
}

/// One 32 × 32 block: `C += A · Wᵀ` (`C = …` unless `accumulate`) over
/// `steps` steps of the depth, with `W`'s tiles for those steps in order
/// from `w`, and `A`'s from `a = (at, start, rewind)`: from `at`, and after
/// `rewind` steps from `start` again; meanwhile asks for [`PREFETCH_LINES`]
/// lines a step from `ahead` in the L2 cache (`prefetcht1`).
///
/// # Safety
/// The tile configuration is loaded; `w` holds `steps` pairs of tiles, and
/// `at` and `start` the pairs of tiles of `A` read from them; `c` 32 rows
/// `ldc` apart of 32 values. (`ahead` is only prefetched, which cannot
/// fault.)
#[cfg(all(target_arch = "x86_64", target_os = "linux"))]
#[inline(always)]
unsafe fn block(
    (a, a_start, rewind): (*const Line, *const Line, usize),
    w: *const Line,
    c: *mut f32,
    ldc: usize,
    steps: usize,
    accumulate: bool,
    ahead: *const Line,
) {
    // SAFETY: as the caller guarantees; tmm0–3 hold C, tmm4–5 A, tmm6–7 W.
    unsafe {
        if accumulate {
            asm!(
                "tileloadd tmm0, [{c} + {ldc}*1]",
                "tileloadd tmm1, [{c} + {ldc}*1 + 64]",
                "tileloadd tmm2, [{cl} + {ldc}*1]",
                "tileloadd tmm3, [{cl} + {ldc}*1 + 64]",
                c = in(reg) c,
                cl = in(reg) c.add(16 * ldc),
                ldc = in(reg) ldc * 4,
                options(nostack, readonly),
            );
        } else {
            asm!(
                "tilezero tmm0",
                "tilezero tmm1",
                "tilezero tmm2",
                "tilezero tmm3",
                options(nostack, nomem)
            );
        }
        asm!(
            "2:",
            "tileloadd tmm4, [{a} + {s64}*1]",
            "tileloadd tmm6, [{w} + {s64}*1]",
            "prefetcht1 [{ahead}]",
            "prefetcht1 [{ahead} + 64]",
            "tdpbf16ps tmm0, tmm4, tmm6",
            "tileloadd tmm7, [{w} + {s64}*1 + 1024]",
            "prefetcht1 [{ahead} + 128]",
            "prefetcht1 [{ahead} + 192]",
            "tdpbf16ps tmm1, tmm4, tmm7",
            "tileloadd tmm5, [{a} + {s64}*1 + 1024]",
            "prefetcht1 [{ahead} + 256]",
            "prefetcht1 [{ahead} + 320]",
            "tdpbf16ps tmm2, tmm5, tmm6",
            "prefetcht1 [{ahead} + 384]",
            "prefetcht1 [{ahead} + 448]",
            "tdpbf16ps tmm3, tmm5, tmm7",
            "add {a}, 2048",
            "add {w}, 2048",
            "add {ahead}, 512",
            "dec {rewind}",
            "jnz 3f",
            "mov {a}, {a_start}",
            "3:",
            "dec {steps}",
            "jnz 2b",
            "tilestored [{c} + {ldc}*1], tmm0",
            "tilestored [{c} + {ldc}*1 + 64], tmm1",
            "tilestored [{cl} + {ldc}*1], tmm2",
            "tilestored [{cl} + {ldc}*1 + 64], tmm3",
            c = in(reg) c,
            cl = in(reg) c.add(16 * ldc),
            ldc = in(reg) ldc * 4,
            a = inout(reg) a => _,
            a_start = in(reg) a_start,
            rewind = inout(reg) rewind => _,
            w = inout(reg) w => _,
            ahead = inout(reg) ahead => _,
            s64 = in(reg) 64usize,
            steps = inout(reg) steps => _,
            options(nostack),
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Deterministic values in [-1, 1) that bf16 holds exactly (8 bits).
    fn value(i: usize) -> f32 {
        ((i * 7919 + 13) % 256) as f32 / 128.0 - 1.0
    }

    /// A bf16 value plus one below its last bit: 16 significant bits, so
    /// that a split's `lo` is not 0.
    fn value16(i: usize) -> f32 {
        value(i) + value(i * 11 + 3) / 256.0
    }

    /// `C = start + A · Wᵀ` computed plainly, over `depth` values of each.
    fn reference(a: &[f32], w: &[f32], m: usize, n: usize, k: usize, depth: usize, start: &[f32]) -> Vec<f32> {
        let mut c = start.to_vec();
        for r in 0..m {
            for j in 0..n {
                c[r * n + j] += (0..depth).map(|i| a[r * k + i] * w[j * k + i]).sum::<f32>();
            }
        }
        c
    }

    #[test]
    fn products_match_a_plain_gemm_on_every_edge() {
        if !available() {
            eprintln!("no AMX on this CPU: the kernel is not used here");
            return;
        }
        let mut rows = AmxRows::default();
        // Shapes off the 32 × 32 blocks and the steps of 32, and whole ones.
        for (m, n, k) in [(1, 1, 1), (37, 45, 70), (64, 96, 128), (33, 32, 31), (5, 200, 300)] {
            let a: Vec<f32> = (0..m * k).map(value).collect();
            let w: Vec<f32> = (0..n * k).map(|i| value(i * 3 + 1)).collect();
            let tiles = AmxWeight::from_f32_rows(&w, n, k, k);
            rows.pack(&a, m, k, k);
            let start: Vec<f32> = (0..m * n).map(|i| value(i * 5) * 4.0).collect();
            for accumulate in [true, false] {
                let mut c = if accumulate {
                    start.clone()
                } else {
                    vec![f32::NAN; m * n]
                };
                gemm(&rows, &tiles, &mut c, n, n, accumulate);
                let zero = vec![0.0; m * n];
                let want = reference(&a, &w, m, n, k, k, if accumulate { &start } else { &zero });
                // Exact values whose products and sums f32 holds exactly.
                assert_eq!(c, want, "{m}×{n}×{k}, accumulate {accumulate}");
            }
        }
    }

    /// Attention multiplies by the first keys only (causal blocks) and writes
    /// whole tiles of scores: a shallower `A`, and columns up to the next 32.
    #[test]
    fn a_shallower_a_and_padded_columns() {
        if !available() {
            return;
        }
        let (m, n, k, depth) = (20, 40, 100, 45);
        let a: Vec<f32> = (0..m * depth).map(value).collect();
        let w: Vec<f32> = (0..n * k).map(|i| value(i + 7)).collect();
        let tiles = AmxWeight::from_f32_rows(&w, n, k, k);
        let mut rows = AmxRows::default();
        rows.pack(&a, m, depth, depth);
        let width = 64; // 40 columns rounded up to 32
        let mut c = vec![f32::NAN; m * width];
        gemm(&rows, &tiles, &mut c, width, width, false);
        for r in 0..m {
            for j in 0..width {
                let want: f32 = if j < n {
                    (0..depth).map(|i| a[r * depth + i] * w[j * k + i]).sum()
                } else {
                    0.0
                };
                assert_eq!(c[r * width + j], want, "row {r}, column {j}");
            }
        }
    }

    /// Split rows and weights give all of `a·w` where the split is exact
    /// (`a = hi + lo`, and `w` of 8 significant bits so its `lo·lo` term is
    /// 0): errors only from summing in f32, on shapes off the blocks, steps
    /// and passes, with rows from `x` and from a producer, and tiles reused
    /// from a deeper block (and then by plain rows). A product left out or
    /// misplaced would err by 2⁻⁹ of it.
    #[test]
    fn split_products_are_exact_where_the_split_is() {
        if !available() {
            return;
        }
        let mut rows = AmxRows::default();
        // The middle shape's split depth (3,360) takes two passes.
        let shapes = [(1, 1, 1), (37, 45, 70), (33, 96, 128), (5, 40, 300), (40, 33, 1100)];
        for (pass, &(m, n, k)) in shapes.iter().chain(shapes.iter().rev()).enumerate() {
            let a: Vec<f32> = (0..m * k).map(value16).collect();
            let w: Vec<f32> = (0..n * k).map(|i| value(i * 3 + 1)).collect();
            if pass < shapes.len() {
                rows.pack_split(&a, m, k, k);
            } else {
                rows.pack_split_with(m, k, |r, values| values.copy_from_slice(&a[r * k..][..k]));
            }
            let weight = AmxWeight::from_f32_split(&w, n, k);
            let mut c = vec![f32::NAN; m * n];
            gemm(&rows, &weight, &mut c, n, n, false);
            for (i, &got) in c.iter().enumerate() {
                let (r, j) = (i / n, i % n);
                let (exact, size) = (0..k).fold((0f64, 0f64), |(s, t), d| {
                    let p = f64::from(a[r * k + d]) * f64::from(w[j * k + d]);
                    (s + p, t + p.abs())
                });
                let error = (f64::from(got) - exact).abs();
                assert!(error <= 1e-6 * size, "{m}×{n}×{k}, {i}: {got} vs {exact}");
            }
        }
        // Plain rows packed where split ones were are read plainly.
        let (m, n, k) = (37, 45, 70);
        let a: Vec<f32> = (0..m * k).map(value).collect();
        let w: Vec<f32> = (0..n * k).map(|i| value(i * 3 + 1)).collect();
        rows.pack(&a, m, k, k);
        let mut c = vec![f32::NAN; m * n];
        gemm(&rows, &AmxWeight::from_f32_rows(&w, n, k, k), &mut c, n, n, false);
        assert_eq!(c, reference(&a, &w, m, n, k, k, &vec![0.0; m * n]));
    }

    /// On values of 24 significant bits the split products err by about
    /// 2⁻¹⁶ of the sum of the products' sizes, where bf16 errs by 2⁻⁸.
    #[test]
    fn split_products_hold_about_16_bits() {
        if !available() {
            return;
        }
        let (m, n, k) = (40, 70, 300);
        let noise = |i: usize| ((i as u64).wrapping_mul(0x9e37_79b9_7f4a_7c15) >> 40) as f32 / (1 << 24) as f32 - 0.5;
        let a: Vec<f32> = (0..m * k).map(|i| noise(i) * 3.0).collect();
        let w: Vec<f32> = (0..n * k).map(|i| noise(i + 1_000_003) / 7.0).collect();
        let mut rows = AmxRows::default();
        rows.pack_split(&a, m, k, k);
        let mut c = vec![0.0; m * n];
        gemm(&rows, &AmxWeight::from_f32_split(&w, n, k), &mut c, n, n, false);
        let mut worst = 0f64;
        for r in 0..m {
            for j in 0..n {
                let (exact, size) = (0..k).fold((0f64, 0f64), |(s, t), d| {
                    let p = f64::from(a[r * k + d]) * f64::from(w[j * k + d]);
                    (s + p, t + p.abs())
                });
                worst = worst.max((f64::from(c[r * n + j]) - exact).abs() / size);
            }
        }
        assert!(worst < 2f64.powi(-16), "worst error {worst:e} of the products' sizes");
    }

    fn same_tiles(a: &AmxWeight, b: &AmxWeight) -> bool {
        a.lines.len() == b.lines.len() && a.lines.iter().zip(&b.lines).all(|(a, b)| a.0 == b.0)
    }

    #[test]
    fn weights_from_columns_are_the_transposed_rows() {
        let (n, k) = (37, 70);
        let x: Vec<f32> = (0..k * n).map(value16).collect();
        let transposed: Vec<f32> = (0..n * k).map(|i| x[(i % k) * n + i / k]).collect();
        let rows = AmxWeight::from_f32_rows(&transposed, n, k, k);
        for rest in [false, true] {
            let columns = AmxWeight::from_f32_columns(&x, n, k, n, rest);
            let part = |v: f32| if rest { split_bf16(v).1 } else { split_bf16(v).0 };
            let bits: Vec<u16> = transposed.iter().map(|&v| part(v)).collect();
            let from_bits = AmxWeight::from_bf16(&bits, n, k);
            assert!(same_tiles(&columns, &from_bits), "rest {rest}");
            assert_eq!(same_tiles(&rows, &from_bits), !rest);
        }
    }

    /// Attention's keys, rows apart in `qkv`, split as a layer's weight is.
    #[test]
    fn split_weights_from_rows_apart_are_the_split_weights() {
        let (n, k, ld) = (45, 70, 100);
        let x: Vec<f32> = (0..n * ld).map(value16).collect();
        let dense: Vec<f32> = x.chunks(ld).flat_map(|row| &row[..k]).copied().collect();
        let apart = AmxWeight::from_f32_split_rows(&x, n, k, ld);
        assert!(same_tiles(&apart, &AmxWeight::from_f32_split(&dense, n, k)));
    }
}
