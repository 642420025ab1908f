//! Pre-trained vectors keyed by raw id, and the features derived from them (§3.2 and §3.3 of
//! Pan et al., "Ads Recommendation in a Collapsed and Entangled World", KDD 2024):
//!
//! - a categorical field may declare `pretrained = { path = "...", format = "..." }`: fixed
//!   vectors keyed by the field's raw value. With `dense = true` (the default) each vector
//!   reaches the model as `dim` dense inputs `<field>.pre0 .. <field>.pre<dim-1>`, so the
//!   first layer that reads `ModelInput::dense` is its learned projection; the vectors
//!   themselves are never trained.
//! - **similarity encoding** (the paper's Eq. 3): `w_sim(u, i) = cos(ẽ_u, ẽ_i)` of the user's
//!   and the item's vectors, quantised to an integer level and encoded like a numeric field
//!   (MNSE by default), so it is co-trained with the model.
//! - **semantic IDs**: sign-random-projection LSH of the item's vector (seeded hyperplanes),
//!   each group of `bits` signs read as one ordinal code, encoded like a numeric field.
//!
//! Ids missing from the file read the zero vector (its cosine with anything is 0; its LSH code
//! is the reserved code `2^bits`); fitting counts the training values without a vector and
//! prints the count, or fails when `require_all = true`. Files are referenced by path: the
//! resolved schema pins each file's SHA-256, which is part of the cache key and checked again
//! whenever the vectors are read (`mdrec predict` and `mdrec serve` included).
//!
//! Formats (`format`, default from the file's extension):
//! - `safetensors`: a 2-D F32 or F64 tensor (`tensor`, default `"vectors"`) `[n, dim]`; the
//!   raw ids in the metadata key `ids` (a JSON array of strings, in row order) or in a 1-D
//!   integer tensor `ids` (I64, I32, U64 or U32).
//! - `npy`: a C-order `<f4`/`<f8` array `[n, dim]` (NPY format versions 1-3, read by the small
//!   parser below: no crate in the tree reads NPY) and the raw ids in a text file `ids`, one per
//!   line, in row order.
//! - `csv`: `id,v0,v1,...`, one vector per line, with a header line unless `header = false`.

use std::collections::{BTreeMap, HashMap};
use std::io::Read;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::schema::{FieldKind, MnsePool, NumericEncoding, SchemaSpec};
use crate::{DataError, Rng};

fn yes() -> bool {
    true
}

/// The format of a vector file.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum VectorFormat {
    /// safetensors: a `[n, dim]` tensor and the ids (metadata `ids` or an `ids` tensor).
    Safetensors,
    /// NumPy `.npy` `[n, dim]` plus a text file of ids.
    Npy,
    /// `id,v0,v1,...` lines.
    Csv,
}

impl VectorFormat {
    /// The format a path's extension names.
    pub fn from_path(p: &Path) -> Option<Self> {
        match p.extension()?.to_str()?.to_ascii_lowercase().as_str() {
            "safetensors" => Some(VectorFormat::Safetensors),
            "npy" => Some(VectorFormat::Npy),
            "csv" => Some(VectorFormat::Csv),
            _ => None,
        }
    }
}

/// `pretrained = { ... }` of a categorical field.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PretrainedSpec {
    /// The vector file.
    pub path: PathBuf,
    /// Its format; by default from the extension.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub format: Option<VectorFormat>,
    /// safetensors: the name of the `[n, dim]` tensor (default `"vectors"`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tensor: Option<String>,
    /// npy: the text file with one raw id per line, in row order.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ids: Option<PathBuf>,
    /// csv: whether the first line is a header (default true).
    #[serde(default = "yes")]
    pub header: bool,
    /// The expected width; a file of another width is an error.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dim: Option<usize>,
    /// A training value of the field without a vector is an error (default: zero vector, counted).
    #[serde(default)]
    pub require_all: bool,
    /// Feed the vector to the model as `dim` dense inputs (default true); false when the vectors
    /// only serve similarity or semantic IDs.
    #[serde(default = "yes")]
    pub dense: bool,
    /// SHA-256 of the file (and of the ids file), hex; checked when given, filled in when a
    /// dataset is prepared, so a run's `schema.json` pins the bytes it was trained on.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sha256: Option<String>,
}

fn default_levels() -> u32 {
    100
}

fn default_encoding() -> NumericEncoding {
    NumericEncoding::Mnse {
        bases: vec![2, 3, 10],
        width: None,
        pool: MnsePool::Concat,
    }
}

