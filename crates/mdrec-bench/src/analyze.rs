//! Representation analyses of trained runs (`mdrec analyze`): the measurements behind
//! multi-embedding models and Crocodile, and the analysis tools of Pan et al. §7 (feature
//! correlation, dimensional collapse of every field, interest entanglement across runs). Sources: Guo et al., "On the Embedding Collapse when
//! Scaling up Recommendation Models" (ICML 2024, arXiv:2310.04400) for information abundance;
//! Pan et al., "Ads Recommendation in a Collapsed and Entangled World" (KDD 2024,
//! arXiv:2403.00793) and its analysis code (`junwei-pan/RecScope`) for singular spectra and
//! interest entanglement; the Crocodile paper (cross-expert covariance for multi-domain
//! recommendation) for expert IA and the Diversity Index; AREAD (Luo et al., "One for Dozens:
//! Adaptive REcommendation for All Domains with Counterfactual Augmentation", AAAI 2025) for the
//! Mask Overlap Ratio.
//!
//! For every run (a one-model run directory; models of per-domain / per-cell settings are not
//! analysed) this writes, under the output folder:
//!
//! | file | what |
//! |---|---|
//! | `ia.csv`, `ia_frequency.svg` | Information Abundance (IA = Σσ/max σ of the row-normalised matrix, RecScope) of every embedding table of every embedded field (Pan et al. §7.2: "the embedding matrix of each field"; the ids seen in training), overall and, for the item field, per item-frequency group (`groups` equal-size buckets of train frequency, 0 = most frequent) |
//! | `spectrum.csv`, `spectrum_<field>.svg` | singular spectrum `log10(σ_i / σ_1)` of every field's un-normalised tables (as in Pan et al. and Crocodile Fig. 4) |
//! | `ia_projected.csv`, `ia_projected_<run>.svg` | IA of each field's embeddings after each expert's first layer: `E_f · W[rows of f]`, the block of the layer's weight that multiplies field `f` (RecScope's "IA after projection") |
//! | `mi.csv`, `mi_<run>.svg` | mutual information (nats, plug-in; Miller–Madow corrected; normalised by H(label)) between every embedded field and every task's label, overall and per domain, on the training split (Pan et al. §7.1, Eq. 7; see [`crate::mutual_info`]) |
//! | `mi_behaviour.csv`, `mi_behaviour_<run>_<task>.svg`, `mi_position_<run>.svg` | Eq. 8: MI between "the user's behaviour at position p has category c_i" and the label, on targets of category c_t; heat map at position 1, and MI by position for c_i = c_t vs c_i ≠ c_t |
//! | `experts.csv` | IA and mean norm of each expert's outputs on the analysed test rows (Crocodile Fig. 2a) |
//! | `utilisation.csv`, `utilisation_<run>.svg` | mean gate weight of each expert per (domain, task) head; AREAD: per (domain, level), after the domain's mask |
//! | `di.csv`, `di.svg` | Diversity Index DI^AF and DI^SF per ordered domain pair (Crocodile Eq. 1–2) |
//! | `entanglement.csv`, `entanglement_<run>.svg` | user–item distance histograms, all pairs vs conflict pairs, per pair of tables (Pan et al.) |
//! | `entangle_refs.csv`, `entangle_refs_<run>.svg` | with two `entangle_refs`: the pairs close under reference A's embeddings and far under B's (e.g. single-task models of two tasks), their distances under every table of each reference and each analysed run (Pan et al. §5 Fig. 3, §7.3), with the conflict pairs' mean percentile rank among all pairs |
//! | `tim_temporal.csv`, `tim_temporal_<run>.svg` | TIM sequences: the L2 norm of every learned recency-rank and time-interval-bucket embedding seen in training (Pan et al. §3.1 report stronger decay for time intervals than for positions). A sequence's slot fields are analysed once, at their first slot, with the ids of every slot |
//! | `mask_overlap.csv`, `mask_overlap_<run>_<block>.svg` | AREAD: Mask Overlap Ratio (Jaccard of active edges, from the AREAD paper's analysis) between every pair of domains, per block of edges between levels |
//! | `summary.json` | every number above, machine-readable |
//!
//! \[INFERRED\] choices (options of [`AnalyzeOptions`]):
//! - **Conflict samples between domains** (DI): the paper does not define them; here a test row of
//!   domain `i` is a conflict sample for `(i, j)` when the model's head of domain `j`, applied to
//!   the same row (domain set to `j`), ranks it on the other side of its median than the row's own
//!   head does (for task `di_task`). That is "the two domains disagree about this preference" as
//!   the model itself sees it.
//! - **Thresholds** τ_t, τ_b: percentiles `tau_top`/`tau_bottom` of the pooled expert-output norms.
//! - **DI^SF** needs an expert tied to each domain: computed only when the model has exactly one
//!   `expert/<k>` per domain (expert k ↔ domain k), otherwise reported as missing.
//! - **Entanglement conflict pairs**: for tables (a, b) of one run, pairs with distance ≤ 40th
//!   percentile under a and > 60th under b (RecScope mode 0), among test pairs whose user and item
//!   are both above the 60th percentile of train frequency.
//! - **Cross-run conflict pairs**: the same rule with a = reference A's and b = reference B's
//!   first (user, item) tables, on the first `rows` test rows of A's data. Every measured run must
//!   have the same user and item vocabularies (checked), so ids mean the same movie and user. A
//!   reference is a one-model run or one model of a multi-model run (`RUN#click` of a `setting =
//!   "mdl"` run is the single-task model of `click`). The paper's panel (c)/(f) is the measured
//!   run's shared table; a multi-embedding run (STEM) is measured under each of its tables.
//!   Swap the references for the other direction (far under A, close under B).
//! - **IA after expert projection**: an expert is any parameter `…<expert>[.mlp].layers.0.linear.weight`
//!   outside gates, towers and heads whose input width is a table's side-by-side embeddings plus
//!   the numeric inputs (`Σ dim_f + n_numeric`, what [`mdrec_nn::ModelInput::flat`] and
//!   `set_flat` give). The model's wiring of experts to tables is internal, so with several
//!   tables of one width (STEM, ME-MMoE) every table is projected by every such expert and the
//!   `table` column says which; only the pairs the model wires are meaningful (STEM:
//!   `shared.*` ← the base table, `specific.<u>.*` ← `@u<u>`). Experts whose first layer reads
//!   something else (interaction outputs, DCN cross layers, later PLE levels) are not measured;
//!   the bias is left out (a shift, not a direction).
//! - **Behaviour–target MI** (Eq. 8): see [`crate::mutual_info`]; rows without `positions`
//!   earlier behaviours are left out, and the category field defaults to the first item field
//!   other than the item id (MovieLens-1M: `genre`, the movie's first genre).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use mdrec_data::{Batch, EncodedData, FieldRole, Prepared, SeqEncoder};
use mdrec_models::{ProbeKey, Probes};
use mdrec_nn::device::DeviceKind;
use mdrec_nn::{FieldInfo, ModelContext};
use mdrec_train::engine::{make_input, Snapshot};
use mdrec_train::load_run;
use serde::Serialize;

use crate::mutual_info::{self, BehaviourMi, FieldMi};

use crate::plot::{heatmap, line_chart, write_svg};
use crate::TrainError;

/// Options of [`analyze`].
#[derive(Debug, Clone)]
pub struct AnalyzeOptions {
    /// Test rows run through the model (the first ones).
    pub rows: usize,
    /// Item-frequency groups for IA.
    pub groups: usize,
    /// Percentile (0–1) of expert-output norms that counts as "high" (τ_t).
    pub tau_top: f64,
    /// Percentile (0–1) that counts as "low" (τ_b).
    pub tau_bottom: f64,
    /// Task whose heads define domain conflicts (default: the first task).
    pub di_task: Option<String>,
    /// User field (default: the first field with roles `user` and `prior`, else `user`).
    pub user_field: Option<String>,
    /// Item field (default: the first field with roles `item` and `prior`, else `item`).
    pub item_field: Option<String>,
    /// Item-category field of the behaviour–target MI (default: the first field with role
    /// `item` other than the item field).
    pub category_field: Option<String>,
    /// Behaviour positions of the behaviour–target MI (1 = the most recent).
    pub mi_positions: usize,
    /// Two references (`RUN`, or `RUN#PART` for one model of a multi-model run) whose
    /// conflicting user–item pairs are measured on every analysed run; empty for none.
    pub entangle_refs: Vec<String>,
}

impl Default for AnalyzeOptions {
    fn default() -> Self {
        AnalyzeOptions {
            rows: 20_000,
            groups: 5,
            tau_top: 0.6,
            tau_bottom: 0.4,
            di_task: None,
            user_field: None,
            item_field: None,
            category_field: None,
            mi_positions: 10,
            entangle_refs: Vec::new(),
        }
    }
}

/// IA of one table (or one frequency group of it).
#[derive(Debug, Clone, Serialize)]
pub struct IaRow {
    /// Run label.
    pub run: String,
    /// Field.
    pub field: String,
    /// Embedding table.
    pub table: String,
    /// `all` or the frequency group (0 = most frequent).
    pub group: String,
    /// Rows in the matrix.
    pub rows: usize,
    /// Information abundance.
    pub ia: f64,
}

/// One learned temporal embedding of a TIM sequence (Pan et al. §3.1: the time-interval
/// embeddings decay more strongly than the relative-position ones).
#[derive(Debug, Clone, Serialize)]
pub struct TemporalRow {
    /// Run label.
    pub run: String,
    /// Sequence field.
    pub sequence: String,
    /// `position` (recency rank, 0 = most recent) or `interval` (bucket `floor(log2 Δt)`).
    pub kind: String,
    /// The rank or bucket.
    pub index: usize,
    /// Training occurrences (behaviours at that rank or in that bucket).
    pub count: u64,
    /// L2 norm of the embedding.
    pub norm: f64,
}

