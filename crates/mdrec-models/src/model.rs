//! The model contract.

use std::any::Any;
use std::collections::BTreeMap;

use burn::module::{Module, ModuleDisplay, ModuleMapper, ModuleVisitor, Param, ParamId};
use burn::optim::{GradientsParams, ModuleOptimizer};
use burn::tensor::{Device, Gradients, Tensor, TensorData};
use mdrec_data::rng::Rng;
use mdrec_nn::{EmbeddingSetSpec, ModelContext, ModelInput};

use crate::multidomain::aread::Aread;
use serde::de::DeserializeOwned;
use serde::Serialize;

/// What a forward pass returns.
#[derive(Debug, Clone)]
pub struct ModelOutput {
    /// Pre-sigmoid scores `[B, T]`: column `t` is task `t`, computed by the head of the row's
    /// domain where the model has per-domain heads.
    pub logits: Tensor<2>,
    /// Auxiliary loss added to the objective (e.g. a covariance loss), a scalar `[1]`.
    pub aux_loss: Option<Tensor<1>>,
}

impl From<Tensor<2>> for ModelOutput {
    /// Logits without an auxiliary loss.
    fn from(logits: Tensor<2>) -> Self {
        ModelOutput {
            logits,
            aux_loss: None,
        }
    }
}

/// A config that parses but does not fit the data (e.g. `num_experts = 0`, a field role the
/// schema lacks). Models return it from [`ZooModel::build`] and
/// [`ZooModel::embedding_sets`] without naming themselves; the registry turns it into
/// [`ModelError::Invalid`] labelled with the model's name.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct Invalid(pub String);

impl Invalid {
    /// An error with `message`.
    pub fn new(message: impl Into<String>) -> Self {
        Invalid(message.into())
    }
}

impl From<String> for Invalid {
    fn from(message: String) -> Self {
        Invalid(message)
    }
}

impl From<&str> for Invalid {
    fn from(message: &str) -> Self {
        Invalid(message.to_string())
    }
}

/// What [`ZooModel::build`] returns: the model or why its config does not fit the data.
pub type Built<M> = Result<M, Invalid>;

/// `Err(Invalid(message))` unless `ok`: one line per config check in a model's `build`.
pub fn ensure(ok: bool, message: impl Into<String>) -> Result<(), Invalid> {
    if ok {
        Ok(())
    } else {
        Err(Invalid(message.into()))
    }
}

/// What a training forward pass returns ([`RecModel::forward_train`]).
#[derive(Debug, Clone)]
pub struct TrainOutput {
    /// The ordinary output (logits for metrics, auxiliary loss).
    pub output: ModelOutput,
    /// The model's own per-element training loss `[B, T]`, used by the trainer **instead of**
    /// `BCE(output.logits, labels)`; the trainer's reduction weights and `aux_loss` still apply.
    /// `None` (every model but AREAD with masks): the trainer's BCE on the logits.
    pub element_loss: Option<Tensor<2>>,
}

/// The name of a probe: what a recorded tensor is. Its [`Display`](std::fmt::Display) form is
/// the name written to files (`utilisation.csv`, `experts.csv`) and the key of
/// [`Probes::values`]; models build the key, `mdrec analyze` matches on it.
///
/// | variant | name | recorded by |
/// |---|---|---|
/// | [`HeadGate`](Self::HeadGate) | `gate/<domain>/<task>` (`all` for a head of every domain) | the gated heads (MMoE-style heads, HiNet, M3oE, Crocodile, one-level PLE) |
/// | [`LevelGate`](Self::LevelGate) | `gate/<level>/<unit>` | PLE below its last level (`unit` = `<group>/<task>`), AdaTT (`unit` = a task, `<domain>/<task>` or `shared`) |
/// | [`DomainLevelGate`](Self::DomainLevelGate) | `gate/<domain>/l<level>` | AREAD's per-domain expert utilisation per level |
/// | [`Gate`](Self::Gate) | `gate/<name>` | STEM (`gate/<unit>`, `gate/aux<k>`) |
/// | [`Expert`](Self::Expert) | `expert/<k>` | experts of one shared pool (expert `k`) |
/// | [`GroupExpert`](Self::GroupExpert) | `expert/<group>/<k>` | experts of a group (STEM, AME: a unit or `shared`; AdaTT: `<level>/<unit>`) |
/// | [`Other`](Self::Other) | anything else | every other probe (`cross`, `view_gate/…`, `hemp/gate/…`) |
///
/// Levels are 1-based. [`FromStr`](std::str::FromStr) reads a name back so that
/// `key.to_string().parse()` displays as the same name; the variant it picks is a guess where
/// names overlap (`gate/1/click` is read as level 1 of unit `click`, never as the head of a
/// domain named `1`), which is why models build keys instead of strings.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum ProbeKey {
    /// Gate of the head of (`domain`, `task`); `domain` is `all` for a head of every domain.
    HeadGate {
        /// Domain name, or `all`.
        domain: String,
        /// Task name.
        task: String,
    },
    /// Gate of `unit` at extraction level `level` (1-based) of a stacked model.
    LevelGate {
        /// Level, 1-based.
        level: usize,
        /// The unit (may contain `/`, e.g. `d1/click`).
        unit: String,
    },
    /// AREAD: mean effective gate weights of `domain` at level `level` (1-based).
    DomainLevelGate {
        /// Domain name.
        domain: String,
        /// Level, 1-based.
        level: usize,
    },
    /// Any other gate, named by one segment.
    Gate(String),
    /// Output of expert `k` of the model's one shared pool.
    Expert(usize),
    /// Output of expert `index` of `group` (the group may contain `/`).
    GroupExpert {
        /// Group of experts.
        group: String,
        /// Index in the group.
        index: usize,
    },
    /// Any other probe, by its full name (never starting with `gate/` or `expert/`).
    Other(String),
}

