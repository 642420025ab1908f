//! The one data path every source goes through: source -> [`RawTable`] -> split row indices ->
//! fit on train -> encode all splits ([`Prepared`]), with an optional on-disk cache.
//!
//! Which schema, files and loader a source has is the recipe table's ([`crate::recipe`]); how
//! rows are split is [`crate::split`]'s; the cache file format is [`crate::cache`]'s.

use std::collections::BTreeMap;
use std::path::PathBuf;

use crate::cache;
use crate::fit::fit_encode;
use crate::prepared::{CacheInfo, Prepared};
use crate::raw::RawTable;
use crate::recipe;
use crate::schema::{FieldKind, NumericEncoding, SchemaSpec};
use crate::source::DatasetSource;
use crate::split::{split_rows, SplitSpec};
use crate::DataError;

/// What to prepare.
#[derive(Debug, Clone, PartialEq)]
pub struct PrepareRequest {
    /// The source.
    pub source: DatasetSource,
    /// The split.
    pub split: SplitSpec,
    /// Cache directory (`None` = no cache).
    pub cache_dir: Option<PathBuf>,
}

/// Prepares a dataset: loads it from the cache when possible, else parses, splits, fits on
/// the training split and encodes (and writes the cache).
pub fn prepare(req: &PrepareRequest) -> Result<Prepared, DataError> {
    prepare_with(req, &BTreeMap::new())
}

/// The schema `spec` with the encodings of `encodings` (numeric field name -> encoding) set;
/// an error names a field that is not a numeric field of the schema.
pub fn apply_encodings(
    spec: &SchemaSpec,
    origin: &str,
    encodings: &BTreeMap<String, NumericEncoding>,
) -> Result<SchemaSpec, DataError> {
    let mut spec = spec.clone();
    for (name, e) in encodings {
        let numeric: Vec<&str> = spec
            .fields
            .iter()
            .filter(|f| f.kind == FieldKind::Numeric)
            .map(|f| f.name.as_str())
            .collect();
        let known = numeric.join(", ");
        let f = spec
            .fields
            .iter_mut()
            .find(|f| &f.name == name && f.kind == FieldKind::Numeric)
            .ok_or_else(|| {
                DataError::Config(format!(
                    "dataset.encodings.{name}: no numeric field `{name}` in the schema of {origin}; numeric fields: {known}"
                ))
            })?;
        f.encoding = Some(e.clone());
    }
    spec.validate(origin)?;
    Ok(spec)
}

/// The schema `spec` with the `[dataset]` config's pre-trained parts set: `pretrained`
/// (categorical field name -> vectors), `similarity` and `semantic_id` replace the schema's;
/// so does `domain_map` (the domains).
/// `{seed}` in a vector file's path (and ids path) becomes `seed`, the run's seed, so that
/// each seed's random split can read vectors derived from its own training split. An error
/// names a field that is not a categorical field of the schema.
pub fn apply_pretrained(
    spec: &SchemaSpec,
    origin: &str,
    ds: &crate::DatasetConfig,
    seed: u64,
) -> Result<SchemaSpec, DataError> {
    let mut spec = spec.clone();
    let with_seed = |p: &std::path::Path| -> PathBuf {
        PathBuf::from(p.to_string_lossy().replace("{seed}", &seed.to_string()))
    };
    for (name, p) in &ds.pretrained {
        let mut p = p.clone();
        p.path = with_seed(&p.path);
        p.ids = p.ids.as_deref().map(with_seed);
        let known: Vec<&str> = spec
            .fields
            .iter()
            .filter(|f| f.kind == FieldKind::Categorical)
            .map(|f| f.name.as_str())
            .collect();
        let known = known.join(", ");
        let f = spec
            .fields
            .iter_mut()
            .find(|f| &f.name == name && f.kind == FieldKind::Categorical)
            .ok_or_else(|| {
                DataError::Config(format!(
                    "dataset.pretrained.{name}: no categorical field `{name}` in the schema of {origin}; categorical fields: {known}"
                ))
            })?;
        f.pretrained = Some(p);
    }
    if ds.similarity.is_some() {
        spec.similarity = ds.similarity.clone();
    }
    if ds.semantic_id.is_some() {
        spec.semantic_id = ds.semantic_id.clone();
    }
    if let Some(map) = &ds.domain_map {
        spec.domain.map = Some(map.clone());
        spec.domain.names = None;
    }
    spec.validate(origin)?;
    Ok(spec)
}