/// IA of one field's embeddings after one expert's first layer.
#[derive(Debug, Clone, Serialize)]
pub struct ProjectedIaRow {
    /// Run label.
    pub run: String,
    /// The expert (its parameter path, e.g. `experts.2`, `specific.0.0`).
    pub expert: String,
    /// Field.
    pub field: String,
    /// Embedding table projected.
    pub table: String,
    /// Rows (ids seen in training).
    pub rows: usize,
    /// IA of the projected rows (rows L2-normalised).
    pub ia: f64,
}

/// The reference conflict pairs' distances under one table of one run.
#[derive(Debug, Clone, Serialize)]
pub struct CrossEntanglement {
    /// The measured run (a reference itself, or an analysed run).
    pub run: String,
    /// `A vs B`: the references that chose the conflict pairs.
    pub refs: String,
    /// The user table the distances use (with the item table of the same set).
    pub table: String,
    /// Mean percentile rank (0–1) of the conflict pairs' distances among all pairs' distances:
    /// below 0.5 the table keeps them close (as reference A does), above 0.5 apart (as B does).
    pub conflict_rank: Option<f64>,
    /// Bin edges (39 equal-width bins).
    pub edges: Vec<f64>,
    /// All analysed pairs per bin.
    pub all: Vec<usize>,
    /// Conflict pairs per bin.
    pub conflict: Vec<usize>,
}

/// Per-expert statistics.
#[derive(Debug, Clone, Serialize)]
pub struct ExpertRow {
    /// Run label.
    pub run: String,
    /// Probe name.
    pub expert: String,
    /// IA of the outputs (rows L2-normalised).
    pub ia: f64,
    /// Mean L2 norm of the outputs.
    pub mean_norm: f64,
}

/// DI of one ordered domain pair.
#[derive(Debug, Clone, Serialize)]
pub struct DiRow {
    /// Run label.
    pub run: String,
    /// Domain i (the rows' own domain).
    pub domain_i: String,
    /// Domain j.
    pub domain_j: String,
    /// Conflict samples.
    pub conflicts: usize,
    /// DI^AF.
    pub di_af: Option<f64>,
    /// DI^SF (experts tied to domains only).
    pub di_sf: Option<f64>,
}

/// `(run, table a, table b, bin edges, all-pair counts, conflict counts)`: user–item distances
/// under table a, over all analysed pairs and over the pairs in conflict between a and b.
pub type Entanglement = (String, String, String, Vec<f64>, Vec<usize>, Vec<usize>);

/// One probe's values concatenated over batches.
struct ProbeValues {
    key: ProbeKey,
    /// Values per row.
    width: usize,
    /// Row-major values.
    values: Vec<f32>,
}

/// Probes by name (the order of the files' rows).
type ProbeMap = BTreeMap<String, ProbeValues>;

/// AREAD's Mask Overlap Ratio between every pair of domains for one block of edges.
#[derive(Debug, Clone, Serialize)]
pub struct MaskOverlap {
    /// Run label.
    pub run: String,
    /// Block of edges, e.g. `l1-l2`.
    pub block: String,
    /// Domain names (rows and columns).
    pub domains: Vec<String>,
    /// `matrix[i][j]`; `NaN` (`null` in JSON) where undefined.
    pub matrix: Vec<Vec<f64>>,
}

/// Everything [`analyze`] measured.
#[derive(Debug, Clone, Serialize, Default)]
pub struct Analysis {
    /// IA rows.
    pub ia: Vec<IaRow>,
    /// Singular spectra: `(run, field, table) → σ_i/σ_1`.
    pub spectra: Vec<(String, String, String, Vec<f64>)>,
    /// Expert rows.
    pub experts: Vec<ExpertRow>,
    /// `(run, head, expert weights)`.
    pub utilisation: Vec<(String, String, Vec<f64>)>,
    /// DI rows.
    pub di: Vec<DiRow>,
    /// Distance histograms between pairs of tables.
    pub entanglement: Vec<Entanglement>,
    /// AREAD's Mask Overlap Ratio per run and block.
    pub mask_overlap: Vec<MaskOverlap>,
    /// IA of each field's embeddings after each expert's first layer.
    pub projected_ia: Vec<ProjectedIaRow>,
    /// TIM's learned temporal embeddings: one row per recency rank and interval bucket.
    pub temporal: Vec<TemporalRow>,
    /// `(run, MI)` of every field and task's label, overall and per domain (training split).
    pub mi: Vec<(String, FieldMi)>,
    /// `(run, Eq. 8 row)`: behaviour category and position vs the label on targets of a category.
    pub behaviour_mi: Vec<(String, BehaviourMi)>,
    /// Reference conflict pairs measured on each run's tables.
    pub cross_entanglement: Vec<CrossEntanglement>,
    /// Things that could not be computed and why.
    pub notes: Vec<String>,
}

/// Singular values (descending) of the `n × k` row-major matrix `m`, rows L2-normalised first
/// when `normalize`. Always `k` values: when `n < k` the missing ones are 0 (the rank is at most
/// `n`); all NaN if the SVD does not converge (non-finite weights).
pub fn singular_values(m: &[f32], n: usize, k: usize, normalize: bool) -> Vec<f64> {
    if n == 0 || k == 0 {
        return vec![0.0; k];
    }
    let matrix = nalgebra::DMatrix::<f64>::from_fn(n, k, |r, c| {
        let row = &m[r * k..(r + 1) * k];
        let scale = if normalize {
            1.0 / (row.iter().map(|&x| (x as f64).powi(2)).sum::<f64>().sqrt() + 1e-8)
        } else {
            1.0
        };
        row[c] as f64 * scale
    });
    let Some(svd) = nalgebra::SVD::try_new(matrix, false, false, f64::EPSILON, 10_000) else {
        return vec![f64::NAN; k];
    };
    let mut s: Vec<f64> = svd.singular_values.iter().map(|&x| x.max(0.0)).collect();
    s.resize(k, 0.0);
    s.sort_by(|a, b| b.total_cmp(a));
    s
}

/// Information abundance `Σσ / max σ` of the row-normalised matrix (Guo et al.; RecScope).
pub fn information_abundance(m: &[f32], n: usize, k: usize) -> f64 {
    let s = singular_values(m, n, k, true);
    match s.first() {
        Some(&top) if top > 0.0 => s.iter().sum::<f64>() / top,
        _ => 0.0,
    }
}

fn percentile(values: &[f64], q: f64) -> f64 {
    let v: Vec<f64> = values.iter().copied().filter(|x| x.is_finite()).collect();
    mdrec_data::quantile(&v, q).unwrap_or(f64::NAN)
}

fn pick_field(
    ctx: &ModelContext,
    name: &Option<String>,
    role: FieldRole,
    label: &str,
) -> Result<usize, TrainError> {
    if let Some(n) = name {
        return ctx
            .fields
            .iter()
            .position(|f| &f.name == n && !f.multi_hot)
            .ok_or_else(|| {
                TrainError::Config(format!(
                    "analyze: no categorical field `{n}`; fields: {}",
                    ctx.fields
                        .iter()
                        .map(|f| f.name.as_str())
                        .collect::<Vec<_>>()
                        .join(", ")
                ))
            });
    }
    let has = |i: usize, r: FieldRole| ctx.fields[i].has_role(r);
    (0..ctx.fields.len())
        .filter(|&i| !ctx.fields[i].multi_hot)
        .find(|&i| has(i, role) && has(i, FieldRole::Prior))
        .or_else(|| (0..ctx.fields.len()).find(|&i| !ctx.fields[i].multi_hot && has(i, role)))
        .ok_or_else(|| {
            TrainError::Config(format!(
                "analyze: no field with role `{label}`; name one with --{label}-field"
            ))
        })
}

/// Every table a field reads in `snap`: `(table name, rows, dim, weights)`.
fn field_tables<'a>(snap: &'a Snapshot, field: &str) -> Vec<(String, usize, usize, &'a [f32])> {
    let mut names = vec![];
    if let Some(f) = snap.ctx.fields.iter().find(|f| f.name == field) {
        names.push(f.table.clone());
    }
    for s in &snap.ctx.sets {
        if let Some(f) = s.fields.iter().find(|f| f.name == field) {
            names.push(f.table.clone());
        }
    }
    names
        .into_iter()
        .filter_map(|n| {
            snap.store
                .tables()
                .find(|(t, ..)| *t == n)
                .map(|(t, r, d, w)| (t.to_string(), r, d, w))
        })
        .collect()
}

fn gather(w: &[f32], dim: usize, ids: &[u32]) -> Vec<f32> {
    ids.iter()
        .flat_map(|&i| w[i as usize * dim..(i as usize + 1) * dim].iter().copied())
        .collect()
}

