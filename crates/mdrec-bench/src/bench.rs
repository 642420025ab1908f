//! `mdrec bench`: many (model, seed) runs → paper-style tables with significance.
//!
//! A spec (TOML) names a dataset, seeds, the runs (model + overrides, optional paper numbers)
//! and the metric families to tabulate. Every (run, seed) trains into
//! `<out>/<label>/s<seed>/`; a run whose `report.json` exists is skipped, so an interrupted
//! bench resumes where it stopped and ends with the same tables. Every run trained here also
//! gets its training curve, `curve.svg` ([`write_training_curve`]). A skipped run must have been
//! trained with the configuration the spec gives it now (`config.resolved.json`, data paths
//! aside): after an edit to the spec the bench stops and names the run and the key that
//! differs rather than tabulating stale results. A run whose configuration equals an earlier
//! run's for the same seed (the centre point several sweeps share) is trained once and its
//! folder copied. Outputs in `<out>/`:
//! `table.md` (test metrics, mean ± std, best bold, second underlined, `*` when the best differs from the
//! second by Welch's t-test p < 0.05 over seeds; reproducible), `speed.md` (training samples/s),
//! `runs.csv` (every run), `summary.json`, and
//! `environment.md` (git commit, CPU, threads, rustc, features).

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{mpsc, Arc, Mutex};
use std::time::Instant;

use mdrec_metrics::{relaimpr, welch_t_test};
use serde::{Deserialize, Serialize};

use mdrec_train::config::{DatasetConfig, RunConfig};
use mdrec_train::progress::{Progress, Silent};
use mdrec_train::report::RunReport;
use mdrec_train::trainer::{prepare_dataset, resolve_config, train_run};

use crate::plot::write_training_curve;
use crate::TrainError;

/// One row of the table: a model with its overrides.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RunSpec {
    /// Row label and directory name (default: the model name).
    pub label: Option<String>,
    /// The `[model]` section: `name` plus the model's keys.
    pub model: serde_json::Map<String, serde_json::Value>,
    /// `[train]` overrides for this run only (e.g. `setting = "mtl"`).
    #[serde(default)]
    pub train: serde_json::Map<String, serde_json::Value>,
    /// `[dataset]` overrides for this run only (e.g. `encodings = { age = { kind = "mnse" } }`).
    #[serde(default, skip_serializing_if = "serde_json::Map::is_empty")]
    pub dataset: serde_json::Map<String, serde_json::Value>,
    /// Published numbers to print beside ours, by metric name (e.g. `"auc/age_25/click"`).
    #[serde(default)]
    pub reference: BTreeMap<String, f64>,
    /// A grid: `"<section>.<key>"` (section `model`, `train` or `dataset`; nested keys with
    /// dots, e.g. `"model.hemp.update_steps"`) → the values to try. The entry expands into one
    /// run per combination (keys in name order, values in the order given), labelled
    /// `<label> key=value, …`; `reference` numbers are not carried into the expanded runs.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub sweep: BTreeMap<String, Vec<serde_json::Value>>,
}

/// A bench spec.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BenchSpec {
    /// Bench name (title of the table).
    pub name: String,
    /// Output folder (default `runs/bench/<name>`).
    pub out: Option<PathBuf>,
    /// Seeds; every run is trained once per seed.
    pub seeds: Vec<u64>,
    /// Metric families: `auc`, `gauc`, `logloss`, `domain_auc`, and `major<K>` / `minor<K>`
    /// (AREAD's Major-K / Minor-K AUC, e.g. `major5`, `minor10`) (default `["auc", "logloss"]`).
    #[serde(default = "default_metrics")]
    pub metrics: Vec<String>,
    /// Add one run (default config, labelled by the model name) for every registered model that
    /// no `[[runs]]` entry names, in registry order after the listed runs: a zoo sweep that
    /// stays complete as models are added.
    #[serde(default)]
    pub all_models: bool,
    /// Per-(domain, task) columns for `auc`, `gauc` and `logloss` (default true); `false` keeps
    /// only the overall columns, for datasets with many domains.
    #[serde(default = "yes")]
    pub cells: bool,
    /// Label of the run whose RelaImpr over the best other run is reported.
    pub compare: Option<String>,
    /// Label of the base run: every other run's overall numbers are tested against it (Welch's
    /// t-test over seeds: difference, t, p) in a section of `table.md`.
    pub base: Option<String>,
    /// The `[dataset]` section, as in a run config.
    pub dataset: DatasetConfig,
    /// `[train]` overrides for every run.
    #[serde(default)]
    pub train: serde_json::Map<String, serde_json::Value>,
    /// The runs.
    pub runs: Vec<RunSpec>,
}

fn yes() -> bool {
    true
}

fn default_metrics() -> Vec<String> {
    vec!["auc".into(), "logloss".into()]
}

impl RunSpec {
    /// The row label.
    pub fn label(&self) -> String {
        self.label.clone().unwrap_or_else(|| {
            self.model
                .get("name")
                .and_then(|v| v.as_str())
                .unwrap_or("model")
                .to_string()
        })
    }
}

/// Sets the dotted `path` (e.g. `hemp.update_steps`) of `map` to `value`, creating tables.
fn set_path(
    map: &mut serde_json::Map<String, serde_json::Value>,
    path: &str,
    value: serde_json::Value,
) {
    match path.split_once('.') {
        None => {
            map.insert(path.to_string(), value);
        }
        Some((head, rest)) => {
            let slot = map
                .entry(head.to_string())
                .or_insert_with(|| serde_json::Value::Object(Default::default()));
            if !slot.is_object() {
                *slot = serde_json::Value::Object(Default::default());
            }
            if let serde_json::Value::Object(inner) = slot {
                set_path(inner, rest, value);
            }
        }
    }
}

fn merge(base: &mut serde_json::Value, over: &serde_json::Map<String, serde_json::Value>) {
    if let serde_json::Value::Object(b) = base {
        for (k, v) in over {
            match (b.get_mut(k), v) {
                (Some(slot @ serde_json::Value::Object(_)), serde_json::Value::Object(o)) => {
                    merge(slot, o)
                }
                _ => {
                    b.insert(k.clone(), v.clone());
                }
            }
        }
    }
}

impl BenchSpec {
    /// Parse a spec file.
    pub fn from_file(path: &Path) -> Result<Self, TrainError> {
        let text = std::fs::read_to_string(path).map_err(|e| TrainError::io(path, e))?;
        let mut spec: BenchSpec = toml::from_str(&text)
            .map_err(|e| TrainError::Config(format!("{}: {e}", path.display())))?;
        spec.expand_all_models();
        spec.expand_sweeps()
            .map_err(|e| TrainError::Config(format!("{}: {e}", path.display())))?;
        spec.validate(&path.display().to_string())?;
        Ok(spec)
    }

