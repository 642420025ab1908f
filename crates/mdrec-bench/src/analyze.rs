//! Representation analyses of trained runs (`mdrec analyze`): the measurements behind
//! multi-embedding models and Crocodile. Sources: Guo et al., "On the Embedding Collapse when
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
//! | `ia.csv`, `ia_frequency.svg` | Information Abundance (IA = Σσ/max σ of the row-normalised matrix, RecScope) of each embedding table of the user and item fields, overall and per item-frequency group (`groups` equal-size buckets of train frequency, 0 = most frequent) |
//! | `spectrum.csv`, `spectrum_<field>.svg` | singular spectrum `log10(σ_i / σ_1)` of the un-normalised table (as in Pan et al. and Crocodile Fig. 4) |
//! | `experts.csv` | IA and mean norm of each expert's outputs on the analysed test rows (Crocodile Fig. 2a) |
//! | `utilisation.csv`, `utilisation_<run>.svg` | mean gate weight of each expert per (domain, task) head; AREAD: per (domain, level), after the domain's mask |
//! | `di.csv`, `di.svg` | Diversity Index DI^AF and DI^SF per ordered domain pair (Crocodile Eq. 1–2) |
//! | `entanglement.csv`, `entanglement_<run>.svg` | user–item distance histograms, all pairs vs conflict pairs, per pair of tables (Pan et al.) |
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

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use mdrec_data::{Batch, EncodedData, FieldRole};
use mdrec_models::{ProbeKey, Probes};
use mdrec_nn::device::DeviceKind;
use mdrec_nn::ModelContext;
use mdrec_train::engine::{make_input, Snapshot};
use mdrec_train::load_run;
use serde::Serialize;

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
    if opts.groups == 0 || opts.rows == 0 {
        return Err(TrainError::Config(
            "analyze: groups and rows must be ≥ 1".into(),
        ));
    }
    std::fs::create_dir_all(out).map_err(|e| TrainError::io(out, e))?;
    let mut a = Analysis::default();
    for dir in runs {
        analyze_one(dir, opts, &mut a)?;
    }
    write_outputs(out, &a)?;
    Ok(a)
}

