//! Training checkpoints for exact resume (`train.checkpoint_every_steps`, `mdrec train
//! --resume RUN`).
//!
//! A checkpoint is one safetensors file, `RUN/checkpoints/ckpt-<step>.safetensors`, holding
//! everything a run needs to continue as if it had never stopped:
//!
//! - `model.<name>` (F32): every dense parameter and buffer (BatchNorm statistics) by its dotted
//!   name; the metadata maps each name to its burn parameter id, because burn keys optimizer
//!   state by id and ids are drawn anew when a model is built;
//! - `optim.main`, `optim.outer` (U8): both dense optimizers' records (burnpack bytes);
//! - `store.<table>.<array>` (F32 / U32 / U64): the embedding tables with their optimizer
//!   moments and, for stream training, id maps, per-row statistics, sketch and admission RNG;
//! - `extra.<name>` (F32): what the loop keeps besides the engine (the best epoch's weights, the
//!   progressive predictions so far);
//! - metadata `cursor`: the loop's position (epoch and step, or window) and counters, with f64
//!   values stored as their bit patterns; `passes`, `store_step`, `store_window`; and `sha256`,
//!   the digest of every tensor's name and bytes.
//!
//! Files are written to a temporary name, synced and renamed, and the last two are kept. On
//! resume the newest file that parses and whose digest matches is used; a truncated or corrupt
//! one is skipped with a message naming it and the reason. Dropout draws are seeded by the
//! engine's pass counter, and epoch orders are functions of `(seed, epoch)`, so nothing random
//! needs saving beyond the admission RNG of the tables.

use std::collections::BTreeMap;
use std::io::Write;
use std::path::{Path, PathBuf};

use mdrec_nn::{StateArray, StoreState, TableState};
use safetensors::tensor::{Dtype, TensorView};
use sha2::{Digest, Sha256};

use crate::engine::EngineCheckpoint;
use crate::TrainError;

/// One checkpoint: the engine, the loop's cursor and the loop's extra arrays.
pub struct TrainCheckpoint {
    /// The engine's state.
    pub engine: EngineCheckpoint,
    /// The loop's position and counters (JSON; the loop defines its fields).
    pub cursor: serde_json::Value,
    /// Arrays the loop keeps besides the engine.
    pub extra: BTreeMap<String, Vec<f32>>,
}

/// The checkpoint folder of a run directory.
pub fn checkpoint_dir(run: &Path) -> PathBuf {
    run.join("checkpoints")
}

fn le<T: Copy, const N: usize>(v: &[T], f: impl Fn(T) -> [u8; N]) -> Vec<u8> {
    v.iter().flat_map(|&x| f(x)).collect()
}

type Entry = (Dtype, Vec<usize>, Vec<u8>);

fn digest(tensors: &BTreeMap<String, Entry>) -> String {
    let mut h = Sha256::new();
    for (name, (_, _, bytes)) in tensors {
        h.update((name.len() as u64).to_le_bytes());
        h.update(name.as_bytes());
        h.update((bytes.len() as u64).to_le_bytes());
        h.update(bytes);
    }
    mdrec_data::schema::hex(&h.finalize())
}

