//! Embedding tables that grow and shrink: rows are created when an id is admitted and freed
//! when it is evicted (stream training).
//!
//! A dynamic table maps an encoded id (its *key*) to a row. The key space is the one the
//! encoder already has (the vocabulary fitted over the stream's values, the way a production
//! system hashes raw values to 64-bit keys); what the table bounds is the number of **rows**,
//! i.e. weights plus optimizer state. PAD (0) and OOV (1) always have rows; an id that has no
//! row — never admitted, or evicted — is looked up as the OOV row, which training keeps
//! learning as the "unknown id" embedding. So the scoring path needs only the id→row map,
//! which is saved with the weights. A table sharded across a process group maps the ids its
//! rank owns by their shard keys, `2 + id / N` (module `embedding::sharded`).
//!
//! Per window and batch, [`crate::EmbeddingStore::admit`] runs before the training step:
//!
//! - **admission** ([`Admission`]): every new id; after `min_count` occurrences, counted in a
//!   count-min sketch (depth 4, `sketch_width` counters per row, no row allocated while
//!   counting; the sketch can only over-count); with probability `p` per occurrence (no
//!   counters); or only during the first window (the "vocabulary frozen after the first window"
//!   baseline). Sketch counts decay by `score_decay` per window, like the scores below.
//! - **capacity** per table (rows, besides PAD and OOV; `capacity_fraction` of the ids, for the
//!   tables in `capacity_tables` or all): an admission into a full table evicts one row, the
//!   lowest-priority one that the current batch does not use. The candidates are ranked once
//!   per step and taken in order (`max(64, capacity/64)` at a time), so a batch of admissions
//!   costs one scan of the live rows.
//! - **eviction priority** ([`Eviction`]): `score`, a frequency that decays by `score_decay` per
//!   window (`s ← s·decay^(w − w_last) + 1` at each occurrence); `lfu` (lifetime count); `lru`
//!   (last step seen). Ties are broken by the id, so eviction is deterministic. With `score`, a
//!   full table also compares before it admits (PEPNet's GSET "prevents low-frequency features
//!   from entering and exiting"; TinyLFU, Einziger et al. 2017, admits the same way): the new id
//!   gets a row only if its sketch-estimated decayed count is above the victim's score;
//!   otherwise it keeps reading the OOV row. LFU and LRU admit unconditionally (the classic
//!   caches).
//! - **time to live**: at the start of a window, rows not seen for more than `ttl_windows`
//!   windows are evicted (PEPNet's expiry).
//!
//! An evicted row's optimizer moments are zeroed when the row is reused for another id, and its
//! weights start as a copy of the OOV row (`new_rows = "oov"`, the default: the id goes on from
//! the "unknown id" embedding it was read as until then, instead of from a near-zero vector) or
//! as fresh draws from the table's admission RNG (`"random"`).

use std::collections::BTreeMap;

use mdrec_data::rng::Rng;
use serde::{Deserialize, Serialize};

mdrec_data::string_enum! {
    /// When an id without a row gets one (`train.stream.tables.admission`).
    #[derive(Default)]
    pub enum Admission: "train.stream.tables.admission" {
        /// Every new id, at its first occurrence.
        #[default]
        All = "all",
        /// After the id was seen `min_count` times (count-min sketch).
        MinCount = "min_count",
        /// With probability `probability` at each occurrence.
        Probability = "probability",
        /// Every id of the first window, none afterwards (a vocabulary frozen after window 1).
        FirstWindow = "first_window",
    }
}

mdrec_data::string_enum! {
    /// What a newly admitted id's row starts from (`train.stream.tables.new_rows`).
    #[derive(Default)]
    pub enum NewRows: "train.stream.tables.new_rows" {
        /// A copy of the OOV row: the id keeps scoring as it did before it had a row (the
        /// learned "unknown id" embedding) and trains on from there.
        #[default]
        Oov = "oov",
        /// Fresh values ~ N(0, init_std²), as the table's initial rows.
        Random = "random",
    }
}

