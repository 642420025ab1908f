//! Amazon Review 2018 (Ni, Li and McAuley, "Justifying Recommendations using Distantly-Labeled
//! Reviews and Fine-Grained Aspects", EMNLP 2019) read from the official per-category files,
//! with AREAD's preprocessing (Luo et al., AAAI 2025; model spec §4.14.6).
//!
//! Layout (<https://nijianmo.github.io/amazon/index.html>, "Per-category data"): for each
//! category `<C>` (e.g. `Books`, `Home_and_Kitchen`) a review file `<C>.json.gz` and a metadata
//! file `meta_<C>.json.gz`, gzipped JSON lines (one object per line; an uncompressed `.json` is
//! also read). Every review file in `--data-dir` is read and needs its metadata file. Used keys:
//! reviews `overall` (1..5), `reviewerID`, `asin`, `unixReviewTime` (seconds); metadata `asin`,
//! `main_cat`, `brand`, `price` (e.g. `"$12.99"`), `rank` (e.g. `"1,234 in Books ("`, or a list
//! of such strings). Other keys are ignored.
//!
//! Preprocessing, in this order:
//!
//! 1. Reviews in the 12 months up to 2018-08-15 (`unixReviewTime` in [2017-08-15, 2018-08-15],
//!    both days included [INFERRED: AREAD's `--prepare2train_month 12`, data up to 2018-08-15]).
//! 2. The item's metadata joined by `asin`; the domain is its `main_cat`, one of AREAD's 25 main
//!    categories ([`AMAZON_DOMAINS`], code = position). Reviews of items without metadata or with
//!    another `main_cat` are dropped (counted in [`AmazonRawStats`]).
//! 3. 3-core: users and items with fewer than 3 reviews are dropped, repeated until none is left
//!    [INFERRED: the usual k-core fixed point].
//! 4. `label` = 1 when `overall` is above the user's mean `overall` over the kept reviews.
//! 5. Features: `itemid` (asin), `weekday` (of `unixReviewTime`, 0 = Monday, UTC), `domain`,
//!    `sales_chart` (the chart a sales rank is in, e.g. `Books`), `sales_rank` (floor(log2 rank)),
//!    `brand`, `price` (floor(log2(1 + price in dollars)), the lower end of a range)
//!    [INFERRED: AREAD's bins are not published], and the behaviour sequences
//!    `user_pos_6month_seq` / `user_neg_6month_seq`: the user's items with label 1 / 0 reviewed
//!    in the 183 days before the review (strictly earlier), the last 5 kept [INFERRED: window
//!    length]. `userid` (reviewerID) is the gAUC group, `timestamp` (`unixReviewTime`) the split
//!    column, `overall` is kept.
//!
//! Rows are ordered by time (ties: file order, files by name). The schema and split are those of
//! the `amazon` recipe ([`crate::aliccp_amazon::AMAZON_SCHEMA`], `aread`: timestamp quantiles
//! 0.9 / 0.95). AREAD's table: 17,664,862 rows, 25 domains, 12 with under 2 % of the rows.
//!
//! Memory: the review files are streamed and only the reviews inside the window are held (user,
//! item, rating, time, origin: 32 bytes each plus one entry per distinct user and item);
//! the metadata files are streamed after them and only the items those reviews name are held.
//! A line that is not a JSON object with the used keys is an error naming the file, line and key;
//! a cut-off gzip stream is a read error on the file.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use serde::Deserialize;

use crate::aliccp_amazon::{AMAZON_DOMAINS, AMAZON_SEQ_LEN};
use crate::raw::{ColumnBuilder, RawTable};
use crate::rawfiles::for_each_line;
use crate::DataError;

/// Where the release is published.
pub const AMAZON_URL: &str = "https://nijianmo.github.io/amazon/index.html";

