//! Delayed feedback, the data side: a seeded synthetic conversion stream whose positives arrive
//! late, waiting policies, and the schedule of training events a stream trainer consumes.
//!
//! # What this module owns
//!
//! * [`generate_delayed`] / [`DelayedConfig`]: a click stream over `days` days with a daily
//!   cycle, features `user_id, ad_id, advertiser_id, domain` (placement), a true conversion
//!   probability from a logistic model of hidden effects, the true label, and for positives the
//!   time the conversion is *reported* (`conversion_time`). [`delayed_schema_toml`] declares it
//!   (`time = "timestamp"`, task `conversion` with `label_time = "conversion_time"`), so it goes
//!   through the one data path like any CSV and lands in [`crate::EncodedData::time`] and
//!   [`crate::EncodedData::label_time`].
//! * [`WaitPolicy`], [`release_waits`], [`schedule`]: pure functions over those encoded columns
//!   that say when each row is released for training, with which label, and when a late
//!   positive is re-inserted ([`TrainEvent`]).
//! * [`summarize`]: what a schedule costs (mean wait) and what it buys (share of fake
//!   negatives, freshness of the positive signal).
//!
//! The trainer (not here) applies the loss weights; this module only produces the events.
//!
//! # The generator
//!
//! Click times are drawn from the intensity `λ(t) ∝ 1 + a·cos(2π (t/86400 − 20/24))` on
//! `[0, days·86400)` seconds (`a = daily_amplitude`, peak at 20:00), then sorted. Users are
//! uniform, ads are skewed (`ad = ⌊u²·n_ads⌋`), every ad belongs to one advertiser, placements
//! are uniform. The true probability is
//!
//! ```text
//! p = sigmoid(c + s·(0.8·e_user + 0.6·e_ad + 0.5·e_advertiser + 0.4·e_domain)),  e_* ~ N(0, 1)
//! ```
//!
//! with `s = effect_std` and the intercept `c` found by bisection so that the mean of `p` over
//! the generated rows is `base_rate`. The label is `Bernoulli(p)`; [`DelayedData::true_prob`]
//! is `p` itself (a Bayes-optimal, perfectly calibrated score for bias measurements).
//!
//! A positive converts after `d ~ Exponential(mean = mean_delay_hours)` (rounded to seconds).
//! Normal advertisers report at the conversion. A share `burst_share` of the advertisers
//! (exactly `round(burst_share · n_advertisers)`, drawn at random) report in bursts: they upload
//! together (one shared schedule, as a batch job of a conversion API would) at burst times
//! spaced `Uniform[burst_min_days, burst_max_days]` apart, and each conversion is reported at
//! the first burst at or after it. Every positive is eventually reported (bursts continue past
//! the last click; there is no attribution cut-off), so `conversion_time` is empty exactly for
//! the negatives.
//!
//! # Events
//!
//! Rows come in time order. Row `r` is released at `release = time[r] + wait(time[r])` with
//! label 1 iff it is positive and `label_time[r] <= release`, else 0. A positive whose
//! `label_time` is after its release is a *fake negative*: it gets a second event
//! [`EventKind::LatePositive`] at `label_time` with label 1. A positive with
//! `label_time = NEVER` (never reported) is released as 0 and never re-inserted. A task without
//! a `label_time` column (an empty slice) knows its positives at the event time. Events are
//! sorted by `(at, row, kind)`, `Released` before `LatePositive`; no event precedes its row's
//! time.
//!
//! With [`WaitPolicy::None`] this is exactly the stream of Ktena et al. (RecSys 2019, "Addressing
//! delayed feedback for continuous training with neural networks in CTR prediction"): every
//! sample enters as a negative and positives are re-inserted when they arrive. Their *fake
//! negative weighted* (FNW) loss corrects the bias with importance weights (f = the model's
//! current prediction, stop-gradient)
//!
//! ```text
//! w+ = 1 + f(x)              (positive events: LatePositive, or Released with label 1)
//! w− = (1 − f(x))(1 + f(x))  (negative events)
//! ```
//!
//! With a wait, positives reported within the window arrive once, as positives, so the stream
//! is no longer the one FNW's weights were derived for; elapsed-time sampling (ES-DFM, Yang et
//! al., AAAI 2021) derives the weights for a window. The delay model behind all of these is
//! Chapelle (KDD 2014, "Modeling delayed feedback in display advertising"): a conversion model
//! times an (exponential) delay model.
//!
//! # Waiting policies
//!
//! * [`WaitPolicy::None`]: release at the event time.
//! * [`WaitPolicy::Fixed`]: release `seconds` after the event.
//! * [`WaitPolicy::Dynamic`]: the dynamic waiting window of Tencent's ads paper ("Ads
//!   Recommendation in a Collapsed and Entangled World", KDD 2024, §6.3): when the recently
//!   observed conversion rate is stable against its history, release as fast as possible;
//!   when it swings (some advertisers report in bursts), wait.
//!
//! The dynamic wait is **causal**. Time is cut into buckets of `B = bucket_seconds`; bucket `j`
//! is `[jB, (j+1)B)`. Buckets without clicks are skipped. For bucket `j` with `n_j` clicks and
//! `a_j` positives *reported* in it (`label_time` in the bucket, whatever their click time), the
//! observed rate is `r_j = a_j / n_j`. A row clicked at `t` uses only buckets that ended by `t`
//! (all before `⌊t/B⌋`), hence only conversions reported before `t`. Of those, the last
//! `R = recent_buckets` are *recent* and the `H = history_buckets` before them the *history*:
//!
//! ```text
//! m = mean_{h ∈ hist} r_h,   v = mean_{h ∈ hist} (r_h − m)²,   p = clamp(m, 0, 1)
//! score = mean_{j ∈ recent} (r_j − m)² / (v + p(1 − p)/n_j + 1e-12)
//! wait  = min + (max − min) · clamp((score − threshold) / (saturation − threshold), 0, 1)
//! ```
//!
//! (rounded to whole seconds). The denominator is the spread a stable bucket rate shows: the
//! history's own variance (daily cycles included) plus the binomial noise of the recent bucket
//! (which keeps the score finite when the history is flat), so `score ≈ 1` or less in calm
//! periods and a burst upload gives a score in the hundreds. A score at or below `threshold`
//! releases after `min_seconds`, at or above `saturation` after `max_seconds`, linear in
//! between. With fewer than one recent or two history buckets (the start of the stream) there
//! is no evidence of stability and the wait is `max_seconds`.

use std::fmt::Write;

use serde::{Deserialize, Serialize};

use crate::raw::{ColumnBuilder, RawTable};
use crate::rng::Rng;
use crate::store::NEVER;
use crate::DataError;

const DAY: f64 = 86_400.0;
const HOUR: f64 = 3_600.0;

