//! The served models and their versions: loading run directories and repository folders,
//! rescans (polling and the load endpoint), failed-version memory, and the atomic swap of the
//! served version.
//!
//! Each model's state (served version + versions kept in memory) sits in an [`ArcSwap`]: a
//! request loads the current state once and holds an `Arc<Version>` for its whole life, so a
//! swap never disturbs it and the old version's queue drains and stops when its last request
//! finishes. Loads run on blocking threads and are serialized per model by a mutex.

use std::collections::{BTreeMap, HashMap};
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, PoisonError, RwLock};
use std::time::SystemTime;

use arc_swap::ArcSwap;

use crate::api::{Loader, ModelMeta, Scorer};
use crate::batcher::{BatchLimits, Batcher};
use crate::metrics::Metrics;

/// One loaded model version with its own queue and scoring threads.
pub struct Version {
    /// Version number (1 for a run directory).
    pub number: u64,
    /// The loaded scorer.
    pub scorer: Arc<dyn Scorer>,
    /// Its queue.
    pub batcher: Batcher,
}

impl Version {
    /// The version's metadata.
    pub fn meta(&self) -> &ModelMeta {
        self.scorer.meta()
    }
}

/// What one model serves right now.
#[derive(Default)]
pub struct ModelState {
    /// The version unversioned requests go to; `None` until one loads.
    pub served: Option<Arc<Version>>,
    /// Versions addressable explicitly: the served one and the previous one.
    pub loaded: BTreeMap<u64, Arc<Version>>,
}

/// Identity of a version directory's contents as far as cheap metadata tells: the newest
/// modification time of the folder and its direct entries, and the entry count.
type Fingerprint = (Option<SystemTime>, usize);

/// One served model.
pub struct Model {
    /// Model name (URL path segment).
    pub name: String,
    /// `DIR/<name>` in repository mode; `None` for a run directory.
    pub dir: Option<PathBuf>,
    /// Current versions, swapped atomically.
    pub state: ArcSwap<ModelState>,
    /// Versions that failed to load, with the fingerprint they had then.
    failed: Mutex<HashMap<u64, Fingerprint>>,
    /// Serializes loads of this model.
    load_lock: Mutex<()>,
}

impl Model {
    fn new(name: &str, dir: Option<PathBuf>) -> Model {
        Model {
            name: name.to_string(),
            dir,
            state: ArcSwap::from_pointee(ModelState::default()),
            failed: Mutex::new(HashMap::new()),
            load_lock: Mutex::new(()),
        }
    }
}

/// All served models.
pub struct Registry {
    models: RwLock<BTreeMap<String, Arc<Model>>>,
    /// Repository folders found after start that have not served a version yet.
    pending: Mutex<BTreeMap<String, Arc<Model>>>,
    /// The repository root in repository mode.
    pub repo: Option<PathBuf>,
    loader: Arc<dyn Loader>,
    limits: BatchLimits,
    metrics: Arc<Metrics>,
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

/// Integer-named subfolders of `dir`, largest first.
fn list_versions(dir: &Path) -> Result<Vec<u64>, String> {
    let entries =
        std::fs::read_dir(dir).map_err(|e| format!("cannot read {}: {e}", dir.display()))?;
    let mut versions: Vec<u64> = entries
        .filter_map(Result::ok)
        .filter(|e| e.file_type().map(|t| t.is_dir()).unwrap_or(false))
        .filter_map(|e| {
            let name = e.file_name().into_string().ok()?;
            if name.is_empty() || !name.bytes().all(|b| b.is_ascii_digit()) {
                return None;
            }
            name.parse().ok()
        })
        .collect();
    versions.sort_unstable_by(|a, b| b.cmp(a));
    Ok(versions)
}

fn fingerprint(dir: &Path) -> Fingerprint {
    let mut newest = std::fs::metadata(dir).and_then(|m| m.modified()).ok();
    let mut count = 0;
    if let Ok(entries) = std::fs::read_dir(dir) {
        for e in entries.filter_map(Result::ok) {
            count += 1;
            if let Ok(t) = e.metadata().and_then(|m| m.modified()) {
                newest = Some(newest.map_or(t, |n| n.max(t)));
            }
        }
    }
    (newest, count)
}

impl Registry {
    /// An empty registry.
    pub fn new(
        repo: Option<PathBuf>,
        loader: Arc<dyn Loader>,
        limits: BatchLimits,
        metrics: Arc<Metrics>,
    ) -> Registry {
        Registry {
            models: RwLock::new(BTreeMap::new()),
            pending: Mutex::new(BTreeMap::new()),
            repo,
            loader,
            limits,
            metrics,
        }
    }

