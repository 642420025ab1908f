//! The result of preparing a dataset: fitted schema, vocabularies and the three encoded splits
//! ([`Prepared`]), and where it came from in the on-disk cache ([`CacheInfo`]).

use std::path::{Path, PathBuf};

use crate::fit::Vocabs;
use crate::schema::Schema;
use crate::store::EncodedData;
use crate::DataError;

/// Where a prepared result came from in the cache.
#[derive(Debug, Clone, PartialEq)]
pub struct CacheInfo {
    /// The cache file.
    pub path: PathBuf,
    /// True when the result was loaded from the cache.
    pub hit: bool,
    /// Set when an existing cache file was rejected (corrupt, truncated) and rebuilt.
    pub rebuilt_reason: Option<String>,
}

/// A prepared dataset: fitted schema, vocabularies and the three encoded splits.
#[derive(Debug, Clone, PartialEq)]
pub struct Prepared {
    /// The fitted schema.
    pub schema: Schema,
    /// The fitted vocabularies.
    pub vocabs: Vocabs,
    /// Training split.
    pub train: EncodedData,
    /// Validation split.
    pub valid: EncodedData,
    /// Test split.
    pub test: EncodedData,
    /// Human description of the source.
    pub source: String,
    /// Cache use, when a cache directory was given.
    pub cache: Option<CacheInfo>,
}

/// Writes `schema.json` (pretty, byte-stable) into `dir`.
pub fn write_schema_json(p: &Prepared, dir: &Path) -> Result<PathBuf, DataError> {
    let path = dir.join("schema.json");
    std::fs::write(&path, p.schema.to_json_pretty()).map_err(|e| DataError::io(&path, e))?;
    Ok(path)
}