/// Configuration of the synthetic delayed-feedback stream (see the module docs).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct DelayedConfig {
    /// Seed of every random draw.
    pub seed: u64,
    /// Number of click rows.
    pub n_rows: usize,
    /// Length of the stream in days (click times in `[0, days·86400)` seconds).
    pub days: u32,
    /// Number of users.
    pub n_users: usize,
    /// Number of ads.
    pub n_ads: usize,
    /// Number of advertisers (each ad belongs to one).
    pub n_advertisers: usize,
    /// Number of placements (domains).
    pub n_domains: usize,
    /// Mean true conversion probability over the rows (the intercept is calibrated to it).
    pub base_rate: f64,
    /// Scale of the hidden user / ad / advertiser / placement effects on the logit.
    pub effect_std: f64,
    /// Amplitude of the daily cycle of the click intensity, in `[0, 1]` (0 = flat).
    pub daily_amplitude: f64,
    /// Mean conversion delay in hours (exponential).
    pub mean_delay_hours: f64,
    /// Share of advertisers that report conversions in bursts, in `[0, 1]`.
    pub burst_share: f64,
    /// Shortest gap between two bursts, in days.
    pub burst_min_days: f64,
    /// Longest gap between two bursts, in days.
    pub burst_max_days: f64,
}

impl Default for DelayedConfig {
    fn default() -> Self {
        DelayedConfig {
            seed: 42,
            n_rows: 100_000,
            days: 14,
            n_users: 5_000,
            n_ads: 1_000,
            n_advertisers: 100,
            n_domains: 4,
            base_rate: 0.05,
            effect_std: 1.0,
            daily_amplitude: 0.5,
            mean_delay_hours: 6.0,
            burst_share: 0.3,
            burst_min_days: 2.0,
            burst_max_days: 3.0,
        }
    }
}

impl DelayedConfig {
    /// A small configuration (5,000 rows over 4 days) for fast tests.
    pub fn tiny() -> Self {
        DelayedConfig {
            n_rows: 5_000,
            days: 4,
            n_users: 300,
            n_ads: 100,
            n_advertisers: 20,
            ..Default::default()
        }
    }

    /// Checks the configuration.
    pub fn validate(&self) -> Result<(), DataError> {
        let bad = |m: &str| Err(DataError::Config(format!("delayed config: {m}")));
        let finite_nonneg = |x: f64| x.is_finite() && x >= 0.0;
        if self.n_rows == 0 || self.n_rows > u32::MAX as usize / 2 {
            return bad("n_rows must be in 1..2^31");
        }
        if !(1..=3650).contains(&self.days) {
            return bad("days must be in 1..=3650");
        }
        if self.n_users == 0 || self.n_ads == 0 || self.n_advertisers == 0 {
            return bad("n_users, n_ads and n_advertisers must be at least 1");
        }
        if !(1..=1024).contains(&self.n_domains) {
            return bad("n_domains must be in 1..=1024");
        }
        if !(self.base_rate > 0.0 && self.base_rate < 1.0) {
            return bad("base_rate must be in (0, 1)");
        }
        if !finite_nonneg(self.effect_std) || self.effect_std > 10.0 {
            return bad("effect_std must be in [0, 10]");
        }
        if !(0.0..=1.0).contains(&self.daily_amplitude) {
            return bad("daily_amplitude must be in [0, 1]");
        }
        if !(self.mean_delay_hours.is_finite() && self.mean_delay_hours > 0.0) {
            return bad("mean_delay_hours must be finite and positive");
        }
        if !(0.0..=1.0).contains(&self.burst_share) {
            return bad("burst_share must be in [0, 1]");
        }
        if !(self.burst_min_days.is_finite() && self.burst_min_days > 0.0) {
            return bad("burst_min_days must be finite and positive");
        }
        if !(self.burst_max_days.is_finite() && self.burst_max_days >= self.burst_min_days) {
            return bad("burst_max_days must be finite and at least burst_min_days");
        }
        Ok(())
    }
}

/// The declared schema of the delayed stream of `cfg`: `time = "timestamp"`, group
/// `user_id`, categorical `user_id`, `ad_id`, `advertiser_id` and a placement indicator, the
/// domain from column `domain` (names `p0`, `p1`, ...), one binary task `conversion` with
/// `label_time = "conversion_time"`.
pub fn delayed_schema_toml(cfg: &DelayedConfig) -> String {
    let mut s = String::from(
        "# synthetic delayed-feedback conversion stream\ngroup = \"user_id\"\ntime = \"timestamp\"\n\n[domain]\ncolumn = \"domain\"\nmap = { ",
    );
    let map: Vec<String> = (0..cfg.n_domains)
        .map(|d| format!("\"{d}\" = {d}"))
        .collect();
    s.push_str(&map.join(", "));
    s.push_str(" }\nnames = [");
    let names: Vec<String> = (0..cfg.n_domains).map(|d| format!("\"p{d}\"")).collect();
    s.push_str(&names.join(", "));
    s.push_str("]\n");
    for (name, extra) in [
        ("user_id", "roles = [\"prior\", \"user\"]"),
        ("ad_id", "roles = [\"prior\", \"item\"]"),
        ("advertiser_id", "roles = [\"author\"]"),
        (
            "domain_indicator",
            "column = \"domain\"\nroles = [\"domain\"]",
        ),
    ] {
        let _ = write!(
            s,
            "\n[[fields]]\nname = \"{name}\"\nkind = \"categorical\"\n{extra}\n"
        );
    }
    s.push_str(
        "\n[[tasks]]\nname = \"conversion\"\ncolumn = \"conversion\"\nrule = \"binary\"\nlabel_time = \"conversion_time\"\n",
    );
    s
}

/// A generated delayed stream.
#[derive(Debug, Clone)]
pub struct DelayedData {
    /// The raw table: columns `user_id, ad_id, advertiser_id, domain, timestamp, conversion,
    /// conversion_time` (empty when no conversion), rows in time order.
    pub table: RawTable,
    /// The true conversion probability of each row.
    pub true_prob: Vec<f64>,
    /// The declared schema ([`delayed_schema_toml`]).
    pub schema_toml: String,
    /// Click time of each row in seconds (the `timestamp` column, non-decreasing).
    pub time: Vec<i64>,
    /// True label of each row (the `conversion` column, 0 or 1).
    pub label: Vec<f32>,
    /// When each row's conversion is reported ([`NEVER`] for negatives): the
    /// `conversion_time` column, as [`crate::EncodedData::label_time`] holds it.
    pub label_time: Vec<i64>,
    /// When each positive actually converted ([`NEVER`] for negatives); equal to `label_time`
    /// for normal advertisers.
    pub conversion_at: Vec<i64>,
    /// Per advertiser: whether it reports in bursts.
    pub burst_advertiser: Vec<bool>,
    /// The shared burst times, increasing (they run past the last click until every
    /// conversion is reported).
    pub burst_times: Vec<i64>,
}

