//! The on-disk cache of prepared datasets.
//!
//! File `<dir>/<key>.mdrec-cache`, key = sha256 over the cache format version, a fingerprint of
//! this crate's source ([`CODE_HASH`], so a cache written by other encoding code is a miss even
//! when nobody bumped the version), the canonical JSON of the schema spec, the split spec, the
//! source config and, for each source file, its path, length and sha256. Layout (little-endian):
//!
//! ```text
//! magic "MDRECDC\0" | u32 version | 32-byte key | u64 body length | body | sha256(body)
//! body = bytes(schema json) | bytes(vocabs json) | bytes(source) | train | valid | test
//! ```
//!
//! A file whose key differs is a miss. A truncated or corrupted file (length or checksum
//! mismatch, undecodable body) is reported to the caller and rebuilt, never trusted.
//! Writes go to a temporary file that is renamed into place.

use std::io::Read;
use std::path::{Path, PathBuf};

use sha2::{Digest, Sha256};

use crate::prepared::Prepared;
use crate::schema::SchemaSpec;
use crate::split::SplitSpec;
use crate::store::{put_bytes, put_u64, EncodedData, Reader};
use crate::DataError;

/// Magic bytes of a cache file.
pub const MAGIC: &[u8; 8] = b"MDRECDC\0";
/// Cache file layout version (header and body framing); bump when the layout changes. Changes
/// to how data is encoded are covered by [`CODE_HASH`].
pub const CACHE_VERSION: u32 = 3;
/// Fingerprint of this crate's source at build time (see `build.rs`): any change to the data
/// code makes old cache files misses, so they are rebuilt rather than trusted.
pub const CODE_HASH: &str = env!("MDREC_DATA_CODE_HASH");

fn file_sha256(path: &Path) -> Result<(u64, [u8; 32]), DataError> {
    let mut f = std::fs::File::open(path).map_err(|e| DataError::io(path, e))?;
    let mut h = Sha256::new();
    let mut buf = vec![0u8; 1 << 20];
    let mut len = 0u64;
    loop {
        let n = f.read(&mut buf).map_err(|e| DataError::io(path, e))?;
        if n == 0 {
            break;
        }
        len += n as u64;
        h.update(&buf[..n]);
    }
    Ok((len, h.finalize().into()))
}

/// The cache key of a request.
pub fn cache_key(
    spec: &SchemaSpec,
    split: &SplitSpec,
    config_json: &str,
    files: &[PathBuf],
) -> Result<[u8; 32], DataError> {
    cache_key_for_code(CODE_HASH, spec, split, config_json, files)
}

/// [`cache_key`] as data code with fingerprint `code` would compute it.
pub fn cache_key_for_code(
    code: &str,
    spec: &SchemaSpec,
    split: &SplitSpec,
    config_json: &str,
    files: &[PathBuf],
) -> Result<[u8; 32], DataError> {
    let mut h = Sha256::new();
    let mut part = |tag: &str, b: &[u8]| {
        h.update(tag.as_bytes());
        h.update((b.len() as u64).to_le_bytes());
        h.update(b);
    };
    part("version", &CACHE_VERSION.to_le_bytes());
    part("code", code.as_bytes());
    part("spec", spec.canonical_json().as_bytes());
    part(
        "split",
        serde_json::to_string(split)
            .expect("split serializes")
            .as_bytes(),
    );
    part("source", config_json.as_bytes());
    for f in files {
        let (len, sha) = file_sha256(f)?;
        part("file", f.display().to_string().as_bytes());
        part("len", &len.to_le_bytes());
        part("sha256", &sha);
    }
    Ok(h.finalize().into())
}

/// Loads a cache file. `Ok(None)`: no file or a different key (a plain miss).
/// `Err(reason)`: the file exists with this key but is truncated or corrupt.
pub fn load(path: &Path, key: &[u8; 32]) -> Result<Option<Prepared>, String> {
    let bytes = match std::fs::read(path) {
        Ok(b) => b,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(format!("cannot read cache file: {e}")),
    };
    let mut r = Reader::new(&bytes);
    let head = (|| {
        let magic = r.take(8)?;
        let version = r.u32()?;
        let k = r.take(32)?;
        let len = r.u64()?;
        Some((magic, version, k, len))
    })();
    let Some((magic, version, k, len)) = head else {
        return Err("truncated header".into());
    };
    if magic != MAGIC {
        return Err("bad magic bytes".into());
    }
    if version != CACHE_VERSION || k != key {
        return Ok(None);
    }
    let Some(body) = usize::try_from(len).ok().and_then(|l| r.take(l)) else {
        return Err(format!("truncated body (expected {len} bytes)"));
    };
    let Some(sum) = r.take(32) else {
        return Err("truncated checksum".into());
    };
    if !r.at_end() {
        return Err("trailing bytes after checksum".into());
    }
    if Sha256::digest(body).as_slice() != sum {
        return Err("checksum mismatch (corrupted file)".into());
    }
    decode_body(body)
        .ok_or_else(|| "undecodable body".to_string())
        .map(Some)
}

fn decode_body(body: &[u8]) -> Option<Prepared> {
    let mut r = Reader::new(body);
    let schema = serde_json::from_slice(r.bytes()?).ok()?;
    let vocabs = serde_json::from_slice(r.bytes()?).ok()?;
    let source = String::from_utf8(r.bytes()?.to_vec()).ok()?;
    let train = EncodedData::read_from(&mut r)?;
    let valid = EncodedData::read_from(&mut r)?;
    let test = EncodedData::read_from(&mut r)?;
    r.at_end().then_some(Prepared {
        schema,
        vocabs,
        train,
        valid,
        test,
        source,
        cache: None,
    })
}

/// Writes a cache file atomically (temporary file + rename).
pub fn store(path: &Path, key: &[u8; 32], p: &Prepared) -> Result<(), DataError> {
    let mut body = Vec::new();
    put_bytes(
        &mut body,
        serde_json::to_string(&p.schema)
            .expect("schema serializes")
            .as_bytes(),
    );
    put_bytes(
        &mut body,
        serde_json::to_string(&p.vocabs)
            .expect("vocabs serialize")
            .as_bytes(),
    );
    put_bytes(&mut body, p.source.as_bytes());
    p.train.write_to(&mut body);
    p.valid.write_to(&mut body);
    p.test.write_to(&mut body);
    let mut out = Vec::with_capacity(body.len() + 84);
    out.extend_from_slice(MAGIC);
    out.extend_from_slice(&CACHE_VERSION.to_le_bytes());
    out.extend_from_slice(key);
    put_u64(&mut out, body.len() as u64);
    out.extend_from_slice(&body);
    out.extend_from_slice(&Sha256::digest(&body));
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir).map_err(|e| DataError::io(dir, e))?;
    }
    let tmp = path.with_extension(format!("tmp{}", std::process::id()));
    std::fs::write(&tmp, &out).map_err(|e| DataError::io(&tmp, e))?;
    std::fs::rename(&tmp, path).map_err(|e| DataError::io(path, e))?;
    Ok(())
}