    /// The model called `name`.
    pub fn model(&self, name: &str) -> Option<Arc<Model>> {
        self.models
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .get(name)
            .cloned()
    }

    /// All models, by name.
    pub fn models(&self) -> Vec<Arc<Model>> {
        self.models
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .values()
            .cloned()
            .collect()
    }

    /// Names of all models, for error messages.
    pub fn names(&self) -> Vec<String> {
        self.models
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .keys()
            .cloned()
            .collect()
    }

    fn load_dir(&self, model: &str, dir: &Path) -> Result<Arc<dyn Scorer>, String> {
        let loaded = catch_unwind(AssertUnwindSafe(|| self.loader.load(dir)))
            .unwrap_or_else(|_| Err("the loader panicked".to_string()));
        if let Err(e) = &loaded {
            eprintln!(
                "mdrec-serve: model `{model}`: cannot load {}: {e}",
                dir.display()
            );
            self.metrics.load_failures.with_label_values(&[model]).inc();
        }
        loaded
    }

    /// Makes `scorer` version `number` of `model` and serves it; keeps the previously served
    /// version addressable, drops older ones.
    fn install(&self, model: &Model, number: u64, scorer: Arc<dyn Scorer>) -> Result<(), String> {
        let batcher = Batcher::spawn(
            scorer.clone(),
            self.limits,
            self.metrics.clone(),
            &model.name,
            number,
        )?;
        let version = Arc::new(Version {
            number,
            scorer,
            batcher,
        });
        let old = model.state.load_full();
        let mut loaded = BTreeMap::new();
        if let Some(prev) = &old.served {
            loaded.insert(prev.number, prev.clone());
        }
        loaded.insert(number, version.clone());
        let n_loaded = loaded.len() as i64;
        model.state.store(Arc::new(ModelState {
            served: Some(version),
            loaded,
        }));
        self.metrics
            .loaded_versions
            .with_label_values(&[&model.name])
            .set(n_loaded);
        self.metrics
            .served_version
            .with_label_values(&[&model.name])
            .set(i64::try_from(number).unwrap_or(i64::MAX));
        eprintln!(
            "mdrec-serve: model `{}`: serving version {number}",
            model.name
        );
        Ok(())
    }

    /// Loads a run directory as version 1 of model `name` (blocking).
    pub fn add_run(&self, name: &str, dir: &Path) -> Result<(), String> {
        if self.model(name).is_some() {
            return Err(format!("model `{name}` is given twice"));
        }
        let model = Model::new(name, None);
        self.metrics
            .served_version
            .with_label_values(&[name])
            .set(0);
        let scorer = self.load_dir(name, dir).map_err(|e| {
            format!(
                "model `{name}`: cannot load run directory {}: {e}",
                dir.display()
            )
        })?;
        self.install(&model, 1, scorer)?;
        self.models
            .write()
            .unwrap_or_else(PoisonError::into_inner)
            .insert(name.to_string(), Arc::new(model));
        Ok(())
    }

    /// The repository model `name`: a served one, or a folder `DIR/<name>/` found after start
    /// that has not loaded yet (kept aside, with its failed-version memory, so that a new empty
    /// or broken folder does not make the whole server not ready). Blocking.
    pub fn repository_model(&self, name: &str) -> Option<Arc<Model>> {
        if let Some(m) = self.model(name) {
            return Some(m);
        }
        let dir = self.repo.as_ref()?.join(name);
        if name.is_empty() || name.starts_with('.') || name.contains(['/', '\\']) || !dir.is_dir() {
            return None;
        }
        let mut pending = lock(&self.pending);
        let model = pending
            .entry(name.to_string())
            .or_insert_with(|| Arc::new(Model::new(name, Some(dir))))
            .clone();
        Some(model)
    }

