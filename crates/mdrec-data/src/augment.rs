//! Popularity-based counterfactual augmentation (Luo et al., "One for Dozens: Adaptive
//! REcommendation for All Domains with Counterfactual Augmentation" (AREAD), AAAI 2025, section
//! "Popularity-based Counterfactual Augmenter", Corollary 1; reference code
//! `Chrissie-Law/AREAD-Multi-Domain-Recommendation`, `run.py`).
//!
//! Positive rows of cold (unpopular) items in large domains are copied into small domains: if a
//! user likes an item few people like in a big domain, they would like it in a small one too.
//! This module owns building those copies from a [`Prepared`] dataset:
//!
//! ```text
//! scope        = the training split (default) | train + valid + test (`popularity_scope = "all_splits"`,
//!                the official code's leakage, for comparison only)
//! N            = rows in scope;  aug_len = floor(ratio · N)
//! popularity   = (pos_i + prior_positive) / (cnt_i + prior_total)   per item id, over the scope
//! cold items   = cnt_i <= k (`max_count`, Amazon k = 4)  |  popularity < p (`popularity_below`, AliCCP 0.05)
//! small domain = 0 < n_d <= floor(small_share · N);  large domain = n_d > large_factor · floor(small_share · N)
//! pool         = rows in scope with a cold item, a large domain and label 1 on `task`
//! rows         = aug_len draws from the pool with replacement, P(row) ∝ 1 / popularity(item of row)
//! domains      = aug_len independent draws over the small domains:
//!                each = (Σ_small n_d + aug_len) / |small|;  w_d = max(100, each − n_d);
//!                p_d ∝ exp(w_d / quantile_0.3(w))   (computed as exp((w_d − max w) / q), same p)
//! ```
//!
//! Output ([`Augmentation::data`]): an [`EncodedData`] of copies of training rows whose domain
//! (the `domain` column and every categorical field reading the schema's domain column) is
//! replaced by the drawn small domain; every other feature and label is copied (the label of
//! `task` is 1 by construction). It batches like any split with [`EncodedData::fill_batch`].
//! With `all_splits`, rows drawn from validation or test are dropped afterwards, as the official
//! code's split filter does, so fewer than `aug_len` rows may come out.
//! Draws use `Rng::for_stream(seed, "augment/rows")` and `"augment/domains"`: the same inputs and
//! seed give the same rows.

use serde::{Deserialize, Serialize};

use crate::prepared::Prepared;
use crate::quantile::sorted_quantile;
use crate::rng::Rng;
use crate::schema::{FieldKind, FieldRole, Schema};
use crate::store::EncodedData;
use crate::{DataError, Vocabs};

/// Which items are cold.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ColdRule {
    /// Items seen at most this many times (AREAD Amazon: 4).
    MaxCount(u64),
    /// Items whose smoothed popularity is below this (AREAD AliCCP: 0.05).
    PopularityBelow(f64),
}

/// Which rows popularity, domain sizes and the pool are computed on.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum PopularityScope {
    /// The training split only (default; no information from validation or test).
    #[default]
    Train,
    /// Train + valid + test, as the official AREAD code (leaks evaluation labels into the
    /// training data through popularity; for reproducing the official numbers only).
    AllSplits,
}

/// Augmentation settings. TOML example (the AliCCP preset):
///
/// ```toml
/// ratio = 0.1
/// cold = { popularity_below = 0.05 }
/// small_share = 0.015
/// large_factor = 1.0
/// ```
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct AugmentConfig {
    /// Augmented rows as a fraction of the rows in scope (AREAD: 0.1).
    pub ratio: f64,
    /// Which items are cold.
    pub cold: ColdRule,
    /// A domain is small when it has at most `floor(small_share · N)` rows.
    pub small_share: f64,
    /// A domain is large when it has more than `large_factor · floor(small_share · N)` rows.
    pub large_factor: f64,
    /// Popularity smoothing: added to the positive count.
    pub prior_positive: f64,
    /// Popularity smoothing: added to the count.
    pub prior_total: f64,
    /// The item field (categorical); `None` = the one categorical field with roles `prior` and
    /// `item`.
    pub item_field: Option<String>,
    /// The task whose label defines popularity and the pool; `None` = the first task.
    pub task: Option<String>,
    /// Rows popularity, domain sizes and the pool come from.
    pub popularity_scope: PopularityScope,
}

impl Default for AugmentConfig {
    /// The Amazon preset.
    fn default() -> Self {
        AugmentConfig::amazon()
    }
}