    /// Replaces every run with a `sweep` by one run per combination of its values.
    pub fn expand_sweeps(&mut self) -> Result<(), String> {
        let mut runs = Vec::with_capacity(self.runs.len());
        for run in std::mem::take(&mut self.runs) {
            if run.sweep.is_empty() {
                runs.push(run);
                continue;
            }
            let label = run.label();
            let mut combos: Vec<Vec<(&str, &serde_json::Value)>> = vec![Vec::new()];
            for (key, values) in &run.sweep {
                if values.is_empty() {
                    return Err(format!("run `{label}`: sweep key `{key}` has no values"));
                }
                combos = combos
                    .into_iter()
                    .flat_map(|c| {
                        values.iter().map(move |v| {
                            let mut c = c.clone();
                            c.push((key.as_str(), v));
                            c
                        })
                    })
                    .collect();
            }
            for combo in combos {
                let mut r = RunSpec {
                    sweep: BTreeMap::new(),
                    reference: BTreeMap::new(),
                    ..run.clone()
                };
                let mut parts = Vec::with_capacity(combo.len());
                for (key, value) in combo {
                    let (section, path) = key.split_once('.').unwrap_or((key, ""));
                    let map = match section {
                        "model" => &mut r.model,
                        "train" => &mut r.train,
                        "dataset" => &mut r.dataset,
                        _ => {
                            return Err(format!(
                                "run `{label}`: sweep key `{key}` must start with model., train. or dataset."
                            ))
                        }
                    };
                    if path.is_empty() || path == "name" && section == "model" {
                        return Err(format!(
                            "run `{label}`: sweep key `{key}` names no key of [{section}] that can vary"
                        ));
                    }
                    set_path(map, path, value.clone());
                    let shown = match value {
                        serde_json::Value::String(s) => s.clone(),
                        v => v.to_string(),
                    };
                    parts.push(format!("{path}={shown}"));
                }
                r.label = Some(format!("{label} {}", parts.join(", ")));
                runs.push(r);
            }
        }
        self.runs = runs;
        Ok(())
    }

    /// With `all_models`, append a default run for every registered model not named by a run.
    fn expand_all_models(&mut self) {
        if !self.all_models {
            return;
        }
        let named: Vec<String> = self
            .runs
            .iter()
            .filter_map(|r| {
                r.model
                    .get("name")
                    .and_then(|v| v.as_str())
                    .map(String::from)
            })
            .collect();
        for f in mdrec_models::MODELS {
            if !named.iter().any(|n| n == f.name()) {
                let mut model = serde_json::Map::new();
                model.insert("name".into(), f.name().into());
                self.runs.push(RunSpec {
                    label: None,
                    model,
                    train: Default::default(),
                    dataset: Default::default(),
                    reference: Default::default(),
                    sweep: Default::default(),
                });
            }
        }
    }

    fn validate(&self, origin: &str) -> Result<(), TrainError> {
        let err = |m: String| Err(TrainError::Config(format!("{origin}: {m}")));
        if self.seeds.is_empty() || self.runs.is_empty() {
            return err("a bench needs at least one seed and one [[runs]] entry".into());
        }
        let mut labels: Vec<String> = self.runs.iter().map(RunSpec::label).collect();
        labels.sort();
        if let Some(w) = labels.windows(2).find(|w| w[0] == w[1]) {
            return err(format!(
                "two runs share the label `{}`; give them distinct `label`s",
                w[0]
            ));
        }
        for m in &self.metrics {
            if !["auc", "gauc", "logloss", "domain_auc", "pcoc", "repeat"].contains(&m.as_str())
                && major_minor_k(m).is_none()
            {
                return err(format!(
                    "unknown metric family `{m}`; accepted: auc, gauc, logloss, domain_auc, \
                     pcoc, repeat, major<K>, minor<K> (K ≥ 1, e.g. major5)"
                ));
            }
        }
        for (key, v) in [("compare", &self.compare), ("base", &self.base)] {
            if let Some(c) = v {
                if !labels.contains(c) {
                    return err(format!(
                        "{key} = `{c}` is not a run label; labels: {}",
                        labels.join(", ")
                    ));
                }
            }
        }
        for r in &self.runs {
            self.config(r, self.seeds[0])
                .map_err(|e| TrainError::Config(format!("{origin}: run `{}`: {e}", r.label())))?;
        }
        Ok(())
    }

    /// The run config of `run` at `seed`.
    pub fn config(&self, run: &RunSpec, seed: u64) -> Result<RunConfig, TrainError> {
        let mut doc = serde_json::to_value(RunConfig::default()).expect("config serialises");
        doc["dataset"] = serde_json::to_value(&self.dataset).expect("dataset serialises");
        merge(&mut doc["dataset"], &run.dataset);
        merge(&mut doc["train"], &self.train);
        merge(&mut doc["train"], &run.train);
        doc["model"] = serde_json::Value::Object(run.model.clone());
        doc["train"]["seed"] = seed.into();
        let cfg: RunConfig =
            serde_json::from_value(doc).map_err(|e| TrainError::Config(e.to_string()))?;
        mdrec_models::find(cfg.model_name())?;
        Ok(cfg)
    }

    /// The output folder.
    pub fn out_dir(&self) -> PathBuf {
        self.out
            .clone()
            .unwrap_or_else(|| PathBuf::from("runs/bench").join(&self.name))
    }
}

/// What `run_bench` did.
#[derive(Debug, Clone)]
pub struct BenchOutcome {
    /// Runs trained now.
    pub trained: usize,
    /// Runs found complete and skipped.
    pub skipped: usize,
    /// The Markdown table.
    pub table: String,
}

fn run_dir(out: &Path, label: &str, seed: u64) -> PathBuf {
    out.join(label.replace(['/', ' '], "_"))
        .join(format!("s{seed}"))
}

fn load_report(dir: &Path) -> Option<RunReport> {
    serde_json::from_str(&std::fs::read_to_string(dir.join("report.json")).ok()?).ok()
}

/// Keys of `config.resolved.json` that name where the data lives, not what the run is: the same
/// run may be resumed from another checkout or machine.
const LOCATION_KEYS: [&str; 2] = ["data_dir", "cache_dir"];

