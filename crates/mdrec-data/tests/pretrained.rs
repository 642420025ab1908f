//! Pre-trained vectors, similarity encoding and semantic IDs (§3.2, §3.3 of Pan et al., KDD
//! 2024), and `mdrec data pretrain`'s truncated SVD.

use mdrec_data::pretrain::{
    pretrain, randomized_svd, PretrainConfig, PretrainValue, Svd, SvdOptions,
};
use mdrec_data::pretrained::{
    cosine, read, similarity_level, Lsh, PretrainedSpec, SemanticIdSpec, Vectors,
};
use mdrec_data::*;

fn table(cols: &[(&str, Vec<String>)]) -> RawTable {
    let n = cols[0].1.len();
    let columns = cols
        .iter()
        .map(|(name, vals)| {
            let mut b = ColumnBuilder::new(*name);
            for v in vals {
                b.push(v);
            }
            b.finish()
        })
        .collect();
    RawTable {
        columns,
        files: vec!["mem.csv".into()],
        row_file: vec![0; n],
        row_line: (2..n as u32 + 2).collect(),
    }
}

fn pspec(path: &std::path::Path) -> PretrainedSpec {
    toml::from_str(&format!("path = {:?}", path.display().to_string())).unwrap()
}

fn vecs() -> Vectors {
    Vectors::new(
        vec!["u1".into(), "u2".into(), "7".into()],
        vec![1.0, 0.0, 0.5, -2.0, 0.25, 3.0],
        2,
        |i| format!("row {i}"),
    )
    .unwrap()
}

#[test]
fn svd_recovers_known_singular_values_and_vectors() {
    // A = 5·u1·v1ᵀ + 2·u2·v2ᵀ with orthonormal u's (5 rows) and v's (4 columns).
    let u1 = [0.5, 0.5, 0.5, 0.5, 0.0];
    let u2 = [0.5, -0.5, 0.5, -0.5, 0.0];
    let r = std::f64::consts::FRAC_1_SQRT_2;
    let v1 = [r, r, 0.0, 0.0];
    let v2 = [0.0, 0.0, r, -r];
    let mut entries = Vec::new();
    for i in 0..5 {
        for j in 0..4 {
            let a = 5.0 * u1[i] * v1[j] + 2.0 * u2[i] * v2[j];
            if a != 0.0 {
                entries.push((i as u32, j as u32, a));
            }
        }
    }
    let mut rng = Rng::for_stream(3, "test");
    let opts = |k, oversample, power_iters| SvdOptions {
        k,
        oversample,
        power_iters,
    };
    let Svd { u, s, v } = randomized_svd(5, 4, &entries, opts(2, 1, 2), &mut rng, |_| {}).unwrap();
    assert!(
        (s[0] - 5.0).abs() < 1e-9 && (s[1] - 2.0).abs() < 1e-9,
        "{s:?}"
    );
    // singular vectors up to the sign convention (largest item loading positive)
    let dot = |a: &[f64], m: &nalgebra::DMatrix<f64>, j: usize| {
        a.iter()
            .enumerate()
            .map(|(i, x)| x * m[(i, j)])
            .sum::<f64>()
    };
    assert!((dot(&u1, &u, 0).abs() - 1.0).abs() < 1e-9);
    assert!((dot(&u2, &u, 1).abs() - 1.0).abs() < 1e-9);
    assert!((dot(&v1, &v, 0).abs() - 1.0).abs() < 1e-9);
    assert!((dot(&v2, &v, 1).abs() - 1.0).abs() < 1e-9);
    for j in 0..2 {
        let big = (0..4)
            .map(|i| v[(i, j)])
            .fold(0.0f64, |a, x| if x.abs() > a.abs() { x } else { a });
        assert!(big > 0.0, "column {j}");
    }
    // the rank-2 reconstruction is exact
    for &(i, j, a) in &entries {
        let rec: f64 = (0..2)
            .map(|k| u[(i as usize, k)] * s[k] * v[(j as usize, k)])
            .sum();
        assert!((rec - a).abs() < 1e-9);
    }
    // too wide a request is an error, not a panic
    assert!(randomized_svd(5, 4, &entries, opts(5, 0, 1), &mut rng, |_| {}).is_err());
}