/// First day of the window (2017-08-15 00:00 UTC).
pub const AMAZON_WINDOW_START: i64 = 1_502_755_200;
/// Last day of the window (2018-08-15 00:00 UTC; reviews carry whole days).
pub const AMAZON_WINDOW_END: i64 = 1_534_291_200;
/// Reviews a user and an item need (k-core).
pub const AMAZON_CORE: usize = 3;
/// Length of the behaviour-sequence window, in seconds (183 days).
pub const AMAZON_SEQ_WINDOW: i64 = 183 * 86_400;

/// The files of the release in a folder: review files (sorted by name) and their metadata.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AmazonRawFiles {
    /// `<C>.json.gz` per category.
    pub reviews: Vec<PathBuf>,
    /// `meta_<C>.json.gz`, in the same order.
    pub metas: Vec<PathBuf>,
}

impl AmazonRawFiles {
    /// All files (what the cache key hashes).
    pub fn all(&self) -> Vec<PathBuf> {
        let mut v = self.reviews.clone();
        v.extend(self.metas.iter().cloned());
        v
    }
}

/// What the preprocessing dropped.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct AmazonRawStats {
    /// Review lines read.
    pub reviews: u64,
    /// Reviews inside the window.
    pub in_window: u64,
    /// Of those, reviews whose item has no metadata.
    pub no_meta: u64,
    /// Of those, reviews whose item's `main_cat` is not one of the 25 domains.
    pub other_category: u64,
    /// Reviews removed by the 3-core filter.
    pub below_core: u64,
    /// Rows kept.
    pub kept: u64,
}

/// How to obtain the release.
pub fn amazon_hint() -> String {
    format!(
        "download the per-category review files <Category>.json.gz and metadata files \
         meta_<Category>.json.gz from {AMAZON_URL} (a form on that page gives the links; the data \
         is for research use, cite Ni, Li and McAuley, EMNLP 2019) and pass the folder holding \
         them with --data-dir"
    )
}

/// The review files in `dir` and their metadata files; an error names the missing file (no
/// review file at all, or the metadata of one) and how to obtain the data.
pub fn amazon_raw_files(dir: &Path) -> Result<AmazonRawFiles, DataError> {
    let listing = std::fs::read_dir(dir).map_err(|e| DataError::io(dir, e))?;
    let mut reviews: Vec<PathBuf> = Vec::new();
    for entry in listing {
        let p = entry.map_err(|e| DataError::io(dir, e))?.path();
        let Some(name) = p.file_name().and_then(|n| n.to_str()) else {
            continue;
        };
        if p.is_file()
            && !name.starts_with("meta_")
            && (name.ends_with(".json.gz") || name.ends_with(".json"))
        {
            reviews.push(p);
        }
    }
    reviews.sort();
    if reviews.is_empty() {
        return Err(DataError::Missing {
            path: dir.join("<Category>.json.gz"),
            what: "Amazon Review 2018 review file (one per category)".into(),
            hint: amazon_hint(),
        });
    }
    let mut metas = Vec::with_capacity(reviews.len());
    for r in &reviews {
        let name = r.file_name().and_then(|n| n.to_str()).unwrap_or_default();
        let stem = name
            .strip_suffix(".json.gz")
            .or_else(|| name.strip_suffix(".json"))
            .unwrap_or(name);
        let gz = dir.join(format!("meta_{stem}.json.gz"));
        let plain = dir.join(format!("meta_{stem}.json"));
        if gz.is_file() {
            metas.push(gz);
        } else if plain.is_file() {
            metas.push(plain);
        } else {
            return Err(DataError::Missing {
                path: gz,
                what: format!("Amazon Review 2018 metadata of {name}"),
                hint: amazon_hint(),
            });
        }
    }
    Ok(AmazonRawFiles { reviews, metas })
}

#[derive(Deserialize)]
struct Review {
    overall: f64,
    #[serde(rename = "reviewerID")]
    reviewer_id: String,
    asin: String,
    #[serde(rename = "unixReviewTime")]
    unix_review_time: i64,
}

