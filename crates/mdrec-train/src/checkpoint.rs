//! Checkpoints: dense parameters and embedding tables in one safetensors file.
//!
//! Names: `<prefix>model.<dotted module path>` (e.g. `model.experts.0.layers.0.linear.weight`)
//! and `<prefix>embedding.<table>`; the prefix is empty for one model and `cells.<d>.<t>.` for
//! the isolated setting. A dynamic table (stream training) also has its id → row map,
//! `<prefix>embedding.<table>.row_of` (U32; `u32::MAX` = no row). A truncated or foreign file
//! is an error naming the file.

use std::collections::BTreeMap;
use std::path::Path;

use mdrec_models::DynModel;
use mdrec_nn::EmbeddingStore;
use safetensors::tensor::{Dtype, TensorView};

use crate::TrainError;

/// Tensors by name: (dtype, shape, little-endian bytes).
pub(crate) type Tensors = BTreeMap<String, (Dtype, Vec<usize>, Vec<u8>)>;

/// Tensors to be written: name → (dtype, shape, little-endian bytes).
#[derive(Default)]
pub struct CheckpointWriter {
    tensors: Tensors,
    /// This process's rows of sharded tables, for its shard file.
    shard_tensors: Tensors,
    /// `(rank, size)` and the sharded tables (tensor name → whole `[rows, dim]`).
    shards: Option<(usize, usize, BTreeMap<String, [usize; 2]>)>,
}

/// The shard file of `path` written by `rank` of `size`: `weights.safetensors` →
/// `weights.shard-<rank>-of-<size>.safetensors`.
pub fn shard_path(path: &Path, rank: usize, size: usize) -> std::path::PathBuf {
    let stem = path
        .file_stem()
        .and_then(|s| s.to_str())
        .unwrap_or("weights");
    path.with_file_name(format!("{stem}.shard-{rank}-of-{size}.safetensors"))
}