/// `similarity = { user = "...", item = "..." }`: the paper's Eq. 3 as one numeric feature.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SimilaritySpec {
    /// Feature name (default `"similarity"`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// The user field (it must declare `pretrained`).
    pub user: String,
    /// The item field (it must declare `pretrained`).
    pub item: String,
    /// The cosine `c ∈ [-1, 1]` becomes the integer `round((c + 1) / 2 · levels)` in
    /// `0..=levels` before it is encoded (default 100).
    #[serde(default = "default_levels")]
    pub levels: u32,
    /// How the level reaches the model (a numeric encoding; default MNSE, bases 2, 3, 10;
    /// `scalar`: one dense input, the level divided by `levels`, in [0, 1]).
    #[serde(default = "default_encoding")]
    pub encoding: NumericEncoding,
}

impl SimilaritySpec {
    /// The feature's name.
    pub fn name(&self) -> &str {
        self.name.as_deref().unwrap_or("similarity")
    }
}

fn default_bits() -> usize {
    8
}

/// `semantic_id = { field = "...", bits = 8, codes = 2 }`: LSH codes of a field's vectors.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SemanticIdSpec {
    /// The field whose vectors are hashed (it must declare `pretrained`).
    pub field: String,
    /// Hyperplanes per code (1..=16): a code is the integer whose bit `j` is the sign of the
    /// `j`-th hyperplane's dot product, in `0..2^bits`; a missing vector gets `2^bits`.
    #[serde(default = "default_bits")]
    pub bits: usize,
    /// Number of codes, each from its own hyperplanes (default 1).
    #[serde(default = "one")]
    pub codes: usize,
    /// Seed of the hyperplanes (stream `semantic_id/<field>`); part of the schema, so scoring
    /// hashes with the same planes.
    #[serde(default)]
    pub seed: u64,
    /// How each code reaches the model (a numeric encoding; default MNSE, bases 2, 3, 10).
    #[serde(default = "default_encoding")]
    pub encoding: NumericEncoding,
}

fn one() -> usize {
    1
}

impl SemanticIdSpec {
    /// The feature names: `<field>.sid0 ..`.
    pub fn names(&self) -> Vec<String> {
        (0..self.codes)
            .map(|k| format!("{}.sid{k}", self.field))
            .collect()
    }
}

/// The names of the dense inputs of a field with pre-trained vectors of width `dim`.
pub fn dense_names(field: &str, dim: usize) -> Vec<String> {
    (0..dim).map(|k| format!("{field}.pre{k}")).collect()
}

/// Checks the pre-trained parts of a spec: `pretrained` only on categorical fields,
/// similarity and semantic IDs only over fields that declare it, sane sizes, no name clashes.
pub fn validate(spec: &SchemaSpec) -> Result<(), String> {
    let mut with = BTreeMap::new();
    for f in &spec.fields {
        if let Some(p) = &f.pretrained {
            if f.kind != FieldKind::Categorical {
                return Err(format!(
                    "field `{}`: pretrained is only valid for categorical fields",
                    f.name
                ));
            }
            if p.dim == Some(0) {
                return Err(format!(
                    "field `{}`: pretrained.dim must be at least 1",
                    f.name
                ));
            }
            let fmt = p.format.or_else(|| VectorFormat::from_path(&p.path));
            match fmt {
                None => {
                    return Err(format!(
                        "field `{}`: pretrained.format is not given and `{}` has no .safetensors, .npy or .csv extension",
                        f.name,
                        p.path.display()
                    ))
                }
                Some(VectorFormat::Npy) if p.ids.is_none() => {
                    return Err(format!(
                        "field `{}`: pretrained npy vectors need `ids` (a text file, one raw id per line)",
                        f.name
                    ))
                }
                _ => {}
            }
            with.insert(f.name.as_str(), p);
        }
    }
    let need = |what: &str, name: &str| -> Result<(), String> {
        if with.contains_key(name) {
            Ok(())
        } else {
            Err(format!(
                "{what}: field `{name}` declares no pretrained vectors (fields with them: {:?})",
                with.keys().collect::<Vec<_>>()
            ))
        }
    };
    // a derived feature's name and its embedded fields' names (= table names) must not be a
    // field's or a table's name
    let clash = |feature: &str, e: &NumericEncoding| {
        std::iter::once(feature.to_string())
            .chain(e.embedded_names(feature))
            .find(|n| spec.fields.iter().any(|f| f.name == *n || f.table() == n))
    };
    if let Some(s) = &spec.similarity {
        need("similarity.user", &s.user)?;
        need("similarity.item", &s.item)?;
        if s.levels == 0 {
            return Err("similarity.levels must be at least 1".into());
        }
        check_encoding(&s.encoding, "similarity")?;
        if let Some(n) = clash(s.name(), &s.encoding) {
            return Err(format!(
                "similarity: its feature `{n}` has the name of a field or table; set similarity.name"
            ));
        }
    }
    if let Some(s) = &spec.semantic_id {
        need("semantic_id.field", &s.field)?;
        if !(1..=16).contains(&s.bits) {
            return Err(format!(
                "semantic_id.bits must be in 1..=16, got {}",
                s.bits
            ));
        }
        if !(1..=16).contains(&s.codes) {
            return Err(format!(
                "semantic_id.codes must be in 1..=16, got {}",
                s.codes
            ));
        }
        check_encoding(&s.encoding, "semantic_id")?;
        if let Some(n) = s.names().iter().find_map(|f| clash(f, &s.encoding)) {
            return Err(format!(
                "semantic_id: its feature `{n}` has the name of a field or table"
            ));
        }
    }
    Ok(())
}