/// Forward `data` in batches with probes on; returns the concatenated probe values by name and
/// the logits `[n, T]`.
fn probe_all(snap: &Snapshot, data: &EncodedData) -> Result<(ProbeMap, Vec<f32>), TrainError> {
    let device = DeviceKind::Cpu.device().map_err(TrainError::Config)?;
    let mut out: ProbeMap = BTreeMap::new();
    let mut logits = Vec::new();
    let mut batch = Batch::default();
    let mut buf = Vec::new();
    let n = data.len();
    let mut start = 0;
    while start < n {
        let end = (start + 4096).min(n);
        let rows: Vec<u32> = (start as u32..end as u32).collect();
        data.fill_batch(&rows, &mut batch);
        let input = make_input(&snap.ctx, &snap.store, &batch, &mut buf, &device)?;
        let mut probes = Probes::new(true);
        let o = snap.model.forward(&snap.ctx, &input, &mut probes);
        logits.extend(
            o.logits
                .into_data()
                .try_to_vec::<f32>()
                .map_err(|e| TrainError::Tensor(format!("{e:?}")))?,
        );
        for (k, v) in probes.entries() {
            // Gates are averaged over whatever rows they saw; expert outputs are compared row by
            // row, so only those over the whole batch are kept.
            let [r, w] = v.dims();
            if !(k.gated().is_some() || k.is_expert() && r == rows.len()) {
                continue;
            }
            let vals = v
                .clone()
                .into_data()
                .try_to_vec::<f32>()
                .map_err(|e| TrainError::Tensor(format!("{e:?}")))?;
            let e = out.entry(k.to_string()).or_insert_with(|| ProbeValues {
                key: k.clone(),
                width: w,
                values: Vec::new(),
            });
            e.values.extend(vals);
        }
        start = end;
    }
    Ok((out, logits))
}

/// The run's folder name; for bench runs (`<label>/s<seed>`) the label and the seed.
fn run_label(dir: &Path) -> String {
    let name = |p: &Path| p.file_name().map(|s| s.to_string_lossy().to_string());
    match name(dir) {
        Some(n) if n.starts_with('s') && n[1..].chars().all(|c| c.is_ascii_digit()) => {
            match dir.parent().and_then(name) {
                Some(parent) => format!("{parent}/{n}"),
                None => n,
            }
        }
        Some(n) => n,
        None => dir.display().to_string(),
    }
}

/// `label` as a file-name part.
fn file_part(label: &str) -> String {
    label
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '-' || c == '_' {
                c
            } else {
                '_'
            }
        })
        .collect()
}

/// Analyse `runs` and write the files listed in the module docs under `out`.
pub fn analyze(
    runs: &[PathBuf],
    out: &Path,
    opts: &AnalyzeOptions,
) -> Result<Analysis, TrainError> {
    if runs.is_empty() {
        return Err(TrainError::Config(
            "analyze: give at least one --run".into(),
        ));
    }
    if !(0.0..=1.0).contains(&opts.tau_bottom)
        || !(0.0..=1.0).contains(&opts.tau_top)
        || opts.tau_bottom > opts.tau_top
    {
        return Err(TrainError::Config(format!(
            "analyze: need 0 ≤ tau_bottom ≤ tau_top ≤ 1, got {} and {}",
            opts.tau_bottom, opts.tau_top
        )));
    }
    if opts.groups == 0 || opts.rows == 0 || opts.mi_positions == 0 {
        return Err(TrainError::Config(
            "analyze: groups, rows and mi_positions must be ≥ 1".into(),
        ));
    }
    std::fs::create_dir_all(out).map_err(|e| TrainError::io(out, e))?;
    let mut a = Analysis::default();
    let refs = entangle_refs(&opts.entangle_refs, opts, &mut a)?;
    for dir in runs {
        analyze_one(dir, opts, refs.as_ref(), &mut a)?;
    }
    write_outputs(out, &a)?;
    Ok(a)
}

