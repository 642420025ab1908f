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
//! With embedding tables sharded across a process group, every rank writes its own file,
//! `ckpt-<step>.shard-<rank>-of-<size>.safetensors` (its rows of the sharded tables, metadata
//! `store_shard`); a step is usable when all its ranks' files verify, and is read back with the
//! shards joined, so any number of processes can continue from it.
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
use safetensors::tensor::Dtype;
use sha2::{Digest, Sha256};

use crate::engine::EngineCheckpoint;
use crate::TrainError;

/// One checkpoint: the engine, the loop's cursor and the loop's extra arrays.
#[derive(Clone)]
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
    if let Some(info) = &e.store.shard {
        meta.insert(
            "store_shard".to_string(),
            serde_json::to_string(info).expect("shard info serialises"),
        );
    }
    meta.insert("sha256".to_string(), digest(&tensors));
    let shard = e.store.shard.as_ref().map(|i| (i.rank, i.size));
    let path = dir.join(file_name(step, shard));
    let meta = serde_json::to_string(&meta).expect("metadata serialises");
    let bytes = crate::checkpoint::serialize(&tensors, "mdrec_checkpoint", meta, &path)?;
    let tmp = dir.join(format!(".{}.tmp", file_name(step, shard)));
    {
        let mut f = std::fs::File::create(&tmp).map_err(|e| TrainError::io(&tmp, e))?;
        f.write_all(&bytes).map_err(|e| TrainError::io(&tmp, e))?;
        f.sync_all().map_err(|e| TrainError::io(&tmp, e))?;
    }
    std::fs::rename(&tmp, &path).map_err(|e| TrainError::io(&path, e))?;
    if let Ok(d) = std::fs::File::open(dir) {
        let _ = d.sync_all(); // the rename is durable once the folder is synced
    }
    // This process's own files only: under sharding each rank keeps its last `keep`.
    let mut mine: Vec<PathBuf> = list_checkpoints(dir)?
        .into_iter()
        .filter(|(_, s, _)| *s == shard)
        .map(|(_, _, p)| p)
        .collect();
    mine.reverse(); // newest first
    for old in mine.iter().skip(keep.max(1)) {
        let _ = std::fs::remove_file(old);
    }
    Ok((path, bytes.len()))
}

/// `ckpt-<step>.safetensors`, or `ckpt-<step>.shard-<rank>-of-<size>.safetensors` for one
/// rank's checkpoint of a run whose tables are sharded.
fn file_name(step: u64, shard: Option<(usize, usize)>) -> String {
    match shard {
        None => format!("ckpt-{step:012}.safetensors"),
        Some((r, n)) => format!("ckpt-{step:012}.shard-{r}-of-{n}.safetensors"),
    }
}

/// The step and shard of a checkpoint file name ([`file_name`]).
fn parse_name(name: &str) -> Option<(u64, Option<(usize, usize)>)> {
    let rest = name.strip_prefix("ckpt-")?.strip_suffix(".safetensors")?;
    let (step, shard) = match rest.split_once('.') {
        None => (rest, None),
        Some((step, shard)) => {
            let (r, n) = shard.strip_prefix("shard-")?.split_once("-of-")?;
            (step, Some((r.parse().ok()?, n.parse().ok()?)))
        }
    };
    Some((step.parse().ok()?, shard))
}

/// The checkpoint files of `dir` with their step and shard, oldest first.
type Listed = (u64, Option<(usize, usize)>, PathBuf);

fn list_checkpoints(dir: &Path) -> Result<Vec<Listed>, TrainError> {
    let entries = match std::fs::read_dir(dir) {
        Ok(e) => e,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(TrainError::io(dir, e)),
    };
    let mut out: Vec<Listed> = entries
        .filter_map(Result::ok)
        .map(|e| e.path())
        .filter_map(|p| {
            let (step, shard) = parse_name(p.file_name()?.to_str()?)?;
            Some((step, shard, p))
        })
        .collect();
    out.sort();
    Ok(out)
}