fn sigmoid(x: f64) -> f64 {
    1.0 / (1.0 + (-x).exp())
}

/// The intercept `c` with `mean(sigmoid(c + z)) = target` (bisection; the mean is increasing
/// in `c`).
fn calibrate_intercept(z: &[f64], target: f64) -> f64 {
    let mean = |c: f64| z.iter().map(|&x| sigmoid(c + x)).sum::<f64>() / z.len() as f64;
    let (mut lo, mut hi) = (-40.0, 40.0);
    for _ in 0..80 {
        let mid = 0.5 * (lo + hi);
        if mean(mid) < target {
            lo = mid;
        } else {
            hi = mid;
        }
    }
    0.5 * (lo + hi)
}

/// Generates the delayed stream (assumes a valid config; see [`DelayedConfig::validate`]).
pub fn generate_delayed(cfg: &DelayedConfig) -> DelayedData {
    let n = cfg.n_rows;
    let mut prm = Rng::for_stream(cfg.seed, "delayed/params");
    let e_user: Vec<f64> = (0..cfg.n_users).map(|_| prm.normal()).collect();
    let e_ad: Vec<f64> = (0..cfg.n_ads).map(|_| prm.normal()).collect();
    let e_adv: Vec<f64> = (0..cfg.n_advertisers).map(|_| prm.normal()).collect();
    let e_dom: Vec<f64> = (0..cfg.n_domains).map(|_| prm.normal()).collect();
    let ad_adv: Vec<usize> = (0..cfg.n_ads)
        .map(|_| prm.below(cfg.n_advertisers as u64) as usize)
        .collect();
    let mut order: Vec<usize> = (0..cfg.n_advertisers).collect();
    prm.shuffle(&mut order);
    let n_burst =
        ((cfg.burst_share * cfg.n_advertisers as f64).round() as usize).min(cfg.n_advertisers);
    let mut burst_advertiser = vec![false; cfg.n_advertisers];
    for &a in &order[..n_burst] {
        burst_advertiser[a] = true;
    }

    // click times: rejection sampling from the daily cycle, then sorted
    let mut tr = Rng::for_stream(cfg.seed, "delayed/times");
    let span = f64::from(cfg.days) * DAY;
    let peak = 20.0 / 24.0;
    let mut time: Vec<i64> = Vec::with_capacity(n);
    while time.len() < n {
        let t = tr.next_f64() * span;
        let phase = 2.0 * std::f64::consts::PI * (t / DAY - peak);
        let accept = (1.0 + cfg.daily_amplitude * phase.cos()) / (1.0 + cfg.daily_amplitude);
        if tr.next_f64() < accept {
            time.push(t as i64);
        }
    }
    time.sort_unstable();

    // features and logits
    let mut rng = Rng::for_stream(cfg.seed, "delayed/rows");
    let mut feats: Vec<[usize; 3]> = Vec::with_capacity(n); // user, ad, domain
    let mut z: Vec<f64> = Vec::with_capacity(n);
    for _ in 0..n {
        let u = rng.below(cfg.n_users as u64) as usize;
        let x = rng.next_f64();
        let a = ((x * x * cfg.n_ads as f64) as usize).min(cfg.n_ads - 1);
        let d = rng.below(cfg.n_domains as u64) as usize;
        let effect = 0.8 * e_user[u] + 0.6 * e_ad[a] + 0.5 * e_adv[ad_adv[a]] + 0.4 * e_dom[d];
        z.push(cfg.effect_std * effect);
        feats.push([u, a, d]);
    }
    let c = calibrate_intercept(&z, cfg.base_rate);
    let true_prob: Vec<f64> = z.iter().map(|&x| sigmoid(c + x)).collect();

    // labels and conversion times
    let mut lab = Rng::for_stream(cfg.seed, "delayed/labels");
    let mean_delay = cfg.mean_delay_hours * HOUR;
    let mut label = Vec::with_capacity(n);
    let mut conversion_at = Vec::with_capacity(n);
    for (r, &p) in true_prob.iter().enumerate() {
        let y = lab.next_f64() < p;
        let u = lab.next_f64();
        label.push(if y { 1.0 } else { 0.0 });
        conversion_at.push(if y {
            time[r] + (-mean_delay * (1.0 - u).ln()).round() as i64
        } else {
            NEVER
        });
    }

    // the shared burst schedule, until every conversion can be reported
    let mut br = Rng::for_stream(cfg.seed, "delayed/bursts");
    let last = conversion_at
        .iter()
        .copied()
        .filter(|&t| t != NEVER)
        .max()
        .unwrap_or(0)
        .max(span as i64);
    let mut burst_times = Vec::new();
    let mut b = 0.0;
    loop {
        b += (cfg.burst_min_days + (cfg.burst_max_days - cfg.burst_min_days) * br.next_f64()) * DAY;
        let bt = b.round() as i64;
        burst_times.push(bt);
        if bt >= last {
            break;
        }
    }
    let label_time: Vec<i64> = (0..n)
        .map(|r| {
            let at = conversion_at[r];
            if at == NEVER || !burst_advertiser[ad_adv[feats[r][1]]] {
                at
            } else {
                burst_times[burst_times.partition_point(|&bt| bt < at)]
            }
        })
        .collect();

    let names = [
        "user_id",
        "ad_id",
        "advertiser_id",
        "domain",
        "timestamp",
        "conversion",
        "conversion_time",
    ];
    let mut cols: Vec<ColumnBuilder> = names.iter().map(|n| ColumnBuilder::new(*n)).collect();
    for r in 0..n {
        let [u, a, d] = feats[r];
        cols[0].push(&u.to_string());
        cols[1].push(&a.to_string());
        cols[2].push(&ad_adv[a].to_string());
        cols[3].push(&d.to_string());
        cols[4].push(&time[r].to_string());
        cols[5].push(if label[r] > 0.5 { "1" } else { "0" });
        if label_time[r] == NEVER {
            cols[6].push("");
        } else {
            cols[6].push(&label_time[r].to_string());
        }
    }
    DelayedData {
        table: RawTable {
            columns: cols.into_iter().map(ColumnBuilder::finish).collect(),
            files: vec![format!("<delayed seed {}>", cfg.seed)],
            row_file: vec![0; n],
            row_line: (1..=n as u32).collect(),
        },
        true_prob,
        schema_toml: delayed_schema_toml(cfg),
        time,
        label,
        label_time,
        conversion_at,
        burst_advertiser,
        burst_times,
    }
}

/// When rows are released for training (see the module docs).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", deny_unknown_fields)]
pub enum WaitPolicy {
    /// Release at the event time (every late positive is first a fake negative).
    None,
    /// Release a fixed time after the event.
    Fixed {
        /// The wait in seconds (non-negative).
        seconds: i64,
    },
    /// Tencent's dynamic waiting window.
    Dynamic(DynamicWait),
}