/// The first key (dotted path) where a recorded config differs from the wanted one, with both
/// values. A key missing from the record was added to mdrec after the run; new keys default to
/// the old behaviour, so it matches when the wanted value is that key's default.
fn first_difference(
    path: &str,
    recorded: &serde_json::Value,
    wanted: &serde_json::Value,
    defaults: &serde_json::Value,
) -> Option<(String, String, String)> {
    use serde_json::Value;
    match (recorded, wanted) {
        (Value::Object(x), Value::Object(y)) => {
            let keys: std::collections::BTreeSet<&String> = x.keys().chain(y.keys()).collect();
            keys.into_iter().find_map(|k| {
                let sub = if path.is_empty() {
                    k.clone()
                } else {
                    format!("{path}.{k}")
                };
                let want = y.get(k).unwrap_or(&Value::Null);
                let default = defaults.get(k).unwrap_or(&Value::Null);
                match x.get(k) {
                    None if want == default => None,
                    None => Some((
                        sub,
                        "(not recorded: key added later)".into(),
                        want.to_string(),
                    )),
                    Some(was) => first_difference(&sub, was, want, default),
                }
            })
        }
        _ if recorded == wanted => None,
        _ => Some((path.to_string(), recorded.to_string(), wanted.to_string())),
    }
}

/// A resolved config as `config.resolved.json` reads back (through text, so f32 fields compare
/// equal), data locations removed.
fn comparable(cfg: &RunConfig) -> Result<serde_json::Value, TrainError> {
    let text = serde_json::to_string(&resolve_config(cfg)?).expect("config serialises");
    let mut doc: serde_json::Value = serde_json::from_str(&text).expect("config parses");
    drop_locations(&mut doc);
    Ok(doc)
}

fn drop_locations(doc: &mut serde_json::Value) {
    if let Some(d) = doc.get_mut("dataset").and_then(|d| d.as_object_mut()) {
        for k in LOCATION_KEYS {
            d.remove(k);
        }
    }
}

/// Error unless the run in `dir` was trained with `cfg` (data location aside).
fn check_recorded_config(dir: &Path, cfg: &RunConfig) -> Result<(), TrainError> {
    let path = dir.join("config.resolved.json");
    let text = std::fs::read_to_string(&path).map_err(|e| TrainError::io(&path, e))?;
    let mut recorded: serde_json::Value = serde_json::from_str(&text)
        .map_err(|e| TrainError::Config(format!("{}: {e}", path.display())))?;
    drop_locations(&mut recorded);
    let wanted = comparable(cfg)?;
    // Every key at its default, for the same dataset (at the same place) and model.
    let mut base = RunConfig {
        dataset: DatasetConfig {
            name: cfg.dataset.name,
            data_dir: cfg.dataset.data_dir.clone(),
            cache_dir: cfg.dataset.cache_dir.clone(),
            schema: cfg.dataset.schema.clone(),
            files: cfg.dataset.files.clone(),
            ..DatasetConfig::default()
        },
        ..RunConfig::default()
    };
    base.set_model_name(cfg.model_name());
    let defaults = comparable(&base)?;
    match first_difference("", &recorded, &wanted, &defaults) {
        None => Ok(()),
        Some((key, was, now)) => Err(TrainError::Config(format!(
            "{}: this completed run was trained with {key} = {was}, but the spec now gives {now}; \
             delete {} to retrain it, or give the bench another `out` folder",
            path.display(),
            dir.display()
        ))),
    }
}

/// Which (run, seed) pairs of a spec are complete in an output folder and which are still to
/// train; every complete one has been checked against the spec's current configuration.
#[derive(Debug, Clone)]
pub struct BenchPlan<'a> {
    /// Every (run, seed), in spec order.
    pub total: usize,
    /// Complete runs found in the folder.
    pub complete: usize,
    /// The runs to train, in order.
    pub todo: Vec<(&'a RunSpec, u64)>,
    /// Runs whose configuration (data location aside) equals an earlier run's, such as the
    /// centre point that several sweeps share: `(run, seed, the earlier run's label)`. They
    /// are not trained again; the earlier run's folder is copied once it is complete.
    pub copies: Vec<(&'a RunSpec, u64, String)>,
}

/// Plan a bench without training: errors when a completed run no longer matches the spec.
pub fn plan_bench<'a>(spec: &'a BenchSpec, out: &Path) -> Result<BenchPlan<'a>, TrainError> {
    let (mut todo, mut copies) = (Vec::new(), Vec::new());
    let mut total = 0;
    // every (config, seed) met so far, with the label of its first run
    let mut seen: Vec<(serde_json::Value, u64, String)> = Vec::new();
    for run in &spec.runs {
        for &seed in &spec.seeds {
            total += 1;
            let dir = run_dir(out, &run.label(), seed);
            let cfg = spec.config(run, seed)?;
            let same = comparable(&cfg)?;
            let first = seen
                .iter()
                .find(|(c, s, _)| *s == seed && *c == same)
                .map(|(_, _, label)| label.clone());
            if load_report(&dir).is_some() {
                check_recorded_config(&dir, &cfg)?;
            } else if let Some(label) = &first {
                copies.push((run, seed, label.clone()));
            } else {
                todo.push((run, seed));
            }
            if first.is_none() {
                seen.push((same, seed, run.label()));
            }
        }
    }
    Ok(BenchPlan {
        total,
        complete: total - todo.len() - copies.len(),
        todo,
        copies,
    })
}

/// Copy the complete run folder `from` to `to` (a run that shares its configuration).
fn copy_run(from: &Path, to: &Path) -> Result<(), TrainError> {
    let _ = std::fs::remove_dir_all(to);
    std::fs::create_dir_all(to).map_err(|e| TrainError::io(to, e))?;
    let entries = std::fs::read_dir(from).map_err(|e| TrainError::io(from, e))?;
    // report.json last: a folder with a report is complete
    let mut files: Vec<PathBuf> = entries
        .map(|e| e.map(|e| e.path()).map_err(|e| TrainError::io(from, e)))
        .collect::<Result<_, _>>()?;
    files.retain(|f| f.is_file());
    files.sort_by_key(|f| f.file_name().is_some_and(|n| n == "report.json"));
    for f in files {
        let dst = to.join(f.file_name().expect("a file has a name"));
        std::fs::copy(&f, &dst).map_err(|e| TrainError::io(&f, e))?;
    }
    Ok(())
}