impl ProbeKey {
    /// The gate of a head: `gate/<domain>/<task>`, `gate/all/<task>` when `domain` is `None`.
    pub fn head_gate(domain: Option<&str>, task: &str) -> Self {
        ProbeKey::HeadGate {
            domain: domain.unwrap_or("all").to_string(),
            task: task.to_string(),
        }
    }

    /// Any other probe (not a gate or expert output of the kinds above).
    pub fn other(name: impl Into<String>) -> Self {
        ProbeKey::Other(name.into())
    }

    /// For a gate, what it gates: the name after `gate/` (e.g. `d1/click`, `2/shared`).
    pub fn gated(&self) -> Option<String> {
        let s = self.to_string();
        match self {
            ProbeKey::HeadGate { .. }
            | ProbeKey::LevelGate { .. }
            | ProbeKey::DomainLevelGate { .. }
            | ProbeKey::Gate(_) => Some(s["gate/".len()..].to_string()),
            _ => None,
        }
    }

    /// Whether this is the output of an expert.
    pub fn is_expert(&self) -> bool {
        matches!(self, ProbeKey::Expert(_) | ProbeKey::GroupExpert { .. })
    }
}

impl std::fmt::Display for ProbeKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ProbeKey::HeadGate { domain, task } => write!(f, "gate/{domain}/{task}"),
            ProbeKey::LevelGate { level, unit } => write!(f, "gate/{level}/{unit}"),
            ProbeKey::DomainLevelGate { domain, level } => write!(f, "gate/{domain}/l{level}"),
            ProbeKey::Gate(name) => write!(f, "gate/{name}"),
            ProbeKey::Expert(k) => write!(f, "expert/{k}"),
            ProbeKey::GroupExpert { group, index } => write!(f, "expert/{group}/{index}"),
            ProbeKey::Other(name) => f.write_str(name),
        }
    }
}

/// `s` as a number that prints back as `s` (no sign, no leading zeros).
fn canonical_usize(s: &str) -> Option<usize> {
    s.parse::<usize>().ok().filter(|n| n.to_string() == s)
}

impl std::str::FromStr for ProbeKey {
    type Err = std::convert::Infallible;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let other = || ProbeKey::Other(s.to_string());
        if let Some(rest) = s.strip_prefix("gate/") {
            let segs: Vec<&str> = rest.split('/').collect();
            if segs.iter().any(|x| x.is_empty()) {
                return Ok(other());
            }
            let level_of = |x: &str| x.strip_prefix('l').and_then(canonical_usize);
            return Ok(match segs.as_slice() {
                [d, l] if level_of(l).is_some() => ProbeKey::DomainLevelGate {
                    domain: d.to_string(),
                    level: level_of(l).expect("checked"),
                },
                [l, ..] if segs.len() >= 2 && canonical_usize(l).is_some() => ProbeKey::LevelGate {
                    level: canonical_usize(l).expect("checked"),
                    unit: rest[l.len() + 1..].to_string(),
                },
                [d, t] => ProbeKey::HeadGate {
                    domain: d.to_string(),
                    task: t.to_string(),
                },
                [name] => ProbeKey::Gate(name.to_string()),
                _ => other(),
            });
        }
        if let Some(rest) = s.strip_prefix("expert/") {
            if let Some(k) = canonical_usize(rest) {
                return Ok(ProbeKey::Expert(k));
            }
            if let Some((group, k)) = rest.rsplit_once('/') {
                if let (false, Some(index)) = (group.is_empty(), canonical_usize(k)) {
                    return Ok(ProbeKey::GroupExpert {
                        group: group.to_string(),
                        index,
                    });
                }
            }
        }
        Ok(other())
    }
}

/// Named intermediate tensors (expert outputs, gate weights), e.g. `gate/d0/t1`.
#[derive(Debug, Clone, Default)]
pub struct Probes {
    enabled: bool,
    values: BTreeMap<String, Tensor<2>>,
    keys: BTreeMap<String, ProbeKey>,
}

impl Probes {
    /// Probes that record (`enabled`) or ignore everything.
    pub fn new(enabled: bool) -> Self {
        Probes {
            enabled,
            values: BTreeMap::new(),
            keys: BTreeMap::new(),
        }
    }

    /// Whether values are being recorded.
    pub fn enabled(&self) -> bool {
        self.enabled
    }

