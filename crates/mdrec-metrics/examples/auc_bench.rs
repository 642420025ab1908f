//! Micro benchmark (no criterion): AUC and gAUC on 1M rows, and `evaluate` on 1M rows × 2
//! tasks × 10 domains. Prints rows/s; no assertions.
//!
//! `cargo run --release -p mdrec-metrics --example auc_bench [rows]`

use std::time::Instant;

use mdrec_metrics::{auc, evaluate, gauc, EvalInput};

fn main() {
    let n: usize = std::env::args()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(1_000_000);
    let mut s = 0x2545_f491_4f6c_dd1du64;
    let mut next = || {
        s = s
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        ((s >> 33) as f64) / ((1u64 << 31) as f64)
    };
    let mut labels = Vec::with_capacity(2 * n);
    let mut logits = Vec::with_capacity(2 * n);
    let mut domain = Vec::with_capacity(n);
    let mut group = Vec::with_capacity(n);
    for _ in 0..n {
        domain.push((next() * 10.0) as u32);
        group.push((next() * (n as f64 / 20.0)) as u64);
        for _ in 0..2 {
            let y = if next() < 0.2 { 1.0f32 } else { 0.0 };
            labels.push(y);
            logits.push((next() * 4.0 - 2.0 + f64::from(y)) as f32);
        }
    }
    let (y0, s0): (Vec<f32>, Vec<f32>) = (0..n).map(|i| (labels[2 * i], logits[2 * i])).unzip();
    let time = |name: &str, rows: usize, f: &mut dyn FnMut() -> String| {
        let _ = f(); // warm-up
        let reps = 5;
        let t0 = Instant::now();
        let mut out = String::new();
        for _ in 0..reps {
            out = f();
        }
        let secs = t0.elapsed().as_secs_f64() / reps as f64;
        println!(
            "{name:<28} {rows:>9} rows  {:>8.2} ms  {:>7.1} M rows/s  ({out})",
            secs * 1e3,
            rows as f64 / secs / 1e6
        );
    };
    time("auc", n, &mut || {
        format!("{:.6}", auc(&y0, &s0).unwrap_or(f64::NAN))
    });
    time("auc (1-decimal ties)", n, &mut || {
        let r: Vec<f32> = s0.iter().map(|x| (x * 10.0).round() / 10.0).collect();
        format!("{:.6}", auc(&y0, &r).unwrap_or(f64::NAN))
    });
    time("gauc", n, &mut || {
        let g = gauc(&y0, &s0, &group);
        format!(
            "{:.6}, {} groups",
            g.weighted.unwrap_or(f64::NAN),
            g.n_groups
        )
    });
    let dn: Vec<String> = (0..10).map(|d| format!("d{d}")).collect();
    let tn = vec!["click".to_string(), "like".to_string()];
    time("evaluate (2 tasks, gAUC)", n, &mut || {
        let r = evaluate(&EvalInput {
            logits: &logits,
            labels: &labels,
            n_tasks: 2,
            domain: &domain,
            group: Some(&group),
            domain_names: &dn,
            task_names: &tn,
            train_domain_counts: None,
        })
        .expect("valid input");
        format!(
            "auc_mean_cells {:.6}",
            r.overall.auc_mean_cells.unwrap_or(f64::NAN)
        )
    });
}