/// Run every missing (run, seed) of `spec` into `out`, `jobs` runs at a time, then write the
/// tables. Runs are independent, so `jobs` changes no number, only how many cores the bench
/// keeps busy (and the samples/s each report records, since concurrent runs share the cores).
pub fn run_bench(
    spec: &BenchSpec,
    out: &Path,
    jobs: usize,
    progress: &mut dyn Progress,
) -> Result<BenchOutcome, TrainError> {
    std::fs::create_dir_all(out).map_err(|e| TrainError::io(out, e))?;
    let BenchPlan {
        total,
        complete: skipped,
        todo,
        copies,
    } = plan_bench(spec, out)?;
    let jobs = jobs.clamp(1, todo.len().max(1));
    progress.message(&format!(
        "bench {}: {} runs, {} already complete, {} to train{}{}",
        spec.name,
        total,
        skipped,
        todo.len(),
        if copies.is_empty() {
            String::new()
        } else {
            format!(
                ", {} the same as an earlier run (copied, not retrained)",
                copies.len()
            )
        },
        if jobs > 1 {
            format!(", {jobs} at a time")
        } else {
            String::new()
        }
    ));
    let t0 = Instant::now();
    let announce = |progress: &mut dyn Progress, i: usize, started: usize| {
        let label = todo[i].0.label();
        let eta = if started == 0 {
            "unknown".to_string()
        } else {
            let per = t0.elapsed().as_secs_f64() / started as f64;
            format!("~{:.0} min", per * (todo.len() - started) as f64 / 60.0)
        };
        progress.message(&format!(
            "[{}/{}] {label} seed {} (remaining after this: {}, eta {eta})",
            i + 1,
            todo.len(),
            todo[i].1,
            todo.len() - i - 1
        ));
    };
    // One prepared dataset per (seed, dataset section): the data may depend on the seed
    // (random split, synthetic data), as for a standalone `mdrec train --seed S`; the cache
    // makes this cheap. Prepared one at a time (the cache is written by one writer).
    let prepared = Mutex::new(Vec::<((u64, String), Arc<mdrec_data::Prepared>)>::new());
    let prepare = |cfg: &RunConfig, seed: u64| -> Result<Arc<mdrec_data::Prepared>, TrainError> {
        let key = (
            seed,
            serde_json::to_string(&cfg.dataset).expect("dataset serialises"),
        );
        let mut cache = prepared.lock().unwrap_or_else(|e| e.into_inner());
        if let Some((_, p)) = cache.iter().find(|(k, _)| *k == key) {
            return Ok(p.clone());
        }
        let p = Arc::new(prepare_dataset(cfg)?);
        // Runs come grouped by label with every seed: keep as many as there are seeds.
        if cache.len() >= spec.seeds.len().max(jobs) {
            cache.remove(0);
        }
        cache.push((key, p.clone()));
        Ok(p)
    };
    let train_one = |i: usize, progress: &mut dyn Progress| -> Result<(), TrainError> {
        let (run, seed) = todo[i];
        let cfg = spec.config(run, seed)?;
        let data = prepare(&cfg, seed)?;
        let dir = run_dir(out, &run.label(), seed);
        let _ = std::fs::remove_dir_all(&dir);
        train_run(&cfg, &data, &dir, progress)?;
        write_training_curve(&dir)
    };
    if jobs == 1 {
        for i in 0..todo.len() {
            announce(progress, i, i);
            train_one(i, progress)?;
        }
    } else {
        // Workers take the next run; this thread prints their starts and ends. The first
        // error stops the workers from taking new runs (runs already started finish).
        let next = AtomicUsize::new(0);
        let stop = AtomicBool::new(false);
        let (tx, rx) = mpsc::channel::<(usize, Option<Result<(f64, String), TrainError>>)>();
        let mut first_error = None;
        std::thread::scope(|s| {
            for _ in 0..jobs {
                let tx = tx.clone();
                let (next, stop, train_one, todo) = (&next, &stop, &train_one, &todo);
                s.spawn(move || loop {
                    mdrec_train::denormals::flush();
                    let i = next.fetch_add(1, Ordering::SeqCst);
                    if i >= todo.len() || stop.load(Ordering::SeqCst) {
                        break;
                    }
                    let _ = tx.send((i, None));
                    let t = Instant::now();
                    let r = train_one(i, &mut Silent).map(|()| {
                        let auc = load_report(&run_dir(out, &todo[i].0.label(), todo[i].1))
                            .and_then(|r| r.test.overall.auc_mean_cells)
                            .map(|a| format!(", test auc_mean_cells {a:.5}"))
                            .unwrap_or_default();
                        (t.elapsed().as_secs_f64(), auc)
                    });
                    if r.is_err() {
                        stop.store(true, Ordering::SeqCst);
                    }
                    let _ = tx.send((i, Some(r)));
                });
            }
            drop(tx);
            let mut started = 0;
            for (i, msg) in rx {
                match msg {
                    None => {
                        announce(progress, i, started);
                        started += 1;
                    }
                    Some(Ok((secs, auc))) => progress.message(&format!(
                        "done [{}/{}] {} seed {} in {secs:.1} s{auc}",
                        i + 1,
                        todo.len(),
                        todo[i].0.label(),
                        todo[i].1
                    )),
                    Some(Err(e)) => {
                        first_error.get_or_insert(e);
                    }
                }
            }
        });
        if let Some(e) = first_error {
            return Err(e);
        }
    }
    for (run, seed, from) in &copies {
        copy_run(
            &run_dir(out, from, *seed),
            &run_dir(out, &run.label(), *seed),
        )?;
        progress.message(&format!(
            "{} seed {seed}: the configuration of {from}; its results copied",
            run.label()
        ));
    }
    let table = write_tables(spec, out)?;
    Ok(BenchOutcome {
        trained: todo.len(),
        skipped,
        table,
    })
}

/// Column names (`EvalReport::metric` names) for the spec's metric families.
fn columns(spec: &BenchSpec, sample: &RunReport) -> Vec<String> {
    let mut cols = Vec::new();
    let cells: &[mdrec_metrics::CellMetrics] = if spec.cells { &sample.test.cells } else { &[] };
    for fam in &spec.metrics {
        match fam.as_str() {
            "auc" => {
                cols.extend(cells.iter().map(|c| format!("auc/{}/{}", c.domain, c.task)));
                cols.push("auc_mean_cells".into());
                cols.push("auc_task_pooled_mean".into());
            }
            "gauc" => {
                cols.extend(
                    cells
                        .iter()
                        .map(|c| format!("gauc/{}/{}", c.domain, c.task)),
                );
                cols.push("gauc_task_mean".into());
            }
            "logloss" => {
                cols.extend(
                    cells
                        .iter()
                        .map(|c| format!("logloss/{}/{}", c.domain, c.task)),
                );
                cols.push("logloss".into());
            }
            "domain_auc" => cols.push("domain_auc".into()),
            "pcoc" => {
                cols.extend(
                    cells
                        .iter()
                        .map(|c| format!("pcoc/{}/{}", c.domain, c.task)),
                );
                cols.extend(sample.test.tasks.iter().map(|t| format!("pcoc/{}", t.name)));
                cols.push("pcoc".into());
            }
            "repeat" => cols.extend(
                sample
                    .test
                    .extra
                    .keys()
                    .filter(|k| k.starts_with("repeat_exposure"))
                    .cloned(),
            ),
            other => cols.push(format!("{other}_auc")),
        }
    }
    cols
}