const SPEC: &str = r#"
[domain]
column = "d"
[[fields]]
name = "user"
kind = "categorical"
roles = ["user"]
[[fields]]
name = "item"
kind = "categorical"
roles = ["item"]
[[tasks]]
name = "y"
column = "y"
rule = "binary"
"#;

/// 40 training rows over users u0..u4 and items i0..i5, then 5 validation rows; 4 test rows
/// of user `utest` and item `itest`, seen nowhere else, and one of `u0` and `test_item`.
fn interactions(test_item: &str) -> RawTable {
    let (mut u, mut i, mut d, mut y) = (vec![], vec![], vec![], vec![]);
    for r in 0..50usize {
        let (uu, ii) = if r < 45 {
            (format!("u{}", r % 5), format!("i{}", (r * r + r / 5) % 6))
        } else if r < 49 {
            ("utest".to_string(), "itest".to_string())
        } else {
            ("u0".to_string(), test_item.to_string())
        };
        u.push(uu);
        i.push(ii);
        d.push("0".to_string());
        y.push(((r % 3 == 0) as u8).to_string());
    }
    table(&[("user", u), ("item", i), ("d", d), ("y", y)])
}

fn prep(t: &RawTable, spec: &str) -> Result<Prepared, DataError> {
    let s = SchemaSpec::from_toml_str(spec, "spec.toml")?;
    prepare_table(
        &s,
        "spec.toml",
        t,
        &SplitSpec::Sequential {
            ratios: [0.8, 0.1, 0.1],
        },
        "mem",
    )
}

fn cfg() -> PretrainConfig {
    PretrainConfig {
        dim: 3,
        oversample: 2,
        power_iters: 3,
        seed: 1,
        value: PretrainValue::Implicit,
        user_field: None,
        item_field: None,
    }
}

#[test]
fn pretrain_reads_only_the_training_split() {
    let a = pretrain(&prep(&interactions("i1"), SPEC).unwrap(), &cfg(), |_| {}).unwrap();
    assert_eq!(
        (a.user_field.as_str(), a.item_field.as_str()),
        ("user", "item")
    );
    assert_eq!(a.users.len(), 5);
    assert!(a.users.get("utest").is_none() && a.items.get("itest").is_none());
    assert_eq!(a.rows_used, 40);
    // changing a test row changes nothing
    let b = pretrain(&prep(&interactions("i4"), SPEC).unwrap(), &cfg(), |_| {}).unwrap();
    assert_eq!(a.users, b.users);
    assert_eq!(a.items, b.items);
    assert_eq!(a.singular, b.singular);
    // positives of a task only
    let mut c = cfg();
    c.value = PretrainValue::Positive("y".into());
    let p = pretrain(&prep(&interactions("i1"), SPEC).unwrap(), &c, |_| {}).unwrap();
    assert!(p.rows_used < 40 && p.rows_used > 0);
    c.value = PretrainValue::Positive("nope".into());
    let e = pretrain(&prep(&interactions("i1"), SPEC).unwrap(), &c, |_| {})
        .unwrap_err()
        .to_string();
    assert!(e.contains("no task `nope`"), "{e}");
    let mut c = cfg();
    c.user_field = Some("nope".into());
    let e = pretrain(&prep(&interactions("i1"), SPEC).unwrap(), &c, |_| {})
        .unwrap_err()
        .to_string();
    assert!(
        e.contains("--user-field nope") && e.contains("user, item"),
        "{e}"
    );
}