fn check_encoding(e: &NumericEncoding, what: &str) -> Result<(), String> {
    e.validate().map_err(|m| format!("{what}.{m}"))
}

/// Vectors keyed by raw id.
#[derive(Debug, Clone, PartialEq)]
pub struct Vectors {
    /// Width.
    pub dim: usize,
    /// Raw ids in row order.
    pub ids: Vec<String>,
    /// Row-major `[ids.len(), dim]`.
    pub data: Vec<f32>,
    index: HashMap<String, usize>,
}

fn verr(at: impl std::fmt::Display, msg: impl std::fmt::Display) -> DataError {
    DataError::Config(format!("{at}: {msg}"))
}

impl Vectors {
    /// Vectors from ids and rows; an error on a duplicate id, a row of another width or a
    /// non-finite value (`at(i)` names row `i` in errors, e.g. `file:line`).
    pub fn new(
        ids: Vec<String>,
        data: Vec<f32>,
        dim: usize,
        at: impl Fn(usize) -> String,
    ) -> Result<Self, DataError> {
        if dim == 0 {
            return Err(verr(at(0), "vectors have width 0"));
        }
        if data.len() != ids.len() * dim {
            return Err(verr(
                at(0),
                format!(
                    "{} ids but {} values (expected {} × {dim})",
                    ids.len(),
                    data.len(),
                    ids.len()
                ),
            ));
        }
        let mut index = HashMap::with_capacity(ids.len());
        for (i, id) in ids.iter().enumerate() {
            if let Some(k) = data[i * dim..(i + 1) * dim]
                .iter()
                .position(|x| !x.is_finite())
            {
                return Err(verr(
                    at(i),
                    format!("id `{id}`: component {k} is {}", data[i * dim + k]),
                ));
            }
            if let Some(j) = index.insert(id.clone(), i) {
                return Err(verr(
                    at(i),
                    format!("duplicate id `{id}` (first at {})", at(j)),
                ));
            }
        }
        Ok(Vectors {
            dim,
            ids,
            data,
            index,
        })
    }

    /// Number of vectors.
    pub fn len(&self) -> usize {
        self.ids.len()
    }

    /// Whether there are none.
    pub fn is_empty(&self) -> bool {
        self.ids.is_empty()
    }

    /// The vector of raw id `id`.
    pub fn get(&self, id: &str) -> Option<&[f32]> {
        self.index
            .get(id)
            .map(|&i| &self.data[i * self.dim..(i + 1) * self.dim])
    }

    /// Writes `[n, dim]` F32 tensor `vectors` with the ids in the metadata key `ids` (a JSON
    /// array of strings).
    pub fn write_safetensors(&self, path: &Path) -> Result<(), DataError> {
        use safetensors::tensor::{Dtype, TensorView};
        let bytes: Vec<u8> = self.data.iter().flat_map(|x| x.to_le_bytes()).collect();
        let view = TensorView::new(Dtype::F32, vec![self.len(), self.dim], &bytes)
            .map_err(|e| verr(path.display(), e))?;
        let meta: HashMap<String, String> = [(
            "ids".to_string(),
            serde_json::to_string(&self.ids).expect("ids serialize"),
        )]
        .into();
        let out = safetensors::serialize([("vectors", view)], &Some(meta))
            .map_err(|e| verr(path.display(), e))?;
        std::fs::write(path, out).map_err(|e| DataError::io(path, e))
    }

    /// Writes `id,v0,v1,...` with a header line.
    pub fn write_csv(&self, path: &Path) -> Result<(), DataError> {
        let mut w = csv::Writer::from_path(path).map_err(|e| verr(path.display(), e))?;
        let mut header = vec!["id".to_string()];
        header.extend((0..self.dim).map(|k| format!("v{k}")));
        w.write_record(&header)
            .map_err(|e| verr(path.display(), e))?;
        for (i, id) in self.ids.iter().enumerate() {
            let mut rec = vec![id.clone()];
            rec.extend(
                self.data[i * self.dim..(i + 1) * self.dim]
                    .iter()
                    .map(|x| x.to_string()),
            );
            w.write_record(&rec).map_err(|e| verr(path.display(), e))?;
        }
        w.flush().map_err(|e| DataError::io(path, e))
    }