fn analyze_one(
    dir: &Path,
    opts: &AnalyzeOptions,
    refs: Option<&EntangleRefs>,
    a: &mut Analysis,
) -> Result<(), TrainError> {
    let label = run_label(dir);
    let loaded = load_run(dir)?;
    let trained = &loaded.trained;
    if trained.models.len() != 1 {
        return Err(TrainError::Config(format!(
            "analyze: {} trained {} separate models (setting {}); analyses need a one-model run (setting mdmt)",
            dir.display(),
            trained.models.len(),
            trained.cfg.train.setting.map(|s| format!("{s:?}")).unwrap_or_default()
        )));
    }
    let snap = &trained.models[0].1;
    let ctx = &trained.ctx;
    let train = &loaded.prepared.train;
    let user = pick_field(ctx, &opts.user_field, FieldRole::User, "user")?;
    let item = pick_field(ctx, &opts.item_field, FieldRole::Item, "item")?;

    // Train frequency of every id of every field (a multi-hot field counts each listed id).
    let mut freqs: Vec<Vec<u64>> = ctx.fields.iter().map(|f| id_counts(f, train)).collect();
    // A sequence's slots read three tables (behaviours, ranks, intervals): each is analysed
    // once, at its first slot, with the ids seen at every slot.
    let mut first_slots = Vec::new();
    for sq in &ctx.sequences {
        for part in [&sq.items, &sq.positions, &sq.intervals] {
            let Some((&first, rest)) = part.split_first() else {
                continue;
            };
            first_slots.push(first);
            for &j in rest {
                let add = std::mem::take(&mut freqs[j]);
                for (x, y) in freqs[first].iter_mut().zip(add) {
                    *x += y;
                }
            }
        }
    }
    temporal_embeddings(&label, snap, ctx, &freqs, a);
    let (user_freq, item_freq) = (&freqs[user], &freqs[item]);

    // IA and spectra of every field's tables (ids seen in training, most frequent first); the
    // item field also per frequency group.
    for (fi, f) in ctx.fields.iter().enumerate() {
        if ctx.is_slot(fi) && !first_slots.contains(&fi) {
            continue;
        }
        let counts = &freqs[fi];
        let mut ids: Vec<u32> = (2..counts.len() as u32)
            .filter(|&i| counts[i as usize] > 0)
            .collect();
        ids.sort_by_key(|&i| (std::cmp::Reverse(counts[i as usize]), i));
        for (table, _rows, dim, w) in field_tables(snap, &f.name) {
            let m = gather(w, dim, &ids);
            a.ia.push(IaRow {
                run: label.clone(),
                field: f.name.clone(),
                table: table.clone(),
                group: "all".into(),
                rows: ids.len(),
                ia: information_abundance(&m, ids.len(), dim),
            });
            let s = singular_values(&m, ids.len(), dim, false);
            let top = s.first().copied().unwrap_or(1.0).max(1e-30);
            a.spectra.push((
                label.clone(),
                f.name.clone(),
                table.clone(),
                s.iter().map(|x| x / top).collect(),
            ));
            if fi == item {
                let per = ids.len().div_ceil(opts.groups);
                for (g, chunk) in ids.chunks(per.max(1)).enumerate() {
                    let m = gather(w, dim, chunk);
                    a.ia.push(IaRow {
                        run: label.clone(),
                        field: f.name.clone(),
                        table: table.clone(),
                        group: g.to_string(),
                        rows: chunk.len(),
                        ia: information_abundance(&m, chunk.len(), dim),
                    });
                }
            }
        }
        projected_ia(&label, snap, f, &ids, a);
    }
    if !a.projected_ia.iter().any(|r| r.run == label) {
        a.notes.push(format!("{label}: no expert first layer reads the embeddings of one table side by side (a `…layers.0.linear.weight` with Σ field widths + numeric inputs rows), so no IA after expert projection"));
    }

    // Feature–label mutual information on the training split. A category field named on the
    // command line must exist (a typo is an error, not a note).
    if let Some(n) = &opts.category_field {
        if !ctx.fields.iter().any(|f| &f.name == n) {
            return Err(TrainError::Config(format!(
                "analyze: {label}: no embedded field `{n}` (--category-field); fields: {}",
                ctx.fields
                    .iter()
                    .map(|f| f.name.as_str())
                    .collect::<Vec<_>>()
                    .join(", ")
            )));
        }
    }
    a.mi.extend(
        mutual_info::field_label_mi(&ctx.fields, train, &ctx.domains, &ctx.tasks)
            .into_iter()
            .map(|m| (label.clone(), m)),
    );
    match behaviour_spec(ctx, &loaded.prepared, user, item, opts) {
        Ok(spec) => match mutual_info::behaviour_mi(&spec, train, &ctx.tasks) {
            Ok(rows) => a
                .behaviour_mi
                .extend(rows.into_iter().map(|m| (label.clone(), m))),
            Err(e) => a
                .notes
                .push(format!("{label}: no behaviour–target MI (Eq. 8): {e}")),
        },
        Err(e) => a
            .notes
            .push(format!("{label}: no behaviour–target MI (Eq. 8): {e}")),
    }

    // Per-domain masks (AREAD): the model reports the overlap ratio per block of edges.
    if let Some(blocks) = snap
        .model
        .report()
        .get("overlap_ratio")
        .and_then(|v| v.as_object())
    {
        for (block, m) in blocks {
            let matrix: Vec<Vec<f64>> = m
                .as_array()
                .map(|rows| {
                    rows.iter()
                        .map(|r| {
                            r.as_array()
                                .map(|c| c.iter().map(|x| x.as_f64().unwrap_or(f64::NAN)).collect())
                                .unwrap_or_default()
                        })
                        .collect()
                })
                .unwrap_or_default();
            a.mask_overlap.push(MaskOverlap {
                run: label.clone(),
                block: block.clone(),
                domains: ctx.domains.clone(),
                matrix,
            });
        }
    }

    // Expert outputs, gates and logits on the first test rows.
    let n = loaded.prepared.test.len().min(opts.rows);
    let test = loaded
        .prepared
        .test
        .subset(&(0..n as u32).collect::<Vec<_>>());
    let (probes, logits) = probe_all(snap, &test)?;
    let experts: Vec<(&String, &ProbeValues)> =
        probes.iter().filter(|(_, p)| p.key.is_expert()).collect();
    let mut norms: Vec<Vec<f64>> = Vec::new();
    for (name, p) in &experts {
        let (w, v) = (&p.width, &p.values);
        let rows = v.len() / w;
        let nrm: Vec<f64> = (0..rows)
            .map(|r| {
                v[r * w..(r + 1) * w]
                    .iter()
                    .map(|&x| (x as f64).powi(2))
                    .sum::<f64>()
                    .sqrt()
            })
            .collect();
        a.experts.push(ExpertRow {
            run: label.clone(),
            expert: name.to_string(),
            ia: information_abundance(v, rows, *w),
            mean_norm: nrm.iter().sum::<f64>() / rows.max(1) as f64,
        });
        norms.push(nrm);
    }
    if experts.is_empty() {
        a.notes.push(format!(
            "{label}: the model records no expert outputs (no expert IA, no DI)"
        ));
    }
    let n_experts_of_gate = |w: usize| -> usize {
        let k = experts.len();
        if k > 0 && w.is_multiple_of(k) {
            k
        } else {
            w
        }
    };
    for (head, p) in probes
        .values()
        .filter_map(|p| p.key.gated().map(|head| (head, p)))
    {
        let (w, v) = (&p.width, &p.values);
        let rows = v.len() / w;
        let k = n_experts_of_gate(*w);
        let per = w / k;
        let mut mean = vec![0.0f64; k];
        for r in 0..rows {
            for e in 0..k {
                mean[e] += v[r * w + e * per..r * w + (e + 1) * per]
                    .iter()
                    .map(|&x| x as f64)
                    .sum::<f64>()
                    / per as f64;
            }
        }
        mean.iter_mut().for_each(|m| *m /= rows.max(1) as f64);
        a.utilisation.push((label.clone(), head, mean));
    }

    // Diversity Index over domain conflicts.
    let t_n = ctx.n_tasks();
    let task = match &opts.di_task {
        Some(t) => ctx.tasks.iter().position(|x| x == t).ok_or_else(|| {
            TrainError::Config(format!(
                "analyze: no task `{t}`; tasks: {}",
                ctx.tasks.join(", ")
            ))
        })?,
        None => 0,
    };
    if !norms.is_empty() && ctx.n_domains() > 1 {
        let pooled: Vec<f64> = norms.iter().flatten().copied().collect();
        let (tau_t, tau_b) = (
            percentile(&pooled, opts.tau_top),
            percentile(&pooled, opts.tau_bottom),
        );
        let own: Vec<f64> = (0..n).map(|r| logits[r * t_n + task] as f64).collect();
        let s = ctx.n_domains();
        let median_of = |d: usize| {
            percentile(
                &(0..n)
                    .filter(|&r| test.domain[r] as usize == d)
                    .map(|r| own[r])
                    .collect::<Vec<_>>(),
                0.5,
            )
        };
        let medians: Vec<f64> = (0..s).map(median_of).collect();
        let tied = experts.len() == s
            && experts
                .iter()
                .enumerate()
                .all(|(i, (_, p))| p.key == ProbeKey::Expert(i));
        let domain_fields: Vec<usize> = ctx
            .fields_with_role(FieldRole::Domain)
            .into_iter()
            .filter(|&i| !ctx.fields[i].multi_hot)
            .collect();
        for j in 0..s {
            // The same rows, seen by domain j's head.
            let mut as_j = test.clone();
            as_j.domain.iter_mut().for_each(|d| *d = j as u32);
            for &fi in &domain_fields {
                let col = ctx.fields[fi].column;
                let id_j = train
                    .domain
                    .iter()
                    .position(|&d| d as usize == j)
                    .map(|r| train.cat[col][r]);
                if let Some(id) = id_j {
                    as_j.cat[col].iter_mut().for_each(|x| *x = id);
                }
            }
            let lj = snap.predict(
                &as_j,
                4096,
                &DeviceKind::Cpu.device().map_err(TrainError::Config)?,
            )?;
            for i in (0..s).filter(|&i| i != j) {
                let conflict: Vec<usize> = (0..n)
                    .filter(|&r| test.domain[r] as usize == i)
                    .filter(|&r| {
                        (own[r] >= medians[i]) != (lj[r * t_n + task] as f64 >= medians[j])
                    })
                    .collect();
                let frac = |pred: &dyn Fn(usize) -> bool| {
                    (!conflict.is_empty()).then(|| {
                        conflict.iter().filter(|&&r| pred(r)).count() as f64 / conflict.len() as f64
                    })
                };
                let di_af = frac(&|r| {
                    norms.iter().any(|e| e[r] >= tau_t) && norms.iter().any(|e| e[r] <= tau_b)
                });
                let di_sf = if tied {
                    frac(&|r| norms[i][r] >= tau_t && norms[j][r] <= tau_b)
                } else {
                    None
                };
                a.di.push(DiRow {
                    run: label.clone(),
                    domain_i: ctx.domains[i].clone(),
                    domain_j: ctx.domains[j].clone(),
                    conflicts: conflict.len(),
                    di_af,
                    di_sf,
                });
            }
        }
        if !tied {
            a.notes.push(format!("{label}: DI^SF needs one expert per domain (expert k ↔ domain k); this model has {} experts", experts.len()));
        }
    }

    // Interest entanglement between the run's tables.
    let (uname, iname) = (&ctx.fields[user].name, &ctx.fields[item].name);
    let rows = frequent_pairs(&test, ctx, user, item, user_freq, item_freq);
    let pairs = id_pairs(&test, ctx, user, item, &rows);
    let dists = pair_distances(snap, uname, iname, &pairs);
    if pairs.is_empty() {
        a.notes.push(format!("{label}: no analysed test pair has both its user and its item above the 60th percentile of train frequency (e.g. test users unseen in training); no entanglement histogram"));
    } else if dists.len() < 2 {
        a.notes.push(format!("{label}: entanglement needs ≥ 2 tables with user and item embeddings of one width; the run has {}", dists.len()));
    }
    for (x, (ta, da)) in dists.iter().enumerate().filter(|_| !pairs.is_empty()) {
        for (tb, db) in dists.iter().skip(x + 1) {
            let conflict = conflicts(da, db);
            let (edges, all, con) = histogram(da, &conflict);
            a.entanglement
                .push((label.clone(), ta.clone(), tb.clone(), edges, all, con));
        }
    }

    // The conflict pairs of the reference runs, measured on this run's tables.
    if let Some(r) = refs {
        measure_on(r, &label, snap, &loaded.prepared, a)?;
    }
    Ok(())
}

/// How often each id of field `f` occurs in `data` (every listed id of a multi-hot field).
fn id_counts(f: &FieldInfo, data: &EncodedData) -> Vec<u64> {
    let mut c = vec![0u64; f.vocab_size];
    let ids: &[u32] = if f.multi_hot {
        &data.multi[f.column].values
    } else {
        &data.cat[f.column]
    };
    for &id in ids {
        if (id as usize) < c.len() {
            c[id as usize] += 1;
        }
    }
    c
}

/// The rows of `test` whose user and item are both above the 60th percentile of train frequency
/// (RecScope's selection of analysed pairs).
fn frequent_pairs(
    test: &EncodedData,
    ctx: &ModelContext,
    user: usize,
    item: usize,
    user_freq: &[u64],
    item_freq: &[u64],
) -> Vec<usize> {
    let freq_of = |fi: usize, freq: &[u64]| -> Vec<f64> {
        test.cat[ctx.fields[fi].column]
            .iter()
            .map(|&u| freq.get(u as usize).copied().unwrap_or(0) as f64)
            .collect()
    };
    let (uf, vf) = (freq_of(user, user_freq), freq_of(item, item_freq));
    let (u60, v60) = (percentile(&uf, 0.6), percentile(&vf, 0.6));
    (0..test.len())
        .filter(|&r| uf[r] > u60 && vf[r] > v60)
        .collect()
}

/// `(user id, item id)` of `rows` of `data`.
fn id_pairs(
    data: &EncodedData,
    ctx: &ModelContext,
    user: usize,
    item: usize,
    rows: &[usize],
) -> Vec<(u32, u32)> {
    let (uc, ic) = (ctx.fields[user].column, ctx.fields[item].column);
    rows.iter()
        .map(|&r| (data.cat[uc][r], data.cat[ic][r]))
        .collect()
}

/// `‖u − v‖₂` of every pair under every (user table, item table) of one width of `snap`, named
/// by the user table.
fn pair_distances(
    snap: &Snapshot,
    user_field: &str,
    item_field: &str,
    pairs: &[(u32, u32)],
) -> Vec<(String, Vec<f64>)> {
    let ut = field_tables(snap, user_field);
    let it = field_tables(snap, item_field);
    ut.iter()
        .zip(&it)
        .filter(|(u, v)| u.2 == v.2)
        .map(|((un, urows, dim, uw), (_, vrows, _, vw))| {
            let d = pairs
                .iter()
                .map(|&(u, v)| {
                    let (u, v) = (u as usize, v as usize);
                    if u >= *urows || v >= *vrows {
                        return f64::NAN;
                    }
                    (0..*dim)
                        .map(|k| ((uw[u * dim + k] - vw[v * dim + k]) as f64).powi(2))
                        .sum::<f64>()
                        .sqrt()
                })
                .collect();
            (un.clone(), d)
        })
        .collect()
}

/// The pairs close under `a` and far under `b`: distance ≤ 40th percentile of `a`'s and > 60th
/// percentile of `b`'s (RecScope mode 0).
fn conflicts(da: &[f64], db: &[f64]) -> Vec<bool> {
    let (a40, b60) = (percentile(da, 0.4), percentile(db, 0.6));
    da.iter()
        .zip(db)
        .map(|(&x, &y)| x <= a40 && y > b60)
        .collect()
}