/// `major<K>` / `minor<K>` with K ≥ 1 → `(is_major, K)`.
fn major_minor_k(family: &str) -> Option<(bool, usize)> {
    let (major, k) = match family.strip_prefix("major") {
        Some(k) => (true, k),
        None => (false, family.strip_prefix("minor")?),
    };
    k.parse()
        .ok()
        .filter(|&k: &usize| k > 0)
        .map(|k| (major, k))
}

fn lower_is_better(col: &str) -> bool {
    col.starts_with("logloss") || col.starts_with("repeat")
}

/// PCOC is best at 1.
fn is_pcoc(col: &str) -> bool {
    col == "pcoc" || col.starts_with("pcoc/")
}

/// Ranking key of a column's mean: smaller is better.
fn rank_key(col: &str, v: f64) -> f64 {
    if is_pcoc(col) {
        v.ln().abs()
    } else if lower_is_better(col) {
        v
    } else {
        -v
    }
}

fn scale(col: &str) -> f64 {
    if lower_is_better(col) || is_pcoc(col) {
        1.0
    } else {
        100.0
    }
}

/// Mean and sample standard deviation.
fn mean_std(v: &[f64]) -> (f64, f64) {
    let n = v.len() as f64;
    let m = v.iter().sum::<f64>() / n;
    let s = if v.len() > 1 {
        (v.iter().map(|x| (x - m).powi(2)).sum::<f64>() / (n - 1.0)).sqrt()
    } else {
        0.0
    };
    (m, s)
}

#[derive(Serialize)]
struct RowSummary {
    label: String,
    model: String,
    seeds: Vec<u64>,
    mean: BTreeMap<String, f64>,
    std: BTreeMap<String, f64>,
    train_samples_per_s: f64,
}