/// The dynamic waiting window (formulas in the module docs).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct DynamicWait {
    /// Bucket width `B` in seconds of the observed conversion rate (default 1 hour).
    pub bucket_seconds: i64,
    /// `R`: how many of the latest complete (non-empty) buckets are "recent" (default 3).
    pub recent_buckets: usize,
    /// `H`: how many buckets before the recent ones form the history (default 48).
    pub history_buckets: usize,
    /// Wait when the rate is stable: score at or below `threshold` (default 0).
    pub min_seconds: i64,
    /// Wait when the rate swings: score at or above `saturation`, and at the start of the
    /// stream (default 12 hours).
    pub max_seconds: i64,
    /// Score up to which the wait is `min_seconds` (default 4: recent deviations of two
    /// standard deviations).
    pub threshold: f64,
    /// Score from which the wait is `max_seconds` (default 16: four standard deviations).
    pub saturation: f64,
}

impl Default for DynamicWait {
    fn default() -> Self {
        DynamicWait {
            bucket_seconds: 3_600,
            recent_buckets: 3,
            history_buckets: 48,
            min_seconds: 0,
            max_seconds: 12 * 3_600,
            threshold: 4.0,
            saturation: 16.0,
        }
    }
}

impl DynamicWait {
    /// Checks the parameters.
    pub fn validate(&self) -> Result<(), DataError> {
        let bad = |m: &str| Err(DataError::Config(format!("dynamic wait: {m}")));
        if self.bucket_seconds <= 0 {
            return bad("bucket_seconds must be positive");
        }
        if self.recent_buckets == 0 {
            return bad("recent_buckets must be at least 1");
        }
        if self.history_buckets < 2 {
            return bad("history_buckets must be at least 2");
        }
        if self.min_seconds < 0 || self.max_seconds < self.min_seconds {
            return bad("need 0 <= min_seconds <= max_seconds");
        }
        if !(self.threshold.is_finite() && self.threshold >= 0.0) {
            return bad("threshold must be finite and non-negative");
        }
        if !(self.saturation.is_finite() && self.saturation > self.threshold) {
            return bad("saturation must be finite and greater than threshold");
        }
        Ok(())
    }

    /// The wait for a stability score (`None`: not enough buckets yet, the maximum wait).
    pub fn wait_for_score(&self, score: Option<f64>) -> i64 {
        let Some(s) = score else {
            return self.max_seconds;
        };
        let x = ((s - self.threshold) / (self.saturation - self.threshold)).clamp(0.0, 1.0);
        let span = (self.max_seconds - self.min_seconds) as f64;
        self.min_seconds + (span * x).round() as i64
    }

    /// The stability score of the rates `(r, n)` of the last complete buckets, oldest first
    /// (`None` with fewer than `R + 2` buckets).
    fn score(&self, rates: &[(f64, u64)]) -> Option<f64> {
        let r = self.recent_buckets;
        if rates.len() < r + 2 {
            return None;
        }
        let (older, recent) = rates.split_at(rates.len() - r);
        let hist = &older[older.len().saturating_sub(self.history_buckets)..];
        let k = hist.len() as f64;
        let m = hist.iter().map(|h| h.0).sum::<f64>() / k;
        let v = hist.iter().map(|h| (h.0 - m).powi(2)).sum::<f64>() / k;
        let p = m.clamp(0.0, 1.0);
        let s = recent
            .iter()
            .map(|&(rj, nj)| (rj - m).powi(2) / (v + p * (1.0 - p) / nj as f64 + 1e-12))
            .sum::<f64>()
            / r as f64;
        Some(s)
    }
}

impl WaitPolicy {
    /// Checks the parameters.
    pub fn validate(&self) -> Result<(), DataError> {
        match self {
            WaitPolicy::None => Ok(()),
            WaitPolicy::Fixed { seconds } if *seconds < 0 => Err(DataError::Config(
                "fixed wait: seconds must be non-negative".into(),
            )),
            WaitPolicy::Fixed { .. } => Ok(()),
            WaitPolicy::Dynamic(d) => d.validate(),
        }
    }
}

/// Kind of a training event; `Released` sorts before `LatePositive`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub enum EventKind {
    /// The row's first training step, with the label known at its release.
    Released,
    /// A positive that was released as a negative (a fake negative), re-inserted with label 1
    /// when its conversion is reported.
    LatePositive,
}

/// One training event: train row `row` with `label` at time `at`.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct TrainEvent {
    /// When the event happens (same clock as the rows' time).
    pub at: i64,
    /// The row (index into the columns given to [`schedule`]).
    pub row: u32,
    /// The label to train on (0 or 1).
    pub label: f32,
    /// Release or late positive.
    pub kind: EventKind,
}

/// One bucket of the dynamic waiting window's observed conversion rate.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct BucketStat {
    /// Start of the bucket (`j·B`).
    pub start: i64,
    /// Clicks in the bucket.
    pub clicks: u64,
    /// Positives reported in the bucket.
    pub arrivals: u64,
    /// `arrivals / clicks`.
    pub rate: f64,
    /// The stability score used by rows clicked in this bucket (from earlier buckets only;
    /// `None` at the start of the stream).
    pub score: Option<f64>,
    /// The wait of rows clicked in this bucket.
    pub wait: i64,
}

fn is_pos(y: f32) -> bool {
    y >= 0.5
}

/// When row `r`'s positive became known: `None` for a negative; the event time when the task
/// has no label-time column.
fn known_at(time: &[i64], label: &[f32], label_time: &[i64], r: usize) -> Option<i64> {
    if !is_pos(label[r]) {
        None
    } else if label_time.is_empty() {
        Some(time[r])
    } else {
        Some(label_time[r])
    }
}

fn check_inputs(time: &[i64], label: &[f32], label_time: &[i64]) {
    assert_eq!(
        time.len(),
        label.len(),
        "delayed: time and label lengths differ"
    );
    assert!(
        label_time.is_empty() || label_time.len() == time.len(),
        "delayed: label_time must be empty or as long as time"
    );
    assert!(time.len() <= u32::MAX as usize, "delayed: too many rows");
    assert!(
        time.windows(2).all(|w| w[0] <= w[1]),
        "delayed: rows must be in time order"
    );
}