    /// Writes a little-endian `<f4` NPY (version 1) array `[n, dim]` and the ids, one per line.
    pub fn write_npy(&self, path: &Path, ids_path: &Path) -> Result<(), DataError> {
        let mut header = format!(
            "{{'descr': '<f4', 'fortran_order': False, 'shape': ({}, {}), }}",
            self.len(),
            self.dim
        );
        let total = 10 + header.len() + 1;
        header.push_str(&" ".repeat((64 - total % 64) % 64));
        header.push('\n');
        let mut out = b"\x93NUMPY\x01\x00".to_vec();
        out.extend_from_slice(&(header.len() as u16).to_le_bytes());
        out.extend_from_slice(header.as_bytes());
        out.extend(self.data.iter().flat_map(|x| x.to_le_bytes()));
        std::fs::write(path, out).map_err(|e| DataError::io(path, e))?;
        let mut ids = self.ids.join("\n");
        ids.push('\n');
        std::fs::write(ids_path, ids).map_err(|e| DataError::io(ids_path, e))
    }
}

/// Reads the vectors a spec names (checking its `sha256` when given) and returns them with
/// the SHA-256 of the file(s).
pub fn read(spec: &PretrainedSpec) -> Result<(Vectors, String), DataError> {
    let path = &spec.path;
    let fmt = spec
        .format
        .or_else(|| VectorFormat::from_path(path))
        .ok_or_else(|| {
            verr(
                path.display(),
                "no pretrained.format and no .safetensors, .npy or .csv extension",
            )
        })?;
    let bytes = std::fs::read(path).map_err(|e| DataError::io(path, e))?;
    let mut h = Sha256::new();
    h.update(&bytes);
    let id_bytes = match (&spec.ids, fmt) {
        (Some(p), VectorFormat::Npy) => {
            let b = std::fs::read(p).map_err(|e| DataError::io(p, e))?;
            h.update(&b);
            Some(b)
        }
        _ => None,
    };
    let digest = crate::schema::hex(&h.finalize());
    if let Some(want) = &spec.sha256 {
        if !want.eq_ignore_ascii_case(&digest) {
            return Err(verr(
                path.display(),
                format!(
                    "SHA-256 is {digest}, the schema pins {want}: the vector file changed since the dataset was prepared"
                ),
            ));
        }
    }
    let v = match fmt {
        VectorFormat::Safetensors => {
            read_safetensors(path, &bytes, spec.tensor.as_deref().unwrap_or("vectors"))?
        }
        VectorFormat::Npy => {
            let ids_path = spec.ids.as_ref().ok_or_else(|| {
                verr(
                    path.display(),
                    "npy vectors need `ids` (a text file of raw ids)",
                )
            })?;
            read_npy(
                path,
                &bytes,
                ids_path,
                id_bytes.as_deref().unwrap_or_default(),
            )?
        }
        VectorFormat::Csv => read_csv(path, &bytes, spec.header)?,
    };
    if let Some(d) = spec.dim {
        if d != v.dim {
            return Err(verr(
                path.display(),
                format!("vectors have width {}, pretrained.dim says {d}", v.dim),
            ));
        }
    }
    Ok((v, digest))
}