/// 39 equal-width bins over the range of `all` (RecScope's histogram): the edges, the counts of
/// all values and of the values where `selected`.
fn histogram(all: &[f64], selected: &[bool]) -> (Vec<f64>, Vec<usize>, Vec<usize>) {
    let bins = 39;
    let (lo, hi) = all
        .iter()
        .filter(|v| v.is_finite())
        .fold((f64::MAX, f64::MIN), |(l, h), &v| (l.min(v), h.max(v)));
    let (lo, hi) = if lo <= hi { (lo, hi) } else { (0.0, 0.0) };
    let width = ((hi - lo) / bins as f64).max(1e-12);
    let (mut ca, mut cs) = (vec![0usize; bins], vec![0usize; bins]);
    for (&x, &s) in all.iter().zip(selected) {
        if !x.is_finite() {
            continue;
        }
        let b = (((x - lo) / width) as usize).min(bins - 1);
        ca[b] += 1;
        if s {
            cs[b] += 1;
        }
    }
    let edges = (0..=bins).map(|b| lo + width * b as f64).collect();
    (edges, ca, cs)
}

/// Mean percentile rank (0–1, ties counted half) of the selected values among all values.
fn mean_rank(all: &[f64], selected: &[bool]) -> Option<f64> {
    let mut sorted: Vec<f64> = all.iter().copied().filter(|v| v.is_finite()).collect();
    sorted.sort_by(f64::total_cmp);
    let n = sorted.len() as f64;
    let ranks: Vec<f64> = all
        .iter()
        .zip(selected)
        .filter(|(x, &s)| s && x.is_finite())
        .map(|(&x, _)| {
            let below = sorted.partition_point(|&v| v < x) as f64;
            let upto = sorted.partition_point(|&v| v <= x) as f64;
            (below + 0.5 * (upto - below)) / n
        })
        .collect();
    (!ranks.is_empty()).then(|| ranks.iter().sum::<f64>() / ranks.len() as f64)
}

/// Where Eq. 8 finds its users, times and categories in a run's data.
fn behaviour_spec<'a>(
    ctx: &'a ModelContext,
    prepared: &Prepared,
    user: usize,
    item: usize,
    opts: &AnalyzeOptions,
) -> Result<mutual_info::BehaviourSpec<'a>, String> {
    let category = match &opts.category_field {
        Some(n) => ctx
            .fields
            .iter()
            .find(|f| &f.name == n)
            .ok_or_else(|| format!("no embedded field `{n}` (--category-field)"))?,
        None => ctx
            .fields
            .iter()
            .enumerate()
            .find(|&(i, f)| i != item && f.has_role(FieldRole::Item))
            .map(|(_, f)| f)
            .ok_or("no item field besides the item id to take categories from; name one with --category-field")?,
    };
    let vocab = prepared.vocabs.tables.get(&category.table);
    let names = (0..category.vocab_size as u32)
        .map(|id| vocab.and_then(|v| v.value(id)).map(str::to_string))
        .collect();
    Ok(mutual_info::BehaviourSpec {
        user: &ctx.fields[user],
        category,
        category_names: names,
        positions: opts.mi_positions,
    })
}

/// IA of field `f`'s embeddings (rows `ids` of each of its tables) after the first layer of
/// every expert that reads a table's embeddings side by side: the rows of that layer's weight
/// that multiply the field (RecScope's "IA after projection").
fn projected_ia(label: &str, snap: &Snapshot, f: &FieldInfo, ids: &[u32], a: &mut Analysis) {
    // (table, offset of the field in the table's input, width of that input)
    let mut inputs = vec![(f.table.clone(), f.offset, snap.ctx.emb_dim())];
    for s in &snap.ctx.sets {
        if let Some(sf) = s.fields.iter().find(|x| x.name == f.name) {
            inputs.push((sf.table.clone(), sf.offset, s.width()));
        }
    }
    let tables: BTreeMap<&str, (usize, usize, &[f32])> = snap
        .store
        .tables()
        .map(|(t, rows, dim, w)| (t, (rows, dim, w)))
        .collect();
    for (name, shape, w) in snap.model.named_tensors() {
        let Some(expert) = expert_first_layer(&name) else {
            continue;
        };
        let [rows_in, h] = shape[..] else { continue };
        for (table, offset, width) in &inputs {
            let Some(&(t_rows, dim, emb)) = tables.get(table.as_str()) else {
                continue;
            };
            if rows_in != width + snap.ctx.n_numeric || dim != f.dim || offset + dim > rows_in {
                continue;
            }
            let ids: Vec<u32> = ids
                .iter()
                .copied()
                .filter(|&i| (i as usize) < t_rows)
                .collect();
            let mut m = vec![0f32; ids.len() * h];
            for (r, &id) in ids.iter().enumerate() {
                let e = &emb[id as usize * dim..(id as usize + 1) * dim];
                let out = &mut m[r * h..(r + 1) * h];
                for (k, &x) in e.iter().enumerate() {
                    let wr = &w[(offset + k) * h..(offset + k + 1) * h];
                    for (o, &wv) in out.iter_mut().zip(wr) {
                        *o += x * wv;
                    }
                }
            }
            a.projected_ia.push(ProjectedIaRow {
                run: label.to_string(),
                expert: expert.clone(),
                field: f.name.clone(),
                table: table.clone(),
                rows: ids.len(),
                ia: information_abundance(&m, ids.len(), h),
            });
        }
    }
}

/// The norm of every learned recency-rank and time-interval embedding of each TIM sequence
/// (ids seen in training; `freqs` summed over the slots at each sequence's first slot).
fn temporal_embeddings(
    label: &str,
    snap: &Snapshot,
    ctx: &ModelContext,
    freqs: &[Vec<u64>],
    a: &mut Analysis,
) {
    for sq in ctx
        .sequences
        .iter()
        .filter(|s| s.encoder == SeqEncoder::Tim)
    {
        for (kind, part) in [("position", &sq.positions), ("interval", &sq.intervals)] {
            let Some(&first) = part.first() else { continue };
            let f = &ctx.fields[first];
            let Some((_, rows, dim, w)) = field_tables(snap, &f.name)
                .into_iter()
                .find(|t| t.0 == f.table)
            else {
                continue;
            };
            for id in 2..rows {
                let count = freqs[first].get(id).copied().unwrap_or(0);
                if count == 0 {
                    continue;
                }
                let row = &w[id * dim..(id + 1) * dim];
                a.temporal.push(TemporalRow {
                    run: label.to_string(),
                    sequence: sq.name.clone(),
                    kind: kind.to_string(),
                    index: id - 2,
                    count,
                    norm: row
                        .iter()
                        .map(|&x| f64::from(x).powi(2))
                        .sum::<f64>()
                        .sqrt(),
                });
            }
        }
    }
}

/// The expert named by the first layer `name` of its MLP (`…<expert>[.mlp].layers.0.linear.weight`),
/// gates, towers and heads excluded.
fn expert_first_layer(name: &str) -> Option<String> {
    let stem = name.strip_suffix(".layers.0.linear.weight")?;
    let stem = stem.strip_suffix(".mlp").unwrap_or(stem);
    let stem = stem.strip_prefix("model.").unwrap_or(stem);
    let excluded = ["gate", "gates", "tower", "towers", "heads", "head"];
    if stem.split('.').any(|seg| excluded.contains(&seg)) {
        return None;
    }
    Some(stem.to_string())
}

/// The user–item pairs in conflict between two reference models, to be measured on other runs.
pub struct EntangleRefs {
    /// `A vs B` (the references' labels).
    pub label: String,
    /// User and item field names.
    fields: (String, String),
    /// Vocabularies of the user and item tables (ids must mean the same in a measured run).
    vocabs: (Vec<String>, Vec<String>),
    /// The analysed pairs.
    pairs: Vec<(u32, u32)>,
    /// Whether each pair is in conflict.
    conflict: Vec<bool>,
}

/// A reference `RUN` (a one-model run) or `RUN#PART` (one model of a multi-model run, e.g. the
/// per-task model `click` of a `setting = "mdl"` run): its loaded run and the snapshot index.
fn load_ref(spec: &str) -> Result<(String, mdrec_train::LoadedRun, usize), TrainError> {
    let (path, part) = match spec.rsplit_once('#') {
        Some((p, part)) if !Path::new(spec).exists() => (p, Some(part)),
        _ => (spec, None),
    };
    let loaded = load_run(Path::new(path))?;
    let models = &loaded.trained.models;
    let idx = match part {
        Some(part) => models.iter().position(|(n, _)| n == part).ok_or_else(|| {
            TrainError::Config(format!(
                "analyze: --entangle-ref {spec}: {path} has no model `{part}`; it has: {}",
                models
                    .iter()
                    .map(|(n, _)| n.as_str())
                    .collect::<Vec<_>>()
                    .join(", ")
            ))
        })?,
        None if models.len() == 1 => 0,
        None => {
            return Err(TrainError::Config(format!(
                "analyze: --entangle-ref {spec}: the run trained {} models; pick one as {path}#PART (PART one of: {})",
                models.len(),
                models
                    .iter()
                    .map(|(n, _)| n.as_str())
                    .collect::<Vec<_>>()
                    .join(", ")
            )))
        }
    };
    let label = match part {
        Some(p) => format!("{}#{p}", run_label(Path::new(path))),
        None => run_label(Path::new(path)),
    };
    Ok((label, loaded, idx))
}

