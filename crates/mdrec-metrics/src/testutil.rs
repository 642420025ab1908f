//! Deterministic test data shared with `golden/make_golden.py` (test-only).
//!
//! The Python script implements the same 64-bit LCG and the same formulas, so golden values can
//! be pasted without inlining large input vectors.

/// Knuth's MMIX LCG; `next_f64` returns the top 31 bits as a float in `[0, 1)`.
pub(crate) struct Lcg(u64);

impl Lcg {
    pub(crate) fn new(seed: u64) -> Self {
        Lcg(seed)
    }

    pub(crate) fn next_f64(&mut self) -> f64 {
        self.0 = self
            .0
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        ((self.0 >> 33) as f64) / ((1u64 << 31) as f64)
    }
}

/// Round half up to `dec` decimals (Python: `math.floor(x * 10**dec + 0.5) / 10**dec`).
pub(crate) fn round_dec(x: f64, dec: i32) -> f64 {
    let m = 10f64.powi(dec);
    (x * m + 0.5).floor() / m
}

/// `n` rows: label = `u < p_pos`, score = round((1 − signal)·v + signal·label, dec) as f32.
pub(crate) fn lcg_case(
    n: usize,
    seed: u64,
    p_pos: f64,
    signal: f64,
    dec: i32,
) -> (Vec<f32>, Vec<f32>) {
    let mut rng = Lcg::new(seed);
    let mut y = Vec::with_capacity(n);
    let mut p = Vec::with_capacity(n);
    for _ in 0..n {
        let u = rng.next_f64();
        let v = rng.next_f64();
        let label = if u < p_pos { 1.0 } else { 0.0 };
        y.push(label as f32);
        p.push(round_dec((1.0 - signal) * v + signal * label, dec) as f32);
    }
    (y, p)
}

/// Like [`lcg_case`] plus a group key per row: `floor(w · n_groups)` from a third draw.
/// The label probability also depends on the group (`p_pos` for even, `p_pos / 4` for odd
/// groups), so some groups end up single-class.
pub(crate) fn lcg_grouped(
    n: usize,
    seed: u64,
    n_groups: u64,
    p_pos: f64,
    signal: f64,
) -> (Vec<f32>, Vec<f32>, Vec<u64>) {
    let mut rng = Lcg::new(seed);
    let (mut y, mut p, mut g) = (Vec::new(), Vec::new(), Vec::new());
    for _ in 0..n {
        let w = rng.next_f64();
        let grp = (w * n_groups as f64).floor() as u64;
        let u = rng.next_f64();
        let v = rng.next_f64();
        let pp = if grp & 1 == 0 { p_pos } else { p_pos / 4.0 };
        let label = if u < pp { 1.0 } else { 0.0 };
        y.push(label as f32);
        p.push(round_dec((1.0 - signal) * v + signal * label, 1) as f32);
        g.push(grp);
    }
    (y, p, g)
}

/// A multi-domain, multi-task evaluation case: `n` rows, `n_domains` domains, `n_tasks` tasks,
/// `n_groups` users. Per row draws, in order: domain, group, then per task (u, v).
/// Task t has positive rate `0.1 + 0.15·t + 0.05·domain`; the logit is
/// `round(6·((1 − s)·v + s·label − ½), 1)` with `s = 0.15 + 0.1·domain`.
pub(crate) struct EvalCase {
    pub logits: Vec<f32>,
    pub labels: Vec<f32>,
    pub domain: Vec<u32>,
    pub group: Vec<u64>,
}

pub(crate) fn lcg_eval_case(
    n: usize,
    seed: u64,
    n_domains: u32,
    n_tasks: usize,
    n_groups: u64,
) -> EvalCase {
    let mut rng = Lcg::new(seed);
    let mut c = EvalCase {
        logits: Vec::new(),
        labels: Vec::new(),
        domain: Vec::new(),
        group: Vec::new(),
    };
    for _ in 0..n {
        let d = (rng.next_f64() * n_domains as f64).floor() as u32;
        let g = (rng.next_f64() * n_groups as f64).floor() as u64;
        c.domain.push(d);
        c.group.push(g);
        for t in 0..n_tasks {
            let u = rng.next_f64();
            let v = rng.next_f64();
            let rate = 0.1 + 0.15 * t as f64 + 0.05 * d as f64;
            let label = if u < rate { 1.0 } else { 0.0 };
            let s = 0.15 + 0.1 * d as f64;
            c.labels.push(label as f32);
            c.logits
                .push(round_dec(6.0 * ((1.0 - s) * v + s * label - 0.5), 1) as f32);
        }
    }
    c
}