fn read_safetensors(path: &Path, bytes: &[u8], tensor: &str) -> Result<Vectors, DataError> {
    use safetensors::tensor::Dtype;
    let p = path.display();
    let st = safetensors::SafeTensors::deserialize(bytes)
        .map_err(|e| verr(&p, format!("not a valid safetensors file ({e})")))?;
    let t = st.tensor(tensor).map_err(|_| {
        verr(
            &p,
            format!("no tensor `{tensor}` (tensors: {:?})", {
                let mut n = st.names();
                n.sort();
                n
            }),
        )
    })?;
    let shape = t.shape().to_vec();
    if shape.len() != 2 {
        return Err(verr(
            &p,
            format!("tensor `{tensor}` has shape {shape:?}, expected [n, dim]"),
        ));
    }
    let data: Vec<f32> = match t.dtype() {
        Dtype::F32 => t
            .data()
            .chunks_exact(4)
            .map(|c| f32::from_le_bytes(c.try_into().expect("4 bytes")))
            .collect(),
        Dtype::F64 => t
            .data()
            .chunks_exact(8)
            .map(|c| f64::from_le_bytes(c.try_into().expect("8 bytes")) as f32)
            .collect(),
        d => {
            return Err(verr(
                &p,
                format!("tensor `{tensor}` has dtype {d:?}, expected F32 or F64"),
            ))
        }
    };
    let (_, meta) = safetensors::SafeTensors::read_metadata(bytes)
        .map_err(|e| verr(&p, format!("not a valid safetensors file ({e})")))?;
    let from_meta = meta
        .metadata()
        .as_ref()
        .and_then(|m| m.get("ids"))
        .map(|s| {
            serde_json::from_str::<Vec<String>>(s).map_err(|e| {
                verr(
                    &p,
                    format!("metadata `ids` is not a JSON array of strings ({e})"),
                )
            })
        })
        .transpose()?;
    let ids = match from_meta {
        Some(ids) => ids,
        None => {
            let it = st.tensor("ids").map_err(|_| {
                verr(
                    &p,
                    "no ids: expected metadata key `ids` (JSON array of strings) or an integer tensor `ids`",
                )
            })?;
            let d = it.data();
            match it.dtype() {
                Dtype::I64 => d
                    .chunks_exact(8)
                    .map(|c| i64::from_le_bytes(c.try_into().expect("8")).to_string())
                    .collect(),
                Dtype::U64 => d
                    .chunks_exact(8)
                    .map(|c| u64::from_le_bytes(c.try_into().expect("8")).to_string())
                    .collect(),
                Dtype::I32 => d
                    .chunks_exact(4)
                    .map(|c| i32::from_le_bytes(c.try_into().expect("4")).to_string())
                    .collect(),
                Dtype::U32 => d
                    .chunks_exact(4)
                    .map(|c| u32::from_le_bytes(c.try_into().expect("4")).to_string())
                    .collect(),
                dt => {
                    return Err(verr(
                        &p,
                        format!("tensor `ids` has dtype {dt:?}, expected I64, U64, I32 or U32"),
                    ))
                }
            }
        }
    };
    if ids.len() != shape[0] {
        return Err(verr(
            &p,
            format!(
                "{} ids for {} vectors (tensor `{tensor}` is {shape:?})",
                ids.len(),
                shape[0]
            ),
        ));
    }
    Vectors::new(ids, data, shape[1], |i| format!("{p}: row {i}"))
}

/// The value of key `key` in an NPY header dict (`'key': value`), as text.
fn npy_key<'a>(header: &'a str, key: &str) -> Option<&'a str> {
    let at = header.find(&format!("'{key}'"))? + key.len() + 2;
    let rest = header[at..].trim_start().strip_prefix(':')?.trim_start();
    let end = if rest.starts_with('(') {
        rest.find(')')? + 1
    } else {
        rest.find([',', '}'])?
    };
    Some(rest[..end].trim())
}

fn read_npy(path: &Path, bytes: &[u8], ids_path: &Path, ids: &[u8]) -> Result<Vectors, DataError> {
    let p = path.display();
    if bytes.len() < 10 || &bytes[..6] != b"\x93NUMPY" {
        return Err(verr(&p, "not an NPY file (bad magic)"));
    }
    let (hlen, start) = match bytes[6] {
        1 => (u16::from_le_bytes([bytes[8], bytes[9]]) as usize, 10),
        2 | 3 if bytes.len() >= 12 => (
            u32::from_le_bytes(bytes[8..12].try_into().expect("4")) as usize,
            12,
        ),
        v => return Err(verr(&p, format!("unsupported NPY version {v}"))),
    };
    let header = bytes
        .get(start..start + hlen)
        .ok_or_else(|| verr(&p, "truncated NPY header"))?;
    let header = std::str::from_utf8(header).map_err(|_| verr(&p, "NPY header is not text"))?;
    let descr = npy_key(header, "descr").ok_or_else(|| verr(&p, "NPY header has no descr"))?;
    let width = match descr.trim_matches(|c| c == '\'' || c == '"') {
        "<f4" => 4,
        "<f8" => 8,
        d => {
            return Err(verr(
                &p,
                format!("NPY dtype {d} is not supported (expected <f4 or <f8)"),
            ))
        }
    };
    if npy_key(header, "fortran_order") != Some("False") {
        return Err(verr(
            &p,
            "NPY array is not C-ordered (fortran_order must be False)",
        ));
    }
    let shape = npy_key(header, "shape").ok_or_else(|| verr(&p, "NPY header has no shape"))?;
    let dims: Result<Vec<usize>, _> = shape
        .trim_matches(|c| c == '(' || c == ')')
        .split(',')
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(str::parse::<usize>)
        .collect();
    let dims = dims.map_err(|_| verr(&p, format!("NPY shape {shape} is not a tuple of sizes")))?;
    if dims.len() != 2 {
        return Err(verr(
            &p,
            format!("NPY shape {shape}: expected 2 dimensions [n, dim]"),
        ));
    }
    let body = &bytes[start + hlen..];
    let need = dims[0] * dims[1] * width;
    if body.len() != need {
        return Err(verr(
            &p,
            format!(
                "NPY data has {} bytes, shape {shape} needs {need} (truncated or trailing bytes)",
                body.len()
            ),
        ));
    }
    let data: Vec<f32> = if width == 4 {
        body.chunks_exact(4)
            .map(|c| f32::from_le_bytes(c.try_into().expect("4")))
            .collect()
    } else {
        body.chunks_exact(8)
            .map(|c| f64::from_le_bytes(c.try_into().expect("8")) as f32)
            .collect()
    };
    let ip = ids_path.display();
    let text = std::str::from_utf8(ids).map_err(|_| verr(&ip, "ids file is not UTF-8"))?;
    let id_list: Vec<String> = text.lines().map(|l| l.trim().to_string()).collect();
    if let Some(i) = id_list.iter().position(String::is_empty) {
        return Err(verr(format!("{ip}:{}", i + 1), "empty id"));
    }
    if id_list.len() != dims[0] {
        return Err(verr(
            &ip,
            format!("{} ids for {} vectors in {p}", id_list.len(), dims[0]),
        ));
    }
    Vectors::new(id_list, data, dims[1], |i| {
        format!("{p}: row {i} ({ip}:{})", i + 1)
    })
}