#[test]
fn every_format_round_trips() {
    let dir = tempfile::tempdir().unwrap();
    let v = vecs();
    let st = dir.path().join("v.safetensors");
    v.write_safetensors(&st).unwrap();
    let csv = dir.path().join("v.csv");
    v.write_csv(&csv).unwrap();
    let npy = dir.path().join("v.npy");
    let ids = dir.path().join("v.ids.txt");
    v.write_npy(&npy, &ids).unwrap();
    for (path, extra) in [(&st, ""), (&csv, ""), (&npy, "ids")] {
        let mut s = pspec(path);
        if !extra.is_empty() {
            s.ids = Some(ids.clone());
        }
        let (got, digest) = read(&s).unwrap();
        assert_eq!(got, v, "{}", path.display());
        assert_eq!(got.get("7"), Some(&[0.25f32, 3.0][..]));
        // a pinned digest is checked
        s.sha256 = Some(digest.clone());
        read(&s).unwrap();
        s.sha256 = Some("00".repeat(32));
        let e = read(&s).unwrap_err().to_string();
        assert!(e.contains(&digest) && e.contains("changed"), "{e}");
    }
    // a headerless CSV
    let plain = dir.path().join("plain.csv");
    std::fs::write(&plain, "a,1,2\nb,3,4\n").unwrap();
    let mut s = pspec(&plain);
    s.header = false;
    assert_eq!(read(&s).unwrap().0.get("b"), Some(&[3.0f32, 4.0][..]));
    // an integer ids tensor in a safetensors file
    use safetensors::tensor::{Dtype, TensorView};
    let data: Vec<u8> = [1.0f32, 2.0, 3.0, 4.0]
        .iter()
        .flat_map(|x| x.to_le_bytes())
        .collect();
    let idb: Vec<u8> = [10i64, 20].iter().flat_map(|x| x.to_le_bytes()).collect();
    let bytes = safetensors::serialize(
        [
            (
                "vectors",
                TensorView::new(Dtype::F32, vec![2, 2], &data).unwrap(),
            ),
            ("ids", TensorView::new(Dtype::I64, vec![2], &idb).unwrap()),
        ],
        &None,
    )
    .unwrap();
    let p = dir.path().join("int.safetensors");
    std::fs::write(&p, bytes).unwrap();
    assert_eq!(
        read(&pspec(&p)).unwrap().0.get("20"),
        Some(&[3.0f32, 4.0][..])
    );
}

#[test]
fn bad_vector_files_are_errors_naming_file_line_and_id() {
    let dir = tempfile::tempdir().unwrap();
    let w = |name: &str, text: &str| {
        let p = dir.path().join(name);
        std::fs::write(&p, text).unwrap();
        p
    };
    let cases = [
        (
            w("ragged.csv", "id,v0,v1\na,1,2\nb,3\n"),
            "ragged.csv:3",
            "1 components",
        ),
        (
            w("nan.csv", "id,v0\na,1\nb,NaN\n"),
            "nan.csv:3",
            "id `b`: component 0 is NaN",
        ),
        (
            w("dup.csv", "id,v0\na,1\nb,2\na,3\n"),
            "dup.csv:4",
            "duplicate id `a` (first at",
        ),
        (
            w("word.csv", "id,v0\na,x\n"),
            "word.csv:2",
            "not a number: `x`",
        ),
        (w("empty.csv", "id,v0\n"), "empty.csv", "no vectors"),
    ];
    for (path, at, want) in &cases {
        let e = read(&pspec(path)).unwrap_err().to_string();
        assert!(e.contains(at) && e.contains(want), "{e} !~ {at} {want}");
    }
    // wrong declared width
    let mut s = pspec(&cases[3].0);
    s.path = w("ok.csv", "id,v0,v1\na,1,2\n");
    s.dim = Some(3);
    let e = read(&s).unwrap_err().to_string();
    assert!(
        e.contains("ok.csv") && e.contains("width 2") && e.contains("dim says 3"),
        "{e}"
    );
    // truncated NPY and safetensors files
    let v = vecs();
    let npy = dir.path().join("t.npy");
    let ids = dir.path().join("t.ids.txt");
    v.write_npy(&npy, &ids).unwrap();
    let bytes = std::fs::read(&npy).unwrap();
    std::fs::write(&npy, &bytes[..bytes.len() - 3]).unwrap();
    let mut s = pspec(&npy);
    s.ids = Some(ids.clone());
    let e = read(&s).unwrap_err().to_string();
    assert!(e.contains("t.npy") && e.contains("truncated"), "{e}");
    std::fs::write(&npy, &bytes).unwrap();
    std::fs::write(&ids, "u1\nu2\n").unwrap();
    let e = read(&s).unwrap_err().to_string();
    assert!(
        e.contains("t.ids.txt") && e.contains("2 ids for 3 vectors"),
        "{e}"
    );
    let st = dir.path().join("t.safetensors");
    v.write_safetensors(&st).unwrap();
    let bytes = std::fs::read(&st).unwrap();
    std::fs::write(&st, &bytes[..bytes.len() - 4]).unwrap();
    let e = read(&pspec(&st)).unwrap_err().to_string();
    assert!(
        e.contains("t.safetensors") && e.contains("not a valid safetensors"),
        "{e}"
    );
    let mut s = pspec(&st);
    v.write_safetensors(&st).unwrap();
    s.tensor = Some("emb".into());
    let e = read(&s).unwrap_err().to_string();
    assert!(
        e.contains("no tensor `emb`") && e.contains("vectors"),
        "{e}"
    );
}