fn vocab_of(prepared: &Prepared, f: &FieldInfo) -> Vec<String> {
    prepared
        .vocabs
        .tables
        .get(&f.table)
        .map(|v| v.values.clone())
        .unwrap_or_default()
}

/// Pick the conflict pairs of two references (Pan et al. §5, Fig. 3 and §7.3): among the first
/// `rows` test pairs of reference A whose user and item are both frequent, those whose distance
/// is ≤ the 40th percentile under A's embeddings and > the 60th percentile under B's. Both
/// references are then measured like any other run (into `a`).
fn entangle_refs(
    specs: &[String],
    opts: &AnalyzeOptions,
    a: &mut Analysis,
) -> Result<Option<EntangleRefs>, TrainError> {
    let [sa, sb] = match specs {
        [] => return Ok(None),
        [x, y] => [x, y],
        _ => {
            return Err(TrainError::Config(format!(
                "analyze: give --entangle-ref exactly twice (two single-task references), got {}",
                specs.len()
            )))
        }
    };
    let (la, ra, ia) = load_ref(sa)?;
    let (lb, rb, ib) = load_ref(sb)?;
    let ctx = &ra.trained.ctx;
    let user = pick_field(ctx, &opts.user_field, FieldRole::User, "user")?;
    let item = pick_field(ctx, &opts.item_field, FieldRole::Item, "item")?;
    let (uf, vf) = (&ctx.fields[user], &ctx.fields[item]);
    let prep = &ra.prepared;
    let n = prep.test.len().min(opts.rows);
    let test = prep.test.subset(&(0..n as u32).collect::<Vec<_>>());
    let rows = frequent_pairs(
        &test,
        ctx,
        user,
        item,
        &id_counts(uf, &prep.train),
        &id_counts(vf, &prep.train),
    );
    let pairs = id_pairs(&test, ctx, user, item, &rows);
    let vocabs = (vocab_of(prep, uf), vocab_of(prep, vf));
    let mut refs = EntangleRefs {
        label: format!("{la} vs {lb}"),
        fields: (uf.name.clone(), vf.name.clone()),
        vocabs,
        pairs,
        conflict: Vec::new(),
    };
    check_ids(&refs, &rb.prepared, &rb.trained.ctx, sb)?;
    let base = |snap: &Snapshot, who: &str| -> Result<Vec<f64>, TrainError> {
        pair_distances(snap, &uf.name, &vf.name, &refs.pairs)
            .into_iter()
            .next()
            .map(|(_, d)| d)
            .ok_or_else(|| {
                TrainError::Config(format!(
                    "analyze: --entangle-ref {who}: no user and item tables of one width"
                ))
            })
    };
    let da = base(&ra.trained.models[ia].1, sa)?;
    let db = base(&rb.trained.models[ib].1, sb)?;
    refs.conflict = conflicts(&da, &db);
    if refs.pairs.is_empty() {
        a.notes.push(format!("{}: no analysed test pair of {la} has both its user and its item above the 60th percentile of train frequency; no cross-run entanglement", refs.label));
    }
    measure_on(&refs, &la, &ra.trained.models[ia].1, prep, a)?;
    measure_on(&refs, &lb, &rb.trained.models[ib].1, &rb.prepared, a)?;
    Ok(Some(refs))
}

/// `Err` unless the user and item ids of `prepared` mean what they mean in the references.
fn check_ids(
    refs: &EntangleRefs,
    prepared: &Prepared,
    ctx: &ModelContext,
    who: &str,
) -> Result<(), TrainError> {
    for (name, vocab) in [
        (&refs.fields.0, &refs.vocabs.0),
        (&refs.fields.1, &refs.vocabs.1),
    ] {
        let same = ctx
            .fields
            .iter()
            .find(|f| &f.name == name)
            .map(|f| &vocab_of(prepared, f) == vocab);
        if same != Some(true) {
            return Err(TrainError::Config(format!(
                "analyze: {who}: field `{name}` {} than in the --entangle-ref runs {}; cross-run entanglement needs runs on the same data",
                if same.is_none() { "is missing, unlike" } else { "has another vocabulary" },
                refs.label
            )));
        }
    }
    Ok(())
}

/// Distances of the reference conflict pairs under every (user, item) table pair of `snap`.
fn measure_on(
    refs: &EntangleRefs,
    label: &str,
    snap: &Snapshot,
    prepared: &Prepared,
    a: &mut Analysis,
) -> Result<(), TrainError> {
    check_ids(refs, prepared, &snap.ctx, label)?;
    if refs.pairs.is_empty() {
        return Ok(());
    }
    for (table, d) in pair_distances(snap, &refs.fields.0, &refs.fields.1, &refs.pairs) {
        let (edges, all, conflict) = histogram(&d, &refs.conflict);
        a.cross_entanglement.push(CrossEntanglement {
            run: label.to_string(),
            refs: refs.label.clone(),
            table,
            conflict_rank: mean_rank(&d, &refs.conflict),
            edges,
            all,
            conflict,
        });
    }
    Ok(())
}

/// Writes `rows` under `header` (comma-separated column names) with the csv crate, so a value
/// holding a comma or a quote (a run label, a field name) is quoted.
fn csv<T>(
    path: &Path,
    header: &str,
    rows: &[T],
    line: impl Fn(&T) -> Vec<String>,
) -> Result<(), TrainError> {
    let err = |e: csv::Error| TrainError::io(path, std::io::Error::other(e));
    let mut w = csv::Writer::from_path(path).map_err(err)?;
    w.write_record(header.split(',')).map_err(err)?;
    for r in rows {
        w.write_record(line(r)).map_err(err)?;
    }
    w.flush().map_err(|e| TrainError::io(path, e))
}

fn opt(v: Option<f64>) -> String {
    v.map(|x| format!("{x:.6}")).unwrap_or_default()
}

fn write_file(path: &Path, s: &str) -> Result<(), TrainError> {
    std::fs::write(path, s).map_err(|e| TrainError::io(path, e))
}