/// Writes `ck` as `dir/ckpt-<step>.safetensors` (temporary file, fsync, rename) and deletes all
/// but the newest `keep` checkpoints; returns the path and the bytes written.
pub fn write_checkpoint(
    dir: &Path,
    step: u64,
    ck: &TrainCheckpoint,
    keep: usize,
) -> Result<(PathBuf, usize), TrainError> {
    std::fs::create_dir_all(dir).map_err(|e| TrainError::io(dir, e))?;
    let mut tensors: BTreeMap<String, Entry> = BTreeMap::new();
    let e = &ck.engine;
    for (name, shape, values) in &e.model {
        tensors.insert(
            format!("model.{name}"),
            (Dtype::F32, shape.clone(), le(values, f32::to_le_bytes)),
        );
    }
    for (name, bytes) in [("optim.main", &e.optim), ("optim.outer", &e.outer_optim)] {
        tensors.insert(name.into(), (Dtype::U8, vec![bytes.len()], bytes.clone()));
    }
    for t in &e.store.tables {
        for (array, values) in &t.arrays {
            let entry = match values {
                StateArray::F32(v) => (Dtype::F32, vec![v.len()], le(v, f32::to_le_bytes)),
                StateArray::U32(v) => (Dtype::U32, vec![v.len()], le(v, u32::to_le_bytes)),
                StateArray::U64(v) => (Dtype::U64, vec![v.len()], le(v, u64::to_le_bytes)),
            };
            tensors.insert(format!("store.{}.{array}", t.name), entry);
        }
    }
    for (name, v) in &ck.extra {
        tensors.insert(
            format!("extra.{name}"),
            (Dtype::F32, vec![v.len()], le(v, f32::to_le_bytes)),
        );
    }
    let mut meta = BTreeMap::new();
    meta.insert("cursor".to_string(), ck.cursor.to_string());
    meta.insert(
        "param_ids".to_string(),
        serde_json::to_string(&e.param_ids).expect("ids serialise"),
    );
    meta.insert("passes".to_string(), e.passes.to_string());
    meta.insert("store_step".to_string(), e.store.step.to_string());
    meta.insert("store_window".to_string(), e.store.window.to_string());
    let tables: Vec<(String, usize)> = e
        .store
        .tables
        .iter()
        .map(|t| (t.name.clone(), t.dim))
        .collect();
    meta.insert(
        "store_tables".to_string(),
        serde_json::to_string(&tables).expect("tables serialise"),
    );
    meta.insert("sha256".to_string(), digest(&tensors));
    let views: Vec<(String, TensorView<'_>)> = tensors
        .iter()
        .map(|(k, (dtype, shape, bytes))| {
            (
                k.clone(),
                TensorView::new(*dtype, shape.clone(), bytes).expect("consistent tensor view"),
            )
        })
        .collect();
    let mut m = std::collections::HashMap::new();
    m.insert(
        "mdrec_checkpoint".to_string(),
        serde_json::to_string(&meta).expect("metadata serialises"),
    );
    let path = dir.join(format!("ckpt-{step:012}.safetensors"));
    let bytes = safetensors::serialize(views, &Some(m))
        .map_err(|e| TrainError::Checkpoint(format!("{}: {e}", path.display())))?;
    let tmp = dir.join(format!(".ckpt-{step:012}.tmp"));
    {
        let mut f = std::fs::File::create(&tmp).map_err(|e| TrainError::io(&tmp, e))?;
        f.write_all(&bytes).map_err(|e| TrainError::io(&tmp, e))?;
        f.sync_all().map_err(|e| TrainError::io(&tmp, e))?;
    }
    std::fs::rename(&tmp, &path).map_err(|e| TrainError::io(&path, e))?;
    if let Ok(d) = std::fs::File::open(dir) {
        let _ = d.sync_all(); // the rename is durable once the folder is synced
    }
    let mut all = list_checkpoints(dir)?;
    all.reverse(); // newest first
    for old in all.iter().skip(keep.max(1)) {
        let _ = std::fs::remove_file(old);
    }
    Ok((path, bytes.len()))
}

/// The checkpoint files of `dir`, oldest first.
fn list_checkpoints(dir: &Path) -> Result<Vec<PathBuf>, TrainError> {
    let entries = match std::fs::read_dir(dir) {
        Ok(e) => e,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(TrainError::io(dir, e)),
    };
    let mut out: Vec<PathBuf> = entries
        .filter_map(Result::ok)
        .map(|e| e.path())
        .filter(|p| {
            p.file_name()
                .and_then(|n| n.to_str())
                .is_some_and(|n| n.starts_with("ckpt-") && n.ends_with(".safetensors"))
        })
        .collect();
    out.sort();
    Ok(out)
}

/// Reads and verifies one checkpoint file.
pub fn read_checkpoint(path: &Path) -> Result<TrainCheckpoint, String> {
    let bytes = std::fs::read(path).map_err(|e| format!("cannot read: {e}"))?;
    let st = safetensors::SafeTensors::deserialize(&bytes)
        .map_err(|e| format!("not a valid safetensors file (truncated?): {e}"))?;
    let (_, header) = safetensors::SafeTensors::read_metadata(&bytes).map_err(|e| e.to_string())?;
    let meta: BTreeMap<String, String> = header
        .metadata()
        .as_ref()
        .and_then(|m| m.get("mdrec_checkpoint"))
        .ok_or("no mdrec checkpoint metadata")
        .and_then(|j| serde_json::from_str(j).map_err(|_| "bad checkpoint metadata"))?;
    let mut tensors: BTreeMap<String, Entry> = BTreeMap::new();
    for (name, view) in st.tensors() {
        tensors.insert(
            name,
            (view.dtype(), view.shape().to_vec(), view.data().to_vec()),
        );
    }
    let want = meta.get("sha256").ok_or("no digest")?;
    if digest(&tensors) != *want {
        return Err("checksum mismatch (corrupted file)".into());
    }
    let get = |k: &str| meta.get(k).ok_or(format!("metadata `{k}` missing"));
    let num = |k: &str| -> Result<u64, String> {
        get(k)?
            .parse()
            .map_err(|_| format!("metadata `{k}` is not a number"))
    };
    let f32s = |b: &[u8]| -> Vec<f32> {
        b.chunks_exact(4)
            .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
            .collect()
    };
    let mut model = Vec::new();
    let mut extra = BTreeMap::new();
    let (mut optim, mut outer_optim) = (None, None);
    let mut arrays: BTreeMap<String, Vec<(String, StateArray)>> = BTreeMap::new();
    for (name, (dtype, shape, b)) in &tensors {
        if let Some(n) = name.strip_prefix("model.") {
            model.push((n.to_string(), shape.clone(), f32s(b)));
        } else if let Some(n) = name.strip_prefix("extra.") {
            extra.insert(n.to_string(), f32s(b));
        } else if name == "optim.main" {
            optim = Some(b.clone());
        } else if name == "optim.outer" {
            outer_optim = Some(b.clone());
        } else if let Some(rest) = name.strip_prefix("store.") {
            let (table, array) = rest
                .rsplit_once('.')
                .ok_or(format!("bad tensor name `{name}`"))?;
            let a = match dtype {
                Dtype::F32 => StateArray::F32(f32s(b)),
                Dtype::U32 => StateArray::U32(
                    b.chunks_exact(4)
                        .map(|c| u32::from_le_bytes([c[0], c[1], c[2], c[3]]))
                        .collect(),
                ),
                Dtype::U64 => StateArray::U64(
                    b.chunks_exact(8)
                        .map(|c| u64::from_le_bytes(c.try_into().unwrap_or_default()))
                        .collect(),
                ),
                other => return Err(format!("tensor `{name}` has dtype {other:?}")),
            };
            arrays
                .entry(table.to_string())
                .or_default()
                .push((array.to_string(), a));
        }
    }
    let tables: Vec<(String, usize)> =
        serde_json::from_str(get("store_tables")?).map_err(|e| format!("store_tables: {e}"))?;
    let store = StoreState {
        step: num("store_step")?,
        window: num("store_window")?,
        tables: tables
            .into_iter()
            .map(|(name, dim)| TableState {
                arrays: arrays.remove(&name).unwrap_or_default(),
                name,
                dim,
            })
            .collect(),
    };
    Ok(TrainCheckpoint {
        engine: EngineCheckpoint {
            model,
            param_ids: serde_json::from_str(get("param_ids")?)
                .map_err(|e| format!("param_ids: {e}"))?,
            optim: optim.ok_or("no optim.main")?,
            outer_optim: outer_optim.ok_or("no optim.outer")?,
            store,
            passes: num("passes")?,
        },
        cursor: serde_json::from_str(get("cursor")?).map_err(|e| format!("cursor: {e}"))?,
        extra,
    })
}

/// The newest checkpoint of `dir` that verifies, with its path; each unusable newer one is
/// reported through `warn` (file and reason). `Ok(None)` when there is none.
pub fn read_latest(
    dir: &Path,
    warn: &mut dyn FnMut(String),
) -> Result<Option<(TrainCheckpoint, PathBuf)>, TrainError> {
    let mut all = list_checkpoints(dir)?;
    all.reverse();
    for p in all {
        match read_checkpoint(&p) {
            Ok(ck) => return Ok(Some((ck, p))),
            Err(reason) => warn(format!(
                "checkpoint {} is unusable ({reason}); trying the previous one",
                p.display()
            )),
        }
    }
    Ok(None)
}

/// An f64 as its bit pattern (exact through JSON).
pub fn bits(x: f64) -> u64 {
    x.to_bits()
}

/// The f64 of [`bits`].
pub fn from_bits(x: &serde_json::Value) -> f64 {
    f64::from_bits(x.as_u64().unwrap_or(0))
}
