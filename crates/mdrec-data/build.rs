//! Fingerprints this crate's source so that a prepared-dataset cache written by other encoding
//! code is never reused: `MDREC_DATA_CODE_HASH` (FNV-1a 64 over every file under `src/`, path and
//! contents, in sorted order) enters every cache key (see `src/cache.rs`).

include!("fingerprint.rs");

fn main() {
    println!("cargo:rerun-if-changed=src");
    println!("cargo:rerun-if-changed=fingerprint.rs");
    let h = source_fingerprint(Path::new(env!("CARGO_MANIFEST_DIR")));
    println!("cargo:rustc-env=MDREC_DATA_CODE_HASH={h:016x}");
}