fn write_outputs(out: &Path, a: &Analysis) -> Result<(), TrainError> {
    let mut overlap_rows = Vec::new();
    for MaskOverlap {
        run,
        block,
        domains: names,
        matrix: m,
    } in &a.mask_overlap
    {
        for (i, row) in m.iter().enumerate() {
            for (j, v) in row.iter().enumerate() {
                let name = |k: usize| names.get(k).cloned().unwrap_or_else(|| k.to_string());
                overlap_rows.push(vec![
                    run.to_string(),
                    block.to_string(),
                    name(i),
                    name(j),
                    opt(v.is_finite().then_some(*v)),
                ]);
            }
        }
        write_svg(
            &out.join(format!(
                "mask_overlap_{}_{}.svg",
                file_part(run),
                file_part(block)
            )),
            heatmap(
                &format!("{run}: mask overlap ratio, edges {block}"),
                names,
                names,
                m,
            ),
        )?;
    }
    if !a.mask_overlap.is_empty() {
        csv(
            &out.join("mask_overlap.csv"),
            "run,block,domain_i,domain_j,overlap_ratio",
            &overlap_rows,
            |r| r.clone(),
        )?;
    }
    csv(
        &out.join("ia.csv"),
        "run,field,table,group,rows,ia",
        &a.ia,
        |r| {
            vec![
                r.run.to_string(),
                r.field.to_string(),
                r.table.to_string(),
                r.group.to_string(),
                r.rows.to_string(),
                format!("{:.6}", r.ia),
            ]
        },
    )?;
    let mut spec_rows = Vec::new();
    for (run, field, table, s) in &a.spectra {
        for (i, v) in s.iter().enumerate() {
            spec_rows.push(vec![
                run.to_string(),
                field.to_string(),
                table.to_string(),
                i.to_string(),
                format!("{v:.8}"),
            ]);
        }
    }
    csv(
        &out.join("spectrum.csv"),
        "run,field,table,index,sigma_over_max",
        &spec_rows,
        |r| r.clone(),
    )?;
    let fields: Vec<&String> = {
        let mut f: Vec<&String> = a.spectra.iter().map(|s| &s.1).collect();
        f.dedup();
        f
    };
    for field in fields {
        let series: Vec<(String, Vec<(f64, f64)>)> = a
            .spectra
            .iter()
            .filter(|s| &s.1 == field)
            .map(|(run, _, table, s)| {
                (
                    format!("{run}: {table}"),
                    s.iter()
                        .enumerate()
                        .map(|(i, v)| (i as f64, v.max(1e-12).log10()))
                        .collect(),
                )
            })
            .collect();
        write_svg(
            &out.join(format!("spectrum_{}.svg", file_part(field))),
            line_chart(
                &format!("Singular spectrum of the {field} embeddings"),
                "singular value index",
                "log10(σ / σ_max)",
                &series,
            ),
        )?;
    }
    let mut ia_series: BTreeMap<String, Vec<(f64, f64)>> = BTreeMap::new();
    for r in a.ia.iter().filter(|r| r.group != "all") {
        let g: f64 = r.group.parse().unwrap_or(0.0);
        ia_series
            .entry(format!("{}: {}", r.run, r.table))
            .or_default()
            .push((g, r.ia));
    }
    write_svg(
        &out.join("ia_frequency.svg"),
        line_chart(
            "Information abundance by item frequency (0 = most frequent)",
            "frequency group",
            "IA",
            &ia_series.into_iter().collect::<Vec<_>>(),
        ),
    )?;
    csv(
        &out.join("experts.csv"),
        "run,expert,ia,mean_norm",
        &a.experts,
        |r| {
            vec![
                r.run.to_string(),
                r.expert.to_string(),
                format!("{:.6}", r.ia),
                format!("{:.6}", r.mean_norm),
            ]
        },
    )?;
    let mut util_rows = Vec::new();
    for (run, head, w) in &a.utilisation {
        for (e, v) in w.iter().enumerate() {
            util_rows.push(vec![
                run.to_string(),
                head.to_string(),
                e.to_string(),
                format!("{v:.6}"),
            ]);
        }
    }
    csv(
        &out.join("utilisation.csv"),
        "run,head,expert,mean_weight",
        &util_rows,
        |r| r.clone(),
    )?;
    let mut runs: Vec<&String> = a.utilisation.iter().map(|u| &u.0).collect();
    runs.dedup();
    for run in runs {
        let rows: Vec<&(String, String, Vec<f64>)> =
            a.utilisation.iter().filter(|u| &u.0 == run).collect();
        let k = rows.iter().map(|r| r.2.len()).max().unwrap_or(0);
        let values: Vec<Vec<f64>> = rows
            .iter()
            .map(|r| {
                (0..k)
                    .map(|e| r.2.get(e).copied().unwrap_or(f64::NAN))
                    .collect()
            })
            .collect();
        write_svg(
            &out.join(format!("utilisation_{}.svg", file_part(run))),
            heatmap(
                &format!("{run}: mean gate weight per expert"),
                &rows.iter().map(|r| r.1.clone()).collect::<Vec<_>>(),
                &(0..k).map(|e| format!("e{e}")).collect::<Vec<_>>(),
                &values,
            ),
        )?;
    }
    csv(
        &out.join("di.csv"),
        "run,domain_i,domain_j,conflicts,di_af,di_sf",
        &a.di,
        |r| {
            vec![
                r.run.to_string(),
                r.domain_i.to_string(),
                r.domain_j.to_string(),
                r.conflicts.to_string(),
                opt(r.di_af),
                opt(r.di_sf),
            ]
        },
    )?;
    let mut di_series: BTreeMap<String, Vec<(f64, f64)>> = BTreeMap::new();
    let mut pair_index: Vec<String> = Vec::new();
    for r in &a.di {
        let key = format!("{}→{}", r.domain_i, r.domain_j);
        let x = match pair_index.iter().position(|p| p == &key) {
            Some(x) => x,
            None => {
                pair_index.push(key);
                pair_index.len() - 1
            }
        };
        if let Some(v) = r.di_af {
            di_series
                .entry(format!("{} DI^AF", r.run))
                .or_default()
                .push((x as f64, v));
        }
        if let Some(v) = r.di_sf {
            di_series
                .entry(format!("{} DI^SF", r.run))
                .or_default()
                .push((x as f64, v));
        }
    }
    write_svg(
        &out.join("di.svg"),
        line_chart(
            &format!(
                "Diversity Index per domain pair ({})",
                pair_index.join(", ")
            ),
            "domain pair (index in the title)",
            "DI",
            &di_series.into_iter().collect::<Vec<_>>(),
        ),
    )?;
    let mut ent_rows = Vec::new();
    for (run, ta, tb, edges, all, con) in &a.entanglement {
        for b in 0..all.len() {
            ent_rows.push(vec![
                run.to_string(),
                ta.to_string(),
                tb.to_string(),
                format!("{:.6}", edges[b]),
                format!("{:.6}", edges[b + 1]),
                all[b].to_string(),
                con[b].to_string(),
            ]);
        }
    }
    csv(
        &out.join("entanglement.csv"),
        "run,table_a,table_b,bin_lo,bin_hi,all_pairs,conflict_pairs",
        &ent_rows,
        |r| r.clone(),
    )?;
    let mut ent_runs: Vec<&String> = a.entanglement.iter().map(|e| &e.0).collect();
    ent_runs.dedup();
    for run in ent_runs {
        let mut series = Vec::new();
        for (_, ta, tb, edges, all, con) in a.entanglement.iter().filter(|e| &e.0 == run) {
            let (na, nc) = (
                all.iter().sum::<usize>().max(1) as f64,
                con.iter().sum::<usize>().max(1) as f64,
            );
            let mid = |b: usize| (edges[b] + edges[b + 1]) / 2.0;
            series.push((
                format!("{ta}: all pairs"),
                (0..all.len())
                    .map(|b| (mid(b), all[b] as f64 / na))
                    .collect(),
            ));
            series.push((
                format!("{ta} vs {tb}: conflict"),
                (0..con.len())
                    .map(|b| (mid(b), con[b] as f64 / nc))
                    .collect(),
            ));
        }
        write_svg(
            &out.join(format!("entanglement_{}.svg", file_part(run))),
            line_chart(
                &format!("{run}: user–item distance, all vs conflict pairs"),
                "‖u − v‖₂",
                "share of pairs",
                &series,
            ),
        )?;
    }
    write_collapse_and_mi(out, a)?;
    write_cross_entanglement(out, a)?;
    write_temporal(out, a)?;
    let summary = serde_json::to_string_pretty(a).expect("serialises");
    write_file(&out.join("summary.json"), &(summary + "\n"))
}

/// The distinct values of `key` over `items`, in first-seen order.
fn distinct<T, K: PartialEq + Clone>(items: &[T], key: impl Fn(&T) -> K) -> Vec<K> {
    let mut out: Vec<K> = Vec::new();
    for i in items {
        let k = key(i);
        if !out.contains(&k) {
            out.push(k);
        }
    }
    out
}

/// A heat map of `value(row, col)` over the distinct row and column keys of `items` (NaN where
/// no item has the pair).
fn keyed_heatmap<T>(
    path: &Path,
    title: &str,
    items: &[&T],
    row: impl Fn(&T) -> String,
    col: impl Fn(&T) -> String,
    value: impl Fn(&T) -> f64,
) -> Result<(), TrainError> {
    let rows = distinct(items, |t| row(t));
    let cols = distinct(items, |t| col(t));
    let mut m = vec![vec![f64::NAN; cols.len()]; rows.len()];
    for t in items {
        let r = rows.iter().position(|x| *x == row(t)).expect("listed");
        let c = cols.iter().position(|x| *x == col(t)).expect("listed");
        m[r][c] = value(t);
    }
    write_svg(path, heatmap(title, &rows, &cols, &m))
}

/// `ia_projected.*`, `mi.*`, `mi_behaviour.*`, `mi_position_*.svg`.
fn write_collapse_and_mi(out: &Path, a: &Analysis) -> Result<(), TrainError> {
    csv(
        &out.join("ia_projected.csv"),
        "run,expert,field,table,rows,ia",
        &a.projected_ia,
        |r| {
            vec![
                r.run.to_string(),
                r.expert.to_string(),
                r.field.to_string(),
                r.table.to_string(),
                r.rows.to_string(),
                format!("{:.6}", r.ia),
            ]
        },
    )?;
    for run in distinct(&a.projected_ia, |r| r.run.clone()) {
        let items: Vec<&ProjectedIaRow> = a.projected_ia.iter().filter(|r| r.run == run).collect();
        keyed_heatmap(
            &out.join(format!("ia_projected_{}.svg", file_part(&run))),
            &format!("{run}: IA of each field after each expert's first layer"),
            &items,
            |r| format!("{} ← {}", r.expert, r.table),
            |r| r.field.clone(),
            |r| r.ia,
        )?;
    }
    csv(
        &out.join("mi.csv"),
        "run,field,task,domain,rows,values,mi_nats,mi_mm_nats,nmi,h_label_nats",
        &a.mi,
        |(run, m)| {
            let s = &m.stats;
            let mut row = vec![
                run.to_string(),
                m.field.to_string(),
                m.task.to_string(),
                m.domain.to_string(),
                s.n.to_string(),
                s.values.to_string(),
            ];
            row.extend([s.mi, s.mi_mm, s.nmi, s.h_y].map(|x| format!("{x:.8}")));
            row
        },
    )?;
    for run in distinct(&a.mi, |m| m.0.clone()) {
        let items: Vec<&(String, FieldMi)> = a.mi.iter().filter(|m| m.0 == run).collect();
        keyed_heatmap(
            &out.join(format!("mi_{}.svg", file_part(&run))),
            &format!("{run}: MI(field; label), Miller–Madow corrected, 10⁻³ nats (train split)"),
            &items,
            |m| m.1.field.clone(),
            |m| format!("{}/{}", m.1.task, m.1.domain),
            |m| m.1.stats.mi_mm * 1e3,
        )?;
    }
    csv(
        &out.join("mi_behaviour.csv"),
        "run,task,target_category,behaviour_category,position,rows,hits,mi_nats,mi_mm_nats",
        &a.behaviour_mi,
        |(run, m)| {
            vec![
                run.to_string(),
                m.task.to_string(),
                m.target.to_string(),
                m.behaviour.to_string(),
                m.position.to_string(),
                m.rows.to_string(),
                m.hits.to_string(),
                format!("{:.8}", m.mi),
                format!("{:.8}", m.mi_mm),
            ]
        },
    )?;
    for run in distinct(&a.behaviour_mi, |m| m.0.clone()) {
        let of_run: Vec<&BehaviourMi> = a
            .behaviour_mi
            .iter()
            .filter(|m| m.0 == run)
            .map(|m| &m.1)
            .collect();
        let mut series = Vec::new();
        for task in distinct(&of_run, |m| m.task.clone()) {
            let first: Vec<&&BehaviourMi> = of_run
                .iter()
                .filter(|m| m.task == task && m.position == 1)
                .collect();
            keyed_heatmap(
                &out.join(format!(
                    "mi_behaviour_{}_{}.svg",
                    file_part(&run),
                    file_part(&task)
                )),
                &format!("{run}, {task}: MI(most recent behaviour in column category; label) on targets of the row category, 10⁻³ nats"),
                &first,
                |m| m.target.clone(),
                |m| m.behaviour.clone(),
                |m| m.mi * 1e3,
            )?;
            for (name, same) in [("same category", true), ("other categories", false)] {
                let positions = distinct(&of_run, |m| m.position);
                let points = positions
                    .iter()
                    .map(|&p| {
                        let v: Vec<f64> = of_run
                            .iter()
                            .filter(|m| m.task == task && m.position == p)
                            .filter(|m| (m.target == m.behaviour) == same)
                            .map(|m| m.mi * 1e3)
                            .collect();
                        (p as f64, v.iter().sum::<f64>() / v.len().max(1) as f64)
                    })
                    .collect();
                series.push((format!("{task}: {name}"), points));
            }
        }
        write_svg(
            &out.join(format!("mi_position_{}.svg", file_part(&run))),
            line_chart(
                &format!("{run}: behaviour–target MI by position, mean over target categories"),
                "behaviour position (1 = most recent)",
                "MI, 10⁻³ nats",
                &series,
            ),
        )?;
    }
    Ok(())
}