impl AugmentConfig {
    /// AREAD's Amazon setting: cold = count <= 4, small <= 2 % of rows, large > 1.5 × that.
    pub fn amazon() -> Self {
        AugmentConfig {
            ratio: 0.1,
            cold: ColdRule::MaxCount(4),
            small_share: 0.02,
            large_factor: 1.5,
            prior_positive: 1.0,
            prior_total: 2.0,
            item_field: None,
            task: None,
            popularity_scope: PopularityScope::Train,
        }
    }

    /// AREAD's AliCCP setting: cold = popularity < 0.05, small <= 1.5 % of rows, large = the
    /// other domains.
    pub fn aliccp() -> Self {
        AugmentConfig {
            cold: ColdRule::PopularityBelow(0.05),
            small_share: 0.015,
            large_factor: 1.0,
            ..AugmentConfig::amazon()
        }
    }

    /// A preset by name: `"amazon"` or `"aliccp"`.
    pub fn preset(name: &str) -> Result<Self, DataError> {
        match name {
            "amazon" => Ok(AugmentConfig::amazon()),
            "aliccp" => Ok(AugmentConfig::aliccp()),
            other => Err(DataError::Config(format!(
                "unknown augmentation preset `{other}`; expected one of: amazon, aliccp"
            ))),
        }
    }

    /// Checks the numbers.
    pub fn validate(&self) -> Result<(), DataError> {
        let bad = |m: String| Err(DataError::Config(format!("augmentation: {m}")));
        if !(self.ratio.is_finite() && self.ratio >= 0.0) {
            return bad(format!("ratio must be >= 0, got {}", self.ratio));
        }
        if !(self.small_share.is_finite() && (0.0..=1.0).contains(&self.small_share)) {
            return bad(format!(
                "small_share must be in [0, 1], got {}",
                self.small_share
            ));
        }
        if !(self.large_factor.is_finite() && self.large_factor >= 1.0) {
            return bad(format!(
                "large_factor must be >= 1 (large domains must not be small), got {}",
                self.large_factor
            ));
        }
        if !(self.prior_positive.is_finite()
            && self.prior_total.is_finite()
            && self.prior_positive > 0.0
            && self.prior_total >= self.prior_positive)
        {
            return bad(format!(
                "need 0 < prior_positive <= prior_total (popularity must be positive), got {} and {}",
                self.prior_positive, self.prior_total
            ));
        }
        if let ColdRule::PopularityBelow(p) = self.cold {
            if !p.is_finite() {
                return bad("popularity_below must be finite".into());
            }
        }
        Ok(())
    }
}

/// The augmented training rows and how they were chosen.
#[derive(Debug, Clone, PartialEq)]
pub struct Augmentation {
    /// The augmented rows (copies of training rows with a new small domain).
    pub data: EncodedData,
    /// For each augmented row, the training row it copies.
    pub source_rows: Vec<u32>,
    /// Rows in scope (`N`).
    pub n_scope: usize,
    /// `floor(ratio · N)`: rows drawn.
    pub aug_len: usize,
    /// Small domains (targets), ascending.
    pub small_domains: Vec<u32>,
    /// Large domains (sources), ascending.
    pub large_domains: Vec<u32>,
    /// Probability of each small domain (same order as `small_domains`).
    pub domain_probs: Vec<f64>,
    /// Number of cold item ids.
    pub n_cold_items: usize,
    /// Pool rows as (split: 0 train / 1 valid / 2 test, row); only split 0 without leakage.
    pub pool: Vec<(u8, u32)>,
    /// Draw probability of each pool row (sums to 1).
    pub pool_probs: Vec<f64>,
}

/// Index of the item field among categorical fields, the task index, and per categorical field
/// reading the domain column, (categorical index, vocabulary id of each domain).
struct Resolved {
    item: usize,
    task: usize,
    domain_fields: Vec<(usize, Vec<u32>)>,
}