    /// Record `value` under `key` when enabled (the closures are not run otherwise).
    pub fn record(&mut self, key: impl FnOnce() -> ProbeKey, value: impl FnOnce() -> Tensor<2>) {
        if self.enabled {
            let key = key();
            let name = key.to_string();
            debug_assert!(
                !matches!(&key, ProbeKey::Other(_))
                    || !(name.starts_with("gate/") || name.starts_with("expert/")),
                "probe `{name}`: gates and experts need their own ProbeKey variant"
            );
            self.values.insert(name.clone(), value().detach());
            self.keys.insert(name, key);
        }
    }

    /// Recorded values by name ([`ProbeKey`]'s display form).
    pub fn values(&self) -> &BTreeMap<String, Tensor<2>> {
        &self.values
    }

    /// Recorded values with their keys, in name order.
    pub fn entries(&self) -> impl Iterator<Item = (&ProbeKey, &Tensor<2>)> {
        self.keys.values().zip(self.values.values())
    }
}

#[cfg(test)]
mod probe_key_tests {
    use super::ProbeKey;

    #[test]
    fn probe_keys_print_the_names_analyses_read_and_parse_back() {
        let cases = [
            (ProbeKey::head_gate(Some("d1"), "click"), "gate/d1/click"),
            (ProbeKey::head_gate(None, "click"), "gate/all/click"),
            (
                ProbeKey::LevelGate {
                    level: 2,
                    unit: "d1/click".into(),
                },
                "gate/2/d1/click",
            ),
            (
                ProbeKey::LevelGate {
                    level: 1,
                    unit: "shared".into(),
                },
                "gate/1/shared",
            ),
            (
                ProbeKey::DomainLevelGate {
                    domain: "d0".into(),
                    level: 3,
                },
                "gate/d0/l3",
            ),
            (ProbeKey::Gate("aux0".into()), "gate/aux0"),
            (ProbeKey::Gate("0".into()), "gate/0"),
            (ProbeKey::Expert(4), "expert/4"),
            (
                ProbeKey::GroupExpert {
                    group: "2/shared".into(),
                    index: 0,
                },
                "expert/2/shared/0",
            ),
            (ProbeKey::other("hemp/gate/l2/d0"), "hemp/gate/l2/d0"),
            (ProbeKey::other("cross"), "cross"),
        ];
        for (key, name) in cases {
            assert_eq!(key.to_string(), name);
            assert_eq!(name.parse::<ProbeKey>().unwrap(), key, "{name}");
        }
        // Names that fit no variant stay whole; every name prints back as itself.
        for name in [
            "gate/",
            "gate//x",
            "expert/a",
            "expert/01",
            "gate/d0/l01",
            "x/y",
        ] {
            let k: ProbeKey = name.parse().unwrap();
            assert_eq!(k.to_string(), name);
        }
        assert_eq!(
            "gate/2/d1/click".parse::<ProbeKey>().unwrap().gated(),
            Some("2/d1/click".into())
        );
        assert!("expert/x/1".parse::<ProbeKey>().unwrap().is_expert());
        assert_eq!(ProbeKey::other("cross").gated(), None);
    }
}

/// How a model is trained on multi-domain multi-task data.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Setting {
    /// One model for every domain and task (`-MDMT`).
    Mdmt,
    /// One multi-task model per domain, trained on that domain's rows (`-MTL` in M3oE Table 2).
    Mtl,
    /// One multi-domain model per task (`-MDL` in M3oE Table 2).
    Mdl,
    /// One model per (domain, task) cell, trained on that cell's data only ("Isolated").
    Isolated,
}

/// Errors of building or loading a model.
#[derive(Debug, thiserror::Error)]
pub enum ModelError {
    /// No model of that name.
    #[error("unknown model `{name}`; available: {available}")]
    Unknown {
        /// Requested name.
        name: String,
        /// Comma-separated registry names.
        available: String,
    },
    /// The model config does not parse (unknown key, wrong type).
    #[error("model `{model}`: invalid config: {message}")]
    Config {
        /// Model name.
        model: String,
        /// serde's message (names the key and the accepted ones).
        message: String,
    },
    /// The config parses but is not usable with this data.
    #[error("model `{model}`: {message}")]
    Invalid {
        /// Model name.
        model: String,
        /// What is wrong.
        message: String,
    },
    /// A checkpoint does not match the model.
    #[error("checkpoint: {0}")]
    Checkpoint(String),
}

