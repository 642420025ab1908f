//! The out-of-core path (`dataset.out_of_core`): the same fit and encoding as in memory, a
//! store that reopens as mapped columns (multi-hot ones included), a damaged store rebuilt,
//! refusals named.

use std::path::{Path, PathBuf};

use mdrec_data::{
    generate, ooc, prepare_for, write_csv, DatasetConfig, DatasetName, Prepared, SplitName,
    SplitSpec, SyntheticConfig,
};

/// Synthetic rows (more than two chunks of the out-of-core reader) in two CSV files, and their
/// schema (with the multi-hot `tags` field).
fn fixture(dir: &Path) -> (PathBuf, Vec<PathBuf>) {
    fixture_with(dir, false)
}

/// [`fixture`], with the rows in `timestamp` order when `by_time` (ties in generated order).
fn fixture_with(dir: &Path, by_time: bool) -> (PathBuf, Vec<PathBuf>) {
    let cfg = SyntheticConfig {
        n_rows: ooc::CHUNK_ROWS * 2 + 9_000,
        ..SyntheticConfig::default()
    };
    let mut data = generate(&cfg);
    assert!(data.schema_toml.contains("multi_hot"));
    let schema_path = dir.join("schema.toml");
    std::fs::write(&schema_path, &data.schema_toml).unwrap();
    if by_time {
        let t = &mut data.table;
        let time = t.column("timestamp").unwrap();
        let at = |r: usize| time.dict[time.codes[r] as usize].parse::<i64>().unwrap();
        let mut order: Vec<usize> = (0..t.n_rows()).collect();
        order.sort_by_key(|&r| at(r));
        for c in &mut t.columns {
            c.codes = order.iter().map(|&r| c.codes[r]).collect();
        }
    }
    // two files: rows split in the middle of a chunk
    let t = &data.table;
    let cut = ooc::CHUNK_ROWS + 123;
    let mut files = Vec::new();
    for (i, rows) in [0..cut, cut..t.n_rows()].into_iter().enumerate() {
        let mut part = t.clone();
        for c in &mut part.columns {
            c.codes = c.codes[rows.clone()].to_vec();
        }
        part.row_file = part.row_file[rows.clone()].to_vec();
        part.row_line = part.row_line[rows.clone()].to_vec();
        let p = dir.join(format!("part{i}.csv"));
        write_csv(&part, &p).unwrap();
        files.push(p);
    }
    (schema_path, files)
}

fn config(schema: &Path, files: &[PathBuf], cache: &Path, out_of_core: bool) -> DatasetConfig {
    DatasetConfig {
        name: DatasetName::Csv,
        schema: Some(schema.to_path_buf()),
        files: files.to_vec(),
        cache_dir: Some(cache.to_path_buf()),
        split: Some(SplitName::Time),
        time_column: Some("timestamp".into()),
        valid_from: Some(112_000),
        test_from: Some(126_000),
        out_of_core,
        ..DatasetConfig::default()
    }
}

/// `cfg` with another split (and no time bounds).
fn with_split(cfg: &DatasetConfig, split: SplitName) -> DatasetConfig {
    DatasetConfig {
        split: Some(split),
        time_column: None,
        valid_from: None,
        test_from: None,
        ..cfg.clone()
    }
}

fn run(cfg: &DatasetConfig) -> Result<Prepared, mdrec_data::DataError> {
    prepare_for(&cfg.request(7)?, cfg, 7)
}