fn resolve(schema: &Schema, vocabs: &Vocabs, cfg: &AugmentConfig) -> Result<Resolved, DataError> {
    let cats = schema.categorical_fields();
    let item = match &cfg.item_field {
        Some(name) => cats.iter().position(|f| &f.name == name).ok_or_else(|| {
            DataError::Config(format!(
                "augmentation: item_field `{name}` is not a categorical field; categorical fields: {}",
                cats.iter().map(|f| f.name.as_str()).collect::<Vec<_>>().join(", ")
            ))
        })?,
        None => {
            let c: Vec<usize> = (0..cats.len())
                .filter(|&i| {
                    cats[i].roles.contains(&FieldRole::Prior) && cats[i].roles.contains(&FieldRole::Item)
                })
                .collect();
            match c[..] {
                [i] => i,
                _ => {
                    return Err(DataError::Config(format!(
                        "augmentation: {} categorical fields have roles prior and item; set item_field",
                        c.len()
                    )))
                }
            }
        }
    };
    let task = match &cfg.task {
        Some(t) => schema.tasks.iter().position(|x| x == t).ok_or_else(|| {
            DataError::Config(format!(
                "augmentation: unknown task `{t}`; tasks: {}",
                schema.tasks.join(", ")
            ))
        })?,
        None => 0,
    };
    let dcol = &schema.spec.domain.column;
    let mut domain_fields = Vec::new();
    let mut ci = 0;
    for f in &schema.spec.fields {
        let is_cat = f.kind == FieldKind::Categorical;
        // A bucketed numeric field is a categorical column too.
        let bucketed = matches!(f.encoding, Some(crate::NumericEncoding::Bucket { .. }));
        if f.column() == dcol {
            if !is_cat {
                return Err(DataError::Config(format!(
                    "augmentation: field `{}` reads the domain column `{dcol}` but is not categorical; cannot rewrite it",
                    f.name
                )));
            }
            let vocab = vocabs.tables.get(f.table()).ok_or_else(|| {
                DataError::Config(format!(
                    "augmentation: no vocabulary for table `{}`",
                    f.table()
                ))
            })?;
            let mut ids = Vec::with_capacity(schema.n_domains());
            for d in 0..schema.n_domains() as u32 {
                let raws: Vec<&String> = vocabs
                    .domain_map
                    .iter()
                    .filter(|(_, &i)| i == d)
                    .map(|(r, _)| r)
                    .collect();
                match raws[..] {
                    [r] => ids.push(vocab.id_of(r)),
                    _ => {
                        return Err(DataError::Config(format!(
                            "augmentation: domain `{}` has {} raw values in column `{dcol}`; field `{}` cannot be rewritten to one value",
                            schema.domains[d as usize],
                            raws.len(),
                            f.name
                        )))
                    }
                }
            }
            domain_fields.push((ci, ids));
        }
        if is_cat || bucketed {
            ci += 1;
        }
    }
    Ok(Resolved {
        item,
        task,
        domain_fields,
    })
}

/// Draws an index with probability proportional to `cum[i] - cum[i - 1]` (`cum` ascending,
/// last > 0).
fn draw(rng: &mut Rng, cum: &[f64]) -> usize {
    let total = cum[cum.len() - 1];
    let u = rng.next_f64() * total;
    cum.partition_point(|&c| c <= u).min(cum.len() - 1)
}

fn cumulative(w: impl Iterator<Item = f64>) -> Vec<f64> {
    let mut acc = 0.0;
    w.map(|x| {
        acc += x;
        acc
    })
    .collect()
}