/// The buckets of the dynamic waiting window over a stream, in time order (only buckets with
/// clicks), with the score and wait their rows get; and for each row, its bucket's index.
///
/// # Panics
/// On inconsistent lengths, rows out of time order, or an invalid policy.
pub fn dynamic_trace(
    time: &[i64],
    label: &[f32],
    label_time: &[i64],
    policy: &DynamicWait,
) -> (Vec<BucketStat>, Vec<u32>) {
    check_inputs(time, label, label_time);
    if let Err(e) = policy.validate() {
        panic!("{e}");
    }
    let b = policy.bucket_seconds;
    let mut ids: Vec<i64> = Vec::new();
    let mut clicks: Vec<u64> = Vec::new();
    let mut row_bucket = Vec::with_capacity(time.len());
    for &t in time {
        let id = t.div_euclid(b);
        if ids.last() != Some(&id) {
            ids.push(id);
            clicks.push(0);
        }
        *clicks.last_mut().expect("a bucket") += 1;
        row_bucket.push((ids.len() - 1) as u32);
    }
    let mut arrivals = vec![0u64; ids.len()];
    for r in 0..time.len() {
        if let Some(k) = known_at(time, label, label_time, r).filter(|&k| k != NEVER) {
            if let Ok(j) = ids.binary_search(&k.div_euclid(b)) {
                arrivals[j] += 1;
            }
        }
    }
    let rates: Vec<(f64, u64)> = arrivals
        .iter()
        .zip(&clicks)
        .map(|(&a, &n)| (a as f64 / n as f64, n))
        .collect();
    let keep = policy.recent_buckets + policy.history_buckets;
    let stats = (0..ids.len())
        .map(|j| {
            // buckets before j have ended by any time in bucket j: causal
            let score = policy.score(&rates[j.saturating_sub(keep)..j]);
            BucketStat {
                start: ids[j].saturating_mul(b),
                clicks: clicks[j],
                arrivals: arrivals[j],
                rate: rates[j].0,
                score,
                wait: policy.wait_for_score(score),
            }
        })
        .collect();
    (stats, row_bucket)
}

/// The wait of each row under `policy` (seconds after its time).
///
/// # Panics
/// On inconsistent lengths, rows out of time order, or an invalid policy.
pub fn release_waits(
    time: &[i64],
    label: &[f32],
    label_time: &[i64],
    policy: &WaitPolicy,
) -> Vec<i64> {
    check_inputs(time, label, label_time);
    if let Err(e) = policy.validate() {
        panic!("{e}");
    }
    match policy {
        WaitPolicy::None => vec![0; time.len()],
        WaitPolicy::Fixed { seconds } => vec![*seconds; time.len()],
        WaitPolicy::Dynamic(d) => {
            let (stats, row_bucket) = dynamic_trace(time, label, label_time, d);
            row_bucket.iter().map(|&j| stats[j as usize].wait).collect()
        }
    }
}

/// The training events of a stream under `policy` (module docs): one `Released` event per row
/// at `time + wait`, labelled 1 iff a positive known by then, and one `LatePositive` per fake
/// negative at its `label_time`; sorted by `(at, row, kind)`.
///
/// `label_time` is [`crate::EncodedData::label_time`] of the task ([`NEVER`] = never
/// reported), or empty when the task has none (positives known at once).
///
/// # Panics
/// On inconsistent lengths, rows out of time order, or an invalid policy
/// ([`WaitPolicy::validate`]).
pub fn schedule(
    time: &[i64],
    label: &[f32],
    label_time: &[i64],
    policy: &WaitPolicy,
) -> Vec<TrainEvent> {
    let waits = release_waits(time, label, label_time, policy);
    let mut events = Vec::with_capacity(time.len() + time.len() / 8);
    for (r, &w) in waits.iter().enumerate() {
        let at = time[r].saturating_add(w);
        let known = known_at(time, label, label_time, r);
        let now = known.is_some_and(|k| k <= at);
        events.push(TrainEvent {
            at,
            row: r as u32,
            label: if now { 1.0 } else { 0.0 },
            kind: EventKind::Released,
        });
        if let Some(k) = known.filter(|&k| k > at && k != NEVER) {
            events.push(TrainEvent {
                at: k,
                row: r as u32,
                label: 1.0,
                kind: EventKind::LatePositive,
            });
        }
    }
    events.sort_by_key(|e| (e.at, e.row, e.kind));
    events
}

/// What a schedule costs and buys.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ScheduleSummary {
    /// Rows (released events).
    pub rows: usize,
    /// True positives among them.
    pub positives: usize,
    /// Positives released with label 1 (known within their wait).
    pub released_positive: usize,
    /// Positives released as 0 and re-inserted later (`LatePositive` events).
    pub fake_negatives: usize,
    /// Positives released as 0 and never re-inserted (never reported).
    pub never_known: usize,
    /// `fake_negatives / positives` (0 without positives).
    pub fake_negative_share: f64,
    /// Mean wait between a row's time and its release, in seconds.
    pub mean_wait_seconds: f64,
    /// Longest wait, in seconds.
    pub max_wait_seconds: i64,
    /// Mean time from a positive's click to its first positive event (release or late
    /// positive), over positives ever trained as positive: how fresh the positive signal is.
    pub mean_positive_delay_seconds: f64,
    /// Mean label at release (the conversion rate a model trained without correction sees
    /// first).
    pub released_rate: f64,
    /// Mean true label.
    pub true_rate: f64,
}