#[test]
fn out_of_core_fits_and_encodes_what_memory_does_and_reopens_mapped() {
    let tmp = tempfile::tempdir().unwrap();
    let (schema, files) = fixture(tmp.path());
    let mem = run(&config(&schema, &files, &tmp.path().join("c1"), false)).unwrap();
    let ooc_cfg = config(&schema, &files, &tmp.path().join("c2"), true);
    let built = run(&ooc_cfg).unwrap();
    let info = built.cache.clone().unwrap();
    assert!(!info.hit && info.path.extension().unwrap() == "mdrec-store");
    assert!(built.train.is_mapped() && built.test.is_mapped());
    let n = |p: &Prepared| [p.train.len(), p.valid.len(), p.test.len()];
    assert!(n(&mem).iter().all(|&x| x > 1000), "{:?}", n(&mem));
    assert_eq!(n(&built), n(&mem));
    assert_eq!(built.schema, mem.schema, "same fit, OOV counts included");
    assert_eq!(built.vocabs, mem.vocabs);
    assert_eq!(built.train, mem.train);
    assert_eq!(built.valid, mem.valid);
    assert_eq!(built.test, mem.test);
    let tags = &built.train.multi[0];
    assert!(tags.offsets.is_mapped() && tags.values.len() > built.train.len());
    // a second prepare opens the store
    let again = run(&ooc_cfg).unwrap();
    assert!(again.cache.as_ref().unwrap().hit);
    assert_eq!(again.test, mem.test);
    // a truncated column file: reported, rebuilt, never trusted
    let cut = |store: &Path, file: &str| {
        let f = store.join(file);
        let len = std::fs::metadata(&f).unwrap().len();
        let w = std::fs::OpenOptions::new().write(true).open(&f).unwrap();
        w.set_len(len - 4).unwrap();
        let e = ooc::open(store).err().unwrap().to_string();
        assert!(e.contains(file) && e.contains("truncated"), "{e}");
    };
    cut(&info.path, "train.cat0");
    let rebuilt = run(&ooc_cfg).unwrap();
    let c = rebuilt.cache.as_ref().unwrap();
    assert!(!c.hit && c.rebuilt_reason.as_deref().unwrap().contains("train.cat0"));
    assert_eq!(rebuilt.train, mem.train);
    // a multi-hot column's values must be as many as its last offset says
    cut(&c.path, "valid.multi0.values");
}

#[test]
fn the_sequential_split_counts_the_rows_first_and_cuts_where_memory_does() {
    let tmp = tempfile::tempdir().unwrap();
    let (schema, files) = fixture(tmp.path());
    let mut mem = with_split(
        &config(&schema, &files, &tmp.path().join("m"), false),
        SplitName::Sequential,
    );
    // the boundaries fall inside the second and third chunks (and the second file)
    mem.ratios = [0.7, 0.15, 0.15];
    let ooc_cfg = DatasetConfig {
        out_of_core: true,
        cache_dir: Some(tmp.path().join("o")),
        ..mem.clone()
    };
    let (a, b) = (run(&mem).unwrap(), run(&ooc_cfg).unwrap());
    assert!(b.train.is_mapped());
    assert_eq!(
        [b.train.len(), b.valid.len(), b.test.len()],
        [a.train.len(), a.valid.len(), a.test.len()]
    );
    assert_eq!(b.schema, a.schema);
    assert_eq!(b.vocabs, a.vocabs);
    assert_eq!((&b.train, &b.valid, &b.test), (&a.train, &a.valid, &a.test));
}

/// Stream training's split: every row in train, ordered by time (ties in file order).
fn stream(cfg: &DatasetConfig) -> Result<Prepared, mdrec_data::DataError> {
    let mut req = cfg.request(7)?;
    req.split = SplitSpec::Stream {
        column: "timestamp".into(),
    };
    prepare_for(&req, cfg, 7)
}

#[test]
fn the_stream_split_takes_files_in_time_order_as_memory_does_and_names_a_row_out_of_order() {
    let tmp = tempfile::tempdir().unwrap();
    let (schema, files) = fixture_with(tmp.path(), true);
    let mem = stream(&config(&schema, &files, &tmp.path().join("m"), false)).unwrap();
    let ooc = stream(&config(&schema, &files, &tmp.path().join("o"), true)).unwrap();
    assert!(ooc.train.is_mapped());
    assert_eq!(ooc.train.len(), ooc::CHUNK_ROWS * 2 + 9_000);
    assert_eq!((ooc.valid.len(), ooc.test.len()), (0, 0));
    assert_eq!(ooc.schema, mem.schema);
    assert_eq!(ooc.vocabs, mem.vocabs);
    assert_eq!(ooc.train, mem.train);
    // Files out of time order: memory sorts them; out of core names the first row out of
    // order (here the first row of the second file, which comes before the first file).
    let swapped = [files[1].clone(), files[0].clone()];
    let sorted = stream(&config(&schema, &swapped, &tmp.path().join("m2"), false)).unwrap();
    assert_eq!(sorted.train.len(), mem.train.len());
    let e = stream(&config(&schema, &swapped, &tmp.path().join("o2"), true))
        .unwrap_err()
        .to_string();
    assert!(
        e.contains("part0.csv:2") && e.contains("timestamp") && e.contains("sorted"),
        "{e}"
    );
}