/// Builds the augmented training rows of a prepared dataset (see the module docs).
///
/// With the default [`PopularityScope::Train`], `p.valid` and `p.test` are never read.
pub fn augment(p: &Prepared, cfg: &AugmentConfig, seed: u64) -> Result<Augmentation, DataError> {
    cfg.validate()?;
    let r = resolve(&p.schema, &p.vocabs, cfg)?;
    let scope: Vec<&EncodedData> = match cfg.popularity_scope {
        PopularityScope::Train => vec![&p.train],
        PopularityScope::AllSplits => vec![&p.train, &p.valid, &p.test],
    };
    if p.train.labels.len() <= r.task || p.train.cat.len() <= r.item {
        return Err(DataError::Config(
            "augmentation: the training split does not match the schema".into(),
        ));
    }
    let n_items = p.schema.categorical_fields()[r.item].vocab_size.max(1);
    let n_dom = p.schema.n_domains();
    let mut cnt = vec![0u64; n_items];
    let mut pos = vec![0u64; n_items];
    let mut n_d = vec![0usize; n_dom];
    for s in &scope {
        for (row, &it) in s.cat[r.item].iter().enumerate() {
            let it = it as usize;
            if it >= n_items || s.domain[row] as usize >= n_dom {
                return Err(DataError::Config(format!(
                    "augmentation: row {row} has item id {it} or domain {} outside the schema",
                    s.domain[row]
                )));
            }
            cnt[it] += 1;
            pos[it] += u64::from(s.labels[r.task][row] == 1.0);
            n_d[s.domain[row] as usize] += 1;
        }
    }
    let popularity: Vec<f64> = (0..n_items)
        .map(|i| (pos[i] as f64 + cfg.prior_positive) / (cnt[i] as f64 + cfg.prior_total))
        .collect();
    let cold: Vec<bool> = (0..n_items)
        .map(|i| {
            cnt[i] > 0
                && match cfg.cold {
                    ColdRule::MaxCount(k) => cnt[i] <= k,
                    ColdRule::PopularityBelow(t) => popularity[i] < t,
                }
        })
        .collect();
    let n_scope: usize = scope.iter().map(|s| s.n_rows).sum();
    let aug_len = (cfg.ratio * n_scope as f64).floor() as usize;
    let thr = (cfg.small_share * n_scope as f64).floor();
    let small: Vec<u32> = (0..n_dom as u32)
        .filter(|&d| n_d[d as usize] > 0 && n_d[d as usize] as f64 <= thr)
        .collect();
    let large: Vec<u32> = (0..n_dom as u32)
        .filter(|&d| n_d[d as usize] as f64 > cfg.large_factor * thr)
        .collect();
    let mut is_large = vec![false; n_dom];
    for &d in &large {
        is_large[d as usize] = true;
    }
    let mut pool = Vec::new();
    for (si, s) in scope.iter().enumerate() {
        for row in 0..s.n_rows {
            if cold[s.cat[r.item][row] as usize]
                && is_large[s.domain[row] as usize]
                && s.labels[r.task][row] == 1.0
            {
                pool.push((si as u8, row as u32));
            }
        }
    }
    let inv: Vec<f64> = pool
        .iter()
        .map(|&(si, row)| 1.0 / popularity[scope[si as usize].cat[r.item][row as usize] as usize])
        .collect();
    let inv_sum: f64 = inv.iter().sum();
    let pool_probs: Vec<f64> = inv.iter().map(|w| w / inv_sum).collect();

    let domain_probs = if small.is_empty() {
        Vec::new()
    } else {
        let small_rows: usize = small.iter().map(|&d| n_d[d as usize]).sum();
        let each = (small_rows + aug_len) as f64 / small.len() as f64;
        let w: Vec<f64> = small
            .iter()
            .map(|&d| (each - n_d[d as usize] as f64).max(100.0))
            .collect();
        let mut sorted = w.clone();
        sorted.sort_by(f64::total_cmp);
        // `small` is not empty in this branch, so both exist
        let q = sorted_quantile(&sorted, 0.3).unwrap_or(1.0);
        let wmax = sorted.last().copied().unwrap_or(0.0);
        let e: Vec<f64> = w.iter().map(|x| ((x - wmax) / q).exp()).collect();
        let s: f64 = e.iter().sum();
        e.iter().map(|x| x / s).collect()
    };

    let mut source_rows = Vec::new();
    let mut targets = Vec::new();
    if aug_len > 0 {
        if small.is_empty() {
            return Err(DataError::Config(format!(
                "augmentation: no small domain (none has at most floor({} · {n_scope}) = {thr} rows); nothing to augment into",
                cfg.small_share
            )));
        }
        if pool.is_empty() {
            return Err(DataError::Config(format!(
                "augmentation: the pool is empty: no positive row of a cold item ({} cold item ids) in a large domain ({} large domains)",
                cold.iter().filter(|&&c| c).count(),
                large.len()
            )));
        }
        let row_cum = cumulative(inv.iter().copied());
        let dom_cum = cumulative(domain_probs.iter().copied());
        let mut rr = Rng::for_stream(seed, "augment/rows");
        let mut rd = Rng::for_stream(seed, "augment/domains");
        for _ in 0..aug_len {
            let (si, row) = pool[draw(&mut rr, &row_cum)];
            let d = small[draw(&mut rd, &dom_cum)];
            // the official code's split filter keeps only copies of training rows
            if si == 0 {
                source_rows.push(row);
                targets.push(d);
            }
        }
    }
    let mut data = p.train.subset(&source_rows);
    for (k, &d) in targets.iter().enumerate() {
        data.domain[k] = d;
        for (ci, ids) in &r.domain_fields {
            data.cat[*ci][k] = ids[d as usize];
        }
        data.labels[r.task][k] = 1.0;
    }
    Ok(Augmentation {
        data,
        source_rows,
        n_scope,
        aug_len,
        small_domains: small,
        large_domains: large,
        domain_probs,
        n_cold_items: cold.iter().filter(|&&c| c).count(),
        pool,
        pool_probs,
    })
}
