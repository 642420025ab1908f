// The fingerprint of the data crate's source, shared by `build.rs` (which bakes it into
// `MDREC_DATA_CODE_HASH`) and the test that checks it follows the code (`tests/generic.rs`):
// FNV-1a 64 over every file under `<root>/src`, relative path and contents, in sorted order.

use std::path::{Path, PathBuf};

fn files(dir: &Path, out: &mut Vec<PathBuf>) {
    let mut entries: Vec<PathBuf> = std::fs::read_dir(dir)
        .unwrap_or_else(|e| panic!("cannot list {}: {e}", dir.display()))
        .map(|e| e.expect("directory entry").path())
        .collect();
    entries.sort();
    for p in entries {
        if p.is_dir() {
            files(&p, out);
        } else {
            out.push(p);
        }
    }
}

/// Fingerprint of every file under `root/src`.
pub fn source_fingerprint(root: &Path) -> u64 {
    let mut list = Vec::new();
    files(&root.join("src"), &mut list);
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    let mut eat = |bytes: &[u8]| {
        for b in bytes {
            h ^= u64::from(*b);
            h = h.wrapping_mul(0x0000_0100_0000_01b3);
        }
    };
    for p in &list {
        let rel = p.strip_prefix(root).expect("under the crate");
        eat(rel.to_string_lossy().as_bytes());
        eat(&[0]);
        eat(&std::fs::read(p).unwrap_or_else(|e| panic!("cannot read {}: {e}", p.display())));
        eat(&[0]);
    }
    h
}
