//! Shared fixtures of the integration tests.

use mdrec_data::rng::Rng;
use mdrec_data::EncodedData;

/// `n` random rows: `fields` categorical columns with ids in `2..vocab`, one numeric column in
/// [0, 1), `domains` domains, `tasks` labels with a 40 % positive rate, 50 groups.
pub fn random_data(
    n: usize,
    seed: u64,
    fields: usize,
    vocab: usize,
    domains: usize,
    tasks: usize,
) -> EncodedData {
    let mut rng = Rng::new(seed);
    let cat = (0..fields)
        .map(|_| {
            (0..n)
                .map(|_| 2 + rng.below(vocab as u64 - 2) as u32)
                .collect()
        })
        .collect();
    let num = (0..n).map(|_| rng.next_f32()).collect();
    let domain = (0..n).map(|_| rng.below(domains as u64) as u32).collect();
    let labels = (0..tasks)
        .map(|_| {
            (0..n)
                .map(|_| (rng.next_f64() < 0.4) as u8 as f32)
                .collect()
        })
        .collect();
    EncodedData {
        n_rows: n,
        cat,
        multi: vec![],
        num: vec![num],
        domain,
        labels,
        group: (0..n as u64).map(|i| i % 50).collect(),
        ..Default::default()
    }
}
