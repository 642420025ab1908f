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

/// Tensors to be written: name → (dtype, shape, little-endian bytes).
#[derive(Default)]
pub struct CheckpointWriter {
    tensors: BTreeMap<String, (Dtype, Vec<usize>, Vec<u8>)>,
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
        for (name, rows, dim, values) in store.tables() {
            self.tensors.insert(
                format!("{prefix}embedding.{name}"),
                (Dtype::F32, vec![rows, dim], to_bytes(values)),
            );
            if let Some(map) = store.row_map(name) {
                let bytes = map.iter().flat_map(|v| v.to_le_bytes()).collect();
                self.tensors.insert(
                    format!("{prefix}embedding.{name}.row_of"),
                    (Dtype::U32, vec![map.len()], bytes),
                );
            }
        }
    }

    /// Write the file with `metadata` (e.g. model name, schema hash).
    pub fn write(&self, path: &Path, metadata: BTreeMap<String, String>) -> Result<(), TrainError> {
        let views: Vec<(String, TensorView<'_>)> = self
            .tensors
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
        let mut meta = std::collections::HashMap::new();
        meta.insert(
            "mdrec".to_string(),
            serde_json::to_string(&metadata).expect("metadata serialises"),
        );
        let bytes = safetensors::serialize(views, &Some(meta))
            .map_err(|e| TrainError::Checkpoint(format!("{}: {e}", path.display())))?;
        let tmp = path.with_extension("safetensors.tmp");
        std::fs::write(&tmp, bytes).map_err(|e| TrainError::io(&tmp, e))?;
        std::fs::rename(&tmp, path).map_err(|e| TrainError::io(path, e))?;
        Ok(())
    }
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
    /// Read and validate a safetensors file.
    pub fn read(path: &Path) -> Result<Self, TrainError> {
        let bytes = std::fs::read(path).map_err(|e| TrainError::io(path, e))?;
        let st = safetensors::SafeTensors::deserialize(&bytes).map_err(|e| {
            TrainError::Checkpoint(format!(
                "{} is not a valid safetensors file (truncated or corrupted?): {e}",
                path.display()
            ))
        })?;
        let (_, meta) = safetensors::SafeTensors::read_metadata(&bytes)
            .map_err(|e| TrainError::Checkpoint(format!("{}: {e}", path.display())))?;
        let metadata = match meta.metadata().as_ref().and_then(|m| m.get("mdrec")) {
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
}