fn write_tables(spec: &BenchSpec, out: &Path) -> Result<String, TrainError> {
    // Collect values per (label, column) over seeds.
    let mut reports: Vec<(String, Vec<RunReport>)> = Vec::new();
    for r in &spec.runs {
        let label = r.label();
        let reps: Vec<RunReport> = spec
            .seeds
            .iter()
            .filter_map(|&s| load_report(&run_dir(out, &label, s)))
            .collect();
        reports.push((label, reps));
    }
    let sample = reports
        .iter()
        .find_map(|(_, v)| v.first())
        .ok_or_else(|| TrainError::Config("bench has no finished runs".into()))?;
    let cols = columns(spec, sample);
    let value = |rep: &RunReport, col: &str| rep.test.metric(col).ok().map(|v| v.0);
    let mut vals: BTreeMap<(usize, usize), Vec<f64>> = BTreeMap::new();
    for (ri, (_, reps)) in reports.iter().enumerate() {
        for (ci, c) in cols.iter().enumerate() {
            vals.insert((ri, ci), reps.iter().filter_map(|r| value(r, c)).collect());
        }
    }
    // Rank per column: best, second, and significance of best vs second.
    let mut marks: BTreeMap<(usize, usize), &str> = BTreeMap::new();
    let mut star: BTreeMap<(usize, usize), bool> = BTreeMap::new();
    for (ci, c) in cols.iter().enumerate() {
        let mut ranked: Vec<(usize, f64)> = (0..reports.len())
            .filter_map(|ri| {
                let v = &vals[&(ri, ci)];
                (!v.is_empty()).then(|| (ri, mean_std(v).0))
            })
            .collect();
        ranked.sort_by(|a, b| rank_key(c, a.1).total_cmp(&rank_key(c, b.1)));
        if let Some(&(b, _)) = ranked.first() {
            marks.insert((b, ci), "best");
            if let Some(&(s, _)) = ranked.get(1) {
                marks.insert((s, ci), "second");
                let sig = welch_t_test(&vals[&(b, ci)], &vals[&(s, ci)])
                    .is_some_and(|w| w.p_two_sided < 0.05);
                star.insert((b, ci), sig);
            }
        }
    }
    let mut md = String::new();
    let _ = writeln!(md, "# {}\n", spec.name);
    let _ = writeln!(
        md,
        "Dataset `{}` ({} split), seeds {:?}. Test metrics, mean ± std over seeds; AUC and gAUC in %. \
         **Best** in bold, <u>second</u> underlined, `*` = best differs from second by Welch's t-test \
         p < 0.05. Rows marked (paper) are published numbers.\n",
        spec.dataset.name, spec.dataset.split(), spec.seeds
    );
    let short = |c: &str| {
        c.replace("auc_task_pooled_mean", "AUC (task-pooled)")
            .replace("auc_mean_cells", "AUC (mean cells)")
    };
    let _ = writeln!(
        md,
        "| run | n | {} |",
        cols.iter()
            .map(|c| short(c))
            .collect::<Vec<_>>()
            .join(" | ")
    );
    let _ = writeln!(md, "|---|---:|{}", "---:|".repeat(cols.len()));
    // Speed varies between machines and runs; it has its own file so table.md is reproducible.
    let mut speed = String::from(
        "# Training speed\n\n| run | seeds | train samples/s (mean) | epochs run (mean) |\n|---|---:|---:|---:|\n",
    );
    let mut rows = Vec::new();
    for (ri, (label, reps)) in reports.iter().enumerate() {
        let mut cells = Vec::new();
        let mut mean = BTreeMap::new();
        let mut std = BTreeMap::new();
        for (ci, c) in cols.iter().enumerate() {
            let v = &vals[&(ri, ci)];
            if v.is_empty() {
                cells.push("—".to_string());
                continue;
            }
            let (m, s) = mean_std(v);
            mean.insert(c.clone(), m);
            std.insert(c.clone(), s);
            let k = scale(c);
            let prec = if k == 1.0 { 4 } else { 2 };
            let mut txt = if v.len() > 1 {
                format!("{:.prec$} ± {:.prec$}", m * k, s * k)
            } else {
                format!("{:.prec$}", m * k)
            };
            if star.get(&(ri, ci)).copied().unwrap_or(false) {
                txt.push('*');
            }
            txt = match marks.get(&(ri, ci)) {
                Some(&"best") => format!("**{txt}**"),
                Some(&"second") => format!("<u>{txt}</u>"),
                _ => txt,
            };
            cells.push(txt);
        }
        let sps = if reps.is_empty() {
            0.0
        } else {
            reps.iter()
                .map(|r| r.timing.train_samples_per_s)
                .sum::<f64>()
                / reps.len() as f64
        };
        let _ = writeln!(md, "| {label} | {} | {} |", reps.len(), cells.join(" | "));
        let epochs = if reps.is_empty() {
            0.0
        } else {
            reps.iter().map(|r| r.epochs_run as f64).sum::<f64>() / reps.len() as f64
        };
        let _ = writeln!(
            speed,
            "| {label} | {} | {sps:.0} | {epochs:.1} |",
            reps.len()
        );
        let spec_run = &spec.runs[ri];
        if !spec_run.reference.is_empty() {
            let refs: Vec<String> = cols
                .iter()
                .map(|c| {
                    spec_run
                        .reference
                        .get(c)
                        .map(|v| format!("{:.2}", v * scale(c)))
                        .unwrap_or_else(|| "".into())
                })
                .collect();
            let _ = writeln!(md, "| {label} (paper) | | {} |", refs.join(" | "));
        }
        rows.push(RowSummary {
            label: label.clone(),
            model: spec_run
                .model
                .get("name")
                .and_then(|v| v.as_str())
                .unwrap_or("")
                .to_string(),
            seeds: reps.iter().map(|r| r.seed).collect(),
            mean,
            std,
            train_samples_per_s: sps,
        });
    }
    let mut relaimpr_out = BTreeMap::new();
    if let Some(c) = &spec.compare {
        let key = "auc_mean_cells";
        let ours = rows
            .iter()
            .find(|r| &r.label == c)
            .and_then(|r| r.mean.get(key).copied());
        let best_other = rows
            .iter()
            .filter(|r| &r.label != c)
            .filter_map(|r| r.mean.get(key).map(|v| (r.label.clone(), *v)))
            .max_by(|a, b| a.1.total_cmp(&b.1));
        if let (Some(_), Some((bl, _))) = (ours, best_other) {
            let _ = writeln!(
                md,
                "\nRelaImpr of {c} over the best other run ({bl}), per AUC column:\n"
            );
            let _ = writeln!(
                md,
                "| column | {c} | {bl} | RelaImpr % |\n|---|---:|---:|---:|"
            );
            let best_row = rows.iter().find(|r| r.label == bl).expect("row");
            let our_row = rows.iter().find(|r| &r.label == c).expect("row");
            for col in cols.iter().filter(|c| c.starts_with("auc")) {
                if let (Some(a), Some(b)) = (our_row.mean.get(col), best_row.mean.get(col)) {
                    let ri = relaimpr(*a, *b);
                    relaimpr_out.insert(col.clone(), ri);
                    let _ = writeln!(
                        md,
                        "| {} | {:.2} | {:.2} | {:+.2} |",
                        short(col),
                        a * 100.0,
                        b * 100.0,
                        ri
                    );
                }
            }
        }
    }
    let mut vs_base = Vec::new();
    if let Some(base) = &spec.base {
        let bi = reports
            .iter()
            .position(|(l, _)| l == base)
            .expect("validated");
        let overall: Vec<(usize, &String)> = cols
            .iter()
            .enumerate()
            .filter(|(_, c)| !c.contains('/'))
            .collect();
        let _ = writeln!(
            md,
            "\nAgainst the base ({base}): difference of the means (AUC in points, LogLoss as is), \
             Welch's t-test over seeds; `*` = p < 0.05.\n"
        );
        let _ = writeln!(
            md,
            "| run | {} |\n|---|{}",
            overall
                .iter()
                .map(|(_, c)| format!("{} Δ (p)", short(c)))
                .collect::<Vec<_>>()
                .join(" | "),
            "---:|".repeat(overall.len())
        );
        for (ri, (label, _)) in reports.iter().enumerate().filter(|(ri, _)| *ri != bi) {
            let mut cells = Vec::new();
            for &(ci, c) in &overall {
                let (a, b) = (&vals[&(ri, ci)], &vals[&(bi, ci)]);
                if a.is_empty() || b.is_empty() {
                    cells.push("—".to_string());
                    continue;
                }
                let d = (mean_std(a).0 - mean_std(b).0) * scale(c);
                let w = welch_t_test(a, b);
                let p = w.map(|w| w.p_two_sided);
                vs_base.push(serde_json::json!({
                    "run": label, "column": c, "difference": d, "t": w.map(|w| w.t), "p": p
                }));
                cells.push(match p {
                    Some(p) => format!(
                        "{d:+.prec$} ({p:.3}){}",
                        if p < 0.05 { "*" } else { "" },
                        prec = if scale(c) == 1.0 { 4 } else { 2 }
                    ),
                    None => format!(
                        "{d:+.prec$} (—)",
                        prec = if scale(c) == 1.0 { 4 } else { 2 }
                    ),
                });
            }
            let _ = writeln!(md, "| {label} | {} |", cells.join(" | "));
        }
    }
    write_text(&out.join("table.md"), &md)?;
    write_text(&out.join("speed.md"), &speed)?;
    // CSV of every run (the csv crate quotes labels such as a sweep's `lr=0.01, k=2`).
    let csv_path = out.join("runs.csv");
    let csv_err = |e: csv::Error| TrainError::io(&csv_path, std::io::Error::other(e));
    let mut csv = csv::Writer::from_path(&csv_path).map_err(csv_err)?;
    let head = [
        "label",
        "model",
        "seed",
        "epochs_run",
        "train_samples_per_s",
    ];
    csv.write_record(head.iter().copied().chain(cols.iter().map(String::as_str)))
        .map_err(csv_err)?;
    for (label, reps) in &reports {
        for r in reps {
            let mut record = vec![
                label.clone(),
                r.model.clone(),
                r.seed.to_string(),
                r.epochs_run.to_string(),
                format!("{:.0}", r.timing.train_samples_per_s),
            ];
            record.extend(
                cols.iter()
                    .map(|c| value(r, c).map(|v| format!("{v:.6}")).unwrap_or_default()),
            );
            csv.write_record(&record).map_err(csv_err)?;
        }
    }
    csv.flush().map_err(|e| TrainError::io(&csv_path, e))?;
    let summary = serde_json::json!({ "name": spec.name, "columns": cols, "rows": rows, "relaimpr": relaimpr_out, "vs_base": vs_base });
    write_text(
        &out.join("summary.json"),
        &(serde_json::to_string_pretty(&summary).expect("json") + "\n"),
    )?;
    write_text(&out.join("environment.md"), &environment_card())?;
    Ok(md)
}