/// The forward pass every model implements.
pub trait RecModel: Module + ModuleDisplay + Send + 'static {
    /// Logits for every row and task; named intermediate values go to `probes` when
    /// `probes.enabled()`.
    ///
    /// Training vs inference behaviour (dropout, batch statistics) follows the device of the
    /// input: autodiff means training.
    fn forward(&self, ctx: &ModelContext, input: &ModelInput, probes: &mut Probes) -> ModelOutput;

    /// Learned values worth reporting (e.g. M3oE's fusion weights); `null` by default. Written
    /// to `report.json` as `model_report`.
    fn report(&self) -> serde_json::Value {
        serde_json::Value::Null
    }

    /// The forward pass of a training step, given the batch's labels `[B, T]`.
    ///
    /// A model whose objective is not BCE on its logits (AREAD's bagging loss: the mean BCE of
    /// several output heads, while the prediction is the logit of their mean probability)
    /// returns its per-element loss in [`TrainOutput::element_loss`]. The default is
    /// [`forward`](Self::forward) with no element loss, so the trainer's numbers for every other
    /// model are unchanged.
    fn forward_train(
        &self,
        ctx: &ModelContext,
        input: &ModelInput,
        labels: &Tensor<2>,
        probes: &mut Probes,
    ) -> TrainOutput {
        let _ = labels;
        TrainOutput {
            output: self.forward(ctx, input, probes),
            element_loss: None,
        }
    }

    /// Parameters trained only by an outer (bi-level) step, e.g. M3oE's fusion weights in
    /// `automl = "bilevel"`. The main optimizer never updates them ([`DynModel::step`] drops
    /// their gradients); the trainer updates them once per epoch with [`DynModel::outer_step`].
    /// Empty by default: every parameter belongs to the main optimizer.
    fn outer_params(&self) -> Vec<ParamId> {
        Vec::new()
    }

    /// The schedule hook: the model itself when it trains under AREAD's HEMP schedule
    /// (`mdrec-train/src/hemp.rs`), which needs its masks and hyper-parameters; `None` (the
    /// default) for a model trained by the plain batch loop.
    fn hemp(&self) -> Option<&Aread> {
        None
    }

    /// Mutable [`hemp`](Self::hemp).
    fn hemp_mut(&mut self) -> Option<&mut Aread> {
        None
    }
}

/// A model's config: defaults from [`Default`], a tiny form for tests.
pub trait ModelConfig: Serialize + DeserializeOwned + Default + Clone + std::fmt::Debug {
    /// A config small enough for the conformance test to run in milliseconds.
    fn tiny() -> Self;
}

/// The compile-time side of a zoo model; the registry erases it.
pub trait ZooModel: RecModel + Sized {
    /// Registry key, config key, checkpoint prefix and report label, e.g. `mmoe`.
    const NAME: &'static str;
    /// Paper reference.
    const PAPER: &'static str;
    /// The training setting used unless the user chooses another.
    const SETTING: Setting = Setting::Mdmt;
    /// Typed config; `#[serde(deny_unknown_fields, default)]` (see `model_config!`).
    type Config: ModelConfig;
    /// The tiny config ([`ModelConfig::tiny`]).
    fn tiny() -> Self::Config {
        Self::Config::tiny()
    }
    /// Extra embedding sets the model reads (multi-embedding models); none by default. The
    /// engine serves them from the embedding store next to the schema's fields (see
    /// [`mdrec_nn::input`]); `ctx` is the schema's context.
    fn embedding_sets(
        _cfg: &Self::Config,
        _ctx: &ModelContext,
    ) -> Result<Vec<EmbeddingSetSpec>, Invalid> {
        Ok(Vec::new())
    }
    /// Checks that need only the config (widths, counts, rates); they run when the run config
    /// is resolved, before any data is read. Checks that need the data (field or domain
    /// counts) belong in [`build`](Self::build).
    fn validate(_cfg: &Self::Config) -> Result<(), Invalid> {
        Ok(())
    }
    /// Build the model for `ctx`, drawing every initial value from `rng`. `cfg` has passed
    /// [`validate`](Self::validate).
    fn build(cfg: &Self::Config, ctx: &ModelContext, rng: &mut Rng, device: &Device)
        -> Built<Self>;
}

/// A built model behind a trait object: what the trainer, evaluator and CLI hold.
pub trait DynModel: Send {
    /// See [`RecModel::forward`].
    fn forward(&self, ctx: &ModelContext, input: &ModelInput, probes: &mut Probes) -> ModelOutput;
    /// See [`RecModel::forward_train`].
    fn forward_train(
        &self,
        ctx: &ModelContext,
        input: &ModelInput,
        labels: &Tensor<2>,
        probes: &mut Probes,
    ) -> TrainOutput;
    /// See [`RecModel::hemp`].
    fn hemp(&self) -> Option<&Aread>;
    /// See [`RecModel::hemp_mut`].
    fn hemp_mut(&mut self) -> Option<&mut Aread>;
    /// An exact copy of the model's state: every parameter (same ids, so optimizer state stays
    /// attached) and every buffer (BatchNorm running statistics, AREAD's masks).
    fn save_state(&self) -> ModelState;
    /// Restore a [`save_state`](Self::save_state) of this model bit for bit. Parameters whose
    /// id is in `keep` keep their current value (AREAD's `snapshot = "code"`).
    fn restore_state(&mut self, state: &ModelState, keep: &[ParamId]);
    /// Apply one optimizer step with the gradients of this model's parameters, except the
    /// [outer parameters](RecModel::outer_params), which it leaves unchanged (no gradient, no
    /// weight decay, no optimizer state).
    fn step(&mut self, optim: &mut ModuleOptimizer, lr: f64, grads: &mut Gradients);
    /// See [`RecModel::outer_params`].
    fn outer_params(&self) -> Vec<ParamId>;
    /// Sum the dense gradients in `grads` over a process group (data-parallel training):
    /// `extra` (e.g. the loss), then every trainable parameter's presence flag and gradient
    /// (zeros where this process has none) are packed into one buffer in module order, `sum`
    /// reduces it across the group, and the sums replace the local gradients. A parameter no
    /// process has a gradient for keeps none, so it gets no optimizer step, as in one process.
    fn sum_grads(&self, grads: &mut Gradients, extra: &mut [f32], sum: &mut dyn FnMut(&mut [f32]));
    /// Apply one optimizer step to the [outer parameters](RecModel::outer_params) only; every
    /// other parameter is left unchanged. A no-op for a model without outer parameters.
    fn outer_step(&mut self, optim: &mut ModuleOptimizer, lr: f64, grads: &mut Gradients);
    /// A copy for inference: no autodiff, training-only behaviour off.
    fn valid(&self) -> Box<dyn DynModel>;
    /// Number of dense parameters.
    fn num_params(&self) -> usize;
    /// See [`RecModel::report`].
    fn report(&self) -> serde_json::Value;
    /// Every float parameter and buffer with a PyTorch-style dotted name, shape and values.
    fn named_tensors(&self) -> Vec<(String, Vec<usize>, Vec<f32>)>;
    /// Replace parameters by name; every parameter must be present with its shape.
    fn load_named(
        &mut self,
        tensors: &BTreeMap<String, (Vec<usize>, Vec<f32>)>,
    ) -> Result<(), ModelError>;
    /// Every trainable parameter's dotted name (as [`named_tensors`](Self::named_tensors)) and id.
    /// burn keys optimizer state by id, and ids are drawn anew when a model is built, so a
    /// checkpoint saves them with the names.
    fn param_ids(&self) -> Vec<(String, u64)>;
    /// Give each parameter named in `ids` that id (resuming: the saved optimizer state then
    /// finds its parameters). Names not in `ids` keep theirs.
    fn set_param_ids(&mut self, ids: &BTreeMap<String, u64>);
}