fn read_csv(path: &Path, bytes: &[u8], header: bool) -> Result<Vectors, DataError> {
    let p = path.display();
    let mut r = csv::ReaderBuilder::new()
        .has_headers(false)
        .flexible(true)
        .from_reader(bytes);
    let (mut ids, mut data, mut dim, mut lines) = (Vec::new(), Vec::new(), None, Vec::new());
    for rec in r.records() {
        let rec = rec.map_err(|e| verr(&p, e))?;
        let line = rec.position().map_or(0, |q| q.line());
        if header && line == 1 {
            continue;
        }
        if rec.len() < 2 {
            return Err(verr(
                format!("{p}:{line}"),
                "expected id,v0,v1,... (at least 2 columns)",
            ));
        }
        let d = rec.len() - 1;
        match dim {
            None => dim = Some(d),
            Some(w) if w != d => {
                return Err(verr(
                    format!("{p}:{line}"),
                    format!(
                        "id `{}` has {d} components, earlier lines have {w}",
                        &rec[0]
                    ),
                ))
            }
            _ => {}
        }
        for (k, v) in rec.iter().skip(1).enumerate() {
            let x: f32 = v.trim().parse().map_err(|_| {
                verr(
                    format!("{p}:{line}"),
                    format!("id `{}`: component {k} is not a number: `{v}`", &rec[0]),
                )
            })?;
            data.push(x);
        }
        ids.push(rec[0].to_string());
        lines.push(line);
    }
    let dim = dim.ok_or_else(|| verr(&p, "no vectors"))?;
    Vectors::new(ids, data, dim, |i| {
        format!("{p}:{}", lines.get(i).copied().unwrap_or(0))
    })
}

/// Cosine of two vectors; 0 when either is zero.
pub fn cosine(a: &[f32], b: &[f32]) -> f64 {
    let (mut ab, mut aa, mut bb) = (0.0f64, 0.0f64, 0.0f64);
    for (x, y) in a.iter().zip(b) {
        let (x, y) = (f64::from(*x), f64::from(*y));
        ab += x * y;
        aa += x * x;
        bb += y * y;
    }
    if aa == 0.0 || bb == 0.0 {
        0.0
    } else {
        (ab / (aa.sqrt() * bb.sqrt())).clamp(-1.0, 1.0)
    }
}

/// The similarity level of two (optional) vectors: `round((cos + 1) / 2 · levels)`; a
/// missing vector counts as the zero vector (cosine 0, the middle level).
pub fn similarity_level(u: Option<&[f32]>, i: Option<&[f32]>, levels: u32) -> f64 {
    let c = match (u, i) {
        (Some(u), Some(i)) => cosine(u, i),
        _ => 0.0,
    };
    ((c + 1.0) / 2.0 * f64::from(levels)).round()
}

/// Seeded random hyperplanes for LSH: `codes × bits` Gaussian normals of width `dim`.
#[derive(Debug, Clone, PartialEq)]
pub struct Lsh {
    bits: usize,
    codes: usize,
    dim: usize,
    planes: Vec<f64>,
}