fn write_text(path: &Path, text: &str) -> Result<(), TrainError> {
    std::fs::write(path, text).map_err(|e| TrainError::io(path, e))
}

fn command_line(cmd: &str, args: &[&str]) -> String {
    std::process::Command::new(cmd)
        .args(args)
        .output()
        .ok()
        .filter(|o| o.status.success())
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
        .unwrap_or_else(|| "unknown".into())
}

/// Git commit, CPU, threads, rustc and features of this machine and build.
pub fn environment_card() -> String {
    let cpu = std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("model name"))
                .map(|l| l.split(':').nth(1).unwrap_or("").trim().to_string())
        })
        .unwrap_or_else(|| "unknown".into());
    let threads = std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(1);
    let features = if cfg!(feature = "cuda") {
        "cuda"
    } else {
        "default (cpu, flex backend)"
    };
    format!(
        "# Environment\n\n- mdrec {}\n- git commit: {}\n- CPU: {cpu}\n- threads: {threads}\n- rustc: {}\n- features: {features}\n",
        env!("CARGO_PKG_VERSION"),
        command_line("git", &["rev-parse", "HEAD"]),
        command_line("rustc", &["--version"]),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn recorded_configs_match_only_the_same_run() {
        use serde_json::json;
        let wanted = json!({"train": {"lr": 0.01, "batching": "mixed"}, "model": {"k": 4}});
        let defaults = json!({"train": {"lr": 0.001, "batching": "mixed"}, "model": {"k": 2}});
        let diff = |rec: serde_json::Value| first_difference("", &rec, &wanted, &defaults);
        assert_eq!(diff(wanted.clone()), None);
        // A key the record lacks was added later: fine at its default, not otherwise.
        assert_eq!(
            diff(json!({"train": {"lr": 0.01}, "model": {"k": 4}})),
            None
        );
        let (key, was, _) = diff(json!({"train": {"lr": 0.01, "batching": "mixed"}, "model": {}}))
            .expect("k = 4 is not k's default");
        assert_eq!(
            (key.as_str(), was.contains("not recorded")),
            ("model.k", true)
        );
        assert_eq!(
            diff(json!({"train": {"lr": 0.02, "batching": "mixed"}, "model": {"k": 4}})),
            Some(("train.lr".into(), "0.02".into(), "0.01".into()))
        );
        // A key the spec no longer has (recorded, wanted null) is a difference too.
        assert!(diff(
            json!({"train": {"lr": 0.01, "batching": "mixed", "x": 1}, "model": {"k": 4}})
        )
        .is_some());
    }

    #[test]
    fn movielens_defaults_are_spelled_out_in_the_resolved_config() {
        let mut cfg = RunConfig::default();
        cfg.set("dataset.name=\"ml-1m\"").unwrap();
        // Resolving checks that MovieLens has a data folder, not what is in it.
        cfg.set("dataset.data_dir=\"ml-1m\"").unwrap();
        let r = resolve_config(&cfg).unwrap();
        assert_eq!(
            r.dataset.row_order,
            Some(mdrec_data::MovieLensOrder::Merged)
        );
        assert_eq!(r.dataset.domain, Some(mdrec_data::MovieLensDomain::Age));
        assert_eq!(r.train.setting, Some(mdrec_models::Setting::Mdmt));
        cfg.set("dataset.row_order=\"ratings\"").unwrap();
        assert_eq!(
            resolve_config(&cfg).unwrap().dataset.row_order,
            Some(mdrec_data::MovieLensOrder::Ratings)
        );
    }

    #[test]
    fn shipped_specs_parse_and_resolve_every_run() {
        let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../benches/specs");
        let mut n = 0;
        for e in std::fs::read_dir(&dir).unwrap() {
            let p = e.unwrap().path();
            if p.extension().is_some_and(|x| x == "toml") {
                let spec =
                    BenchSpec::from_file(&p).unwrap_or_else(|e| panic!("{}: {e}", p.display()));
                for r in &spec.runs {
                    let cfg = spec.config(r, spec.seeds[0]).unwrap();
                    // the model's own keys (a misspelt sweep key fails here)
                    mdrec_models::find(cfg.model_name())
                        .unwrap()
                        .resolve(&cfg.model_overrides())
                        .unwrap_or_else(|e| panic!("{}: {}: {e}", p.display(), r.label()));
                }
                n += 1;
            }
        }
        assert!(n >= 2, "expected the zoo and Table 2 specs");
    }

    #[test]
    fn duplicate_labels_and_unknown_metrics_are_refused() {
        let base = "name = \"x\"\nseeds = [1]\n[dataset]\nname = \"synthetic\"\n";
        let two = format!("{base}[[runs]]\nmodel = {{ name = \"mmoe\" }}\n[[runs]]\nmodel = {{ name = \"mmoe\" }}\n");
        let spec: BenchSpec = toml::from_str(&two).unwrap();
        assert!(spec
            .validate("x.toml")
            .unwrap_err()
            .to_string()
            .contains("share the label"));
        let bad = format!("metrics = [\"acc\"]\n{base}[[runs]]\nmodel = {{ name = \"mmoe\" }}\n");
        let spec: BenchSpec = toml::from_str(&bad).unwrap();
        assert!(spec
            .validate("x.toml")
            .unwrap_err()
            .to_string()
            .contains("domain_auc"));
    }
    #[test]
    fn all_models_adds_every_unnamed_model_once() {
        let text = "name = \"z\"\nseeds = [1]\nall_models = true\nmetrics = [\"auc\", \"major5\", \"minor10\"]\n\
                    [dataset]\nname = \"synthetic\"\n[[runs]]\nlabel = \"MMoE (8 experts)\"\n\
                    model = { name = \"mmoe\", num_experts = 8 }\n";
        let tmp = tempfile::tempdir().unwrap();
        let path = tmp.path().join("all-models.toml");
        std::fs::write(&path, text).unwrap();
        let spec = BenchSpec::from_file(&path).unwrap();
        assert_eq!(spec.runs.len(), mdrec_models::MODELS.len());
        assert_eq!(spec.runs[0].label(), "MMoE (8 experts)");
        let names: Vec<&str> = spec.runs[1..]
            .iter()
            .map(|r| r.model["name"].as_str().unwrap())
            .collect();
        let want: Vec<&str> = mdrec_models::MODELS
            .iter()
            .map(|f| f.name())
            .filter(|&n| n != "mmoe")
            .collect();
        assert_eq!(names, want, "registry order, the named model skipped");
    }

    #[test]
    fn major_minor_families_parse() {
        assert_eq!(major_minor_k("major5"), Some((true, 5)));
        assert_eq!(major_minor_k("minor10"), Some((false, 10)));
        for bad in ["major0", "minor", "majorx", "mid5"] {
            assert_eq!(major_minor_k(bad), None, "{bad}");
        }
        let base = "name = \"x\"\nseeds = [1]\n[dataset]\nname = \"synthetic\"\n[[runs]]\nmodel = { name = \"mmoe\" }\n";
        let spec: BenchSpec = toml::from_str(&format!("metrics = [\"minor0\"]\n{base}")).unwrap();
        assert!(spec
            .validate("x.toml")
            .unwrap_err()
            .to_string()
            .contains("major<K>"));
    }
    #[test]
    fn a_sweep_expands_into_one_labelled_run_per_combination() {
        let text = r#"
name = "t"
seeds = [1]
[dataset]
name = "synthetic"
[[runs]]
label = "fixed"
model = { name = "mmoe" }
[[runs]]
model = { name = "m3oe", hemp = { a = 1 } }
reference = { auc = 0.5 }
sweep = { "train.lr" = [0.001, 0.01], "model.num_shared_experts" = [1, 2], "model.hemp.b" = ["x"] }
"#;
        let mut spec: BenchSpec = toml::from_str(text).unwrap();
        spec.expand_sweeps().unwrap();
        let labels: Vec<String> = spec.runs.iter().map(RunSpec::label).collect();
        assert_eq!(
            labels,
            [
                "fixed",
                "m3oe hemp.b=x, num_shared_experts=1, lr=0.001",
                "m3oe hemp.b=x, num_shared_experts=1, lr=0.01",
                "m3oe hemp.b=x, num_shared_experts=2, lr=0.001",
                "m3oe hemp.b=x, num_shared_experts=2, lr=0.01",
            ]
        );
        let last = &spec.runs[4];
        assert_eq!(last.train["lr"], 0.01);
        assert_eq!(last.model["num_shared_experts"], 2);
        assert_eq!(last.model["hemp"], serde_json::json!({"a": 1, "b": "x"}));
        assert!(last.reference.is_empty() && last.sweep.is_empty());

        for (bad, msg) in [
            (r#"{ "lr" = [1] }"#, "must start with"),
            (r#"{ "train.lr" = [] }"#, "has no values"),
            (r#"{ "model.name" = ["mmoe"] }"#, "names no key"),
        ] {
            let t = text.replace(
                &text[text.find("sweep = ").unwrap()..text.rfind('\n').unwrap()],
                &format!("sweep = {bad}"),
            );
            let mut spec: BenchSpec = toml::from_str(&t).unwrap();
            let e = spec.expand_sweeps().unwrap_err();
            assert!(e.contains(msg) && e.contains("run `m3oe`"), "{e}");
        }
    }

    #[test]
    fn a_run_with_an_earlier_runs_configuration_is_copied_not_retrained() {
        let text = r#"
name = "t"
seeds = [1, 2]
[dataset]
name = "synthetic"
[train]
lr = 0.01
[[runs]]
label = "a"
model = { name = "m3oe", num_shared_experts = 4 }
sweep = { "train.lr" = [0.001, 0.01] }
[[runs]]
label = "b"
model = { name = "m3oe" }
sweep = { "model.num_shared_experts" = [2, 4] }
"#;
        let mut spec: BenchSpec = toml::from_str(text).unwrap();
        spec.expand_sweeps().unwrap();
        let tmp = tempfile::tempdir().unwrap();
        let plan = plan_bench(&spec, tmp.path()).unwrap();
        let todo: Vec<String> = plan
            .todo
            .iter()
            .map(|(r, s)| format!("{} {s}", r.label()))
            .collect();
        let copies: Vec<String> = plan
            .copies
            .iter()
            .map(|(r, s, from)| format!("{} {s} <- {from}", r.label()))
            .collect();
        assert_eq!(
            todo,
            [
                "a lr=0.001 1",
                "a lr=0.001 2",
                "a lr=0.01 1",
                "a lr=0.01 2",
                "b num_shared_experts=2 1",
                "b num_shared_experts=2 2"
            ]
        );
        assert_eq!(
            copies,
            [
                "b num_shared_experts=4 1 <- a lr=0.01",
                "b num_shared_experts=4 2 <- a lr=0.01"
            ]
        );
        assert_eq!((plan.total, plan.complete), (8, 0));
        // a copy is the whole folder, its report last
        let from = tmp.path().join("from");
        std::fs::create_dir_all(&from).unwrap();
        for f in ["report.json", "weights.safetensors", "config.resolved.json"] {
            std::fs::write(from.join(f), f).unwrap();
        }
        let to = tmp.path().join("to");
        copy_run(&from, &to).unwrap();
        assert_eq!(
            std::fs::read_to_string(to.join("report.json")).unwrap(),
            "report.json"
        );
        assert!(to.join("weights.safetensors").exists());
    }

    #[test]
    fn a_completed_run_of_a_dataset_in_a_folder_is_checked_against_the_spec() {
        let text = r#"
name = "t"
seeds = [1]
[dataset]
name = "movielens-1m"
data_dir = "/elsewhere/ml-1m"
[[runs]]
model = { name = "mmoe" }
"#;
        let spec: BenchSpec = toml::from_str(text).unwrap();
        let cfg = spec.config(&spec.runs[0], 1).unwrap();
        let tmp = tempfile::tempdir().unwrap();
        let recorded = serde_json::to_string(&resolve_config(&cfg).unwrap()).unwrap();
        std::fs::write(tmp.path().join("config.resolved.json"), recorded).unwrap();
        check_recorded_config(tmp.path(), &cfg).unwrap();
        let mut other = cfg.clone();
        other.train.lr = 0.5;
        let e = check_recorded_config(tmp.path(), &other).unwrap_err();
        assert!(e.to_string().contains("train.lr"), "{e}");
    }
}