/// The safetensors bytes of `tensors` with `meta` (canonical JSON) under one metadata key.
pub(crate) fn serialize(
    tensors: &Tensors,
    key: &str,
    meta: String,
    path: &Path,
) -> Result<Vec<u8>, TrainError> {
    let views: Vec<(String, TensorView<'_>)> = tensors
        .iter()
        .map(|(k, (dtype, shape, bytes))| {
            (
                k.clone(),
                TensorView::new(*dtype, shape.clone(), bytes).expect("consistent tensor view"),
            )
        })
        .collect();
    // One metadata key holding canonical JSON: safetensors keeps metadata in a HashMap, whose
    // order would make two identical checkpoints differ byte for byte.
    let mut m = std::collections::HashMap::new();
    m.insert(key.to_string(), meta);
    safetensors::serialize(views, &Some(m))
        .map_err(|e| TrainError::Checkpoint(format!("{}: {e}", path.display())))
}

fn write_atomic(path: &Path, bytes: &[u8]) -> Result<(), TrainError> {
    let tmp = path.with_extension("safetensors.tmp");
    std::fs::write(&tmp, bytes).map_err(|e| TrainError::io(&tmp, e))?;
    std::fs::rename(&tmp, path).map_err(|e| TrainError::io(path, e))
}

fn to_bytes(values: &[f32]) -> Vec<u8> {
    values.iter().flat_map(|v| v.to_le_bytes()).collect()
}

impl CheckpointWriter {
    /// Add a model and its embedding store under `prefix`.
    pub fn add(&mut self, prefix: &str, model: &dyn DynModel, store: &EmbeddingStore) {
        for (name, shape, values) in model.named_tensors() {
            self.tensors.insert(
                format!("{prefix}model.{name}"),
                (Dtype::F32, shape, to_bytes(&values)),
            );
        }
        if let Some(info) = store.shard_info() {
            let (_, _, tables) = self
                .shards
                .get_or_insert_with(|| (info.rank, info.size, BTreeMap::new()));
            for t in &info.tables {
                tables.insert(format!("{prefix}embedding.{}", t.name), [t.rows, t.dim]);
            }
        }
        for (name, rows, dim, values) in store.tables() {
            let key = format!("{prefix}embedding.{name}");
            let dst = if store.is_table_sharded(name) {
                &mut self.shard_tensors
            } else {
                &mut self.tensors
            };
            dst.insert(key, (Dtype::F32, vec![rows, dim], to_bytes(values)));
            if let Some(map) = store.row_map(name) {
                let bytes = map.iter().flat_map(|v| v.to_le_bytes()).collect();
                self.tensors.insert(
                    format!("{prefix}embedding.{name}.row_of"),
                    (Dtype::U32, vec![map.len()], bytes),
                );
            }
        }
    }

    /// Write the file with `metadata` (e.g. model name, schema hash); shard files (see
    /// [`write_with_shards`](Self::write_with_shards)) go beside it.
    pub fn write(&self, path: &Path, metadata: BTreeMap<String, String>) -> Result<(), TrainError> {
        let dir = path.parent().unwrap_or(Path::new("."));
        self.write_with_shards(path, metadata, dir)
    }

    /// Write the file with `metadata`. With sharded tables, this process's rows of them go
    /// to its shard file ([`shard_path`]) in `shard_dir`, and the main file lists the shards
    /// (metadata `embedding_shards`); [`Checkpoint::read`] joins them.
    pub fn write_with_shards(
        &self,
        path: &Path,
        mut metadata: BTreeMap<String, String>,
        shard_dir: &Path,
    ) -> Result<(), TrainError> {
        if let Some((rank, size, tables)) = &self.shards {
            let shard = shard_dir.join(
                shard_path(path, *rank, *size)
                    .file_name()
                    .unwrap_or_default(),
            );
            let meta =
                serde_json::json!({"rank": rank.to_string(), "size": size.to_string()}).to_string();
            let bytes = serialize(&self.shard_tensors, "mdrec_shard", meta, &shard)?;
            write_atomic(&shard, &bytes)?;
            metadata.insert(
                "embedding_shards".to_string(),
                serde_json::json!({"size": size, "tables": tables}).to_string(),
            );
        }
        let meta = serde_json::to_string(&metadata).expect("metadata serialises");
        let bytes = serialize(&self.tensors, "mdrec", meta, path)?;
        write_atomic(path, &bytes)
    }
}

/// F32 tensors, row maps and the metadata under `key` of one safetensors file.
#[allow(clippy::type_complexity)]
fn read_file(
    path: &Path,
    key: &str,
) -> Result<
    (
        BTreeMap<String, (Vec<usize>, Vec<f32>)>,
        BTreeMap<String, Vec<u32>>,
        BTreeMap<String, String>,
    ),
    TrainError,
> {
    let bytes = std::fs::read(path).map_err(|e| TrainError::io(path, e))?;
    let st = safetensors::SafeTensors::deserialize(&bytes).map_err(|e| {
        TrainError::Checkpoint(format!(
            "{} is not a valid safetensors file (truncated or corrupted?): {e}",
            path.display()
        ))
    })?;
    let (_, meta) = safetensors::SafeTensors::read_metadata(&bytes)
        .map_err(|e| TrainError::Checkpoint(format!("{}: {e}", path.display())))?;
    let metadata = match meta.metadata().as_ref().and_then(|m| m.get(key)) {
        Some(json) => serde_json::from_str(json).map_err(|e| {
            TrainError::Checkpoint(format!("{}: bad mdrec metadata: {e}", path.display()))
        })?,
        None => BTreeMap::new(),
    };
    let mut tensors = BTreeMap::new();
    let mut row_maps = BTreeMap::new();
    for (name, view) in st.tensors() {
        if view.dtype() == Dtype::U32 && name.ends_with(".row_of") {
            let map = view
                .data()
                .chunks_exact(4)
                .map(|c| u32::from_le_bytes([c[0], c[1], c[2], c[3]]))
                .collect();
            row_maps.insert(name, map);
            continue;
        }
        if view.dtype() != Dtype::F32 {
            return Err(TrainError::Checkpoint(format!(
                "{}: tensor `{name}` is {:?}, expected F32",
                path.display(),
                view.dtype()
            )));
        }
        let values = view
            .data()
            .chunks_exact(4)
            .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
            .collect();
        tensors.insert(name, (view.shape().to_vec(), values));
    }
    Ok((tensors, row_maps, metadata))
}

/// A loaded checkpoint.
pub struct Checkpoint {
    tensors: BTreeMap<String, (Vec<usize>, Vec<f32>)>,
    /// Dynamic tables' id → row maps by tensor name.
    row_maps: BTreeMap<String, Vec<u32>>,
    /// File metadata.
    pub metadata: BTreeMap<String, String>,
}

impl Checkpoint {
    /// Read and validate a safetensors file (and, when its metadata lists embedding shards,
    /// the shard files beside it, joined into whole tables).
    pub fn read(path: &Path) -> Result<Self, TrainError> {
        let (mut tensors, row_maps, metadata) = read_file(path, "mdrec")?;
        if let Some(json) = metadata.get("embedding_shards") {
            #[derive(serde::Deserialize)]
            struct Shards {
                size: usize,
                tables: BTreeMap<String, [usize; 2]>,
            }
            let bad = |e: String| {
                TrainError::Checkpoint(format!("{}: embedding shards: {e}", path.display()))
            };
            let shards: Shards = serde_json::from_str(json).map_err(|e| bad(e.to_string()))?;
            let files: Vec<_> = (0..shards.size)
                .map(|r| {
                    let p = shard_path(path, r, shards.size);
                    let (t, _, meta) = read_file(&p, "mdrec_shard")?;
                    let (want_rank, want_size) = (r.to_string(), shards.size.to_string());
                    if meta.get("rank") != Some(&want_rank) || meta.get("size") != Some(&want_size)
                    {
                        return Err(TrainError::Checkpoint(format!(
                            "{}: not shard {r} of {} (its metadata says rank {:?} of {:?})",
                            p.display(),
                            shards.size,
                            meta.get("rank"),
                            meta.get("size")
                        )));
                    }
                    Ok((p, t))
                })
                .collect::<Result<_, _>>()?;
            for (name, [rows, dim]) in &shards.tables {
                let parts: Vec<&[f32]> = files
                    .iter()
                    .map(|(p, t)| {
                        t.get(name).map(|(_, v)| v.as_slice()).ok_or_else(|| {
                            TrainError::Checkpoint(format!(
                                "{}: no tensor `{name}` (shard file of another run?)",
                                p.display()
                            ))
                        })
                    })
                    .collect::<Result<_, _>>()?;
                let whole = mdrec_nn::collective::interleave(&parts, *rows, *dim)
                    .map_err(|e| bad(format!("`{name}`: {e}")))?;
                tensors.insert(name.clone(), (vec![*rows, *dim], whole));
            }
        }
        Ok(Checkpoint {
            tensors,
            row_maps,
            metadata,
        })
    }

    /// Load the model and store saved under `prefix`.
    pub fn load_into(
        &self,
        prefix: &str,
        model: &mut dyn DynModel,
        store: &mut EmbeddingStore,
    ) -> Result<(), TrainError> {
        let model_prefix = format!("{prefix}model.");
        let model_tensors: BTreeMap<String, (Vec<usize>, Vec<f32>)> = self
            .tensors
            .iter()
            .filter_map(|(k, v)| {
                k.strip_prefix(&model_prefix)
                    .map(|n| (n.to_string(), v.clone()))
            })
            .collect();
        model
            .load_named(&model_tensors)
            .map_err(|e| TrainError::Checkpoint(e.to_string()))?;
        for name in store.table_names() {
            let key = format!("{prefix}embedding.{name}");
            let (shape, values) = self.tensors.get(&key).ok_or_else(|| {
                TrainError::Checkpoint(format!("missing embedding table `{key}`"))
            })?;
            if shape.len() != 2 {
                return Err(TrainError::Checkpoint(format!(
                    "embedding table `{key}` has shape {shape:?}"
                )));
            }
            match self.row_maps.get(&format!("{key}.row_of")) {
                Some(map) => store.load_dynamic_table(&name, shape[0], shape[1], values, map),
                None => store.load_table(&name, shape[0], shape[1], values),
            }
            .map_err(TrainError::Checkpoint)?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use mdrec_data::rng::Rng;
    use mdrec_nn::device::cpu;
    use mdrec_nn::{EmbeddingConfig, ModelContext};

    use super::*;

    /// A tiny MMoE and its tables, built from `seed`.
    fn parts(seed: u64) -> (Box<dyn DynModel>, EmbeddingStore) {
        let ctx = ModelContext::uniform(3, 10, 4, 1, 2, 2);
        let f = mdrec_models::find("mmoe").unwrap();
        let cfg = f.resolve(&f.tiny_config()).unwrap();
        let model = f
            .build(&cfg, &ctx, &mut Rng::new(seed), &cpu().autodiff())
            .unwrap();
        let emb = EmbeddingConfig {
            init_std: 0.5,
            ..EmbeddingConfig::default()
        };
        let store = EmbeddingStore::new(&ctx.store_fields(), &emb, &mut Rng::new(seed));
        (model, store)
    }

    fn tables(s: &EmbeddingStore) -> Vec<Vec<f32>> {
        s.tables().map(|t| t.3.to_vec()).collect()
    }

    #[test]
    fn a_written_checkpoint_loads_back_exactly_under_its_prefix() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("w.safetensors");
        let (a, sa) = parts(1);
        let (b, sb) = parts(2);
        let mut w = CheckpointWriter::default();
        w.add("", a.as_ref(), &sa);
        w.add("cells.1.0.", b.as_ref(), &sb);
        let meta = BTreeMap::from([("model".to_string(), "mmoe".to_string())]);
        w.write(&path, meta.clone()).unwrap();
        // byte-stable: the same content writes the same file
        let again = dir.path().join("again.safetensors");
        w.write(&again, meta.clone()).unwrap();
        assert_eq!(
            std::fs::read(&path).unwrap(),
            std::fs::read(&again).unwrap()
        );

        let c = Checkpoint::read(&path).unwrap();
        assert_eq!(c.metadata, meta);
        for (prefix, want, want_tables) in [("", &a, tables(&sa)), ("cells.1.0.", &b, tables(&sb))]
        {
            let (mut m, mut s) = parts(9);
            assert_ne!(m.named_tensors(), want.named_tensors());
            c.load_into(prefix, m.as_mut(), &mut s).unwrap();
            assert_eq!(m.named_tensors(), want.named_tensors(), "{prefix}");
            assert_eq!(tables(&s), want_tables, "{prefix}");
        }
        // an unknown prefix has no tensors: an error, not a silently fresh model
        let (mut m, mut s) = parts(9);
        let e = c
            .load_into("cells.0.0.", m.as_mut(), &mut s)
            .err()
            .unwrap()
            .to_string();
        assert!(e.starts_with("checkpoint: "), "{e}");
    }

    #[test]
    fn truncated_foreign_and_incomplete_files_are_errors_naming_them() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("w.safetensors");
        let (a, sa) = parts(1);
        let mut w = CheckpointWriter::default();
        w.add("", a.as_ref(), &sa);
        w.write(&path, BTreeMap::new()).unwrap();
        let bytes = std::fs::read(&path).unwrap();

        let cut = dir.path().join("cut.safetensors");
        std::fs::write(&cut, &bytes[..bytes.len() - 7]).unwrap();
        let e = Checkpoint::read(&cut).err().unwrap().to_string();
        assert!(
            e.contains("cut.safetensors") && e.contains("truncated"),
            "{e}"
        );

        let foreign = dir.path().join("notes.safetensors");
        std::fs::write(&foreign, "just text").unwrap();
        let e = Checkpoint::read(&foreign).err().unwrap().to_string();
        assert!(e.contains("notes.safetensors"), "{e}");

        let e = Checkpoint::read(&dir.path().join("none.safetensors"))
            .err()
            .unwrap()
            .to_string();
        assert!(e.contains("none.safetensors"), "{e}");

        // a model part without its tables names the missing table
        let mut only_model = CheckpointWriter::default();
        only_model.add(
            "",
            a.as_ref(),
            &EmbeddingStore::new(&[], &EmbeddingConfig::default(), &mut Rng::new(1)),
        );
        let p = dir.path().join("model-only.safetensors");
        only_model.write(&p, BTreeMap::new()).unwrap();
        let (mut m, mut s) = parts(9);
        let e = Checkpoint::read(&p)
            .unwrap()
            .load_into("", m.as_mut(), &mut s)
            .err()
            .unwrap()
            .to_string();
        assert!(e.contains("missing embedding table `embedding.f0`"), "{e}");
    }
    #[test]
    fn shard_files_join_into_whole_tables_and_a_missing_or_foreign_shard_is_named() {
        let dir = tempfile::tempdir().unwrap();
        let (a, whole) = parts(1);
        // Each "rank" writes its own shard file; rank 0's main file lists the shards.
        for r in (0..3).rev() {
            let (_, mut s) = parts(1);
            s.shard(r, 3, 0).unwrap();
            let mut w = CheckpointWriter::default();
            w.add("", a.as_ref(), &s);
            w.write(&dir.path().join("w.safetensors"), BTreeMap::new())
                .unwrap();
        }
        let path = dir.path().join("w.safetensors");
        let (mut m, mut s) = parts(9);
        Checkpoint::read(&path)
            .unwrap()
            .load_into("", m.as_mut(), &mut s)
            .unwrap();
        assert_eq!(tables(&s), tables(&whole));
        assert_eq!(m.named_tensors(), a.named_tensors());

        let two = shard_path(&path, 2, 3);
        let one = shard_path(&path, 1, 3);
        std::fs::copy(&one, &two).unwrap();
        let e = Checkpoint::read(&path).err().unwrap().to_string();
        assert!(
            e.contains("w.shard-2-of-3.safetensors") && e.contains("not shard 2"),
            "{e}"
        );
        std::fs::remove_file(&two).unwrap();
        let e = Checkpoint::read(&path).err().unwrap().to_string();
        assert!(e.contains("w.shard-2-of-3.safetensors"), "{e}");
    }
}
