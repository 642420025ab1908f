//! The registry: one line per model.

use std::marker::PhantomData;

use burn::tensor::Device;
use mdrec_data::rng::Rng;
use mdrec_nn::{ModelContext, SequenceEncoders};

use crate::model::{DynModel, Holder, Invalid, ModelError, Sequenced, Setting, ZooModel};

/// A model kind with its config erased to JSON.
pub trait ModelFactory: Sync {
    /// Registry key.
    fn name(&self) -> &'static str;
    /// Paper reference.
    fn paper(&self) -> &'static str;
    /// Default training setting.
    fn setting(&self) -> Setting;
    /// The default config as JSON.
    fn default_config(&self) -> serde_json::Value;
    /// The tiny (test) config as JSON.
    fn tiny_config(&self) -> serde_json::Value;
    /// Parse `overrides` over the defaults and return the resolved config (unknown keys are
    /// errors naming the key and the accepted ones).
    fn resolve(&self, overrides: &serde_json::Value) -> Result<serde_json::Value, ModelError>;
    /// The context a model of config `cfg` is built for: the schema's context `base` with the
    /// embedding sets the model asks for.
    fn context(
        &self,
        cfg: &serde_json::Value,
        base: &ModelContext,
    ) -> Result<ModelContext, ModelError>;
    /// Build from a resolved config and the context [`context`](Self::context) gave.
    fn build(
        &self,
        cfg: &serde_json::Value,
        ctx: &ModelContext,
        rng: &mut Rng,
        device: &Device,
    ) -> Result<Box<dyn DynModel>, ModelError>;
}

/// Registry entry for a [`ZooModel`].
pub struct Entry<M>(PhantomData<fn() -> M>);

impl<M> Entry<M> {
    /// The entry.
    pub const NEW: Self = Entry(PhantomData);
}

fn merge(base: &mut serde_json::Value, over: &serde_json::Value) {
    match (base, over) {
        (serde_json::Value::Object(b), serde_json::Value::Object(o)) => {
            for (k, v) in o {
                match b.get_mut(k) {
                    Some(slot) if slot.is_object() && v.is_object() => merge(slot, v),
                    _ => {
                        b.insert(k.clone(), v.clone());
                    }
                }
            }
        }
        (b, o) => *b = o.clone(),
    }
}

impl<M: ZooModel> Entry<M> {
    /// The model's [`Invalid`] as a [`ModelError`] naming the model.
    fn label(Invalid(message): Invalid) -> ModelError {
        ModelError::Invalid {
            model: M::NAME.to_string(),
            message,
        }
    }

    /// The typed config; a bad value's error names its key path (`heads.tower_dims: …`).
    fn parse(cfg: &serde_json::Value) -> Result<M::Config, ModelError> {
        serde_path_to_error::deserialize(cfg).map_err(|e| ModelError::Config {
            model: M::NAME.to_string(),
            message: match e.path().to_string().as_str() {
                "." => e.into_inner().to_string(),
                path => format!("{path}: {}", e.into_inner()),
            },
        })
    }
}

impl<M: ZooModel> ModelFactory for Entry<M> {
    fn name(&self) -> &'static str {
        M::NAME
    }
    fn paper(&self) -> &'static str {
        M::PAPER
    }
    fn setting(&self) -> Setting {
        M::SETTING
    }
    fn default_config(&self) -> serde_json::Value {
        serde_json::to_value(M::Config::default()).expect("config serialises")
    }
    fn tiny_config(&self) -> serde_json::Value {
        serde_json::to_value(M::tiny()).expect("config serialises")
    }
    fn resolve(&self, overrides: &serde_json::Value) -> Result<serde_json::Value, ModelError> {
        let mut v = self.default_config();
        merge(&mut v, overrides);
        let cfg = Self::parse(&v)?;
        M::validate(&cfg).map_err(Self::label)?;
        Ok(serde_json::to_value(cfg).expect("config serialises"))
    }
    fn context(
        &self,
        cfg: &serde_json::Value,
        base: &ModelContext,
    ) -> Result<ModelContext, ModelError> {
        let sets = M::embedding_sets(&Self::parse(cfg)?, base).map_err(Self::label)?;
        if sets.is_empty() {
            return Ok(base.clone());
        }
        base.with_sets(&sets).map_err(|m| Self::label(Invalid(m)))
    }
    fn build(
        &self,
        cfg: &serde_json::Value,
        ctx: &ModelContext,
        rng: &mut Rng,
        device: &Device,
    ) -> Result<Box<dyn DynModel>, ModelError> {
        let cfg = Self::parse(cfg)?;
        M::validate(&cfg).map_err(Self::label)?;
        if ctx.sequences.is_empty() {
            let m = M::build(&cfg, ctx, rng, device).map_err(Self::label)?;
            return Ok(Box::new(Holder { model: Some(m) }));
        }
        // the encoders (DIN draws its attention units), then the model on their inner context
        let seq = SequenceEncoders::new(ctx, rng, device).map_err(|m| Self::label(Invalid(m)))?;
        let inner = M::build(&cfg, seq.inner_context(), rng, device).map_err(Self::label)?;
        Ok(Box::new(Holder {
            model: Some(Sequenced { seq, inner }),
        }))
    }
}