impl Lsh {
    /// The hyperplanes of `spec` for vectors of width `dim` (stream `semantic_id/<field>`).
    pub fn new(spec: &SemanticIdSpec, dim: usize) -> Self {
        let mut rng = Rng::for_stream(spec.seed, &format!("semantic_id/{}", spec.field));
        let planes = (0..spec.codes * spec.bits * dim)
            .map(|_| rng.normal())
            .collect();
        Lsh {
            bits: spec.bits,
            codes: spec.codes,
            dim,
            planes,
        }
    }

    /// The codes of a vector: code `k`'s bit `j` is set when the `(k·bits + j)`-th plane's dot
    /// product with `v` is positive; a missing vector gets `2^bits` for every code.
    pub fn codes(&self, v: Option<&[f32]>) -> Vec<u32> {
        let Some(v) = v else {
            return vec![1 << self.bits; self.codes];
        };
        (0..self.codes)
            .map(|k| {
                (0..self.bits).fold(0u32, |acc, j| {
                    let h = &self.planes[(k * self.bits + j) * self.dim..][..self.dim];
                    let dot: f64 = h.iter().zip(v).map(|(a, b)| a * f64::from(*b)).sum();
                    acc | (u32::from(dot > 0.0) << j)
                })
            })
            .collect()
    }
}

/// The SHA-256 of a file, hex.
pub fn file_sha256(path: &Path) -> Result<String, DataError> {
    let mut f = std::fs::File::open(path).map_err(|e| DataError::io(path, e))?;
    let mut h = Sha256::new();
    let mut buf = vec![0u8; 1 << 16];
    loop {
        let n = f.read(&mut buf).map_err(|e| DataError::io(path, e))?;
        if n == 0 {
            break;
        }
        h.update(&buf[..n]);
    }
    Ok(crate::schema::hex(&h.finalize()))
}

/// The spec with every pretrained path made absolute and its SHA-256 pinned (reading each
/// file once and checking a digest the spec already gives), so the cache key and the run's
/// `schema.json` change when a file's bytes change.
pub fn pin(spec: &SchemaSpec) -> Result<SchemaSpec, DataError> {
    let mut out = spec.clone();
    for f in &mut out.fields {
        if let Some(p) = &mut f.pretrained {
            let (_, digest) = read(p)?;
            p.path = std::path::absolute(&p.path).map_err(|e| DataError::io(&p.path, e))?;
            if let Some(ids) = &mut p.ids {
                *ids = std::path::absolute(&*ids).map_err(|e| DataError::io(&*ids, e))?;
            }
            p.sha256 = Some(digest);
        }
    }
    Ok(out)
}

/// A field's raw column and, per dict code, the value's vector (`None`: missing).
type PerCode<'a> = (&'a crate::RawColumn, Vec<Option<&'a [f32]>>);

/// One numeric feature derived from pre-trained vectors.
#[derive(Debug, Clone, PartialEq)]
pub struct DerivedFeature {
    /// Feature name.
    pub name: String,
    /// Its encoding (`None`: one dense input).
    pub encoding: Option<NumericEncoding>,
    what: What,
}

#[derive(Debug, Clone, PartialEq)]
enum What {
    /// Component `k` of field `field`'s vector.
    Component { field: String, k: usize },
    /// The similarity level.
    Similarity,
    /// Semantic-ID code `k`.
    Code { k: usize },
}

/// The loaded vectors of a schema and the features derived from them, in the order their
/// fitted fields follow the schema's own: each `dense` field's components (fields in schema
/// order), the similarity level, the semantic-ID codes.
#[derive(Debug, Clone)]
pub struct Derived {
    vectors: BTreeMap<String, Vectors>,
    lsh: Option<Lsh>,
    /// The derived features.
    pub features: Vec<DerivedFeature>,
}

impl Derived {
    /// Reads every pretrained file of `spec` (checking pinned digests); `None` when the spec
    /// declares none.
    pub fn load(spec: &SchemaSpec) -> Result<Option<Derived>, DataError> {
        let mut vectors = BTreeMap::new();
        let mut features = Vec::new();
        for f in &spec.fields {
            if let Some(p) = &f.pretrained {
                let (v, _) = read(p)?;
                if p.dense {
                    features.extend((0..v.dim).map(|k| DerivedFeature {
                        name: format!("{}.pre{k}", f.name),
                        encoding: None,
                        what: What::Component {
                            field: f.name.clone(),
                            k,
                        },
                    }));
                }
                vectors.insert(f.name.clone(), v);
            }
        }
        if vectors.is_empty() {
            return Ok(None);
        }
        if let Some(s) = &spec.similarity {
            features.push(DerivedFeature {
                name: s.name().to_string(),
                encoding: Some(s.encoding.clone()),
                what: What::Similarity,
            });
        }
        let lsh =
            spec.semantic_id.as_ref().map(|s| {
                features.extend(s.names().into_iter().enumerate().map(|(k, name)| {
                    DerivedFeature {
                        name,
                        encoding: Some(s.encoding.clone()),
                        what: What::Code { k },
                    }
                }));
                Lsh::new(s, vectors[&s.field].dim)
            });
        Ok(Some(Derived {
            vectors,
            lsh,
            features,
        }))
    }

