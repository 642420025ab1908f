//! Mini-batches: the contract between the data path and the tensor side.
//!
//! A [`Batch`] is a plain, row-major, host-side buffer. It is filled in place by
//! [`crate::EncodedData::fill_batch`] so a training epoch allocates nothing per step once the
//! buffers have grown to the batch size. The tensor side (`mdrec-nn`) turns it into tensors.

/// One multi-hot field of a batch in the torchrec jagged layout:
/// row `i` owns `values[offsets[i]..offsets[i + 1]]`.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Jagged {
    /// `len + 1` offsets into `values`, starting at 0.
    pub offsets: Vec<u32>,
    /// Encoded ids (vocabulary ids of the field's table).
    pub values: Vec<u32>,
}

/// A mini-batch of encoded rows.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Batch {
    /// Number of rows.
    pub len: usize,
    /// Categorical ids, row-major `[len, n_categorical]`, in schema order of categorical fields.
    pub cat: Vec<u32>,
    /// One jagged column per multi-hot field, in schema order of multi-hot fields.
    pub multi: Vec<Jagged>,
    /// Transformed numeric values, row-major `[len, n_numeric]`.
    pub num: Vec<f32>,
    /// Domain index of each row, `[len]`.
    pub domain: Vec<u32>,
    /// Binary labels, row-major `[len, n_tasks]`, each 0.0 or 1.0.
    pub labels: Vec<f32>,
    /// Group key of each row (e.g. user), `[len]`, for gAUC.
    pub group: Vec<u64>,
    /// Index of each row within its split, `[len]` (for predictions files and analyses).
    pub rows: Vec<u32>,
}