mdrec_data::string_enum! {
    /// Which rows go first when a table is full (`train.stream.tables.eviction`).
    #[derive(Default)]
    pub enum Eviction: "train.stream.tables.eviction" {
        /// Lowest decayed-frequency score (PEPNet's GSET-style feature score).
        #[default]
        Score = "score",
        /// Least frequently used (lifetime count).
        Lfu = "lfu",
        /// Least recently used (last step seen).
        Lru = "lru",
    }
}

/// Admission and eviction of every table in stream training (`[train.stream.tables]`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct TablePolicy {
    /// When a new id gets a row.
    pub admission: Admission,
    /// Occurrences before admission (`admission = "min_count"`).
    pub min_count: u32,
    /// Admission probability per occurrence (`admission = "probability"`).
    pub probability: f64,
    /// Capacity of every table as a fraction of its number of ids (`None` = unlimited).
    pub capacity_fraction: Option<f64>,
    /// The tables `capacity_fraction` applies to (empty: every table).
    pub capacity_tables: Vec<String>,
    /// Capacity in rows for named tables (overrides `capacity_fraction`).
    pub capacity: BTreeMap<String, usize>,
    /// Which rows are evicted when a table is full.
    pub eviction: Eviction,
    /// What a new row starts from: `oov` (a copy of the OOV row) or `random`.
    pub new_rows: NewRows,
    /// Per-window decay of the frequency score (`eviction = "score"`), in (0, 1].
    pub score_decay: f64,
    /// Evict rows not seen for more than this many windows (`None` = no expiry).
    pub ttl_windows: Option<u64>,
    /// Counters per row of the count-min sketch (`admission = "min_count"`).
    pub sketch_width: usize,
}

impl Default for TablePolicy {
    fn default() -> Self {
        TablePolicy {
            admission: Admission::All,
            min_count: 2,
            probability: 0.5,
            capacity_fraction: None,
            capacity_tables: Vec::new(),
            capacity: BTreeMap::new(),
            eviction: Eviction::Score,
            new_rows: NewRows::Oov,
            score_decay: 0.5,
            ttl_windows: None,
            sketch_width: 1 << 16,
        }
    }
}

impl TablePolicy {
    /// Checks the numbers; errors name the key.
    pub fn validate(&self) -> Result<(), String> {
        let key = "train.stream.tables";
        if self.admission == Admission::MinCount && self.min_count == 0 {
            return Err(format!("{key}.min_count must be at least 1"));
        }
        if !(self.probability.is_finite() && self.probability > 0.0 && self.probability <= 1.0) {
            return Err(format!(
                "{key}.probability must lie in (0, 1], got {}",
                self.probability
            ));
        }
        if let Some(f) = self.capacity_fraction {
            if !(f.is_finite() && f > 0.0 && f <= 1.0) {
                return Err(format!(
                    "{key}.capacity_fraction must lie in (0, 1], got {f}"
                ));
            }
        }
        if let Some((name, _)) = self.capacity.iter().find(|(_, &c)| c == 0) {
            return Err(format!("{key}.capacity.{name} must be at least 1"));
        }
        if !(self.score_decay.is_finite() && self.score_decay > 0.0 && self.score_decay <= 1.0) {
            return Err(format!(
                "{key}.score_decay must lie in (0, 1], got {}",
                self.score_decay
            ));
        }
        if self.ttl_windows == Some(0) {
            return Err(format!("{key}.ttl_windows must be at least 1"));
        }
        if self.sketch_width < 16 {
            return Err(format!("{key}.sketch_width must be at least 16"));
        }
        Ok(())
    }

    /// The row capacity of a table with `n_keys` ids (PAD and OOV included), besides PAD and OOV.
    pub fn capacity_of(&self, table: &str, n_keys: usize) -> usize {
        let ids = n_keys.saturating_sub(RESERVED as usize);
        let fraction = self.capacity_fraction.filter(|_| {
            self.capacity_tables.is_empty() || self.capacity_tables.iter().any(|t| t == table)
        });
        match (self.capacity.get(table), fraction) {
            (Some(&c), _) => c,
            (None, Some(f)) => ((ids as f64 * f).round() as usize).max(1),
            (None, None) => ids.max(1),
        }
    }
}