/// Dotted names and ids of every float parameter.
struct NamedIds {
    path: Vec<String>,
    out: Vec<(String, u64)>,
}

impl ModuleVisitor for NamedIds {
    fn enter_module(&mut self, name: &str, _container_type: &str) {
        self.path.push(name.to_string());
    }
    fn exit_module(&mut self, _name: &str, _container_type: &str) {
        self.path.pop();
    }
    fn visit_float<const D: usize>(&mut self, param: &Param<Tensor<D>>) {
        // buffers (BatchNorm statistics) have no optimizer state
        if param.val().is_require_grad() {
            self.out.push((self.path.join("."), param.id.val()));
        }
    }
}

/// Re-ids parameters by dotted name.
struct ReId<'a> {
    path: Vec<String>,
    ids: &'a BTreeMap<String, u64>,
}

impl ModuleMapper for ReId<'_> {
    fn enter_module(&mut self, name: &str, _container_type: &str) {
        self.path.push(name.to_string());
    }
    fn exit_module(&mut self, _name: &str, _container_type: &str) {
        self.path.pop();
    }
    fn map_float<const D: usize>(&mut self, param: Param<Tensor<D>>) -> Param<Tensor<D>> {
        match self.ids.get(&self.path.join(".")) {
            Some(&id) => {
                let (_, value, mapper) = param.consume();
                Param::from_mapped_value(ParamId::from(id), value, mapper)
            }
            None => param,
        }
    }
}

/// A saved model state ([`DynModel::save_state`]): an opaque copy of the model plus its
/// buffers by id.
pub struct ModelState {
    model: Box<dyn Any + Send>,
    buffers: Vec<(ParamId, TensorData)>,
}

/// Host copies of float tensors by id: the buffers (no gradient) or the parameters in `keep`.
struct Copies<'a> {
    keep: Option<&'a [ParamId]>,
    out: Vec<(ParamId, TensorData)>,
}

impl ModuleVisitor for Copies<'_> {
    fn visit_float<const D: usize>(&mut self, param: &Param<Tensor<D>>) {
        let t = param.val();
        let wanted = match self.keep {
            None => !t.is_require_grad(),
            Some(keep) => keep.contains(&param.id),
        };
        if wanted {
            self.out.push((param.id, t.into_data()));
        }
    }
}

/// Writes host copies back by id: as buffers (no gradient) or as trainable parameters.
struct WriteBack<'a> {
    values: &'a [(ParamId, TensorData)],
    trainable: bool,
}

impl ModuleMapper for WriteBack<'_> {
    fn map_float<const D: usize>(&mut self, param: Param<Tensor<D>>) -> Param<Tensor<D>> {
        let Some((_, v)) = self.values.iter().find(|(id, _)| *id == param.id) else {
            return param;
        };
        let device = param.val().device();
        let t = Tensor::<D>::from_data(v.clone(), &device);
        if self.trainable {
            param.map(|_| t.require_grad())
        } else {
            Param::initialized(param.id, t).set_require_grad(false)
        }
    }
}

/// Holds a concrete model for [`DynModel`].
pub(crate) struct Holder<M: RecModel> {
    pub(crate) model: Option<M>,
}

impl<M: RecModel> Holder<M> {
    fn m(&self) -> &M {
        self.model.as_ref().expect("model present between steps")
    }
}

struct Collect {
    path: Vec<String>,
    out: Vec<(String, Vec<usize>, Vec<f32>)>,
}

