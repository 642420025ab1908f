//! Domain pre-clustering (AREAD, Luo et al., AAAI 2025, "Pre-Clustering Domains"): the step
//! that lets multi-tower baselines run on tens of domains by treating each cluster of domains
//! as one domain.
//!
//! The paper: train one single-domain DCN on all domains, record each domain's distribution of
//! test losses, take the Kullback–Leibler divergence between those distributions as the
//! distance between domains, and run K-Means on the distances (3 clusters for both of its
//! datasets). It leaves open how the distributions are estimated, which direction of the
//! (asymmetric) divergence is the distance and what K-Means clusters; ours \[INFERRED\]:
//!
//! - a domain's distribution is a histogram of its rows' losses (binary cross-entropy, the mean
//!   over tasks) over `bins` bins shared by all domains, of equal width up to the 99.9th
//!   percentile of all losses (the last bin also takes what lies above), each count plus 0.5
//!   before normalising (so that an empty bin does not make the divergence infinite);
//! - the distance is the symmetrised divergence `(KL(p‖q) + KL(q‖p)) / 2`;
//! - K-Means runs on each domain's row of the distance matrix (its distances to every domain),
//!   k-means++ seeding from the run's seed, 10 restarts, the lowest within-cluster sum kept.
//!
//! The result is a map raw domain value → cluster, written as `dataset.domain_map` (which
//! replaces any dataset's domains), so a baseline trained with it sees the clusters as its
//! domains.

use std::collections::BTreeMap;
use std::path::Path;

use mdrec_data::rng::Rng;
use serde::Serialize;

use crate::TrainError;

/// Restarts of K-Means (the lowest within-cluster sum of squares is kept).
const RESTARTS: usize = 10;

/// The clusters of a run's domains and how they were found.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Preclusters {
    /// The raw column the domains come from.
    pub column: String,
    /// Domain names, in the run's domain order.
    pub domains: Vec<String>,
    /// Test rows per domain.
    pub rows: Vec<usize>,
    /// Mean test loss per domain.
    pub mean_loss: Vec<f64>,
    /// Symmetrised KL divergence between the domains' loss distributions.
    pub distance: Vec<Vec<f64>>,
    /// Cluster of each domain (`0..k`, numbered by first appearance in domain order).
    pub cluster: Vec<usize>,
    /// Raw domain value → cluster: `dataset.domain_map`.
    pub map: BTreeMap<String, usize>,
    /// Within-cluster sum of squared distances of the kept K-Means solution.
    pub inertia: f64,
}

/// Histograms of `losses[d]` over `bins` shared bins (see the module docs), normalised.
pub fn loss_histograms(losses: &[Vec<f64>], bins: usize) -> Vec<Vec<f64>> {
    let mut all: Vec<f64> = losses.iter().flatten().copied().collect();
    all.sort_by(f64::total_cmp);
    let top = mdrec_data::quantile::sorted_quantile(&all, 0.999)
        .unwrap_or(1.0)
        .max(1e-12);
    losses
        .iter()
        .map(|ls| {
            let mut h = vec![0.5; bins];
            for &l in ls {
                let b = ((l / top) * bins as f64) as usize;
                h[b.min(bins - 1)] += 1.0;
            }
            let total: f64 = h.iter().sum();
            h.iter().map(|c| c / total).collect()
        })
        .collect()
}

/// `(KL(p‖q) + KL(q‖p)) / 2` of two distributions with positive entries.
pub fn symmetric_kl(p: &[f64], q: &[f64]) -> f64 {
    p.iter()
        .zip(q)
        .map(|(a, b)| 0.5 * (a * (a / b).ln() + b * (b / a).ln()))
        .sum()
}

fn sq_dist(a: &[f64], b: &[f64]) -> f64 {
    a.iter().zip(b).map(|(x, y)| (x - y) * (x - y)).sum()
}