/// `tim_temporal.csv` and `tim_temporal_<run>.svg` (norm by rank and by interval bucket).
fn write_temporal(out: &Path, a: &Analysis) -> Result<(), TrainError> {
    if a.temporal.is_empty() {
        return Ok(());
    }
    csv(
        &out.join("tim_temporal.csv"),
        "run,sequence,kind,index,count,norm",
        &a.temporal,
        |r| {
            vec![
                r.run.clone(),
                r.sequence.clone(),
                r.kind.clone(),
                r.index.to_string(),
                r.count.to_string(),
                format!("{:.6}", r.norm),
            ]
        },
    )?;
    for run in distinct(&a.temporal, |r| r.run.clone()) {
        let mut series: Vec<(String, Vec<(f64, f64)>)> = Vec::new();
        for r in a.temporal.iter().filter(|r| r.run == run) {
            let name = format!("{} {}", r.sequence, r.kind);
            let point = (r.index as f64, r.norm);
            match series.iter_mut().find(|s| s.0 == name) {
                Some(s) => s.1.push(point),
                None => series.push((name, vec![point])),
            }
        }
        write_svg(
            &out.join(format!("tim_temporal_{}.svg", file_part(&run))),
            line_chart(
                &format!("{run}: TIM temporal embeddings"),
                "recency rank (0 = most recent) / interval bucket floor(log2 Δt)",
                "L2 norm",
                &series,
            ),
        )?;
    }
    Ok(())
}

/// `entangle_refs.csv` and `entangle_refs_<run>.svg`.
fn write_cross_entanglement(out: &Path, a: &Analysis) -> Result<(), TrainError> {
    if a.cross_entanglement.is_empty() {
        return Ok(());
    }
    let mut rows = Vec::new();
    for e in &a.cross_entanglement {
        for b in 0..e.all.len() {
            rows.push(vec![
                e.run.to_string(),
                e.refs.to_string(),
                e.table.to_string(),
                opt(e.conflict_rank),
                format!("{:.6}", e.edges[b]),
                format!("{:.6}", e.edges[b + 1]),
                e.all[b].to_string(),
                e.conflict[b].to_string(),
            ]);
        }
    }
    csv(
        &out.join("entangle_refs.csv"),
        "run,refs,table,conflict_rank,bin_lo,bin_hi,all_pairs,conflict_pairs",
        &rows,
        |r| r.clone(),
    )?;
    for run in distinct(&a.cross_entanglement, |e| e.run.clone()) {
        let mut series = Vec::new();
        for e in a.cross_entanglement.iter().filter(|e| e.run == run) {
            let (na, nc) = (
                e.all.iter().sum::<usize>().max(1) as f64,
                e.conflict.iter().sum::<usize>().max(1) as f64,
            );
            let mid = |b: usize| (e.edges[b] + e.edges[b + 1]) / 2.0;
            series.push((
                format!("{}: all pairs", e.table),
                (0..e.all.len())
                    .map(|b| (mid(b), e.all[b] as f64 / na))
                    .collect(),
            ));
            series.push((
                format!(
                    "{}: conflict pairs (mean rank {})",
                    e.table,
                    e.conflict_rank.map_or("-".into(), |r| format!("{r:.2}"))
                ),
                (0..e.conflict.len())
                    .map(|b| (mid(b), e.conflict[b] as f64 / nc))
                    .collect(),
            ));
        }
        let refs = &a.cross_entanglement[0].refs;
        write_svg(
            &out.join(format!("entangle_refs_{}.svg", file_part(&run))),
            line_chart(
                &format!("{run}: user–item distance of the conflict pairs of {refs}"),
                "‖u − v‖₂",
                "share of pairs",
                &series,
            ),
        )?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn singular_values_of_a_known_matrix() {
        // [[3, 0], [0, 4], [0, 0]] has singular values 4 and 3.
        let m = [3.0, 0.0, 0.0, 4.0, 0.0, 0.0];
        let s = singular_values(&m, 3, 2, false);
        assert!(
            (s[0] - 4.0).abs() < 1e-9 && (s[1] - 3.0).abs() < 1e-9,
            "{s:?}"
        );
        // A rotated rank-1 matrix: one non-zero singular value, IA = 1.
        let r = [1.0, 2.0, 2.0, 4.0, -1.0, -2.0];
        let s = singular_values(&r, 3, 2, false);
        assert!(
            (s[0] - (30.0f64).sqrt()).abs() < 1e-6 && s[1].abs() < 1e-6,
            "{s:?}"
        );
        assert!((information_abundance(&r, 3, 2) - 1.0).abs() < 1e-6);
        // Orthonormal rows: every direction equally used, IA = k.
        let e = [1.0, 0.0, 0.0, 0.0, 1.0, 0.0, 0.0, 0.0, 1.0];
        assert!((information_abundance(&e, 3, 3) - 3.0).abs() < 1e-9);
    }

    /// The singular values this module computed before it used nalgebra: square roots of the
    /// eigenvalues of the Gram matrix `MᵀM` by cyclic Jacobi rotations. Kept as the oracle that
    /// the SVD gives the same spectra.
    fn gram_jacobi_singular_values(m: &[f32], n: usize, k: usize, normalize: bool) -> Vec<f64> {
        let mut a = vec![0.0f64; k * k];
        for r in 0..n {
            let row = &m[r * k..(r + 1) * k];
            let scale = if normalize {
                1.0 / (row.iter().map(|&x| (x as f64).powi(2)).sum::<f64>().sqrt() + 1e-8)
            } else {
                1.0
            };
            for i in 0..k {
                for j in 0..k {
                    a[i * k + j] += row[i] as f64 * scale * row[j] as f64 * scale;
                }
            }
        }
        for _sweep in 0..100 {
            for p in 0..k {
                for q in p + 1..k {
                    let apq = a[p * k + q];
                    if apq.abs() < 1e-300 {
                        continue;
                    }
                    let theta = (a[q * k + q] - a[p * k + p]) / (2.0 * apq);
                    let t = if theta == 0.0 {
                        1.0
                    } else {
                        theta.signum() / (theta.abs() + (theta * theta + 1.0).sqrt())
                    };
                    let c = 1.0 / (t * t + 1.0).sqrt();
                    let s = t * c;
                    for r in 0..k {
                        let (arp, arq) = (a[r * k + p], a[r * k + q]);
                        a[r * k + p] = c * arp - s * arq;
                        a[r * k + q] = s * arp + c * arq;
                    }
                    for r in 0..k {
                        let (apr, aqr) = (a[p * k + r], a[q * k + r]);
                        a[p * k + r] = c * apr - s * aqr;
                        a[q * k + r] = s * apr + c * aqr;
                    }
                }
            }
        }
        let mut s: Vec<f64> = (0..k).map(|i| a[i * k + i].max(0.0).sqrt()).collect();
        s.sort_by(|a, b| b.total_cmp(a));
        s
    }

    #[test]
    fn svd_matches_the_gram_eigenvalue_spectrum() {
        let mut state = 12345u64;
        let mut next = || {
            state = state
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            ((state >> 33) as f64 / (1u64 << 31) as f64 - 0.5) as f32
        };
        for &(n, k) in &[(50, 8), (7, 16), (300, 16), (1, 3), (16, 16)] {
            let m: Vec<f32> = (0..n * k).map(|_| next()).collect();
            for normalize in [false, true] {
                let got = singular_values(&m, n, k, normalize);
                let want = gram_jacobi_singular_values(&m, n, k, normalize);
                assert_eq!(got.len(), k);
                for (g, w) in got.iter().zip(&want) {
                    // Through the Gram matrix a singular value σ is only known to about
                    // sqrt(ε)·σ_max, so tiny ones are compared on that absolute scale.
                    assert!(
                        (g - w).abs() < 1e-6 * want[0].max(1.0),
                        "{n}×{k} normalize={normalize}: {got:?} vs {want:?}"
                    );
                }
                if normalize {
                    let ia = want.iter().sum::<f64>() / want[0];
                    assert!((information_abundance(&m, n, k) - ia).abs() < 1e-6);
                }
            }
        }
        assert_eq!(singular_values(&[], 0, 4, true), vec![0.0; 4]);
    }

    #[test]
    fn percentile_interpolates() {
        let v = [1.0, 2.0, 3.0, 4.0, 5.0];
        assert_eq!(percentile(&v, 0.5), 3.0);
        assert!((percentile(&v, 0.6) - 3.4).abs() < 1e-12);
        assert!(percentile(&[], 0.5).is_nan());
    }
}