impl ModuleVisitor for Collect {
    fn enter_module(&mut self, name: &str, _container_type: &str) {
        self.path.push(name.to_string());
    }
    fn exit_module(&mut self, _name: &str, _container_type: &str) {
        self.path.pop();
    }
    fn visit_float<const D: usize>(&mut self, param: &Param<Tensor<D>>) {
        let t = param.val();
        let shape = t.dims().to_vec();
        let values = t.into_data().try_to_vec::<f32>().expect("f32 tensor");
        self.out.push((self.path.join("."), shape, values));
    }
}

/// Every float parameter id, in visiting order.
struct Ids(Vec<ParamId>);

/// Packs every trainable parameter's gradient into one buffer after a presence flag (1 when
/// this process has the gradient, else 0 and zeros), removing it from `grads`.
struct PackGrads<'a> {
    grads: &'a mut Gradients,
    buf: Vec<f32>,
}

impl ModuleVisitor for PackGrads<'_> {
    fn visit_float<const D: usize>(&mut self, param: &Param<Tensor<D>>) {
        let t = param.val();
        if !t.is_require_grad() {
            return;
        }
        let n = t.shape().num_elements();
        match t.grad_remove(self.grads) {
            Some(g) => {
                self.buf.push(1.0);
                let v = g.into_data().convert::<f32>();
                self.buf
                    .extend_from_slice(v.as_slice::<f32>().expect("f32 gradient"));
            }
            None => {
                self.buf.push(0.0);
                self.buf.resize(self.buf.len() + n, 0.0);
            }
        }
    }
}

/// The inverse of [`PackGrads`] over the summed buffer: a parameter whose summed presence
/// flag is positive gets the summed gradient.
struct UnpackGrads<'a> {
    grads: &'a mut Gradients,
    buf: &'a [f32],
    at: usize,
}

impl ModuleVisitor for UnpackGrads<'_> {
    fn visit_float<const D: usize>(&mut self, param: &Param<Tensor<D>>) {
        let t = param.val();
        if !t.is_require_grad() {
            return;
        }
        let shape = t.shape();
        let n = shape.num_elements();
        let present = self.buf[self.at] > 0.0;
        let values = &self.buf[self.at + 1..self.at + 1 + n];
        self.at += 1 + n;
        if present {
            let device = t.device().without_autodiff();
            let g = Tensor::<D>::from_data(TensorData::new(values.to_vec(), shape), &device);
            t.grad_replace(self.grads, g);
        }
    }
}

impl ModuleVisitor for Ids {
    fn visit_float<const D: usize>(&mut self, param: &Param<Tensor<D>>) {
        self.0.push(param.id);
    }
}

struct Load<'a> {
    path: Vec<String>,
    tensors: &'a BTreeMap<String, (Vec<usize>, Vec<f32>)>,
    errors: Vec<String>,
    loaded: usize,
}

impl ModuleMapper for Load<'_> {
    fn enter_module(&mut self, name: &str, _container_type: &str) {
        self.path.push(name.to_string());
    }
    fn exit_module(&mut self, _name: &str, _container_type: &str) {
        self.path.pop();
    }
    fn map_float<const D: usize>(&mut self, param: Param<Tensor<D>>) -> Param<Tensor<D>> {
        let name = self.path.join(".");
        let want = param.val().dims().to_vec();
        match self.tensors.get(&name) {
            None => {
                self.errors.push(format!("missing tensor `{name}`"));
                param
            }
            Some((shape, values))
                if *shape != want || values.len() != want.iter().product::<usize>() =>
            {
                self.errors.push(format!(
                    "tensor `{name}` has shape {shape:?}, model expects {want:?}"
                ));
                param
            }
            Some((_, values)) => {
                self.loaded += 1;
                let device = param.val().device();
                let mut dims = [0usize; D];
                dims.copy_from_slice(&want);
                let t = Tensor::<D>::from_data(TensorData::new(values.clone(), dims), &device);
                // a trainable parameter stays trainable (resuming a run loads into a training
                // model); buffers and inference models have no gradient
                param.map(|old| {
                    if old.is_require_grad() {
                        t.require_grad()
                    } else {
                        t
                    }
                })
            }
        }
    }
}

impl<M: RecModel> DynModel for Holder<M> {
    fn forward(&self, ctx: &ModelContext, input: &ModelInput, probes: &mut Probes) -> ModelOutput {
        self.m().forward(ctx, input, probes)
    }

    fn forward_train(
        &self,
        ctx: &ModelContext,
        input: &ModelInput,
        labels: &Tensor<2>,
        probes: &mut Probes,
    ) -> TrainOutput {
        self.m().forward_train(ctx, input, labels, probes)
    }

    fn hemp(&self) -> Option<&Aread> {
        self.m().hemp()
    }

    fn hemp_mut(&mut self) -> Option<&mut Aread> {
        self.model
            .as_mut()
            .expect("model present between steps")
            .hemp_mut()
    }