/// Keys below this (PAD, OOV) always have their own rows (the same numbers).
pub const RESERVED: u32 = 2;

/// Under row sharding over `size` ranks, whether `rank` holds id `id` of a dynamic table: ids
/// are dealt as in static tables ([`crate::collective::owner`]), and PAD and OOV are held by
/// every rank.
#[inline]
pub(crate) fn owns(id: u32, rank: usize, size: usize) -> bool {
    id < RESERVED || id as usize % size == rank
}

/// The key id `id` has in its owner's shard of a dynamic table sharded over `size` ranks
/// (PAD and OOV keep theirs).
#[inline]
pub(crate) fn shard_key(id: u32, size: usize) -> u32 {
    if id < RESERVED {
        id
    } else {
        RESERVED + id / size as u32
    }
}

/// The id of key `key` of rank `rank`'s shard ([`shard_key`]'s inverse).
#[inline]
pub(crate) fn shard_id(key: u32, rank: usize, size: usize) -> u32 {
    if key < RESERVED {
        key
    } else {
        (key - RESERVED) * size as u32 + rank as u32
    }
}

/// Keys of one rank's shard of a dynamic table with `n_keys` ids.
pub(crate) fn shard_keys(n_keys: usize, size: usize) -> usize {
    RESERVED as usize + n_keys.div_ceil(size)
}

/// Ids besides PAD and OOV that `rank` of `size` holds in a table of `n_keys` ids.
pub(crate) fn owned_ids(n_keys: usize, rank: usize, size: usize) -> usize {
    let below = (0..RESERVED as usize)
        .filter(|&k| k < n_keys && k % size == rank)
        .count();
    crate::collective::shard_rows(n_keys, rank, size) - below
}

/// Rank `rank`'s part of a dynamic table's row `capacity` (ids besides PAD and OOV) under row
/// sharding over `size` ranks: proportional to the ids it holds (all of them when the table is
/// unbounded), at least 1.
pub(crate) fn shard_capacity(capacity: usize, n_keys: usize, rank: usize, size: usize) -> usize {
    let ids = n_keys.saturating_sub(RESERVED as usize);
    let own = owned_ids(n_keys, rank, size);
    if capacity >= ids {
        return own.max(1);
    }
    ((capacity as f64 * own as f64 / ids.max(1) as f64).round() as usize).max(1)
}
/// The row of an id without a row (OOV's).
pub const DEFAULT_ROW: u32 = 1;
/// "No row" / "no key".
pub(crate) const NONE: u32 = u32::MAX;
const SKETCH_DEPTH: usize = 4;

/// One table's id map, statistics and admission state.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Dynamic {
    /// key → row (`NONE`: no row).
    pub row_of: Vec<u32>,
    /// row → key (`NONE`: a free row).
    pub key_of: Vec<u32>,
    /// Free rows, reused last-in first-out.
    pub free: Vec<u32>,
    /// Per row: occurrences since admission.
    pub count: Vec<u64>,
    /// Per row: last step it occurred in.
    pub last_step: Vec<u64>,
    /// Per row: window of its last occurrence (also the window its score was computed at).
    pub last_window: Vec<u64>,
    /// Per row: decayed frequency score as of `last_window`.
    pub score: Vec<f32>,
    /// Count-min sketch of ids without rows, decayed per window (`min_count` admission, and
    /// score eviction's admission comparison; empty otherwise).
    pub sketch: Vec<f32>,
    /// The window the sketch's counts are decayed to.
    pub sketch_window: u64,
    /// Eviction candidates of step `pool_step`, highest priority first (`pop` = next victim).
    pool: Vec<(f64, u32, u32)>,
    pool_step: u64,
    /// Max live rows besides the reserved ones.
    pub capacity: usize,
    /// Live rows besides the reserved ones.
    pub live: usize,
    /// Ids admitted / evicted since the table was created.
    pub admitted: u64,
    pub evicted: u64,
    /// Draws admission coins and new rows' initial values.
    pub rng: Rng,
}