/// [`prepare`] with the source's schema changed by the `[dataset]` config: numeric encodings
/// ([`apply_encodings`]) and pre-trained vectors ([`apply_pretrained`]; `seed` is the run's).
pub fn prepare_for(
    req: &PrepareRequest,
    ds: &crate::DatasetConfig,
    seed: u64,
) -> Result<Prepared, DataError> {
    let mut r = recipe::resolve(&req.source)?;
    if !ds.encodings.is_empty() {
        r.spec = apply_encodings(&r.spec, &r.origin, &ds.encodings)?;
    }
    r.spec = apply_pretrained(&r.spec, &r.origin, ds, seed)?;
    if ds.out_of_core {
        let DatasetSource::Csv { delimiter, .. } = &req.source else {
            return Err(DataError::Config(format!(
                "dataset.out_of_core: only for the `csv` dataset (your CSV, Parquet or Arrow IPC files), not `{}`",
                req.source.name()
            )));
        };
        return crate::ooc::prepare(&r, &req.split, req.cache_dir.as_deref(), *delimiter);
    }
    prepare_resolved(req, r)
}

/// [`prepare`] with the encodings of some numeric fields of the source's schema replaced
/// (`dataset.encodings`, see [`apply_encodings`]).
pub fn prepare_with(
    req: &PrepareRequest,
    encodings: &BTreeMap<String, NumericEncoding>,
) -> Result<Prepared, DataError> {
    let mut r = recipe::resolve(&req.source)?;
    if !encodings.is_empty() {
        r.spec = apply_encodings(&r.spec, &r.origin, encodings)?;
    }
    prepare_resolved(req, r)
}

fn prepare_resolved(req: &PrepareRequest, mut r: recipe::Resolved) -> Result<Prepared, DataError> {
    if r.spec.fields.iter().any(|f| f.pretrained.is_some()) {
        // pinned digests make the cache key follow the files' bytes
        r.spec = crate::pretrained::pin(&r.spec)?;
    }
    let mut cache_target: Option<(PathBuf, [u8; 32], Option<String>)> = None;
    if let Some(dir) = &req.cache_dir {
        let key = cache::cache_key(&r.spec, &req.split, &r.config_json, &r.files)?;
        let path = dir.join(format!("{}.mdrec-cache", crate::schema::hex(&key)));
        match cache::load(&path, &key) {
            Ok(Some(mut p)) => {
                p.cache = Some(CacheInfo {
                    path,
                    hit: true,
                    rebuilt_reason: None,
                });
                return Ok(p);
            }
            Ok(None) => cache_target = Some((path, key, None)),
            Err(reason) => {
                eprintln!(
                    "warning: {}: {reason}; ignoring the cache file and rebuilding",
                    path.display()
                );
                cache_target = Some((path, key, Some(reason)));
            }
        }
    }
    let table = recipe::load_table(&req.source)?;
    let splits = split_rows(&table, &req.split)?;
    let (schema, vocabs, [train, valid, test]) = fit_encode(&r.spec, &r.origin, &table, &splits)?;
    drop(table);
    let mut p = Prepared {
        schema,
        vocabs,
        train,
        valid,
        test,
        source: r.description,
        cache: None,
    };
    if let Some((path, key, reason)) = cache_target {
        cache::store(&path, &key, &p)?;
        p.cache = Some(CacheInfo {
            path,
            hit: false,
            rebuilt_reason: reason,
        });
    }
    Ok(p)
}

/// Prepares from an in-memory raw table and spec (no cache); used by tests and custom sources.
pub fn prepare_table(
    spec: &SchemaSpec,
    origin: &str,
    table: &RawTable,
    split: &SplitSpec,
    source: &str,
) -> Result<Prepared, DataError> {
    spec.validate(origin)?;
    let pinned;
    let spec = if spec.fields.iter().any(|f| f.pretrained.is_some()) {
        pinned = crate::pretrained::pin(spec)?;
        &pinned
    } else {
        spec
    };
    let splits = split_rows(table, split)?;
    let (schema, vocabs, [train, valid, test]) = fit_encode(spec, origin, table, &splits)?;
    Ok(Prepared {
        schema,
        vocabs,
        train,
        valid,
        test,
        source: source.to_string(),
        cache: None,
    })
}