    fn save_state(&self) -> ModelState {
        // `valid()` folds pending running-state updates into their values (burn keeps them per
        // thread until then); the buffers are then read by id.
        drop(self.m().valid());
        let mut b = Copies {
            keep: None,
            out: Vec::new(),
        };
        self.m().visit(&mut b);
        ModelState {
            model: Box::new(self.m().clone()),
            buffers: b.out,
        }
    }

    fn restore_state(&mut self, state: &ModelState, keep: &[ParamId]) {
        let saved = state
            .model
            .downcast_ref::<M>()
            .expect("a state saved from this model");
        let live = self.model.take().expect("model present between steps");
        // Fold pending running-state updates first, so they cannot overwrite the restored
        // values at the next update.
        drop(live.valid());
        let mut kept = Copies {
            keep: Some(keep),
            out: Vec::new(),
        };
        if !keep.is_empty() {
            live.visit(&mut kept);
        }
        drop(live);
        // Parameters: the saved copy (tensors are immutable, so the copy is exact and keeps
        // the ids and the gradient requirement). Buffers: running states are shared between
        // copies, so their saved values are written back.
        let mut model = saved.clone().map(&mut WriteBack {
            values: &state.buffers,
            trainable: false,
        });
        if !kept.out.is_empty() {
            model = model.map(&mut WriteBack {
                values: &kept.out,
                trainable: true,
            });
        }
        self.model = Some(model);
    }

    fn step(&mut self, optim: &mut ModuleOptimizer, lr: f64, grads: &mut Gradients) {
        let model = self.model.take().expect("model present between steps");
        let outer = model.outer_params();
        let gp = if outer.is_empty() {
            GradientsParams::from_module(grads, &model)
        } else {
            let mut ids = Ids(Vec::new());
            model.visit(&mut ids);
            let main: Vec<ParamId> = ids.0.into_iter().filter(|id| !outer.contains(id)).collect();
            GradientsParams::from_params(grads, &model, &main)
        };
        self.model = Some(optim.step(lr, model, gp));
    }

    fn outer_params(&self) -> Vec<ParamId> {
        self.m().outer_params()
    }

    fn sum_grads(&self, grads: &mut Gradients, extra: &mut [f32], sum: &mut dyn FnMut(&mut [f32])) {
        // extra, then per parameter tensor a flag and its values (a few hundred tensors at most)
        let mut buf = Vec::with_capacity(extra.len() + self.num_params() + 256);
        buf.extend_from_slice(extra);
        let mut pack = PackGrads { grads, buf };
        self.m().visit(&mut pack);
        let mut buf = pack.buf;
        sum(&mut buf);
        extra.copy_from_slice(&buf[..extra.len()]);
        let mut unpack = UnpackGrads {
            grads,
            buf: &buf,
            at: extra.len(),
        };
        self.m().visit(&mut unpack);
    }

    fn outer_step(&mut self, optim: &mut ModuleOptimizer, lr: f64, grads: &mut Gradients) {
        let model = self.model.take().expect("model present between steps");
        let outer = model.outer_params();
        self.model = Some(if outer.is_empty() {
            model
        } else {
            let gp = GradientsParams::from_params(grads, &model, &outer);
            optim.step(lr, model, gp)
        });
    }

    fn valid(&self) -> Box<dyn DynModel> {
        Box::new(Holder {
            model: Some(self.m().valid()),
        })
    }

    fn num_params(&self) -> usize {
        Module::num_params(self.m())
    }

    fn report(&self) -> serde_json::Value {
        self.m().report()
    }

    fn named_tensors(&self) -> Vec<(String, Vec<usize>, Vec<f32>)> {
        // Fold pending running-state updates (burn keeps them per thread until a sync) so the
        // BatchNorm statistics read are the current ones.
        drop(self.m().valid());
        let mut c = Collect {
            path: Vec::new(),
            out: Vec::new(),
        };
        self.m().visit(&mut c);
        c.out
    }

    fn load_named(
        &mut self,
        tensors: &BTreeMap<String, (Vec<usize>, Vec<f32>)>,
    ) -> Result<(), ModelError> {
        let model = self.model.take().expect("model present");
        let mut l = Load {
            path: Vec::new(),
            tensors,
            errors: Vec::new(),
            loaded: 0,
        };
        let model = model.map(&mut l);
        self.model = Some(model);
        if !l.errors.is_empty() {
            return Err(ModelError::Checkpoint(l.errors.join("; ")));
        }
        Ok(())
    }

    fn param_ids(&self) -> Vec<(String, u64)> {
        let mut v = NamedIds {
            path: Vec::new(),
            out: Vec::new(),
        };
        self.m().visit(&mut v);
        v.out
    }

    fn set_param_ids(&mut self, ids: &BTreeMap<String, u64>) {
        let model = self.model.take().expect("model present");
        self.model = Some(model.map(&mut ReId {
            path: Vec::new(),
            ids,
        }));
    }
}