/// A window's view of one table ([`crate::EmbeddingStore::table_stats`]).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TableStats {
    /// Table name.
    pub table: String,
    /// Rows holding an id (PAD and OOV included).
    pub live_rows: usize,
    /// Rows allocated (live + free).
    pub allocated_rows: usize,
    /// Row capacity besides PAD and OOV (`None`: a static table).
    pub capacity: Option<usize>,
    /// Ids admitted so far.
    pub admitted: u64,
    /// Ids evicted so far.
    pub evicted: u64,
    /// Bytes of the allocated rows' weights and optimizer state.
    pub bytes: usize,
    /// Bytes of the id map, per-row statistics and sketch.
    pub map_bytes: usize,
}

fn sketch_slot(key: u32, depth: usize, width: usize) -> usize {
    // Four multiply-shift hashes with fixed odd constants: deterministic across runs.
    const A: [u64; SKETCH_DEPTH] = [
        0x9E37_79B9_7F4A_7C15,
        0xC2B2_AE3D_27D4_EB4F,
        0x1656_67B1_9E37_79F9,
        0xD6E8_FEB8_6659_FD93,
    ];
    let h = (u64::from(key).wrapping_add(1)).wrapping_mul(A[depth]);
    depth * width + ((h >> 32) as usize % width)
}

impl Dynamic {
    pub fn new(n_keys: usize, capacity: usize, policy: &TablePolicy, rng: Rng) -> Self {
        let mut row_of = vec![NONE; n_keys.max(RESERVED as usize)];
        let reserved = RESERVED as usize;
        for (k, r) in row_of.iter_mut().enumerate().take(reserved) {
            *r = k as u32;
        }
        Dynamic {
            row_of,
            key_of: (0..RESERVED).collect(),
            free: Vec::new(),
            count: vec![0; reserved],
            last_step: vec![0; reserved],
            last_window: vec![0; reserved],
            score: vec![0.0; reserved],
            sketch: if policy.admission == Admission::MinCount
                || (policy.eviction == Eviction::Score
                    && capacity < n_keys.saturating_sub(reserved))
            {
                vec![0.0; SKETCH_DEPTH * policy.sketch_width]
            } else {
                Vec::new()
            },
            sketch_window: 0,
            pool: Vec::new(),
            pool_step: u64::MAX,
            capacity,
            live: 0,
            admitted: 0,
            evicted: 0,
            rng,
        }
    }

    /// The row of `key`: its own, the default row when it has none, `None` outside the key
    /// space.
    #[inline]
    pub fn row(&self, key: u32) -> Option<u32> {
        match self.row_of.get(key as usize) {
            Some(&NONE) => Some(DEFAULT_ROW),
            Some(&r) => Some(r),
            None => None,
        }
    }

    /// Counts an occurrence in the sketch (when there is one) and returns the estimate.
    fn sketch_count(&mut self, key: u32) -> f32 {
        if self.sketch.is_empty() {
            return 0.0;
        }
        let width = self.sketch.len() / SKETCH_DEPTH;
        let mut est = f32::MAX;
        for d in 0..SKETCH_DEPTH {
            let s = sketch_slot(key, d, width);
            self.sketch[s] += 1.0;
            est = est.min(self.sketch[s]);
        }
        est
    }

    /// Decays the sketch's counts to `window`.
    pub fn decay_sketch(&mut self, window: u64, decay: f64) {
        let gap = window.saturating_sub(self.sketch_window);
        if gap > 0 && !self.sketch.is_empty() && decay < 1.0 {
            let f = decay.powi(gap.min(i32::MAX as u64) as i32) as f32;
            self.sketch.iter_mut().for_each(|c| *c *= f);
        }
        self.sketch_window = window;
    }