/// K-Means of `points` into `k` clusters: k-means++ seeding from `rng`, Lloyd iterations until
/// nothing moves (at most 100). Returns each point's cluster and the within-cluster sum of
/// squares.
fn kmeans_once(points: &[Vec<f64>], k: usize, rng: &mut Rng) -> (Vec<usize>, f64) {
    let n = points.len();
    let mut centres: Vec<Vec<f64>> = vec![points[rng.below(n as u64) as usize].clone()];
    while centres.len() < k {
        let d: Vec<f64> = points
            .iter()
            .map(|p| {
                centres
                    .iter()
                    .map(|c| sq_dist(p, c))
                    .fold(f64::INFINITY, f64::min)
            })
            .collect();
        let total: f64 = d.iter().sum();
        let next = if total <= 0.0 {
            rng.below(n as u64) as usize
        } else {
            let mut u = rng.next_f64() * total;
            d.iter()
                .position(|&x| {
                    u -= x;
                    u < 0.0
                })
                .unwrap_or(n - 1)
        };
        centres.push(points[next].clone());
    }
    let mut assign = vec![usize::MAX; n];
    for _ in 0..100 {
        let mut moved = false;
        for (i, p) in points.iter().enumerate() {
            let best = (0..k)
                .min_by(|&a, &b| sq_dist(p, &centres[a]).total_cmp(&sq_dist(p, &centres[b])))
                .expect("k ≥ 1");
            moved |= assign[i] != best;
            assign[i] = best;
        }
        if !moved {
            break;
        }
        for (c, centre) in centres.iter_mut().enumerate() {
            let members: Vec<&Vec<f64>> = (0..n)
                .filter(|&i| assign[i] == c)
                .map(|i| &points[i])
                .collect();
            if members.is_empty() {
                continue; // keeps its place; a later restart may do better
            }
            for (j, x) in centre.iter_mut().enumerate() {
                *x = members.iter().map(|m| m[j]).sum::<f64>() / members.len() as f64;
            }
        }
    }
    let inertia = (0..n)
        .map(|i| sq_dist(&points[i], &centres[assign[i]]))
        .sum();
    (assign, inertia)
}

/// `kmeans_once` restarted `RESTARTS` times from `seed`; the lowest within-cluster sum
/// wins (the first on ties). Clusters are renumbered by first appearance.
pub fn kmeans(points: &[Vec<f64>], k: usize, seed: u64) -> (Vec<usize>, f64) {
    let mut rng = Rng::for_stream(seed, "precluster/kmeans");
    let mut best: Option<(Vec<usize>, f64)> = None;
    for _ in 0..RESTARTS {
        let (a, inertia) = kmeans_once(points, k, &mut rng);
        if best.as_ref().is_none_or(|(_, b)| inertia < *b) {
            best = Some((a, inertia));
        }
    }
    let (assign, inertia) = best.expect("at least one restart");
    let mut order: Vec<usize> = Vec::new();
    let renamed = assign
        .iter()
        .map(|&c| match order.iter().position(|&o| o == c) {
            Some(i) => i,
            None => {
                order.push(c);
                order.len() - 1
            }
        })
        .collect();
    (renamed, inertia)
}

/// Clusters the domains of the trained run `run` into `k` groups by its test losses (see the
/// module docs). The run should be the paper's single-domain DCN (`--model dcn`), trained on
/// all domains.
pub fn precluster(run: &Path, k: usize, bins: usize) -> Result<Preclusters, TrainError> {
    if bins < 2 {
        return Err(TrainError::Config(format!(
            "--bins must be at least 2, got {bins}"
        )));
    }
    let (_, logits, loaded) = mdrec_train::evaluate_run(run)?;
    let (ctx, test) = (&loaded.trained.ctx, &loaded.prepared.test);
    let (n_d, n_t) = (ctx.n_domains(), ctx.n_tasks());
    if k == 0 || k > n_d {
        return Err(TrainError::Config(format!(
            "--clusters must be between 1 and the run's {n_d} domains, got {k}"
        )));
    }
    let mut losses: Vec<Vec<f64>> = vec![Vec::new(); n_d];
    for (r, &d) in test.domain.as_slice().iter().enumerate() {
        let l = (0..n_t)
            .map(|t| {
                mdrec_metrics::bce(
                    f64::from(logits[r * n_t + t]),
                    f64::from(test.labels[t].as_slice()[r]),
                )
            })
            .sum::<f64>()
            / n_t as f64;
        losses[d as usize].push(l);
    }
    if let Some(d) = losses.iter().position(Vec::is_empty) {
        return Err(TrainError::Config(format!(
            "domain `{}` has no test rows in {}: its loss distribution is undefined",
            ctx.domains[d],
            run.display()
        )));
    }
    let hist = loss_histograms(&losses, bins);
    let distance: Vec<Vec<f64>> = hist
        .iter()
        .map(|p| hist.iter().map(|q| symmetric_kl(p, q)).collect())
        .collect();
    let (cluster, inertia) = kmeans(&distance, k, loaded.trained.cfg.train.seed);
    let map = loaded
        .prepared
        .vocabs
        .domain_map
        .iter()
        .map(|(raw, &d)| (raw.clone(), cluster[d as usize]))
        .collect();
    Ok(Preclusters {
        column: loaded.prepared.schema.spec.domain.column.clone(),
        domains: ctx.domains.clone(),
        rows: losses.iter().map(Vec::len).collect(),
        mean_loss: losses
            .iter()
            .map(|l| l.iter().sum::<f64>() / l.len() as f64)
            .collect(),
        distance,
        cluster,
        map,
        inertia,
    })
}