    /// Makes `model` visible to requests and readiness: always at start, later once it serves a
    /// version.
    fn promote(&self, model: &Arc<Model>, always: bool) {
        if !always && model.state.load().served.is_none() {
            return;
        }
        if lock(&self.pending).remove(&model.name).is_some() || always {
            if model.state.load().served.is_none() {
                self.metrics
                    .served_version
                    .with_label_values(&[&model.name])
                    .set(0);
            }
            self.models
                .write()
                .unwrap_or_else(PoisonError::into_inner)
                .entry(model.name.clone())
                .or_insert_with(|| model.clone());
        }
    }

    /// Rescans `model` (see [`Registry::rescan`]) and promotes it once it serves.
    pub fn rescan_and_promote(&self, model: &Arc<Model>, force: bool) -> Result<u64, String> {
        let result = self.rescan(model, force);
        self.promote(model, false);
        result
    }

    /// Rescans the repository root: model folders are found (at start every folder becomes a
    /// model, even one that cannot be served yet; later a new folder joins once a version
    /// loads) and every model's folder is rescanned (failed versions are retried only when
    /// their folder changed). Blocking.
    pub fn scan_repository(&self, initial: bool) -> Result<(), String> {
        let Some(repo) = &self.repo else {
            return Ok(());
        };
        let entries = std::fs::read_dir(repo)
            .map_err(|e| format!("cannot read model repository {}: {e}", repo.display()))?;
        let mut found = Vec::new();
        for e in entries.filter_map(Result::ok) {
            if e.file_type().map(|t| t.is_dir()).unwrap_or(false) {
                if let Ok(name) = e.file_name().into_string() {
                    if let Some(m) = self.repository_model(&name) {
                        found.push(m);
                    }
                }
            }
        }
        for model in found {
            let _ = self.rescan(&model, false);
            self.promote(&model, initial);
        }
        Ok(())
    }

    /// Rescans one repository model's folder and serves the newest version above the served one
    /// that loads (blocking). `force` retries versions that failed before even if unchanged.
    /// Returns the served version; `Err` when the newest version folder failed to load (the
    /// previous version keeps serving) or when nothing can be served.
    pub fn rescan(&self, model: &Model, force: bool) -> Result<u64, String> {
        let _guard = lock(&model.load_lock);
        let Some(dir) = &model.dir else {
            return Err(format!(
                "model `{}` is served from a run directory; only repository models can be reloaded",
                model.name
            ));
        };
        let versions = list_versions(dir)?;
        let served = model.state.load().served.as_ref().map(|v| v.number);
        let mut newest_error: Option<String> = None;
        for v in versions.iter().copied() {
            if served.is_some_and(|s| v <= s) {
                break;
            }
            let vdir = dir.join(v.to_string());
            let fp = fingerprint(&vdir);
            if !force && lock(&model.failed).get(&v) == Some(&fp) {
                continue;
            }
            match self.load_dir(&model.name, &vdir) {
                Ok(scorer) => {
                    self.install(model, v, scorer)?;
                    lock(&model.failed).remove(&v);
                    return match newest_error {
                        Some(e) => Err(format!("{e}; serving version {v}")),
                        None => Ok(v),
                    };
                }
                Err(e) => {
                    lock(&model.failed).insert(v, fp);
                    newest_error.get_or_insert_with(|| {
                        format!(
                            "model `{}` version {v} failed to load from {}: {e}",
                            model.name,
                            vdir.display()
                        )
                    });
                }
            }
        }
        match (served, newest_error) {
            (Some(s), Some(e)) => Err(format!("{e}; version {s} keeps serving")),
            (None, Some(e)) => Err(e),
            (Some(s), None) => Ok(s),
            (None, None) => Err(format!(
                "model `{}` has no loadable version folder in {}",
                model.name,
                dir.display()
            )),
        }
    }
}