/// One checkpoint of a sharded run from its ranks' files (in rank order): the store's shards
/// and the sharded tables' extra arrays are joined, the rest is rank 0's (every rank holds
/// the same dense state and position; its own clock and loss sum are not compared).
fn merge_shards(parts: Vec<TrainCheckpoint>) -> Result<TrainCheckpoint, String> {
    let stores: Vec<StoreState> = parts.iter().map(|p| p.engine.store.clone()).collect();
    let store = StoreState::merge(&stores)?;
    let info = stores[0].shard.clone().expect("merge checked the shards");
    let position =
        |c: &serde_json::Value| ["kind", "epoch", "step", "global_step"].map(|k| c.get(k).cloned());
    if parts
        .iter()
        .any(|p| position(&p.cursor) != position(&parts[0].cursor))
    {
        return Err("the ranks' files were written at different positions".into());
    }
    let mut it = parts.into_iter();
    let mut first = it.next().expect("at least one shard");
    let rest: Vec<TrainCheckpoint> = it.collect();
    for (name, values) in first.extra.iter_mut() {
        let Some(t) = info
            .tables
            .iter()
            .find(|t| name.ends_with(&format!("embedding.{}", t.name)))
        else {
            continue;
        };
        let mut views = vec![values.as_slice()];
        for p in &rest {
            views.push(
                p.extra
                    .get(name)
                    .ok_or(format!("a shard lacks `extra.{name}`"))?,
            );
        }
        let whole = mdrec_nn::collective::interleave(&views, t.rows, t.dim)
            .map_err(|e| format!("extra.{name}: {e}"))?;
        *values = whole;
    }
    first.engine.store = store;
    Ok(first)
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
        shard: match meta.get("store_shard") {
            Some(j) => Some(serde_json::from_str(j).map_err(|e| format!("store_shard: {e}"))?),
            None => None,
        },
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
///
/// A sharded run's checkpoint is the set of its ranks' files of one step; it is usable when
/// every rank's file is there and verifies, and is returned whole (the shards joined), so any
/// number of processes can continue from it (each takes its own rows again).
pub fn read_latest(
    dir: &Path,
    warn: &mut dyn FnMut(String),
) -> Result<Option<(TrainCheckpoint, PathBuf)>, TrainError> {
    let all = list_checkpoints(dir)?;
    let mut steps: Vec<u64> = all.iter().map(|(s, _, _)| *s).collect();
    steps.dedup();
    for &step in steps.iter().rev() {
        let files: Vec<&Listed> = all.iter().filter(|(s, _, _)| *s == step).collect();
        if let Some((_, _, p)) = files.iter().find(|(_, shard, _)| shard.is_none()) {
            match read_checkpoint(p) {
                Ok(ck) => return Ok(Some((ck, p.clone()))),
                Err(reason) => warn(format!(
                    "checkpoint {} is unusable ({reason}); trying the previous one",
                    p.display()
                )),
            }
        }
        let mut sizes: Vec<usize> = files
            .iter()
            .filter_map(|(_, s, _)| s.map(|s| s.1))
            .collect();
        sizes.sort_unstable();
        sizes.dedup();
        for n in sizes.into_iter().rev() {
            let set: Vec<&PathBuf> = (0..n)
                .filter_map(|r| {
                    files
                        .iter()
                        .find(|(_, s, _)| *s == Some((r, n)))
                        .map(|(_, _, p)| p)
                })
                .collect();
            let first = dir.join(file_name(step, Some((0, n))));
            if set.len() < n {
                warn(format!(
                    "checkpoint of step {step} in {} has {} of its {n} ranks' files (a rank stopped while writing); trying the previous one",
                    dir.display(),
                    set.len()
                ));
                continue;
            }
            let parts: Result<Vec<TrainCheckpoint>, String> = set
                .iter()
                .map(|p| read_checkpoint(p).map_err(|e| format!("{}: {e}", p.display())))
                .collect();
            match parts.and_then(merge_shards) {
                Ok(ck) => return Ok(Some((ck, first))),
                Err(reason) => warn(format!(
                    "checkpoint of step {step} ({n} ranks' files) is unusable ({reason}); trying the previous one"
                )),
            }
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