    /// Whether a key without a row is admitted at this occurrence (before capacity), and its
    /// sketch estimate.
    pub fn decide(&mut self, key: u32, policy: &TablePolicy, window: u64) -> (bool, f32) {
        let est = self.sketch_count(key);
        let yes = match policy.admission {
            Admission::All => true,
            Admission::FirstWindow => window == 0,
            Admission::Probability => self.rng.next_f64() < policy.probability,
            // counts are whole numbers until a window decays them
            Admission::MinCount => est + 1e-4 >= policy.min_count as f32,
        };
        (yes, est)
    }

    /// The next eviction victim of `step` (priority, key, row): the lowest-priority live row
    /// not used at `step`; `None` when every live row serves this step.
    pub fn next_victim(
        &mut self,
        policy: &TablePolicy,
        step: u64,
        window: u64,
    ) -> Option<(f64, u32, u32)> {
        loop {
            if self.pool_step != step || self.pool.is_empty() {
                self.refill_pool(policy, step, window);
                if self.pool.is_empty() {
                    return None;
                }
            }
            let &(p, key, row) = self.pool.last()?;
            // still live with that key and not used since the pool was ranked
            if self.key_of[row as usize] == key && self.last_step[row as usize] != step {
                return Some((p, key, row));
            }
            self.pool.pop();
        }
    }

    /// Forgets the step's eviction candidates (they are valid within one step only).
    pub fn end_step(&mut self) {
        self.pool.clear();
        self.pool_step = u64::MAX;
    }

    /// Takes the victim [`next_victim`](Self::next_victim) returned.
    pub fn take_victim(&mut self) {
        if let Some((_, _, row)) = self.pool.pop() {
            self.release(row);
        }
    }

    fn refill_pool(&mut self, policy: &TablePolicy, step: u64, window: u64) {
        let mut cand: Vec<(f64, u32, u32)> = (RESERVED as usize..self.key_of.len())
            .filter(|&r| self.key_of[r] != NONE && self.last_step[r] != step)
            .map(|r| (self.priority(r, policy, window), self.key_of[r], r as u32))
            .collect();
        let n = (self.capacity / 64).max(64).min(cand.len());
        let cmp =
            |a: &(f64, u32, u32), b: &(f64, u32, u32)| a.0.total_cmp(&b.0).then(a.1.cmp(&b.1));
        if n > 0 && n < cand.len() {
            cand.select_nth_unstable_by(n - 1, cmp);
        }
        cand.truncate(n);
        cand.sort_by(|a, b| cmp(b, a));
        self.pool = cand;
        self.pool_step = step;
    }

    /// Records an occurrence of a row's key at `step` in `window`.
    #[inline]
    pub fn touch(&mut self, row: u32, step: u64, window: u64, decay: f64) {
        let r = row as usize;
        let gap = window - self.last_window[r];
        let s = if gap == 0 {
            self.score[r]
        } else {
            (f64::from(self.score[r]) * decay.powi(gap.min(i32::MAX as u64) as i32)) as f32
        };
        self.score[r] = s + 1.0;
        self.count[r] += 1;
        self.last_step[r] = step;
        self.last_window[r] = window;
    }

    /// Eviction priority of live row `r` (lower goes first).
    fn priority(&self, r: usize, policy: &TablePolicy, window: u64) -> f64 {
        match policy.eviction {
            Eviction::Score => {
                f64::from(self.score[r])
                    * policy
                        .score_decay
                        .powi((window - self.last_window[r]).min(i32::MAX as u64) as i32)
            }
            Eviction::Lfu => self.count[r] as f64,
            Eviction::Lru => self.last_step[r] as f64,
        }
    }

    /// Frees `row` (its key loses its row).
    pub fn release(&mut self, row: u32) {
        let key = self.key_of[row as usize];
        self.row_of[key as usize] = NONE;
        self.key_of[row as usize] = NONE;
        self.free.push(row);
        self.live -= 1;
        self.evicted += 1;
    }