#[test]
fn cosine_and_similarity_levels_on_a_hand_case() {
    assert!((cosine(&[1.0, 0.0], &[1.0, 1.0]) - std::f64::consts::FRAC_1_SQRT_2).abs() < 1e-12);
    assert!((cosine(&[1.0, 2.0], &[-2.0, -4.0]) + 1.0).abs() < 1e-12);
    assert_eq!(cosine(&[0.0, 0.0], &[1.0, 1.0]), 0.0);
    // (cos + 1) / 2 · levels, rounded; a missing vector is the middle level
    assert_eq!(
        similarity_level(Some(&[1.0, 0.0]), Some(&[3.0, 0.0]), 100),
        100.0
    );
    assert_eq!(
        similarity_level(Some(&[1.0, 0.0]), Some(&[0.0, 3.0]), 100),
        50.0
    );
    assert_eq!(
        similarity_level(Some(&[1.0, 0.0]), Some(&[-1.0, 0.0]), 100),
        0.0
    );
    assert_eq!(
        similarity_level(Some(&[1.0, 0.0]), Some(&[1.0, 1.0]), 100),
        85.0
    );
    assert_eq!(similarity_level(None, Some(&[1.0, 1.0]), 10), 5.0);
}

#[test]
fn lsh_is_seeded_and_near_vectors_share_codes() {
    let spec: SemanticIdSpec = toml::from_str("field = \"item\"\nbits = 8\ncodes = 2").unwrap();
    let a = Lsh::new(&spec, 16);
    assert_eq!(a, Lsh::new(&spec, 16));
    let mut other = spec.clone();
    other.seed = 9;
    assert_ne!(a, Lsh::new(&other, 16));
    let mut rng = Rng::for_stream(5, "test");
    let (mut same, mut far_same) = (0, 0);
    for _ in 0..200 {
        let v: Vec<f32> = (0..16).map(|_| rng.normal() as f32).collect();
        let near: Vec<f32> = v
            .iter()
            .map(|x| x * 2.0 + 1e-4 * rng.normal() as f32)
            .collect();
        let far: Vec<f32> = (0..16).map(|_| rng.normal() as f32).collect();
        let c = a.codes(Some(&v));
        assert!(c.iter().all(|&x| x < 256));
        same += usize::from(c == a.codes(Some(&near)));
        far_same += usize::from(c == a.codes(Some(&far)));
    }
    // a scaled copy with tiny noise keeps its codes (almost always); random vectors do not
    assert!(same >= 195, "{same}");
    assert!(far_same <= 5, "{far_same}");
    assert_eq!(a.codes(None), vec![256, 256]);
}

fn with_vectors(dir: &std::path::Path, extra: &str) -> String {
    let users = Vectors::new(
        (0..5).map(|u| format!("u{u}")).collect(),
        (0..10).map(|x| x as f32 - 4.0).collect(),
        2,
        |i| i.to_string(),
    )
    .unwrap();
    let items = Vectors::new(
        (0..5).map(|i| format!("i{i}")).collect(), // i5 has no vector
        (0..10).map(|x| (x * 3 % 7) as f32 - 3.0).collect(),
        2,
        |i| i.to_string(),
    )
    .unwrap();
    users
        .write_safetensors(&dir.join("user.safetensors"))
        .unwrap();
    items.write_csv(&dir.join("item.csv")).unwrap();
    SPEC.replace(
        "roles = [\"user\"]",
        &format!(
            "roles = [\"user\"]\npretrained = {{ path = {:?} }}",
            dir.join("user.safetensors").display().to_string()
        ),
    )
    .replace(
        "roles = [\"item\"]",
        &format!(
            "roles = [\"item\"]\npretrained = {{ path = {:?}{extra} }}",
            dir.join("item.csv").display().to_string()
        ),
    )
}