/// Summarizes the `events` of [`schedule`] over the same `time` and `label`.
pub fn summarize(time: &[i64], label: &[f32], events: &[TrainEvent]) -> ScheduleSummary {
    let mut s = ScheduleSummary {
        rows: 0,
        positives: label.iter().filter(|&&y| is_pos(y)).count(),
        released_positive: 0,
        fake_negatives: 0,
        never_known: 0,
        fake_negative_share: 0.0,
        mean_wait_seconds: 0.0,
        max_wait_seconds: 0,
        mean_positive_delay_seconds: 0.0,
        released_rate: 0.0,
        true_rate: 0.0,
    };
    let (mut wait_sum, mut delay_sum) = (0.0, 0.0);
    for e in events {
        let t = time[e.row as usize];
        match e.kind {
            EventKind::Released => {
                s.rows += 1;
                let w = e.at - t;
                wait_sum += w as f64;
                s.max_wait_seconds = s.max_wait_seconds.max(w);
                if is_pos(e.label) {
                    s.released_positive += 1;
                    delay_sum += w as f64;
                }
            }
            EventKind::LatePositive => {
                s.fake_negatives += 1;
                delay_sum += (e.at - t) as f64;
            }
        }
    }
    s.never_known = s.positives - s.released_positive - s.fake_negatives;
    let ratio = |a: f64, b: usize| if b == 0 { 0.0 } else { a / b as f64 };
    s.fake_negative_share = ratio(s.fake_negatives as f64, s.positives);
    s.mean_wait_seconds = ratio(wait_sum, s.rows);
    s.mean_positive_delay_seconds = ratio(delay_sum, s.released_positive + s.fake_negatives);
    s.released_rate = ratio(s.released_positive as f64, s.rows);
    s.true_rate = ratio(s.positives as f64, label.len());
    s
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fit::fit_encode;
    use crate::schema::SchemaSpec;
    use crate::split::{split_rows, SplitSpec};
    use EventKind::{LatePositive as Late, Released as Rel};

    fn ev(at: i64, row: u32, label: f32, kind: EventKind) -> TrainEvent {
        TrainEvent {
            at,
            row,
            label,
            kind,
        }
    }

    // rows: 0 negative; 1 positive known at once; 2 positive after 50 s; 3 positive after
    // 200 s; 4 positive never reported
    const TIME: [i64; 5] = [0, 10, 10, 20, 30];
    const LABEL: [f32; 5] = [0.0, 1.0, 1.0, 1.0, 1.0];
    const LABEL_TIME: [i64; 5] = [NEVER, 10, 60, 220, NEVER];

    #[test]
    fn no_wait_makes_every_late_positive_a_fake_negative() {
        let e = schedule(&TIME, &LABEL, &LABEL_TIME, &WaitPolicy::None);
        assert_eq!(
            e,
            vec![
                ev(0, 0, 0.0, Rel),
                ev(10, 1, 1.0, Rel),
                ev(10, 2, 0.0, Rel),
                ev(20, 3, 0.0, Rel),
                ev(30, 4, 0.0, Rel),
                ev(60, 2, 1.0, Late),
                ev(220, 3, 1.0, Late),
            ]
        );
        let s = summarize(&TIME, &LABEL, &e);
        assert_eq!(
            (
                s.rows,
                s.positives,
                s.released_positive,
                s.fake_negatives,
                s.never_known
            ),
            (5, 4, 1, 2, 1)
        );
        assert_eq!(s.fake_negative_share, 0.5);
        assert_eq!(s.mean_wait_seconds, 0.0);
        // delays of the first positive events: 0 (row 1), 50 (row 2), 200 (row 3)
        assert!((s.mean_positive_delay_seconds - 250.0 / 3.0).abs() < 1e-9);
        assert_eq!(s.released_rate, 0.2);
        assert_eq!(s.true_rate, 0.8);
    }

    #[test]
    fn fixed_wait_releases_early_positives_as_positives() {
        // wait 50: row 2 (delay 50 <= 50) is released positive, row 3 (delay 200) late
        let e = schedule(
            &TIME,
            &LABEL,
            &LABEL_TIME,
            &WaitPolicy::Fixed { seconds: 50 },
        );
        assert_eq!(
            e,
            vec![
                ev(50, 0, 0.0, Rel),
                ev(60, 1, 1.0, Rel),
                ev(60, 2, 1.0, Rel),
                ev(70, 3, 0.0, Rel),
                ev(80, 4, 0.0, Rel),
                ev(220, 3, 1.0, Late),
            ]
        );
        // one second less: row 2 turns into a fake negative
        let e = schedule(
            &TIME,
            &LABEL,
            &LABEL_TIME,
            &WaitPolicy::Fixed { seconds: 49 },
        );
        assert!(e.contains(&ev(59, 2, 0.0, Rel)) && e.contains(&ev(60, 2, 1.0, Late)));
        let s = summarize(&TIME, &LABEL, &e);
        assert_eq!(
            (s.fake_negatives, s.mean_wait_seconds, s.max_wait_seconds),
            (2, 49.0, 49)
        );
        // a task without label times knows its positives at once
        let e = schedule(&TIME, &LABEL, &[], &WaitPolicy::None);
        assert_eq!(e.len(), 5);
        assert!(e
            .iter()
            .all(|x| x.kind == Rel && x.label == LABEL[x.row as usize]));
    }

    #[test]
    fn empty_input_and_invalid_input() {
        for p in [
            WaitPolicy::None,
            WaitPolicy::Fixed { seconds: 5 },
            WaitPolicy::Dynamic(DynamicWait::default()),
        ] {
            assert!(schedule(&[], &[], &[], &p).is_empty());
            let s = summarize(&[], &[], &[]);
            assert_eq!((s.rows, s.positives, s.fake_negative_share), (0, 0, 0.0));
        }
        assert!(WaitPolicy::Fixed { seconds: -1 }.validate().is_err());
        let bad = DynamicWait {
            saturation: 1.0,
            threshold: 2.0,
            ..Default::default()
        };
        assert!(WaitPolicy::Dynamic(bad).validate().is_err());
        let r = std::panic::catch_unwind(|| schedule(&[5, 1], &[0.0, 0.0], &[], &WaitPolicy::None));
        assert!(r.is_err(), "rows out of time order must be refused");
    }

    /// Bucket 10 s, 10 clicks per bucket, R = 1, H = 2, wait 0..100 s for scores 1..2.
    fn hand_stream(arrivals: [usize; 4]) -> (Vec<i64>, Vec<f32>, Vec<i64>) {
        let (mut t, mut y, mut lt) = (Vec::new(), Vec::new(), Vec::new());
        for b in 0..5i64 {
            for i in 0..10 {
                t.push(10 * b + i);
                y.push(0.0);
                lt.push(NEVER);
            }
        }
        // the positives reported in bucket j are rows clicked in bucket j
        for (j, &a) in arrivals.iter().enumerate() {
            for i in 0..a {
                y[10 * j + i] = 1.0;
                lt[10 * j + i] = (10 * j + 9) as i64;
            }
        }
        (t, y, lt)
    }

    fn hand_policy() -> DynamicWait {
        DynamicWait {
            bucket_seconds: 10,
            recent_buckets: 1,
            history_buckets: 2,
            min_seconds: 0,
            max_seconds: 100,
            threshold: 1.0,
            saturation: 2.0,
        }
    }

    #[test]
    fn dynamic_wait_by_hand() {
        let p = hand_policy();
        // stable rates 0.1, 0.1, 0.1: score 0 for bucket 3 -> no wait
        let (t, y, lt) = hand_stream([1, 1, 1, 1]);
        let (stats, rows) = dynamic_trace(&t, &y, &lt, &p);
        assert_eq!(stats.len(), 5);
        assert_eq!(rows[35], 3);
        assert_eq!(stats[2].rate, 0.1);
        // buckets 0..=2 lack history: maximum wait
        assert!(stats[..3]
            .iter()
            .all(|s| s.score.is_none() && s.wait == 100));
        assert_eq!((stats[3].score, stats[3].wait), (Some(0.0), 0));
        // a burst in bucket 2 (rate 0.5 against 0.1, 0.1): score 0.16 / 0.009 -> max wait
        let (t, y, lt) = hand_stream([1, 1, 5, 1]);
        let (stats, _) = dynamic_trace(&t, &y, &lt, &p);
        let s = stats[3].score.unwrap();
        assert!((s - 0.16 / (0.09 / 10.0 + 1e-12)).abs() < 1e-6, "{s}");
        assert_eq!(stats[3].wait, 100);
        // bucket 4: recent 0.1 against history 0.1, 0.5 (m 0.3, v 0.04): 0.04 / 0.061
        let s4 = stats[4].score.unwrap();
        assert!(
            (s4 - 0.04 / (0.04 + 0.21 / 10.0 + 1e-12)).abs() < 1e-9,
            "{s4}"
        );
        assert_eq!(stats[4].wait, 0);
        // the mapping is linear between threshold and saturation
        assert_eq!(p.wait_for_score(Some(1.5)), 50);
        assert_eq!(p.wait_for_score(Some(0.5)), 0);
        assert_eq!(p.wait_for_score(Some(9.0)), 100);
        assert_eq!(p.wait_for_score(None), 100);
        // the waits land in the schedule: bucket 3's rows are released at once
        let w = release_waits(&t, &y, &lt, &WaitPolicy::Dynamic(p.clone()));
        assert_eq!((w[30], w[39], w[29]), (100, 100, 100));
        assert_eq!(w[40], 0);
        // causality by hand: a burst reported in bucket 3 leaves bucket 3's own rows alone
        // (reports at 39 are not observable at 30..39 before the bucket ends) and makes
        // bucket 4 wait
        let calm = release_waits(&t, &y, &lt, &WaitPolicy::Dynamic(p.clone()));
        let (t, y, lt) = hand_stream([1, 1, 1, 1]);
        let a = release_waits(&t, &y, &lt, &WaitPolicy::Dynamic(p.clone()));
        let (t, y, lt) = hand_stream([1, 1, 1, 8]);
        let b = release_waits(&t, &y, &lt, &WaitPolicy::Dynamic(p.clone()));
        assert_eq!(a[..40], b[..40]);
        assert_eq!((a[30], a[45], b[45]), (0, 0, 100));
        assert_eq!(calm[45], 0);
    }

    fn small_stream() -> DelayedData {
        generate_delayed(&DelayedConfig {
            n_rows: 30_000,
            days: 10,
            ..DelayedConfig::tiny()
        })
    }

    #[test]
    fn dynamic_wait_is_causal() {
        let d = small_stream();
        let policy = WaitPolicy::Dynamic(DynamicWait::default());
        let base = release_waits(&d.time, &d.label, &d.label_time, &policy);
        let cut = 5 * 86_400 + 1_234;
        // every report at or after the cut moves to one instant an hour later
        let moved: Vec<i64> = d
            .label_time
            .iter()
            .map(|&t| {
                if t != NEVER && t >= cut {
                    cut + 3_600
                } else {
                    t
                }
            })
            .collect();
        assert_ne!(moved, d.label_time);
        let w = release_waits(&d.time, &d.label, &moved, &policy);
        let before = d.time.partition_point(|&t| t < cut);
        assert_eq!(
            w[..before],
            base[..before],
            "a future report changed an earlier wait"
        );
        assert_ne!(w[before..], base[before..], "the change must matter later");
        // the schedule before the cut is the same too
        let ea: Vec<_> = schedule(&d.time, &d.label, &d.label_time, &policy)
            .into_iter()
            .filter(|e| e.at < cut)
            .collect();
        let eb: Vec<_> = schedule(&d.time, &d.label, &moved, &policy)
            .into_iter()
            .filter(|e| e.at < cut)
            .collect();
        assert_eq!(ea, eb);
    }

    #[test]
    fn events_never_precede_their_row_and_are_sorted() {
        let d = small_stream();
        for p in [
            WaitPolicy::None,
            WaitPolicy::Fixed { seconds: 7_200 },
            WaitPolicy::Dynamic(DynamicWait::default()),
        ] {
            let e = schedule(&d.time, &d.label, &d.label_time, &p);
            let s = summarize(&d.time, &d.label, &e);
            assert_eq!(s.rows, d.time.len());
            assert_eq!(e.len(), s.rows + s.fake_negatives);
            assert_eq!(s.never_known, 0, "every generated positive is reported");
            for x in &e {
                let r = x.row as usize;
                assert!(x.at >= d.time[r]);
                match x.kind {
                    Rel => {
                        assert_eq!(x.label == 1.0, d.label[r] == 1.0 && d.label_time[r] <= x.at)
                    }
                    Late => assert!(x.label == 1.0 && x.at == d.label_time[r]),
                }
            }
            assert!(e
                .windows(2)
                .all(|w| (w[0].at, w[0].row, w[0].kind) < (w[1].at, w[1].row, w[1].kind)));
        }
    }

    #[test]
    fn longer_fixed_waits_leave_fewer_fake_negatives() {
        let d = small_stream();
        let share = |s: i64| {
            let e = schedule(
                &d.time,
                &d.label,
                &d.label_time,
                &WaitPolicy::Fixed { seconds: s },
            );
            summarize(&d.time, &d.label, &e)
        };
        let (a, b, c) = (share(0), share(3_600), share(6 * 3_600));
        assert!(a.fake_negative_share > b.fake_negative_share);
        assert!(b.fake_negative_share > c.fake_negative_share);
        assert!(a.released_rate < b.released_rate && b.released_rate < c.released_rate);
        assert!(c.released_rate < c.true_rate);
    }

    #[test]
    fn dynamic_wait_is_longer_right_after_a_burst() {
        let cfg = DelayedConfig::default();
        let d = generate_delayed(&cfg);
        let p = DynamicWait::default();
        let (stats, rows) = dynamic_trace(&d.time, &d.label, &d.label_time, &p);
        let w = release_waits(
            &d.time,
            &d.label,
            &d.label_time,
            &WaitPolicy::Dynamic(p.clone()),
        );
        assert!(rows
            .iter()
            .zip(&w)
            .all(|(&j, &x)| stats[j as usize].wait == x));
        let b = p.bucket_seconds;
        let bursts: Vec<i64> = d
            .burst_times
            .iter()
            .copied()
            .filter(|&t| t < i64::from(cfg.days) * 86_400)
            .collect();
        assert!(bursts.len() >= 4, "{bursts:?}");
        let warm = (p.recent_buckets + p.history_buckets) as i64 * b;
        let (mut after, mut calm) = (Vec::new(), Vec::new());
        for (r, &t) in d.time.iter().enumerate() {
            if t < warm {
                continue;
            }
            // since the end of the latest burst's bucket
            let since = bursts
                .iter()
                .filter(|&&x| (x.div_euclid(b) + 1) * b <= t)
                .map(|&x| t - (x.div_euclid(b) + 1) * b)
                .min();
            match since {
                Some(s) if s < p.recent_buckets as i64 * b => after.push(w[r] as f64),
                Some(s) if s < 12 * 3_600 => {}
                _ => calm.push(w[r] as f64),
            }
        }
        let mean = |v: &[f64]| v.iter().sum::<f64>() / v.len() as f64;
        let (ma, mc) = (mean(&after), mean(&calm));
        eprintln!(
            "dynamic wait: {} rows right after a burst wait {ma:.0} s, {} calm rows {mc:.0} s",
            after.len(),
            calm.len()
        );
        assert!(after.len() > 100 && calm.len() > 10_000);
        assert!(ma > 0.8 * p.max_seconds as f64, "{ma}");
        assert!(mc < 0.25 * p.max_seconds as f64, "{mc}");
        // the dynamic policy waits far less than a fixed one of its maximum, on average
        let e = schedule(&d.time, &d.label, &d.label_time, &WaitPolicy::Dynamic(p));
        let s = summarize(&d.time, &d.label, &e);
        eprintln!("dynamic summary: {s:?}");
        assert!(s.mean_wait_seconds < 0.25 * 12.0 * 3_600.0);
    }

    #[test]
    fn generator_is_deterministic_and_as_configured() {
        let cfg = DelayedConfig::default();
        assert!(cfg.validate().is_ok());
        let a = generate_delayed(&cfg);
        let b = generate_delayed(&cfg);
        assert_eq!(a.table, b.table);
        assert_eq!(a.true_prob, b.true_prob);
        let c = generate_delayed(&DelayedConfig {
            seed: 7,
            ..cfg.clone()
        });
        assert_ne!(a.table, c.table);
        let n = cfg.n_rows;
        assert_eq!(a.table.n_rows(), n);
        assert!(a.time.windows(2).all(|w| w[0] <= w[1]));
        assert!(a.time[0] >= 0 && a.time[n - 1] < 14 * 86_400);
        // calibrated mean probability; the realised rate within binomial noise
        let mp = a.true_prob.iter().sum::<f64>() / n as f64;
        assert!((mp - cfg.base_rate).abs() < 1e-6, "{mp}");
        let rate = a.label.iter().map(|&y| f64::from(y)).sum::<f64>() / n as f64;
        assert!((rate - cfg.base_rate).abs() < 0.004, "{rate}");
        // the effects spread the probabilities (something to learn)
        let sd = (a.true_prob.iter().map(|p| (p - mp).powi(2)).sum::<f64>() / n as f64).sqrt();
        assert!(sd > 0.03, "{sd}");
        // burst advertisers: exactly the configured share
        let nb = a.burst_advertiser.iter().filter(|&&x| x).count();
        assert_eq!(nb, 30);
        let adv = a.table.column("advertiser_id").unwrap();
        let (mut normal_delay, mut n_normal, mut n_burst) = (0.0, 0usize, 0usize);
        for r in 0..n {
            if a.label[r] == 0.0 {
                assert_eq!((a.label_time[r], a.conversion_at[r]), (NEVER, NEVER));
                continue;
            }
            let v: usize = adv.get(r).parse().unwrap();
            assert!(a.conversion_at[r] >= a.time[r]);
            if a.burst_advertiser[v] {
                n_burst += 1;
                assert!(a.burst_times.binary_search(&a.label_time[r]).is_ok());
                assert!(a.label_time[r] >= a.conversion_at[r]);
            } else {
                n_normal += 1;
                assert_eq!(a.label_time[r], a.conversion_at[r]);
                normal_delay += (a.label_time[r] - a.time[r]) as f64;
            }
        }
        let md = normal_delay / n_normal as f64 / 3_600.0;
        assert!((md - cfg.mean_delay_hours).abs() < 0.5, "{md}");
        let share = n_burst as f64 / (n_burst + n_normal) as f64;
        assert!((0.1..0.5).contains(&share), "{share}");
        // bursts 2..3 days apart
        assert!(a
            .burst_times
            .windows(2)
            .all(|w| (2 * 86_400..=3 * 86_400).contains(&(w[1] - w[0]))));
        // the daily cycle: more clicks around 20:00 than around 08:00
        let hour = |h: i64| {
            a.time
                .iter()
                .filter(|&&t| (t % 86_400) / 3_600 == h)
                .count()
        };
        assert!(hour(20) > 2 * hour(8), "{} vs {}", hour(20), hour(8));
    }

    #[test]
    fn config_validation() {
        assert!(DelayedConfig::tiny().validate().is_ok());
        for bad in [
            DelayedConfig {
                n_rows: 0,
                ..Default::default()
            },
            DelayedConfig {
                days: 0,
                ..Default::default()
            },
            DelayedConfig {
                base_rate: 1.0,
                ..Default::default()
            },
            DelayedConfig {
                mean_delay_hours: 0.0,
                ..Default::default()
            },
            DelayedConfig {
                burst_share: 1.5,
                ..Default::default()
            },
            DelayedConfig {
                burst_max_days: 1.0,
                ..Default::default()
            },
            DelayedConfig {
                daily_amplitude: f64::NAN,
                ..Default::default()
            },
        ] {
            assert!(bad.validate().is_err(), "{bad:?}");
        }
        let c: DelayedConfig = serde_json::from_str(r#"{"seed": 3, "burst_share": 0}"#).unwrap();
        assert_eq!((c.seed, c.burst_share, c.n_rows), (3, 0.0, 100_000));
        assert!(serde_json::from_str::<DelayedConfig>(r#"{"sed": 3}"#).is_err());
        let p: WaitPolicy = serde_json::from_str(r#"{"dynamic": {"max_seconds": 60}}"#).unwrap();
        assert_eq!(
            p,
            WaitPolicy::Dynamic(DynamicWait {
                max_seconds: 60,
                ..Default::default()
            })
        );
    }

    #[test]
    fn schema_parses_and_the_encoder_reads_the_stream() {
        let cfg = DelayedConfig::tiny();
        let d = generate_delayed(&cfg);
        let spec = SchemaSpec::from_toml_str(&d.schema_toml, "<delayed>").unwrap();
        spec.validate("<delayed>").unwrap();
        assert_eq!(spec.time.as_deref(), Some("timestamp"));
        assert_eq!(spec.tasks.len(), 1);
        assert_eq!(spec.tasks[0].label_time.as_deref(), Some("conversion_time"));
        let splits = split_rows(
            &d.table,
            &SplitSpec::Stream {
                column: "timestamp".into(),
            },
        )
        .unwrap();
        let (schema, _, [train, _, _]) = fit_encode(&spec, "<delayed>", &d.table, &splits).unwrap();
        assert_eq!(schema.n_domains(), cfg.n_domains);
        // rows are generated in time order: the stream split keeps them as they are
        assert_eq!(train.time, d.time);
        assert_eq!(train.labels[0], d.label);
        assert_eq!(train.label_time[0], d.label_time);
        let e = schedule(
            &train.time,
            &train.labels[0],
            &train.label_time[0],
            &WaitPolicy::Dynamic(DynamicWait::default()),
        );
        assert!(e.len() > cfg.n_rows);
    }
}