/// Every model, one line each.
pub static MODELS: &[&dyn ModelFactory] = &[
    &Entry::<crate::backbone::mlp::MlpModel>::NEW,
    &Entry::<crate::multitask::shared_bottom::SharedBottom>::NEW,
    &Entry::<crate::multitask::mmoe::Mmoe>::NEW,
    &Entry::<crate::multitask::ple::Ple>::NEW,
    &Entry::<crate::multidomain::star::Star>::NEW,
    &Entry::<crate::multidomain::m3oe::M3oe>::NEW,
    &Entry::<crate::multidomain::pepnet::Epnet>::NEW,
    &Entry::<crate::multidomain::pepnet::Ppnet>::NEW,
    &Entry::<crate::multidomain::pepnet::Pepnet>::NEW,
    &Entry::<crate::multidomain::pepnet::EpnetS>::NEW,
    &Entry::<crate::multidomain::hinet::Hinet>::NEW,
    &Entry::<crate::multidomain::adasparse::AdaSparse>::NEW,
    &Entry::<crate::multidomain::m2m::M2m>::NEW,
    &Entry::<crate::multiembedding::crocodile::MeMmoe>::NEW,
    &Entry::<crate::multiembedding::crocodile::Crocodile>::NEW,
    &Entry::<crate::multiembedding::stem::StemNet>::NEW,
    &Entry::<crate::multiembedding::stem::MePle>::NEW,
    &Entry::<crate::multiembedding::stem::StemAl>::NEW,
    &Entry::<crate::multiembedding::ame::Ame>::NEW,
    &Entry::<crate::multiembedding::hmoe::Hmoe>::NEW,
    &Entry::<crate::backbone::deepfm::DeepFm>::NEW,
    &Entry::<crate::backbone::dcn::Dcn>::NEW,
    &Entry::<crate::backbone::dcnv2::Dcnv2>::NEW,
    &Entry::<crate::backbone::autoint::AutoInt>::NEW,
    &Entry::<crate::backbone::xdeepfm::XDeepFm>::NEW,
    &Entry::<crate::multitask::adatt::Adatt>::NEW,
    &Entry::<crate::multitask::adatt::AdattSp>::NEW,
    &Entry::<crate::multidomain::aread::Aread>::NEW,
];

/// Look a model up by name.
pub fn find(name: &str) -> Result<&'static dyn ModelFactory, ModelError> {
    MODELS
        .iter()
        .copied()
        .find(|m| m.name() == name)
        .ok_or_else(|| ModelError::Unknown {
            name: name.to_string(),
            available: MODELS
                .iter()
                .map(|m| m.name())
                .collect::<Vec<_>>()
                .join(", "),
        })
}

#[cfg(test)]
mod tests {
    use super::*;
    use mdrec_nn::device::cpu;

    #[test]
    fn config_errors_name_the_model_and_the_key() {
        let ctx = ModelContext::uniform(3, 10, 4, 0, 2, 2);
        let f = find("mmoe").unwrap();
        // A value the model rejects: the registry labels the model's `Invalid` with its name,
        // when the config is resolved (before any data) and again when a model is built.
        let err = f
            .resolve(&serde_json::json!({"num_experts": 0}))
            .expect_err("num_experts = 0 is rejected");
        let mut cfg = f.default_config();
        cfg["num_experts"] = serde_json::json!(0);
        let at_build = f
            .build(&cfg, &ctx, &mut Rng::new(1), &cpu())
            .err()
            .expect("num_experts = 0 is rejected");
        assert_eq!(err.to_string(), at_build.to_string());
        assert!(matches!(err, ModelError::Invalid { ref model, .. } if model == "mmoe"));
        assert!(err.to_string().starts_with("model `mmoe`: "), "{err}");
        // An unknown key, also inside the nested head config, names the key.
        for over in [
            serde_json::json!({"tower_dim": [4]}),
            serde_json::json!({"heads": {"tower_dim": [4]}}),
        ] {
            let err = f.resolve(&over).unwrap_err().to_string();
            assert!(err.contains("mmoe") && err.contains("tower_dim"), "{err}");
        }
    }

    #[test]
    fn nested_head_keys_merge_over_the_defaults() {
        let f = find("mmoe").unwrap();
        let cfg = f
            .resolve(&serde_json::json!({"heads": {"layout": "task"}}))
            .unwrap();
        assert_eq!(cfg["heads"]["layout"], "task");
        assert_eq!(cfg["heads"]["tower_dims"], serde_json::json!([32]));
    }
}