    /// Evicts every live row not seen for more than `ttl` windows; returns how many.
    pub fn expire(&mut self, ttl: u64, window: u64) -> usize {
        let old: Vec<u32> = (RESERVED as usize..self.key_of.len())
            .filter(|&r| self.key_of[r] != NONE && window.saturating_sub(self.last_window[r]) > ttl)
            .map(|r| r as u32)
            .collect();
        for &r in &old {
            self.release(r);
        }
        old.len()
    }

    /// Bytes of the map, the per-row statistics and the sketch.
    pub fn map_bytes(&self) -> usize {
        self.row_of.len() * 4
            + self.key_of.len() * (4 + 8 + 8 + 8 + 4)
            + self.free.len() * 4
            + self.sketch.len() * 4
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::embedding::{EmbeddingConfig, EmbeddingStore, SparseOptimizer};
    use crate::input::FieldInfo;
    use mdrec_data::Batch;

    fn store(n_keys: usize, policy: &TablePolicy) -> EmbeddingStore {
        let fields = vec![FieldInfo {
            name: "f".into(),
            table: "f".into(),
            vocab_size: n_keys,
            dim: 2,
            offset: 0,
            multi_hot: false,
            column: 0,
            roles: vec![],
        }];
        let cfg = EmbeddingConfig {
            init_std: 1.0,
            optimizer: SparseOptimizer::Adam,
            ..EmbeddingConfig::default()
        };
        let mut s = EmbeddingStore::new(&fields, &cfg, &mut Rng::new(3));
        s.make_dynamic(policy, 11).unwrap();
        s
    }

    fn batch(ids: &[u32]) -> Batch {
        Batch {
            len: ids.len(),
            cat: ids.to_vec(),
            domain: vec![0; ids.len()],
            labels: vec![0.0; ids.len()],
            ..Batch::default()
        }
    }

    /// Admits `ids` and takes one SGD-like step (so `last_step` advances).
    fn step(s: &mut EmbeddingStore, ids: &[u32]) {
        let b = batch(ids);
        s.admit(&b);
        let mut out = Vec::new();
        s.lookup(&b, &mut out).unwrap();
        s.apply_gradient(&b, &vec![0.1; out.len()], 0.01, 0.0);
    }

    fn rows_of(s: &EmbeddingStore) -> Vec<u32> {
        s.row_map("f").unwrap().to_vec()
    }

    fn has_row(s: &EmbeddingStore, id: u32) -> bool {
        rows_of(s)[id as usize] != NONE
    }

    #[test]
    fn admit_all_gives_every_new_id_a_row_and_reads_oov_otherwise() {
        let mut s = store(10, &TablePolicy::default());
        let before = s.table_stats()[0].clone();
        assert_eq!((before.live_rows, before.allocated_rows), (2, 2));
        // An unadmitted id reads the OOV row (1).
        let mut a = Vec::new();
        let mut oov = Vec::new();
        s.lookup(&batch(&[7]), &mut a).unwrap();
        s.lookup(&batch(&[1]), &mut oov).unwrap();
        assert_eq!(a, oov);
        step(&mut s, &[7, 8, 7]);
        assert!(has_row(&s, 7) && has_row(&s, 8) && !has_row(&s, 9));
        let st = s.table_stats()[0].clone();
        assert_eq!((st.live_rows, st.admitted, st.evicted), (4, 2, 0));
        s.lookup(&batch(&[7]), &mut a).unwrap();
        assert_ne!(a, oov, "an admitted id has its own row");
        // outside the id space is still an error
        assert!(s.lookup(&batch(&[10]), &mut a).is_err());
    }

    #[test]
    fn new_rows_start_from_the_oov_row_or_fresh_values() {
        for (new_rows, same) in [(NewRows::Oov, true), (NewRows::Random, false)] {
            let mut s = store(
                10,
                &TablePolicy {
                    new_rows,
                    ..TablePolicy::default()
                },
            );
            s.admit(&batch(&[5]));
            assert!(has_row(&s, 5));
            let (mut a, mut oov) = (Vec::new(), Vec::new());
            s.lookup(&batch(&[5]), &mut a).unwrap();
            s.lookup(&batch(&[1]), &mut oov).unwrap();
            assert_eq!(a == oov, same, "{new_rows:?}");
        }
    }

    #[test]
    fn min_count_admits_on_the_nth_occurrence() {
        let p = TablePolicy {
            admission: Admission::MinCount,
            min_count: 3,
            ..TablePolicy::default()
        };
        let mut s = store(10, &p);
        step(&mut s, &[5, 6]);
        step(&mut s, &[5]);
        assert!(!has_row(&s, 5));
        step(&mut s, &[5]);
        assert!(has_row(&s, 5) && !has_row(&s, 6));
    }

    #[test]
    fn probability_admission_is_seeded_and_roughly_p() {
        let p = TablePolicy {
            admission: Admission::Probability,
            probability: 0.25,
            ..TablePolicy::default()
        };
        let run = || {
            let mut s = store(2002, &p);
            let ids: Vec<u32> = (2..2002).collect();
            step(&mut s, &ids);
            s.table_stats()[0].admitted
        };
        let n = run();
        assert_eq!(n, run(), "same seed, same admissions");
        assert!((400..600).contains(&n), "admitted {n} of 2000 at p = 0.25");
    }

    #[test]
    fn first_window_freezes_the_vocabulary() {
        let p = TablePolicy {
            admission: Admission::FirstWindow,
            ..TablePolicy::default()
        };
        let mut s = store(10, &p);
        step(&mut s, &[2, 3]);
        s.begin_window(1);
        step(&mut s, &[4, 2]);
        assert!(has_row(&s, 2) && has_row(&s, 3) && !has_row(&s, 4));
    }

    fn full_table(eviction: Eviction) -> EmbeddingStore {
        // capacity 3; ids 2 (seen 3× long ago), 3 (seen once, recently), 4 (seen twice)
        let p = TablePolicy {
            capacity: [("f".to_string(), 3)].into(),
            eviction,
            score_decay: 0.5,
            ..TablePolicy::default()
        };
        let mut s = store(20, &p);
        step(&mut s, &[2, 2, 2]);
        s.begin_window(3);
        step(&mut s, &[4, 4]);
        step(&mut s, &[3]);
        s
    }

    #[test]
    fn a_full_table_evicts_by_the_policy_and_reuses_the_row() {
        // score: 2 has 3·0.5³ = 0.375 < 1 (id 3) < 2 (id 4) → 2 goes
        // lfu: counts 3, 1, 2 → 3 goes; lru: 2 was seen first → 2 goes
        for (ev, gone) in [(Eviction::Score, 2), (Eviction::Lfu, 3), (Eviction::Lru, 2)] {
            let mut s = full_table(ev);
            let rows_before = s.table_stats()[0].allocated_rows;
            let freed = rows_of(&s)[gone as usize];
            step(&mut s, &[9]);
            let st = s.table_stats()[0].clone();
            assert!(!has_row(&s, gone), "{ev:?}: id {gone} should be evicted");
            assert!(has_row(&s, 9), "{ev:?}");
            assert_eq!(rows_of(&s)[9], freed, "{ev:?}: the freed row is reused");
            assert_eq!(
                st.allocated_rows, rows_before,
                "{ev:?}: no growth past capacity"
            );
            assert_eq!((st.live_rows, st.evicted), (5, 1), "{ev:?}");
        }
    }

    #[test]
    fn a_full_score_table_admits_only_ids_more_frequent_than_the_victim() {
        let p = TablePolicy {
            capacity: [("f".to_string(), 2)].into(),
            ..TablePolicy::default()
        };
        let mut s = store(20, &p);
        step(&mut s, &[2, 2, 2, 3, 3, 3]); // scores 3 and 3
        step(&mut s, &[9]);
        assert!(!has_row(&s, 9), "seen once: not worth a row yet");
        step(&mut s, &[9]);
        step(&mut s, &[9]);
        assert!(!has_row(&s, 9), "three sightings tie the victim's score 3");
        step(&mut s, &[9]);
        assert!(has_row(&s, 9), "four beat it");
        assert!(!has_row(&s, 2), "the tie between 2 and 3 goes by id");
        // LRU admits unconditionally
        let lru = TablePolicy {
            eviction: Eviction::Lru,
            ..p
        };
        let mut s = store(20, &lru);
        step(&mut s, &[2, 2, 2, 3, 3, 3]);
        step(&mut s, &[9]);
        assert!(has_row(&s, 9));
    }

    #[test]
    fn rows_of_the_current_batch_are_never_evicted() {
        let p = TablePolicy {
            capacity: [("f".to_string(), 2)].into(),
            ..TablePolicy::default()
        };
        let mut s = store(20, &p);
        step(&mut s, &[2, 3]);
        // both live rows are in this batch: the new id stays on the default row
        step(&mut s, &[2, 3, 4]);
        assert!(has_row(&s, 2) && has_row(&s, 3) && !has_row(&s, 4));
    }

    #[test]
    fn ttl_expires_rows_not_seen_for_ttl_windows() {
        let p = TablePolicy {
            ttl_windows: Some(2),
            ..TablePolicy::default()
        };
        let mut s = store(10, &p);
        step(&mut s, &[2, 3]);
        s.begin_window(1);
        step(&mut s, &[3]);
        s.begin_window(2);
        assert!(has_row(&s, 2), "seen 2 windows ago: kept");
        s.begin_window(3);
        assert!(!has_row(&s, 2) && has_row(&s, 3));
    }

    #[test]
    fn state_round_trip_continues_identically() {
        let p = TablePolicy {
            admission: Admission::MinCount,
            min_count: 2,
            capacity: [("f".to_string(), 4)].into(),
            ..TablePolicy::default()
        };
        let mut a = store(30, &p);
        for k in 0..6u32 {
            step(&mut a, &[2 + k, 3 + k, 2 + k, 9]);
        }
        let saved = a.export_state();
        let mut b = store(30, &p);
        b.import_state(&saved).unwrap();
        assert_eq!(a, b);
        for k in 0..5u32 {
            step(&mut a, &[10 + k, 11, 10 + k, 2]);
            step(&mut b, &[10 + k, 11, 10 + k, 2]);
        }
        assert_eq!(a, b);
        // a static store rejects a dynamic state
        let mut plain = EmbeddingStore::new(
            &[FieldInfo {
                name: "f".into(),
                table: "f".into(),
                vocab_size: 30,
                dim: 2,
                offset: 0,
                multi_hot: false,
                column: 0,
                roles: vec![],
            }],
            &EmbeddingConfig::default(),
            &mut Rng::new(3),
        );
        assert!(plain.import_state(&saved).unwrap_err().contains("dynamic"));
    }

    #[test]
    fn a_saved_id_map_scores_like_the_trained_table() {
        let mut s = store(10, &TablePolicy::default());
        step(&mut s, &[4, 6]);
        let (_, rows, dim, w) = s
            .tables()
            .next()
            .map(|(n, r, d, w)| (n.to_string(), r, d, w.to_vec()))
            .unwrap();
        let map = rows_of(&s);
        let mut scorer = EmbeddingStore::new(
            &[FieldInfo {
                name: "f".into(),
                table: "f".into(),
                vocab_size: 10,
                dim: 2,
                offset: 0,
                multi_hot: false,
                column: 0,
                roles: vec![],
            }],
            &EmbeddingConfig::default(),
            &mut Rng::new(99),
        );
        scorer.load_dynamic_table("f", rows, dim, &w, &map).unwrap();
        let b = batch(&[4, 5, 6, 1]);
        let (mut x, mut y) = (Vec::new(), Vec::new());
        s.lookup(&b, &mut x).unwrap();
        scorer.lookup(&b, &mut y).unwrap();
        assert_eq!(x, y);
        assert_eq!(y[2..4], y[6..8], "never-admitted id 5 reads the OOV row");
        let mut bad = map.clone();
        bad[4] = 999;
        assert!(scorer.load_dynamic_table("f", rows, dim, &w, &bad).is_err());
    }
}