#[test]
fn the_random_split_is_drawn_row_by_row_from_the_seed() {
    let tmp = tempfile::tempdir().unwrap();
    let (schema, files) = fixture(tmp.path());
    let mut cfg = with_split(
        &config(&schema, &files, &tmp.path().join("a"), true),
        SplitName::Random,
    );
    cfg.ratios = [0.8, 0.1, 0.1];
    let a = run(&cfg).unwrap();
    let total = (a.train.len() + a.valid.len() + a.test.len()) as f64;
    assert_eq!(total as usize, ooc::CHUNK_ROWS * 2 + 9_000);
    let share = a.valid.len() as f64 / total;
    assert!((share - 0.1).abs() < 0.01, "valid share {share}");
    cfg.cache_dir = Some(tmp.path().join("b"));
    let b = run(&cfg).unwrap();
    assert_eq!(a.test, b.test, "same seed, same split");
    let mut other = cfg.clone();
    other.cache_dir = Some(tmp.path().join("c"));
    let c = prepare_for(&other.request(8).unwrap(), &other, 8).unwrap();
    assert_ne!(a.test.len(), 0);
    assert_ne!(a.test, c.test, "another seed, another split");
}

#[test]
fn what_out_of_core_cannot_do_is_refused_by_name() {
    let tmp = tempfile::tempdir().unwrap();
    let (schema, files) = fixture(tmp.path());
    let cache = tmp.path().join("c");
    let cfg = config(&schema, &files, &cache, true);
    let mut req = cfg.request(7).unwrap();
    req.split = SplitSpec::TimeQuantiles {
        column: "timestamp".into(),
        valid_q: 0.9,
        test_q: 0.95,
    };
    let e = prepare_for(&req, &cfg, 7).unwrap_err().to_string();
    assert!(e.contains("out_of_core") && e.contains("quantile"), "{e}");

    let cfg = DatasetConfig {
        name: DatasetName::Synthetic,
        out_of_core: true,
        cache_dir: Some(cache.clone()),
        ..DatasetConfig::default()
    };
    let e = run(&cfg).unwrap_err().to_string();
    assert!(e.contains("dataset.out_of_core applies to csv only"), "{e}");

    // a bad value is named by file, line and field
    let mut cfg = config(&schema, &files, &cache, true);
    let bad = tmp.path().join("bad.csv");
    let text = std::fs::read_to_string(&files[1]).unwrap();
    let mut lines: Vec<String> = text.lines().map(str::to_string).collect();
    let header: Vec<&str> = lines[0].split(',').collect();
    let price = header.iter().position(|h| *h == "price").unwrap();
    let mut cells: Vec<String> = lines[40_000].split(',').map(str::to_string).collect();
    cells[price] = "cheap".into();
    lines[40_000] = cells.join(",");
    std::fs::write(&bad, lines.join("\n") + "\n").unwrap();
    cfg.files = vec![files[0].clone(), bad];
    let e = run(&cfg).unwrap_err().to_string();
    assert!(
        e.contains("bad.csv:40001") && e.contains("price"),
        "the error names the file, line and field: {e}"
    );
    // nothing half-written is left behind
    let left: Vec<_> = std::fs::read_dir(tmp.path().join("c"))
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    assert!(
        left.iter().all(|n| !n.to_string_lossy().contains(".tmp-")),
        "{left:?}"
    );
}
