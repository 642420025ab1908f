//! REW (§6.2 of Pan et al., KDD 2024): weights on a hand-computed log, and the repeat-exposure
//! rate of top-k recommendations.

use mdrec_data::EncodedData;
use mdrec_train::rew::{exposures, repeat_exposure, rew_weights, RewConfig};

/// (user, item, time, click, like)
const LOG: [(u64, u32, i64, f32, f32); 7] = [
    (1, 2, 0, 0.0, 1.0),
    (1, 2, 10, 0.0, 0.0),
    (1, 2, 20, 1.0, 0.0),
    (1, 2, 30, 0.0, 0.0),
    (1, 3, 30, 0.0, 0.0),
    (2, 2, 30, 0.0, 0.0),
    (1, 2, 200, 0.0, 0.0),
];

fn data(rows: &[(u64, u32, i64, f32, f32)]) -> EncodedData {
    EncodedData {
        n_rows: rows.len(),
        cat: vec![rows.iter().map(|r| r.1).collect()],
        domain: vec![0; rows.len()].into(),
        labels: vec![
            rows.iter().map(|r| r.3).collect(),
            rows.iter().map(|r| r.4).collect(),
        ],
        group: rows.iter().map(|r| r.0).collect(),
        time: rows.iter().map(|r| r.2).collect(),
        ..Default::default()
    }
}

fn cfg() -> RewConfig {
    RewConfig {
        alpha: 0.5,
        window_seconds: 100,
        half_life_seconds: 10.0,
        max_weight: 10.0,
        ..RewConfig::default()
    }
}

#[test]
fn exposures_count_earlier_rows_of_the_same_user_and_item_in_the_window() {
    let ex = exposures(&data(&LOG), 0, &cfg()).unwrap();
    let got: Vec<(f64, Option<i64>)> = ex.iter().map(|e| (e.decayed_count, e.last_gap)).collect();
    assert_eq!(
        got,
        vec![
            (0.0, None),
            (0.5, Some(10)),   // row 0, 10 s before: 2^-1
            (0.75, Some(10)),  // 2^-2 + 2^-1
            (0.875, Some(10)), // 2^-3 + 2^-2 + 2^-1 (the click counts as an exposure)
            (0.0, None),       // another item
            (0.0, None),       // another user
            (0.0, None),       // 170 s after the last one: outside the window
        ]
    );
}

#[test]
fn weights_of_a_hand_case() {
    let w = rew_weights(&data(&LOG), 0, 2, &cfg()).unwrap();
    let click: Vec<f32> = w.iter().step_by(2).copied().collect();
    let like: Vec<f32> = w.iter().skip(1).step_by(2).copied().collect();
    // click: row 1: w_count = 1.5, w_recency = 1 + 2^-1 = 1.5 -> 1.5;
    // row 3: w_count = 1.875, w_recency = 1.5 -> 1.6875; other negatives 1;
    // the positive (row 2): w_debias = (1 + 1.5 + 1.6875 + 1 + 1 + 1) / 6
    let debias = (1.0 + 1.5 + 1.6875 + 3.0) / 6.0;
    let want = [1.0, 1.5, debias, 1.6875, 1.0, 1.0, 1.0];
    for (g, w) in click.iter().zip(want) {
        assert!((*g as f64 - w).abs() < 1e-6, "click {click:?} vs {want:?}");
    }
    // like: row 0 is the positive; row 2 is now a repeated negative (1.75, 1.5 -> 1.625)
    let debias = (1.5 + 1.625 + 1.6875 + 3.0) / 6.0;
    let want = [debias, 1.5, 1.625, 1.6875, 1.0, 1.0, 1.0];
    for (g, w) in like.iter().zip(want) {
        assert!((*g as f64 - w).abs() < 1e-6, "like {like:?} vs {want:?}");
    }
    // the cap, and α = 1 (count only)
    let capped = rew_weights(
        &data(&LOG),
        0,
        2,
        &RewConfig {
            max_weight: 1.6,
            alpha: 1.0,
            ..cfg()
        },
    )
    .unwrap();
    assert!((capped[3 * 2] - 1.6).abs() < 1e-6, "{capped:?}");
    assert!((capped[2] - 1.5).abs() < 1e-6, "{capped:?}");
}

#[test]
fn repeat_exposure_of_top_k() {
    let train = data(&LOG);
    // user 1: item 2 at 40 (train row at 30: repeat), item 3 at 35 (repeat), item 4 (new);
    // user 2: item 2 at 10 (its training row is later: not a repeat)
    let test = data(&[
        (1, 2, 40, 0.0, 0.0),
        (1, 3, 35, 0.0, 0.0),
        (1, 4, 50, 0.0, 0.0),
        (2, 2, 10, 0.0, 0.0),
    ]);
    let k1 = RewConfig { top_k: 1, ..cfg() };
    // scores (first task): user 1 ranks item 2 first
    let logits = [0.9, 0.0, 0.1, 0.0, 0.5, 0.0, 0.3, 0.0];
    let (top, all) = repeat_exposure(&train, &test, &logits, 2, 0, &k1).unwrap();
    assert_eq!((top, all), (0.5, 0.5));
    // ranking the new item first removes the repeat from the top-1
    let logits = [0.1, 0.0, 0.2, 0.0, 0.9, 0.0, 0.3, 0.0];
    let (top, _) = repeat_exposure(&train, &test, &logits, 2, 0, &k1).unwrap();
    assert_eq!(top, 0.0);
    // top-2 of user 1: items 4 and 3 -> one repeat of three recommendations
    let (top, _) = repeat_exposure(
        &train,
        &test,
        &logits,
        2,
        0,
        &RewConfig { top_k: 2, ..cfg() },
    )
    .unwrap();
    assert!((top - 1.0 / 3.0).abs() < 1e-12);
}

#[test]
fn no_time_column_is_a_config_error() {
    let mut d = data(&LOG);
    d.time.clear();
    let e = rew_weights(&d, 0, 2, &cfg()).unwrap_err().to_string();
    assert!(e.contains("time"), "{e}");
}

#[test]
fn bad_numbers_name_the_key() {
    for (c, key) in [
        (
            RewConfig {
                alpha: 1.5,
                ..cfg()
            },
            "alpha",
        ),
        (
            RewConfig {
                window_seconds: 0,
                ..cfg()
            },
            "window_seconds",
        ),
        (
            RewConfig {
                half_life_seconds: 0.0,
                ..cfg()
            },
            "half_life",
        ),
        (
            RewConfig {
                max_weight: 0.5,
                ..cfg()
            },
            "max_weight",
        ),
        (RewConfig { top_k: 0, ..cfg() }, "top_k"),
    ] {
        let e = c.validate().unwrap_err();
        assert!(e.contains(key), "{e}");
    }
}
