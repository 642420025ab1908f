//! The scoring commands: `mdrec data export` (a split's raw records as CSV), `mdrec predict`
//! (score a CSV or Parquet file of raw records with a trained run, in bounded memory) and the predictions file
//! of `mdrec eval --predictions`.

use std::io::Write;
use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};
use mdrec_data::{ExportSplit, RecordChunks};
use mdrec_train::{probability, write_predictions, RunConfig, RunScorer, Scored};

/// Writes to `path` through a temporary file renamed into place on success, so that a failed
/// run never leaves a partial file under the final name.
pub struct AtomicFile {
    tmp: PathBuf,
    path: PathBuf,
    w: std::io::BufWriter<std::fs::File>,
}

impl AtomicFile {
    /// Starts writing `path`.
    pub fn create(path: &Path) -> Result<Self> {
        let mut name = path.file_name().unwrap_or_default().to_os_string();
        name.push(".partial");
        let tmp = path.with_file_name(name);
        let f =
            std::fs::File::create(&tmp).with_context(|| format!("creating {}", tmp.display()))?;
        Ok(AtomicFile {
            tmp,
            path: path.to_path_buf(),
            w: std::io::BufWriter::new(f),
        })
    }

    /// The writer.
    pub fn writer(&mut self) -> &mut dyn Write {
        &mut self.w
    }

    /// Flushes and renames the file into place.
    pub fn commit(mut self) -> Result<()> {
        self.w
            .flush()
            .with_context(|| format!("writing {}", self.tmp.display()))?;
        std::fs::rename(&self.tmp, &self.path)
            .with_context(|| format!("renaming {} to {}", self.tmp.display(), self.path.display()))
    }
}

impl Drop for AtomicFile {
    fn drop(&mut self) {
        // after a successful commit the temporary name no longer exists
        let _ = std::fs::remove_file(&self.tmp);
    }
}

/// `mdrec data export`.
pub fn cmd_export(cfg: &RunConfig, split: ExportSplit, out: &Path) -> Result<()> {
    let n = mdrec_data::export_split(&cfg.dataset, cfg.train.seed, split, out)?;
    eprintln!(
        "wrote {n} {split} rows of {} to {}",
        cfg.dataset.name,
        out.display()
    );
    Ok(())
}

/// `mdrec predict`: rows are read `chunk_rows` at a time, so memory is bounded by one chunk
/// (its raw strings, encoded columns and probabilities), whatever the input's length.
/// The exploration columns `mdrec predict` adds.
#[derive(Debug, Clone, Copy, Default)]
pub struct Exploration {
    /// `<task>_var`: logit variances.
    pub variance: bool,
    /// `<task>_ts`: Thompson samples with this seed.
    pub thompson: Option<u64>,
}

/// `mdrec uncertainty`: fits the last-layer Laplace approximation of a run on its training
/// rows and writes the run's `uncertainty.safetensors`.
pub fn cmd_uncertainty(run: &Path, prior_precision: f64) -> Result<()> {
    use mdrec_train::uncertainty::{Posterior, FILE};
    let loaded =
        mdrec_train::load_run(run).with_context(|| format!("loading run {}", run.display()))?;
    let t = &loaded.trained;
    let post = Posterior::fit(
        t,
        &loaded.prepared.train,
        prior_precision,
        &loaded.prepared.schema.hash,
        t.cfg.train.eval_batch_size,
    )?;
    let path = run.join(FILE);
    post.save(&path)?;
    for h in &post.heads {
        let diag = (0..h.cov.nrows()).map(|i| h.cov[(i, i)]).sum::<f64>() / h.cov.nrows() as f64;
        eprintln!(
            "tower {} output {} (task {}, {}): {} training rows, width {}, mean posterior variance per weight {diag:.3e}",
            h.tower,
            h.col,
            t.ctx.tasks.get(h.task).map_or("?", String::as_str),
            h.domain
                .and_then(|d| t.ctx.domains.get(d))
                .map_or("all rows", String::as_str),
            h.rows,
            h.cov.nrows() - 1,
        );
    }
    eprintln!(
        "wrote {} ({} heads, prior precision {prior_precision})",
        path.display(),
        post.heads.len()
    );
    Ok(())
}