impl Preclusters {
    /// The run-config lines that train on the clusters as domains (`dataset.domain_map`, for
    /// any dataset; a `csv` schema's `[domain] map` takes the same table).
    pub fn config_toml(&self) -> String {
        let entries: Vec<String> = self
            .map
            .iter()
            .map(|(raw, c)| format!("{} = {c}", toml_key(raw)))
            .collect();
        format!(
            "# clusters of the raw values of column {} (mdrec precluster)\n[dataset]\ndomain_map = {{ {} }}\n",
            toml_key(&self.column),
            entries.join(", ")
        )
    }
}

/// A TOML string literal (basic string with escapes; the `toml` crate would pick a literal
/// string for some values, and the written map keeps one quoting for every key).
fn toml_key(s: &str) -> String {
    let mut out = String::from("\"");
    for ch in s.chars() {
        match ch {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            c if c.is_control() => out.push_str(&format!("\\u{:04X}", c as u32)),
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_divergence_is_zero_for_equal_and_symmetric_for_different_distributions() {
        let p = [0.2, 0.3, 0.5];
        let q = [0.6, 0.3, 0.1];
        assert_eq!(symmetric_kl(&p, &p), 0.0);
        assert!((symmetric_kl(&p, &q) - symmetric_kl(&q, &p)).abs() < 1e-15);
        // by hand: ½Σ (p−q)·ln(p/q)
        let want: f64 = p
            .iter()
            .zip(&q)
            .map(|(a, b)| 0.5 * (a - b) * (a / b).ln())
            .sum();
        assert!((symmetric_kl(&p, &q) - want).abs() < 1e-12);
    }

    #[test]
    fn histograms_share_bins_and_smooth_empty_ones() {
        let low = vec![0.1; 100];
        let high = vec![2.0; 100];
        let h = loss_histograms(&[low, high], 4);
        assert!(h
            .iter()
            .all(|p| (p.iter().sum::<f64>() - 1.0).abs() < 1e-12));
        assert!(h.iter().flatten().all(|&x| x > 0.0), "no empty bin");
        assert!(h[0][0] > 0.9 && h[1][3] > 0.9, "{h:?}");
        assert!(symmetric_kl(&h[0], &h[1]) > 1.0);
    }

    #[test]
    fn kmeans_finds_separated_groups_and_repeats_itself() {
        // three groups of points on a line, numbered by first appearance
        let pts: Vec<Vec<f64>> = [0.0, 10.0, 0.2, 20.0, 10.1, 0.1, 19.9, 9.9]
            .iter()
            .map(|&x| vec![x, -x])
            .collect();
        let (a, inertia) = kmeans(&pts, 3, 7);
        assert_eq!(a, vec![0, 1, 0, 2, 1, 0, 2, 1]);
        assert!(inertia < 0.2, "{inertia}");
        assert_eq!(kmeans(&pts, 3, 7), (a.clone(), inertia));
        assert_eq!(kmeans(&pts, 1, 7).0, vec![0; 8]);
    }

    #[test]
    fn the_config_lines_quote_raw_values() {
        let p = Preclusters {
            column: "genre".into(),
            domains: vec![],
            rows: vec![],
            mean_loss: vec![],
            distance: vec![],
            cluster: vec![],
            map: [("a\"b".to_string(), 1), ("Sci-Fi".to_string(), 0)].into(),
            inertia: 0.0,
        };
        let toml = p.config_toml();
        assert!(
            toml.ends_with("[dataset]\ndomain_map = { \"Sci-Fi\" = 0, \"a\\\"b\" = 1 }\n"),
            "{toml}"
        );
        let v: toml::Value = toml::from_str(&toml).unwrap();
        assert_eq!(v["dataset"]["domain_map"]["a\"b"].as_integer(), Some(1));
    }
}
