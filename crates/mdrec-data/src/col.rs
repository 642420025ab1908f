//! One encoded column ([`Col`]): either owned in memory or a read-only view of a column file
//! mapped into memory (the out-of-core store, [`crate::ooc`]).
//!
//! Readers see a slice (`Deref<Target = [T]>`) either way, so training, evaluation and batch
//! filling do not know where a column lives. Writers (`push`, `extend`, `DerefMut`) work on
//! owned columns; writing to a mapped column first copies it into memory (copy on write), which
//! only code that builds new splits does.

use std::ops::{Deref, DerefMut};
use std::sync::Arc;

use bytemuck::Pod;
use memmap2::Mmap;

/// An encoded column of `T` values.
#[derive(Clone)]
pub enum Col<T: Pod> {
    /// Values in memory.
    Owned(Vec<T>),
    /// `len` values at byte offset `offset` of a mapped file.
    Mapped {
        /// The mapping (shared by clones).
        map: Arc<Mmap>,
        /// Byte offset of the first value (a multiple of `align_of::<T>()`).
        offset: usize,
        /// Number of values.
        len: usize,
    },
}

impl<T: Pod> Col<T> {
    /// A view of `len` values at byte `offset` of `map`; `None` when they do not fit the file
    /// or are misaligned.
    pub fn mapped(map: Arc<Mmap>, offset: usize, len: usize) -> Option<Self> {
        let bytes = len.checked_mul(std::mem::size_of::<T>())?;
        let end = offset.checked_add(bytes)?;
        let slice = map.get(offset..end)?;
        bytemuck::try_cast_slice::<u8, T>(slice).ok()?;
        Some(Col::Mapped { map, offset, len })
    }

    /// The values.
    pub fn as_slice(&self) -> &[T] {
        self
    }

    /// The values as a vector (a mapped column is copied).
    pub fn into_vec(self) -> Vec<T> {
        match self {
            Col::Owned(v) => v,
            Col::Mapped { .. } => self.to_vec(),
        }
    }

    /// True when the values live in a mapped file.
    pub fn is_mapped(&self) -> bool {
        matches!(self, Col::Mapped { .. })
    }

    /// The owned values, copying a mapped column into memory first.
    pub fn vec_mut(&mut self) -> &mut Vec<T> {
        if let Col::Mapped { .. } = self {
            *self = Col::Owned(self.to_vec());
        }
        match self {
            Col::Owned(v) => v,
            Col::Mapped { .. } => unreachable!("converted to owned above"),
        }
    }

    /// Appends a value.
    pub fn push(&mut self, x: T) {
        self.vec_mut().push(x);
    }

    /// Removes every value.
    pub fn clear(&mut self) {
        match self {
            Col::Owned(v) => v.clear(),
            Col::Mapped { .. } => *self = Col::Owned(Vec::new()),
        }
    }

    /// Reserves room for `n` more values.
    pub fn reserve(&mut self, n: usize) {
        self.vec_mut().reserve(n);
    }

    /// Keeps the first `n` values.
    pub fn truncate(&mut self, n: usize) {
        self.vec_mut().truncate(n);
    }

    /// Appends the values of `xs`.
    pub fn extend_from_slice(&mut self, xs: &[T]) {
        self.vec_mut().extend_from_slice(xs);
    }

    /// Tells the kernel what this process will do with the values `range` of a mapped column
    /// (see [`Pages`]); advice only: a failure changes nothing but speed. A no-op for owned
    /// columns.
    pub fn advise(&self, range: std::ops::Range<usize>, pages: Pages) {
        let Col::Mapped { map, offset, len } = self else {
            return;
        };
        let size = std::mem::size_of::<T>();
        let (a, b) = (range.start.min(*len), range.end.min(*len));
        if a >= b {
            return;
        }
        let page = 4096;
        let (first, last) = (offset + a * size, offset + b * size);
        match pages {
            Pages::Prefetch => {
                let start = first / page * page;
                let _ = map.advise_range(memmap2::Advice::WillNeed, start, last - start);
            }
            Pages::Release => {
                // whole pages strictly inside the range
                let (start, end) = (first.div_ceil(page) * page, last / page * page);
                if end > start {
                    #[allow(unsafe_code)]
                    // SAFETY: a read-only file mapping; MADV_DONTNEED on it only drops this
                    // process's page table entries, and later reads fault the file's bytes
                    // back in.
                    let _ = unsafe {
                        map.unchecked_advise_range(
                            memmap2::UncheckedAdvice::DontNeed,
                            start,
                            end - start,
                        )
                    };
                }
            }
        }
    }
}

/// A multi-hot column of a split in the jagged layout of [`crate::Jagged`]: row `i` owns
/// `values[offsets[i]..offsets[i + 1]]` (`n + 1` offsets, starting at 0). Both parts are
/// [`Col`]s: owned, or views of the out-of-core store's files.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct JaggedCol {
    /// `n + 1` offsets into `values`.
    pub offsets: Col<u32>,
    /// Encoded ids.
    pub values: Col<u32>,
}

impl JaggedCol {
    /// The ids of row `r`.
    pub fn row(&self, r: usize) -> &[u32] {
        &self.values[self.offsets[r] as usize..self.offsets[r + 1] as usize]
    }