/// `mdrec replay`: the seeded exploration replay of [`mdrec_train::uncertainty::replay`] on a
/// run's test split, printed as a Markdown table.
pub fn cmd_replay(
    run: &Path,
    task: Option<&str>,
    item_field: &str,
    cold_max: usize,
    opt: mdrec_train::uncertainty::ReplayOptions,
) -> Result<()> {
    use mdrec_train::uncertainty::{replay, Candidate, Posterior};
    let loaded =
        mdrec_train::load_run(run).with_context(|| format!("loading run {}", run.display()))?;
    let (t, prep) = (&loaded.trained, &loaded.prepared);
    let post = Posterior::load(run, &prep.schema.hash)?;
    let ctx = &t.ctx;
    let task_ix = match task {
        None => 0,
        Some(name) => ctx.tasks.iter().position(|x| x == name).with_context(|| {
            format!(
                "--task {name}: not a task of the run; tasks: {}",
                ctx.tasks.join(", ")
            )
        })?,
    };
    let ic = {
        let name = item_field;
        ctx.fields
            .iter()
            .find(|f| f.name == name && !f.multi_hot)
            .map(|f| f.column)
            .with_context(|| {
                format!(
                    "--item-field {name}: no categorical field of that name; fields: {}",
                    ctx.fields
                        .iter()
                        .map(|f| f.name.as_str())
                        .collect::<Vec<_>>()
                        .join(", ")
                )
            })?
    };
    if prep.test.group.iter().all(|&g| g == 0) {
        bail!("the run's schema has no `group` column (the user key of gAUC): the replay needs one to group candidates by user");
    }
    let mut train_count: std::collections::HashMap<u32, usize> = Default::default();
    for &item in &prep.train.cat[ic] {
        *train_count.entry(item).or_default() += 1;
    }
    let test = &prep.test;
    let (logits, var) = post.mean_var(t, test, t.cfg.train.eval_batch_size)?;
    let n_t = ctx.n_tasks();
    let cands: Vec<Candidate> = (0..test.len())
        .map(|r| {
            let item = test.cat[ic][r];
            Candidate {
                user: test.group[r],
                item,
                reward: test.labels[task_ix][r],
                logit: logits[r * n_t + task_ix],
                var: var[r * n_t + task_ix],
                cold: train_count.get(&item).copied().unwrap_or(0) <= cold_max,
            }
        })
        .collect();
    let cold = cands.iter().filter(|c| c.cold).count();
    println!(
        "replay of {} on {} test rows ({} with a cold item, ≤ {cold_max} training rows), task {}, {} rounds × {} users × k = {}, seed {}\n",
        run.display(),
        cands.len(),
        cold,
        ctx.tasks[task_ix],
        opt.rounds,
        opt.users,
        opt.k,
        opt.seed
    );
    println!("| policy | picks | cumulative reward | reward per pick | cold picks | cold share | distinct items |");
    println!("|---|---:|---:|---:|---:|---:|---:|");
    for (name, o) in replay(&cands, opt) {
        let per = |x: f64| {
            if o.picks == 0 {
                0.0
            } else {
                x / o.picks as f64
            }
        };
        println!(
            "| {name} | {} | {:.0} | {:.4} | {} | {:.4} | {} |",
            o.picks,
            o.reward,
            per(o.reward),
            o.cold_picks,
            per(o.cold_picks as f64),
            o.distinct_items
        );
    }
    Ok(())
}

pub fn cmd_predict(
    run: &Path,
    input: &Path,
    out: Option<&Path>,
    chunk_rows: usize,
    explore: Exploration,
) -> Result<()> {
    let scorer = RunScorer::load(run).with_context(|| format!("loading run {}", run.display()))?;
    let posterior = if explore.variance || explore.thompson.is_some() {
        Some(scorer.posterior(run)?)
    } else {
        None
    };
    let mut chunks = RecordChunks::open(input, chunk_rows)?;
    let origin = input.display().to_string();
    let mut file = out.map(AtomicFile::create).transpose()?;
    let mut stdout = std::io::stdout().lock();
    let mut first = 0usize;
    while let Some(mut t) = chunks.next_chunk()? {
        let scored = match &posterior {
            Some(p) => scorer.score_explore(
                &mut t,
                &origin,
                p,
                explore.variance,
                explore.thompson,
                first,
            )?,
            None => scorer.score(&mut t, &origin)?,
        };
        let w: &mut dyn Write = match file.as_mut() {
            Some(f) => f.writer(),
            None => &mut stdout,
        };
        write_predictions(w, scorer.schema(), first, &scored, first == 0)
            .context("writing predictions")?;
        first += t.n_rows();
    }
    if first == 0 {
        bail!("{}: no records after the header", input.display());
    }
    if let Some(f) = file {
        f.commit()?;
    }
    eprintln!(
        "scored {first} rows of {} with {} ({} tasks)",
        input.display(),
        run.display(),
        scorer.schema().n_tasks()
    );
    Ok(())
}

/// The predictions file of `mdrec eval --predictions`: the test split's probabilities in split
/// order, in `mdrec predict`'s format.
pub fn write_eval_predictions(
    path: &Path,
    schema: &mdrec_data::Schema,
    domains: &[u32],
    logits: &[f32],
) -> Result<()> {
    let scored = Scored {
        domains: domains.to_vec(),
        probs: logits.iter().map(|&x| probability(x)).collect(),
        ..Default::default()
    };
    let mut f = AtomicFile::create(path)?;
    write_predictions(f.writer(), schema, 0, &scored, true).context("writing predictions")?;
    f.commit()
}