#[test]
fn pretrained_fields_feed_dense_similarity_and_semantic_id_features() {
    let dir = tempfile::tempdir().unwrap();
    let spec = with_vectors(dir.path(), "")
        + "[similarity]\nuser = \"user\"\nitem = \"item\"\nlevels = 10\n[semantic_id]\nfield = \"item\"\nbits = 3\nencoding = { kind = \"scalar\" }\n";
    let t = interactions("i1");
    let p = prep(&t, &spec).unwrap();
    let names: Vec<&str> = p.schema.fields.iter().map(|f| f.name.as_str()).collect();
    assert_eq!(
        names,
        [
            "user",
            "item",
            "user.pre0",
            "user.pre1",
            "item.pre0",
            "item.pre1",
            "similarity.mnse2",
            "similarity.mnse3",
            "similarity.mnse10",
            "item.sid0"
        ]
    );
    // the fitted schema survives its JSON file (scorers check its hash)
    let back: Schema = serde_json::from_str(&p.schema.to_json_pretty()).unwrap();
    assert_eq!(back.compute_hash(), p.schema.hash);
    // the schema pins the files' digests
    let pin = p.schema.spec.fields[0].pretrained.as_ref().unwrap();
    assert_eq!(pin.sha256.as_ref().unwrap().len(), 64);
    // dense inputs: user vector then item vector, then the scalar semantic id
    let tr = &p.train;
    assert_eq!(tr.num.len(), 5);
    let users = read(&pspec(&dir.path().join("user.safetensors")))
        .unwrap()
        .0;
    let items = read(&pspec(&dir.path().join("item.csv"))).unwrap().0;
    let lsh = Lsh::new(p.schema.spec.semantic_id.as_ref().unwrap(), 2);
    for r in 0..tr.n_rows {
        let u = t.columns[0].dict[t.columns[0].codes[r] as usize].clone();
        let i = t.columns[1].dict[t.columns[1].codes[r] as usize].clone();
        let uv = users.get(&u).unwrap();
        assert_eq!([tr.num[0][r], tr.num[1][r]], [uv[0], uv[1]]);
        let iv = items.get(&i);
        assert_eq!(
            [tr.num[2][r], tr.num[3][r]],
            iv.map_or([0.0, 0.0], |v| [v[0], v[1]]),
            "item {i}"
        );
        assert_eq!(tr.num[4][r], lsh.codes(iv)[0] as f32);
        // the similarity level in binary: its MNSE base-2 ids decode to the level
        let level = similarity_level(Some(uv), iv, 10) as u32;
        let j = &tr.multi[0];
        let ids = &j.values[j.offsets[r] as usize..j.offsets[r + 1] as usize];
        let decoded: u32 = ids
            .iter()
            .enumerate()
            .map(|(k, &id)| (id - 2 - 2 * k as u32) << k)
            .sum();
        assert_eq!(decoded, level, "row {r}");
    }
    // a scorer's encoder (rebuilt from the fitted schema) reads the same values
    let enc = Encoder::new(p.schema.clone(), p.vocabs.clone());
    let again = enc
        .encode("mem", &t, &(0..40).collect::<Vec<u32>>(), Labels::Skip)
        .unwrap();
    assert_eq!(again.num, tr.num);
    assert_eq!(again.multi, tr.multi);
    // the vectors changed after preparing: the pinned digest refuses them
    std::fs::write(dir.path().join("item.csv"), "id,v0,v1\ni0,1,1\n").unwrap();
    let e = Encoder::new(p.schema.clone(), p.vocabs.clone())
        .encode("mem", &t, &[0], Labels::Skip)
        .unwrap_err()
        .to_string();
    assert!(e.contains("item.csv") && e.contains("SHA-256"), "{e}");
}