fn analyze_one(dir: &Path, opts: &AnalyzeOptions, a: &mut Analysis) -> Result<(), TrainError> {
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

    // Train frequency of every id of the user and item fields.
    let freq = |fi: usize| -> Vec<u64> {
        let f = &ctx.fields[fi];
        let mut c = vec![0u64; f.vocab_size];
        for &id in &train.cat[f.column] {
            if (id as usize) < c.len() {
                c[id as usize] += 1;
            }
        }
        c
    };
    let (user_freq, item_freq) = (freq(user), freq(item));

    // IA and spectra of the user and item tables.
    for &fi in &[user, item] {
        let field = ctx.fields[fi].name.clone();
        let counts = if fi == user { &user_freq } else { &item_freq };
        let mut ids: Vec<u32> = (2..counts.len() as u32)
            .filter(|&i| counts[i as usize] > 0)
            .collect();
        ids.sort_by_key(|&i| (std::cmp::Reverse(counts[i as usize]), i));
        for (table, _rows, dim, w) in field_tables(snap, &field) {
            let m = gather(w, dim, &ids);
            a.ia.push(IaRow {
                run: label.clone(),
                field: field.clone(),
                table: table.clone(),
                group: "all".into(),
                rows: ids.len(),
                ia: information_abundance(&m, ids.len(), dim),
            });
            let s = singular_values(&m, ids.len(), dim, false);
            let top = s.first().copied().unwrap_or(1.0).max(1e-30);
            a.spectra.push((
                label.clone(),
                field.clone(),
                table.clone(),
                s.iter().map(|x| x / top).collect(),
            ));
            if fi == item {
                let per = ids.len().div_ceil(opts.groups);
                for (g, chunk) in ids.chunks(per.max(1)).enumerate() {
                    let m = gather(w, dim, chunk);
                    a.ia.push(IaRow {
                        run: label.clone(),
                        field: field.clone(),
                        table: table.clone(),
                        group: g.to_string(),
                        rows: chunk.len(),
                        ia: information_abundance(&m, chunk.len(), dim),
                    });
                }
            }
        }
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
    let ut = field_tables(snap, &ctx.fields[user].name);
    let it = field_tables(snap, &ctx.fields[item].name);
    let pairs: Vec<usize> = {
        let uf: Vec<f64> = test.cat[ctx.fields[user].column]
            .iter()
            .map(|&u| user_freq[u as usize] as f64)
            .collect();
        let vf: Vec<f64> = test.cat[ctx.fields[item].column]
            .iter()
            .map(|&v| item_freq[v as usize] as f64)
            .collect();
        let (u60, v60) = (percentile(&uf, 0.6), percentile(&vf, 0.6));
        (0..n).filter(|&r| uf[r] > u60 && vf[r] > v60).collect()
    };
    let dists: Vec<(String, Vec<f64>)> = ut
        .iter()
        .zip(&it)
        .filter(|(u, v)| u.2 == v.2)
        .map(|((un, _, dim, uw), (_, _, _, vw))| {
            let d = pairs
                .iter()
                .map(|&r| {
                    let (uid, vid) = (
                        test.cat[ctx.fields[user].column][r] as usize,
                        test.cat[ctx.fields[item].column][r] as usize,
                    );
                    (0..*dim)
                        .map(|k| ((uw[uid * dim + k] - vw[vid * dim + k]) as f64).powi(2))
                        .sum::<f64>()
                        .sqrt()
                })
                .collect();
            (un.clone(), d)
        })
        .collect();
    if pairs.is_empty() {
        a.notes.push(format!("{label}: no analysed test pair has both its user and its item above the 60th percentile of train frequency (e.g. test users unseen in training); no entanglement histogram"));
    } else if dists.len() < 2 {
        a.notes.push(format!("{label}: entanglement needs ≥ 2 tables with user and item embeddings of one width; the run has {}", dists.len()));
    }
    for (x, (ta, da)) in dists.iter().enumerate().filter(|_| !pairs.is_empty()) {
        for (tb, db) in dists.iter().skip(x + 1) {
            let (a40, b60) = (percentile(da, 0.4), percentile(db, 0.6));
            let conflict: Vec<f64> = (0..da.len())
                .filter(|&r| da[r] <= a40 && db[r] > b60)
                .map(|r| da[r])
                .collect();
            let (lo, hi) = da
                .iter()
                .fold((f64::MAX, f64::MIN), |(l, h), &v| (l.min(v), h.max(v)));
            let bins = 39;
            let width = ((hi - lo) / bins as f64).max(1e-12);
            let hist = |v: &[f64]| {
                let mut c = vec![0usize; bins];
                for &x in v {
                    c[(((x - lo) / width) as usize).min(bins - 1)] += 1;
                }
                c
            };
            let edges = (0..=bins).map(|b| lo + width * b as f64).collect();
            a.entanglement.push((
                label.clone(),
                ta.clone(),
                tb.clone(),
                edges,
                hist(da),
                hist(&conflict),
            ));
        }
    }
    Ok(())
}

fn csv<T>(
    path: &Path,
    header: &str,
    rows: &[T],
    line: impl Fn(&T) -> String,
) -> Result<(), TrainError> {
    let mut s = String::from(header);
    s.push('\n');
    for r in rows {
        s.push_str(&line(r));
        s.push('\n');
    }
    std::fs::write(path, s).map_err(|e| TrainError::io(path, e))
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
                overlap_rows.push(format!(
                    "{run},{block},{},{},{}",
                    name(i),
                    name(j),
                    opt(v.is_finite().then_some(*v))
                ));
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
            format!(
                "{},{},{},{},{},{:.6}",
                r.run, r.field, r.table, r.group, r.rows, r.ia
            )
        },
    )?;
    let mut spec_rows = Vec::new();
    for (run, field, table, s) in &a.spectra {
        for (i, v) in s.iter().enumerate() {
            spec_rows.push(format!("{run},{field},{table},{i},{v:.8}"));
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
        |r| format!("{},{},{:.6},{:.6}", r.run, r.expert, r.ia, r.mean_norm),
    )?;
    let mut util_rows = Vec::new();
    for (run, head, w) in &a.utilisation {
        for (e, v) in w.iter().enumerate() {
            util_rows.push(format!("{run},{head},{e},{v:.6}"));
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
            format!(
                "{},{},{},{},{},{}",
                r.run,
                r.domain_i,
                r.domain_j,
                r.conflicts,
                opt(r.di_af),
                opt(r.di_sf)
            )
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
            ent_rows.push(format!(
                "{run},{ta},{tb},{:.6},{:.6},{},{}",
                edges[b],
                edges[b + 1],
                all[b],
                con[b]
            ));
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
    let summary = serde_json::to_string_pretty(a).expect("serialises");
    write_file(&out.join("summary.json"), &(summary + "\n"))
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