    /// The vectors of field `name`.
    pub fn vectors(&self, name: &str) -> Option<&Vectors> {
        self.vectors.get(name)
    }

    /// For each pretrained field: its name, the number of distinct values among `rows` and how
    /// many of them have no vector (with up to 5 examples). An error when a field with
    /// `require_all = true` misses any.
    pub fn coverage(
        &self,
        spec: &SchemaSpec,
        t: &crate::RawTable,
        origin: &str,
        rows: &[u32],
    ) -> Result<Vec<(String, usize, usize)>, DataError> {
        let mut out = Vec::new();
        for f in &spec.fields {
            let (Some(p), Some(v)) = (&f.pretrained, self.vectors.get(&f.name)) else {
                continue;
            };
            let col = t.require(f.column(), origin, &format!("field `{}`", f.name))?;
            let mut seen = vec![false; col.dict.len()];
            for &r in rows {
                seen[col.codes[r as usize] as usize] = true;
            }
            let used: Vec<&String> = col
                .dict
                .iter()
                .zip(&seen)
                .filter(|(_, s)| **s)
                .map(|(d, _)| d)
                .collect();
            let mut missing: Vec<&String> = used
                .iter()
                .copied()
                .filter(|d| v.get(d).is_none())
                .collect();
            if p.require_all && !missing.is_empty() {
                missing.sort();
                return Err(verr(
                    p.path.display(),
                    format!(
                        "field `{}`: {} of {} training values have no vector (require_all = true), e.g. {:?}",
                        f.name,
                        missing.len(),
                        used.len(),
                        &missing[..missing.len().min(5)]
                    ),
                ));
            }
            out.push((f.name.clone(), used.len(), missing.len()));
        }
        Ok(out)
    }

    /// The values of feature `k` at `rows` of `t`.
    pub fn values(
        &self,
        spec: &SchemaSpec,
        k: usize,
        t: &crate::RawTable,
        origin: &str,
        rows: &[u32],
    ) -> Result<Vec<f32>, DataError> {
        // per dict code of a field's column: its vector (None = missing)
        let per_code = |field: &str| -> Result<PerCode<'_>, DataError> {
            let f = spec
                .fields
                .iter()
                .find(|f| f.name == field)
                .ok_or_else(|| DataError::schema(origin, format!("no field `{field}`")))?;
            let col = t.require(f.column(), origin, &format!("field `{field}`"))?;
            let v = &self.vectors[field];
            Ok((col, col.dict.iter().map(|d| v.get(d)).collect()))
        };
        fn at<'v>(col: &crate::RawColumn, vecs: &[Option<&'v [f32]>], r: u32) -> Option<&'v [f32]> {
            vecs[col.codes[r as usize] as usize]
        }
        Ok(match &self.features[k].what {
            What::Component { field, k } => {
                let (col, vecs) = per_code(field)?;
                rows.iter()
                    .map(|&r| at(col, &vecs, r).map_or(0.0, |v| v[*k]))
                    .collect()
            }
            What::Similarity => {
                let s = spec.similarity.as_ref().expect("similarity feature");
                let (uc, uv) = per_code(&s.user)?;
                let (ic, iv) = per_code(&s.item)?;
                // As a scalar the level is scaled into [0, 1]; encoded, it stays an integer.
                let scale = match s.encoding {
                    NumericEncoding::Scalar => f64::from(s.levels),
                    _ => 1.0,
                };
                let mut cache: HashMap<(u32, u32), f32> = HashMap::new();
                rows.iter()
                    .map(|&r| {
                        let key = (uc.codes[r as usize], ic.codes[r as usize]);
                        *cache.entry(key).or_insert_with(|| {
                            (similarity_level(at(uc, &uv, r), at(ic, &iv, r), s.levels) / scale)
                                as f32
                        })
                    })
                    .collect()
            }
            What::Code { k } => {
                let s = spec.semantic_id.as_ref().expect("semantic-id feature");
                let lsh = self.lsh.as_ref().expect("hyperplanes");
                let (col, vecs) = per_code(&s.field)?;
                let codes: Vec<u32> = vecs.iter().map(|v| lsh.codes(*v)[*k]).collect();
                rows.iter()
                    .map(|&r| codes[col.codes[r as usize] as usize] as f32)
                    .collect()
            }
        })
    }
}