#[derive(Deserialize)]
struct Meta {
    asin: String,
    #[serde(default)]
    main_cat: Option<String>,
    #[serde(default)]
    brand: Option<String>,
    #[serde(default)]
    price: Option<serde_json::Value>,
    #[serde(default)]
    rank: Option<serde_json::Value>,
}

/// Parses one JSON line, or an error naming the file, line and what is wrong.
fn json_line<T: for<'de> Deserialize<'de>>(
    file: &str,
    line: u64,
    text: &str,
) -> Result<T, DataError> {
    serde_json::from_str(text).map_err(|e| {
        let msg = e.to_string();
        // serde names a missing or mistyped key in its message
        let field = msg
            .split('`')
            .nth(1)
            .filter(|_| msg.contains("field"))
            .unwrap_or("json")
            .to_string();
        DataError::parse(file, line, field, msg)
    })
}

/// A sales rank as (chart, floor(log2 rank)): `"1,234 in Books ("` → `("Books", "10")`; a list
/// counts by its first entry; anything else is `("", "")`.
pub fn sales_rank(v: Option<&serde_json::Value>) -> (String, String) {
    let s = match v {
        Some(serde_json::Value::String(s)) => s.as_str(),
        Some(serde_json::Value::Array(a)) => a.first().and_then(|x| x.as_str()).unwrap_or(""),
        _ => "",
    };
    let Some(start) = s.find(|c: char| c.is_ascii_digit()) else {
        return (String::new(), String::new());
    };
    let rest = &s[start..];
    let end = rest
        .find(|c: char| !(c.is_ascii_digit() || c == ','))
        .unwrap_or(rest.len());
    let Ok(rank) = rest[..end].replace(',', "").parse::<u64>() else {
        return (String::new(), String::new());
    };
    let chart = rest[end..]
        .trim_start()
        .strip_prefix("in ")
        .map(|c| c.split(" (").next().unwrap_or("").trim().to_string())
        .unwrap_or_default();
    let bin = if rank == 0 { 0 } else { rank.ilog2() };
    (chart, bin.to_string())
}

/// A price bin: floor(log2(1 + dollars)) of `"$12.99"` (a range counts by its lower end); an
/// absent or unreadable price is `""`.
pub fn price_bin(v: Option<&serde_json::Value>) -> String {
    let p = match v {
        Some(serde_json::Value::String(s)) => {
            let first = s.split('-').next().unwrap_or("");
            first
                .trim()
                .trim_start_matches('$')
                .replace(',', "")
                .parse::<f64>()
                .ok()
        }
        Some(serde_json::Value::Number(n)) => n.as_f64(),
        _ => None,
    };
    match p {
        Some(p) if p.is_finite() && p >= 0.0 => ((1.0 + p).log2().floor() as u32).to_string(),
        _ => String::new(),
    }
}

/// Day of the week of a Unix time, 0 = Monday (UTC).
pub fn weekday(t: i64) -> u32 {
    // 1970-01-01 was a Thursday (3)
    (t.div_euclid(86_400) + 3).rem_euclid(7) as u32
}

/// Per item of the kept reviews: domain code and the interned item features.
#[derive(Clone, Copy)]
struct ItemMeta {
    domain: u8,
    chart: u32,
    rank: u32,
    brand: u32,
    price: u32,
}

/// Reads the release with AREAD's preprocessing (see the module docs).
pub fn load(files: &AmazonRawFiles) -> Result<RawTable, DataError> {
    load_with_stats(files).map(|(t, _)| t)
}

