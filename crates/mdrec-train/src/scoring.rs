//! Scoring new records with a trained run: [`RunScorer`] loads a run directory (resolved config,
//! `schema.json`, `vocabs.json`, weights; no training data) and turns raw records into
//! probabilities through the same [`Encoder`] the data path used for training. `mdrec predict`
//! and `mdrec serve` both score through it; [`write_predictions`] is the one predictions format
//! (`mdrec predict` and `mdrec eval --predictions`).

use std::io::Write;
use std::path::Path;

use mdrec_data::{EncodedData, Encoder, Labels, RawTable, RecordFormat, Schema, Vocabs};

use crate::trainer::TrainedModels;
use crate::TrainError;

/// The probability of a logit (`1 / (1 + e^-x)`), the one conversion every output uses.
pub fn probability(logit: f32) -> f32 {
    1.0 / (1.0 + (-logit).exp())
}

/// Probabilities of scored rows.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Scored {
    /// Domain index per row.
    pub domains: Vec<u32>,
    /// Probabilities, row-major `[n, T]`.
    pub probs: Vec<f32>,
    /// Logit variances, row-major `[n, T]` (`mdrec predict --variance`).
    pub var: Option<Vec<f32>>,
    /// Thompson samples σ(f̂), row-major `[n, T]` (`mdrec predict --thompson`).
    pub ts: Option<Vec<f32>>,
}

/// A trained run ready to score raw records.
pub struct RunScorer {
    encoder: Encoder,
    format: RecordFormat,
    trained: TrainedModels,
    batch_size: usize,
}

fn read_json<T: serde::de::DeserializeOwned>(path: &Path, what: &str) -> Result<T, TrainError> {
    let text = std::fs::read_to_string(path).map_err(|e| TrainError::io(path, e))?;
    serde_json::from_str(&text).map_err(|e| {
        TrainError::Config(format!(
            "{}: not a valid {what} ({e}); the run directory is incomplete or corrupt",
            path.display()
        ))
    })
}

impl RunScorer {
    /// Loads a run directory. A missing or corrupt file is an error naming it.
    pub fn load(run: &Path) -> Result<Self, TrainError> {
        let schema: Schema = read_json(&run.join("schema.json"), "fitted schema")?;
        if schema.compute_hash() != schema.hash {
            return Err(TrainError::Config(format!(
                "{}: the schema's hash does not match its contents; the file was edited or is corrupt",
                run.join("schema.json").display()
            )));
        }
        let vocabs_path = run.join("vocabs.json");
        if !vocabs_path.exists() {
            return Err(TrainError::Config(format!(
                "{}: missing; runs trained before mdrec 0.2 do not save their vocabularies: train the run again to score new records",
                vocabs_path.display()
            )));
        }
        let vocabs: Vocabs = read_json(&vocabs_path, "vocabulary file")?;
        let trained = TrainedModels::load(run, &schema)?;
        let encoder = Encoder::new(schema, vocabs);
        let format = RecordFormat::new(trained.cfg.dataset.name, &encoder);
        Ok(RunScorer {
            encoder,
            format,
            batch_size: trained.cfg.train.eval_batch_size,
            trained,
        })
    }

    /// The raw columns records carry.
    pub fn format(&self) -> &RecordFormat {
        &self.format
    }

    /// The fitted schema (task and domain names).
    pub fn schema(&self) -> &Schema {
        self.encoder.schema()
    }

    /// The trained models.
    pub fn trained(&self) -> &TrainedModels {
        &self.trained
    }

    /// Encodes the records of `t` (derived columns are added to it) exactly as training did.
    pub fn encode(&self, t: &mut RawTable, origin: &str) -> Result<EncodedData, TrainError> {
        self.format.derive(t, origin)?;
        let rows: Vec<u32> = (0..t.n_rows() as u32).collect();
        Ok(self.encoder.encode(origin, t, &rows, Labels::Skip)?)
    }

    /// Probabilities of the records of `t`; errors name the record's file, line and column.
    pub fn score(&self, t: &mut RawTable, origin: &str) -> Result<Scored, TrainError> {
        let data = self.encode(t, origin)?;
        let mut probs = self.trained.logits(&data, self.batch_size)?;
        for p in &mut probs {
            *p = probability(*p);
        }
        Ok(Scored {
            domains: data.domain.into_vec(),
            probs,
            ..Default::default()
        })
    }

    /// The run's fitted uncertainty ([`crate::uncertainty::FILE`] in `run`).
    pub fn posterior(&self, run: &Path) -> Result<crate::uncertainty::Posterior, TrainError> {
        crate::uncertainty::Posterior::load(run, &self.schema().hash)
    }

    /// [`score`](Self::score) with the logit variances of `posterior` (when `variance`) and
    /// Thompson samples seeded by `thompson` (rows numbered from `first_row`).
    pub fn score_explore(
        &self,
        t: &mut RawTable,
        origin: &str,
        posterior: &crate::uncertainty::Posterior,
        variance: bool,
        thompson: Option<u64>,
        first_row: usize,
    ) -> Result<Scored, TrainError> {
        let data = self.encode(t, origin)?;
        let (logits, var) = posterior.mean_var(&self.trained, &data, self.batch_size)?;
        let n_t = self.schema().n_tasks();
        let ts =
            thompson.map(|seed| crate::uncertainty::thompson(&logits, &var, n_t, seed, first_row));
        Ok(Scored {
            domains: data.domain.into_vec(),
            probs: logits.iter().map(|&x| probability(x)).collect(),
            var: variance.then_some(var),
            ts,
        })
    }
}

/// Writes predictions as CSV rows `row,domain,<task>...` (`row` counts from `first_row`),
/// probabilities with 9 significant digits (exact for `f32`).
pub fn write_predictions(
    w: &mut dyn Write,
    schema: &Schema,
    first_row: usize,
    scored: &Scored,
    header: bool,
) -> std::io::Result<()> {
    if header {
        write!(w, "row,domain")?;
        for t in &schema.tasks {
            write!(w, ",{t}")?;
        }
        if scored.var.is_some() {
            for t in &schema.tasks {
                write!(w, ",{t}_var")?;
            }
        }
        if scored.ts.is_some() {
            for t in &schema.tasks {
                write!(w, ",{t}_ts")?;
            }
        }
        writeln!(w)?;
    }
    let n_t = schema.tasks.len();
    for (i, (d, p)) in scored
        .domains
        .iter()
        .zip(scored.probs.chunks(n_t.max(1)))
        .enumerate()
    {
        let name = schema.domains.get(*d as usize).map_or("?", String::as_str);
        if name.contains([',', '"', '\n']) {
            write!(w, "{},\"{}\"", first_row + i, name.replace('"', "\"\""))?;
        } else {
            write!(w, "{},{name}", first_row + i)?;
        }
        for x in p {
            write!(w, ",{x:.9e}")?;
        }
        for extra in [&scored.var, &scored.ts].into_iter().flatten() {
            for x in &extra[i * n_t..(i + 1) * n_t] {
                write!(w, ",{x:.9e}")?;
            }
        }
        writeln!(w)?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn probability_is_the_logistic_function() {
        assert_eq!(probability(0.0), 0.5);
        assert!((probability(2.0) - 0.880_797_1).abs() < 1e-7);
        assert!(probability(-100.0) >= 0.0 && probability(100.0) <= 1.0);
    }
}
