//! The one error type of the data path.
//!
//! Every bad input becomes a [`DataError`]. Messages are lower-case, carry no trailing period and
//! name where the problem is: the file, the 1-based line and the field or column.

use std::path::PathBuf;

/// Everything that can go wrong while reading, fitting, encoding or caching data.
#[derive(Debug, thiserror::Error)]
pub enum DataError {
    /// A file could not be read or written.
    #[error("{path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// The underlying error.
        #[source]
        source: std::io::Error,
    },
    /// A data file of a recipe is missing.
    #[error("{path}: missing {what}; {hint}")]
    Missing {
        /// The path that was looked for.
        path: PathBuf,
        /// What it should have been (e.g. "ratings.dat").
        what: String,
        /// How to obtain the data.
        hint: String,
    },
    /// A value in a data file is malformed.
    #[error("{file}:{line}: field `{field}`: {msg}")]
    Parse {
        /// The file.
        file: String,
        /// 1-based line number.
        line: u64,
        /// The field or column.
        field: String,
        /// What is wrong.
        msg: String,
    },
    /// The declared schema is invalid (bad TOML, unknown key, failed validation).
    #[error("{origin}: {msg}")]
    Schema {
        /// The schema file (or the name of an embedded schema), with a line where known.
        origin: String,
        /// What is wrong.
        msg: String,
    },
    /// A domain has no rows in the training split.
    #[error("domain `{domain}` (index {index}) has no rows in the training split")]
    EmptyDomain {
        /// Domain name.
        domain: String,
        /// Domain index.
        index: usize,
    },
    /// A task has a single class in the training split.
    #[error("task `{task}` has a single class in the training split (all labels are {value})")]
    SingleClass {
        /// Task name.
        task: String,
        /// The only label value.
        value: f32,
    },
    /// An invalid request (split ratios, configuration values).
    #[error("{0}")]
    Config(String),
    /// A cache file could not be decoded.
    #[error("{path}: cache: {msg}")]
    Cache {
        /// The cache file.
        path: PathBuf,
        /// What is wrong.
        msg: String,
    },
}

impl DataError {
    /// An I/O error on `path`.
    pub fn io(path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        DataError::Io {
            path: path.into(),
            source,
        }
    }

    /// A parse error at `file:line` in `field`.
    pub fn parse(
        file: impl Into<String>,
        line: u64,
        field: impl Into<String>,
        msg: impl Into<String>,
    ) -> Self {
        DataError::Parse {
            file: file.into(),
            line,
            field: field.into(),
            msg: msg.into(),
        }
    }

    /// A schema error in `origin`.
    pub fn schema(origin: impl Into<String>, msg: impl Into<String>) -> Self {
        DataError::Schema {
            origin: origin.into(),
            msg: msg.into(),
        }
    }
}