/// A model config: the struct with its fields, their docs, their defaults and their tiny (test)
/// values in one place.
///
/// ```ignore
/// model_config! {
///     /// Config of [`Mmoe`].
///     pub struct Config {
///         /// Number of shared experts.
///         num_experts: usize = 4 => 2,
///         /// Gate form.
///         gate: GateKind = GateKind::Linear,
///     }
/// }
/// ```
///
/// gives `pub struct Config { pub num_experts: usize, pub gate: GateKind }` with `Debug, Clone,
/// Serialize, Deserialize`, `#[serde(deny_unknown_fields, default)]` (unknown keys are errors
/// naming the key; missing keys take their default), the `Default` impl with the values after
/// `=` and a [`ModelConfig`] impl whose `tiny()` is the default with the values after `=>`.
macro_rules! model_config {
    (
        $(#[$meta:meta])*
        pub struct $name:ident {
            $(
                $(#[$fmeta:meta])*
                $field:ident: $ty:ty = $default:expr $(=> $tiny:expr)?
            ),* $(,)?
        }
    ) => {
        $(#[$meta])*
        #[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
        #[serde(deny_unknown_fields, default)]
        pub struct $name {
            $(
                $(#[$fmeta])*
                pub $field: $ty,
            )*
        }

        impl Default for $name {
            fn default() -> Self {
                $name {
                    $($field: $default,)*
                }
            }
        }

        impl $crate::model::ModelConfig for $name {
            #[allow(clippy::needless_update)]
            fn tiny() -> Self {
                $name {
                    $($($field: $tiny,)?)*
                    ..Self::default()
                }
            }
        }
    };
}
pub(crate) use model_config;

/// A zoo entry that is an existing model's code under another name with other defaults (e.g.
/// ME-MMoE = Crocodile's code without its gate and loss): a newtype around the model and one
/// around its config, whose `Default` is the variant's.
///
/// `$build(&cfg, ctx, rng, device)` builds the inner model; `$sets(&cfg, ctx)` gives its
/// embedding sets.
macro_rules! zoo_variant {
    (
        $(#[$doc:meta])*
        $model:ident($inner:ty), $(#[$cdoc:meta])* $config:ident($inner_cfg:ty),
        name = $name:literal, paper = $paper:literal,
        default = $default:expr, tiny = $tiny:expr,
        build = $build:path, sets = $sets:path $(,)?
    ) => {
        $(#[$doc])*
        #[derive(burn::module::Module, Debug)]
        pub struct $model {
            inner: $inner,
        }

        $(#[$cdoc])*
        #[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
        #[serde(transparent)]
        pub struct $config(pub $inner_cfg);

        impl Default for $config {
            fn default() -> Self {
                $config($default)
            }
        }

        impl $crate::model::ModelConfig for $config {
            fn tiny() -> Self {
                $config($tiny)
            }
        }

        impl $crate::model::RecModel for $model {
            fn forward(
                &self,
                ctx: &mdrec_nn::ModelContext,
                input: &mdrec_nn::ModelInput,
                probes: &mut $crate::model::Probes,
            ) -> $crate::model::ModelOutput {
                self.inner.forward(ctx, input, probes)
            }
            fn report(&self) -> serde_json::Value {
                self.inner.report()
            }
        }

        impl $crate::model::ZooModel for $model {
            const NAME: &'static str = $name;
            const PAPER: &'static str = $paper;
            type Config = $config;

            fn embedding_sets(
                cfg: &$config,
                ctx: &mdrec_nn::ModelContext,
            ) -> Result<Vec<mdrec_nn::EmbeddingSetSpec>, $crate::model::Invalid> {
                $sets(&cfg.0, ctx)
            }

            fn build(
                cfg: &$config,
                ctx: &mdrec_nn::ModelContext,
                rng: &mut mdrec_data::rng::Rng,
                device: &burn::tensor::Device,
            ) -> Result<Self, $crate::model::Invalid> {
                Ok($model {
                    inner: $build(&cfg.0, ctx, rng, device)?,
                })
            }
        }
    };
}
pub(crate) use zoo_variant;

/// A model behind the input layer's sequence encoders ([`mdrec_nn::SequenceEncoders`]): the
/// registry wraps every model this way when the data has sequence fields, so each model gets
/// them without code of its own. The model is built for, and receives, the encoders' inner
/// context; its parameters are named `inner.…`, the encoders' `seq.…`.
#[derive(Module, Debug)]
pub struct Sequenced<M: RecModel> {
    /// The encoders.
    pub seq: mdrec_nn::SequenceEncoders,
    /// The model.
    pub inner: M,
}

impl<M: RecModel> RecModel for Sequenced<M> {
    fn forward(&self, _ctx: &ModelContext, input: &ModelInput, probes: &mut Probes) -> ModelOutput {
        let x = self.seq.encode(input);
        self.inner.forward(self.seq.inner_context(), &x, probes)
    }

    fn report(&self) -> serde_json::Value {
        self.inner.report()
    }

    fn forward_train(
        &self,
        _ctx: &ModelContext,
        input: &ModelInput,
        labels: &Tensor<2>,
        probes: &mut Probes,
    ) -> TrainOutput {
        let x = self.seq.encode(input);
        self.inner
            .forward_train(self.seq.inner_context(), &x, labels, probes)
    }

    fn outer_params(&self) -> Vec<ParamId> {
        self.inner.outer_params()
    }

    fn hemp(&self) -> Option<&Aread> {
        self.inner.hemp()
    }

    fn hemp_mut(&mut self) -> Option<&mut Aread> {
        self.inner.hemp_mut()
    }
}