#[test]
fn a_scalar_similarity_is_the_level_scaled_into_zero_one() {
    let dir = tempfile::tempdir().unwrap();
    let spec = with_vectors(dir.path(), "")
        + "[similarity]\nuser = \"user\"\nitem = \"item\"\nlevels = 10\nencoding = { kind = \"scalar\" }\n";
    let t = interactions("i1");
    let p = prep(&t, &spec).unwrap();
    let names: Vec<&str> = p.schema.fields.iter().map(|f| f.name.as_str()).collect();
    assert_eq!(names.last(), Some(&"similarity"));
    let tr = &p.train;
    let users = read(&pspec(&dir.path().join("user.safetensors")))
        .unwrap()
        .0;
    let items = read(&pspec(&dir.path().join("item.csv"))).unwrap().0;
    let sim = tr.num.last().unwrap();
    assert_eq!(sim.len(), tr.n_rows);
    for (r, &x) in sim.iter().enumerate() {
        let u = t.columns[0].dict[t.columns[0].codes[r] as usize].clone();
        let i = t.columns[1].dict[t.columns[1].codes[r] as usize].clone();
        let level = similarity_level(users.get(&u), items.get(&i), 10);
        assert_eq!(x, (level / 10.0) as f32, "row {r}");
        assert!((0.0..=1.0).contains(&x));
    }
}

#[test]
fn missing_ids_are_zero_or_an_error_with_require_all() {
    let dir = tempfile::tempdir().unwrap();
    // item i5 occurs in training but has no vector
    let spec = with_vectors(dir.path(), ", require_all = true");
    let e = prep(&interactions("i1"), &spec).unwrap_err().to_string();
    assert!(
        e.contains("item.csv")
            && e.contains("field `item`: 1 of 6 training values have no vector")
            && e.contains("i5"),
        "{e}"
    );
    // bad declarations
    let cases = [
        (
            SPEC.replace("roles = [\"user\"]", "pretrained = { path = \"v.txt\" }"),
            "no .safetensors, .npy or .csv extension",
        ),
        (
            SPEC.replace("roles = [\"user\"]", "pretrained = { path = \"v.npy\" }"),
            "need `ids`",
        ),
        (
            SPEC.to_string() + "[similarity]\nuser = \"user\"\nitem = \"item\"\n",
            "similarity.user: field `user` declares no pretrained vectors",
        ),
        (
            with_vectors(dir.path(), "") + "[semantic_id]\nfield = \"item\"\nbits = 0\n",
            "semantic_id.bits must be in 1..=16",
        ),
        (
            with_vectors(dir.path(), "").replace(
                "[[tasks]]",
                "[[fields]]\nname = \"x\"\nkind = \"categorical\"\ntable = \"similarity.mnse3\"\n[[tasks]]",
            )
                + "[similarity]\nuser = \"user\"\nitem = \"item\"\n",
            "similarity: its feature `similarity.mnse3` has the name of a field or table",
        ),
    ];
    for (s, want) in cases {
        let e = SchemaSpec::from_toml_str(&s, "s.toml")
            .unwrap_err()
            .to_string();
        assert!(e.contains(want), "{e} !~ {want}");
    }
}

#[test]
fn dataset_config_sets_pretrained_fields_with_the_run_seed_in_paths() {
    let spec = SchemaSpec::from_toml_str(SPEC, "s.toml").unwrap();
    let mut ds = DatasetConfig::default();
    ds.pretrained.insert(
        "item".into(),
        pspec(std::path::Path::new("v/s{seed}/item.csv")),
    );
    let out = apply_pretrained(&spec, "s.toml", &ds, 7).unwrap();
    let p = out.fields[1].pretrained.as_ref().unwrap();
    assert_eq!(p.path, std::path::Path::new("v/s7/item.csv"));
    ds.pretrained
        .insert("y".into(), pspec(std::path::Path::new("v.csv")));
    let e = apply_pretrained(&spec, "s.toml", &ds, 7)
        .unwrap_err()
        .to_string();
    assert!(
        e.contains("dataset.pretrained.y") && e.contains("categorical fields: user, item"),
        "{e}"
    );
}