    /// [`Col::advise`] for the pages of rows `rows` (offsets and values).
    pub fn advise(&self, rows: std::ops::Range<usize>, pages: Pages) {
        if !self.offsets.is_mapped() || rows.start >= rows.end {
            return;
        }
        let n = self.offsets.len().saturating_sub(1);
        let (a, b) = (rows.start.min(n), rows.end.min(n));
        self.offsets.advise(a..b + 1, pages);
        let (va, vb) = (self.offsets[a] as usize, self.offsets[b] as usize);
        self.values.advise(va..vb, pages);
    }
}

impl From<crate::Jagged> for JaggedCol {
    fn from(j: crate::Jagged) -> Self {
        JaggedCol {
            offsets: j.offsets.into(),
            values: j.values.into(),
        }
    }
}

/// Advice on the pages of a mapped column ([`Col::advise`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Pages {
    /// Read them into the page cache now, asynchronously (`MADV_WILLNEED`), so that the
    /// reads that follow do not wait on the disk one page at a time.
    Prefetch,
    /// They will not be read again soon: they leave this process's resident set and stay in
    /// the page cache (`MADV_DONTNEED`).
    Release,
}

impl<T: Pod> Default for Col<T> {
    fn default() -> Self {
        Col::Owned(Vec::new())
    }
}

impl<T: Pod> Deref for Col<T> {
    type Target = [T];
    fn deref(&self) -> &[T] {
        match self {
            Col::Owned(v) => v,
            Col::Mapped { map, offset, len } => {
                bytemuck::cast_slice(&map[*offset..*offset + *len * std::mem::size_of::<T>()])
            }
        }
    }
}

impl<T: Pod> DerefMut for Col<T> {
    fn deref_mut(&mut self) -> &mut [T] {
        self.vec_mut()
    }
}

impl<T: Pod> From<Vec<T>> for Col<T> {
    fn from(v: Vec<T>) -> Self {
        Col::Owned(v)
    }
}

impl<T: Pod> FromIterator<T> for Col<T> {
    fn from_iter<I: IntoIterator<Item = T>>(it: I) -> Self {
        Col::Owned(it.into_iter().collect())
    }
}

impl<T: Pod> Extend<T> for Col<T> {
    fn extend<I: IntoIterator<Item = T>>(&mut self, it: I) {
        self.vec_mut().extend(it);
    }
}

impl<'a, T: Pod> IntoIterator for &'a Col<T> {
    type Item = &'a T;
    type IntoIter = std::slice::Iter<'a, T>;
    fn into_iter(self) -> Self::IntoIter {
        self.iter()
    }
}

impl<'a, T: Pod> IntoIterator for &'a mut Col<T> {
    type Item = &'a mut T;
    type IntoIter = std::slice::IterMut<'a, T>;
    fn into_iter(self) -> Self::IntoIter {
        self.iter_mut()
    }
}

impl<T: Pod + std::fmt::Debug> std::fmt::Debug for Col<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Col::Owned(v) => v.fmt(f),
            Col::Mapped { len, .. } => write!(f, "<{len} mapped values>"),
        }
    }
}

impl<T: Pod + PartialEq> PartialEq for Col<T> {
    fn eq(&self, other: &Self) -> bool {
        self[..] == other[..]
    }
}

impl<T: Pod + PartialEq> PartialEq<Vec<T>> for Col<T> {
    fn eq(&self, other: &Vec<T>) -> bool {
        self[..] == other[..]
    }
}

impl<T: Pod + PartialEq, const N: usize> PartialEq<[T; N]> for Col<T> {
    fn eq(&self, other: &[T; N]) -> bool {
        self[..] == other[..]
    }
}

impl<T: Pod + PartialEq> PartialEq<&[T]> for Col<T> {
    fn eq(&self, other: &&[T]) -> bool {
        self[..] == **other
    }
}

impl<T: Pod + PartialEq> PartialEq<[T]> for Col<T> {
    fn eq(&self, other: &[T]) -> bool {
        self[..] == *other
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mapped_columns_read_like_owned_ones_and_copy_on_write() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("c");
        let xs: Vec<u32> = (0..3000).collect();
        let mut bytes = vec![0u8; 8];
        bytes.extend_from_slice(bytemuck::cast_slice(&xs));
        std::fs::write(&p, &bytes).unwrap();
        let f = std::fs::File::open(&p).unwrap();
        // SAFETY: a test file nobody else writes
        #[allow(unsafe_code)]
        let map = Arc::new(unsafe { Mmap::map(&f) }.unwrap());
        let mut c = Col::<u32>::mapped(map.clone(), 8, 3000).unwrap();
        assert!(c.is_mapped());
        assert_eq!(c, xs);
        assert_eq!(c[2999], 2999);
        c.advise(0..3000, Pages::Release);
        assert_eq!(c[10], 10, "released pages read back from the file");
        c.push(7);
        assert!(!c.is_mapped());
        assert_eq!(c.len(), 3001);
        assert!(
            Col::<u32>::mapped(map.clone(), 8, 3001).is_none(),
            "past the end"
        );
        assert!(Col::<u32>::mapped(map, 2, 10).is_none(), "misaligned");
    }
}