/// [`load`], with what the preprocessing dropped.
pub fn load_with_stats(files: &AmazonRawFiles) -> Result<(RawTable, AmazonRawStats), DataError> {
    let mut stats = AmazonRawStats::default();
    let mut users = ColumnBuilder::new("userid");
    let mut items = ColumnBuilder::new("itemid");
    // per kept review: (user, item, rating, time, file, line)
    let mut rows: Vec<(u32, u32, f32, i64, u16, u64)> = Vec::new();
    let mut table = RawTable::default();
    for (fi, p) in files.reviews.iter().enumerate() {
        let file = p.display().to_string();
        table.files.push(file.clone());
        let fi = u16::try_from(fi)
            .map_err(|_| DataError::Config("amazon-raw: too many review files".into()))?;
        for_each_line(p, |line, text| {
            let r: Review = json_line(&file, line, text)?;
            stats.reviews += 1;
            if !(AMAZON_WINDOW_START..=AMAZON_WINDOW_END).contains(&r.unix_review_time) {
                return Ok(());
            }
            if !(r.overall.is_finite() && (0.0..=5.0).contains(&r.overall)) {
                return Err(DataError::parse(
                    &file,
                    line,
                    "overall",
                    format!("expected a rating in 0..5, found {}", r.overall),
                ));
            }
            stats.in_window += 1;
            rows.push((
                users.intern(&r.reviewer_id),
                items.intern(&r.asin),
                r.overall as f32,
                r.unix_review_time,
                fi,
                line,
            ));
            Ok(())
        })?;
    }
    // the metadata of the reviewed items
    let mut chart = ColumnBuilder::new("sales_chart");
    let mut rank = ColumnBuilder::new("sales_rank");
    let mut brand = ColumnBuilder::new("brand");
    let mut price = ColumnBuilder::new("price");
    let n_items = items.n_values();
    let mut meta: Vec<Option<ItemMeta>> = vec![None; n_items];
    for p in &files.metas {
        let file = p.display().to_string();
        for_each_line(p, |line, text| {
            let m: Meta = json_line(&file, line, text)?;
            let Some(k) = items.code_of(&m.asin) else {
                return Ok(());
            };
            if meta[k as usize].is_some() {
                return Ok(()); // the first line of an asin counts
            }
            let domain = m
                .main_cat
                .as_deref()
                .and_then(|c| AMAZON_DOMAINS.iter().position(|d| *d == c))
                .map_or(u8::MAX, |d| d as u8);
            let (ch, rk) = sales_rank(m.rank.as_ref());
            meta[k as usize] = Some(ItemMeta {
                domain,
                chart: chart.intern(&ch),
                rank: rank.intern(&rk),
                brand: brand.intern(m.brand.as_deref().unwrap_or("").trim()),
                price: price.intern(&price_bin(m.price.as_ref())),
            });
            Ok(())
        })?;
    }
    rows.retain(|r| match meta[r.1 as usize] {
        None => {
            stats.no_meta += 1;
            false
        }
        Some(m) if m.domain == u8::MAX => {
            stats.other_category += 1;
            false
        }
        Some(_) => true,
    });
    // 3-core, to the fixed point
    loop {
        let mut nu: HashMap<u32, usize> = HashMap::new();
        let mut ni: HashMap<u32, usize> = HashMap::new();
        for r in &rows {
            *nu.entry(r.0).or_insert(0) += 1;
            *ni.entry(r.1).or_insert(0) += 1;
        }
        let before = rows.len();
        rows.retain(|r| nu[&r.0] >= AMAZON_CORE && ni[&r.1] >= AMAZON_CORE);
        stats.below_core += (before - rows.len()) as u64;
        if rows.len() == before {
            break;
        }
    }
    if rows.is_empty() {
        return Err(DataError::Config(format!(
            "amazon-raw: no reviews left after the window {} .. {}, the 25 main categories and the \
             3-core filter ({stats:?})",
            AMAZON_WINDOW_START, AMAZON_WINDOW_END
        )));
    }
    stats.kept = rows.len() as u64;
    // time order (stable: file order breaks ties)
    rows.sort_by_key(|r| r.3);
    // label: above the user's mean rating
    let mut sums: HashMap<u32, (f64, u32)> = HashMap::new();
    for r in &rows {
        let s = sums.entry(r.0).or_insert((0.0, 0));
        s.0 += f64::from(r.2);
        s.1 += 1;
    }
    let labels: Vec<bool> = rows
        .iter()
        .map(|r| {
            let (s, n) = sums[&r.0];
            f64::from(r.2) > s / f64::from(n)
        })
        .collect();
    // behaviour sequences: per user, the rows in time order
    let mut by_user: HashMap<u32, Vec<usize>> = HashMap::new();
    for (i, r) in rows.iter().enumerate() {
        by_user.entry(r.0).or_default().push(i);
    }
    let mut pos_seq = vec![String::new(); rows.len()];
    let mut neg_seq = vec![String::new(); rows.len()];
    for idx in by_user.values() {
        for (j, &i) in idx.iter().enumerate() {
            let t = rows[i].3;
            let (mut pos, mut neg): (Vec<&str>, Vec<&str>) = (Vec::new(), Vec::new());
            for &h in idx[..j].iter().rev() {
                let th = rows[h].3;
                if th >= t {
                    continue; // same day: not before
                }
                if th < t - AMAZON_SEQ_WINDOW
                    || (pos.len() >= AMAZON_SEQ_LEN && neg.len() >= AMAZON_SEQ_LEN)
                {
                    break;
                }
                let list = if labels[h] { &mut pos } else { &mut neg };
                if list.len() < AMAZON_SEQ_LEN {
                    list.push(items.value(rows[h].1));
                }
            }
            pos.reverse();
            neg.reverse();
            pos_seq[i] = pos.join("|");
            neg_seq[i] = neg.join("|");
        }
    }
    let mut c_weekday = ColumnBuilder::new("weekday");
    let mut c_domain = ColumnBuilder::new("domain");
    let mut c_time = ColumnBuilder::new("timestamp");
    let mut c_overall = ColumnBuilder::new("overall");
    let mut c_label = ColumnBuilder::new("label");
    let mut c_pos = ColumnBuilder::new("user_pos_6month_seq");
    let mut c_neg = ColumnBuilder::new("user_neg_6month_seq");
    let names = table.files.clone();
    for (i, r) in rows.iter().enumerate() {
        let Some(m) = meta[r.1 as usize] else {
            continue; // dropped above
        };
        users.push_code(r.0);
        items.push_code(r.1);
        chart.push_code(m.chart);
        rank.push_code(m.rank);
        brand.push_code(m.brand);
        price.push_code(m.price);
        c_weekday.push(&weekday(r.3).to_string());
        c_domain.push(&m.domain.to_string());
        c_time.push(&r.3.to_string());
        c_overall.push(&r.2.to_string());
        c_label.push(if labels[i] { "1" } else { "0" });
        c_pos.push(&pos_seq[i]);
        c_neg.push(&neg_seq[i]);
        table.push_origin(r.4, r.5, &names[r.4 as usize])?;
    }
    table.columns = [
        users, items, c_weekday, c_domain, chart, rank, brand, price, c_time, c_overall, c_label,
        c_pos, c_neg,
    ]
    .into_iter()
    .map(ColumnBuilder::finish)
    .collect();
    table.check_shape()?;
    Ok((table, stats))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn ranks_prices_and_weekdays() {
        assert_eq!(
            sales_rank(Some(&json!("1,234 in Books ("))),
            ("Books".to_string(), "10".to_string())
        );
        assert_eq!(
            sales_rank(Some(&json!([">#3 in Toys & Games (See Top 100)", "x"]))),
            ("Toys & Games".to_string(), "1".to_string())
        );
        assert_eq!(sales_rank(Some(&json!(""))), (String::new(), String::new()));
        assert_eq!(sales_rank(None), (String::new(), String::new()));
        assert_eq!(price_bin(Some(&json!("$12.99"))), "3");
        assert_eq!(price_bin(Some(&json!("$1,023.00 - $2,000.00"))), "10");
        assert_eq!(price_bin(Some(&json!(".a-box-inner"))), "");
        assert_eq!(price_bin(None), "");
        assert_eq!(weekday(0), 3); // Thursday
        assert_eq!(weekday(AMAZON_WINDOW_END), 2); // 2018-08-15 was a Wednesday
    }
}
