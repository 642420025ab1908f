//! Synthetic domain sizes: long tails on request, both classes in every domain.

use mdrec_data::*;

fn per_domain(d: &SyntheticData, n_domains: usize) -> (Vec<usize>, Vec<Vec<[usize; 2]>>) {
    let t = &d.table;
    let dom = t.column("domain").unwrap();
    let n_tasks = d.true_prob.len();
    let mut size = vec![0usize; n_domains];
    let mut classes = vec![vec![[0usize; 2]; n_tasks]; n_domains];
    for r in 0..t.n_rows() {
        let k: usize = dom.get(r).parse().unwrap();
        size[k] += 1;
        for (task, c) in classes[k].iter_mut().enumerate() {
            let y: usize = t.column(&task_name(task)).unwrap().get(r).parse().unwrap();
            c[y] += 1;
        }
    }
    (size, classes)
}

fn task_name(t: usize) -> String {
    ["click", "like", "task2"][t].to_string()
}

#[test]
fn twenty_five_zipf_domains_put_about_half_under_two_percent() {
    let cfg = SyntheticConfig {
        n_domains: 25,
        ..SyntheticConfig::default()
    };
    assert_eq!(cfg.domain_skew, 1.0);
    let d = generate(&cfg);
    let (size, classes) = per_domain(&d, 25);
    let n = cfg.n_rows as f64;
    let under = size.iter().filter(|&&s| (s as f64) < 0.02 * n).count();
    // expected shares 1 / ((d + 1) · H_25): domains 14..25 are under 2 %
    assert!((11..=13).contains(&under), "{under} under 2 %: {size:?}");
    assert!(
        size.windows(2).filter(|w| w[0] < w[1]).count() <= 3,
        "{size:?}"
    );
    assert!(
        size[0] as f64 > 0.2 * n && (size[24] as f64) < 0.015 * n,
        "{size:?}"
    );
    for c in &classes {
        assert!(c.iter().all(|t| t[0] > 0 && t[1] > 0), "{classes:?}");
    }
    assert_eq!(d.forced_labels, 0);
    // equal sizes with skew 0
    let flat = generate(&SyntheticConfig {
        domain_skew: 0.0,
        ..cfg
    });
    let (size, _) = per_domain(&flat, 25);
    assert!(
        size.iter().all(|&s| (2_000..2_800).contains(&s)),
        "{size:?}"
    );
}

#[test]
fn tiny_domains_still_get_both_classes_and_defaults_are_untouched() {
    let cfg = SyntheticConfig {
        n_rows: 2_000,
        n_domains: 64,
        n_tasks: 3,
        domain_skew: 1.5,
        ..SyntheticConfig::default()
    };
    let d = generate(&cfg);
    assert!(d.forced_labels > 0);
    let (size, classes) = per_domain(&d, 64);
    for (k, c) in classes.iter().enumerate() {
        if size[k] >= 2 {
            assert!(c.iter().all(|t| t[0] > 0 && t[1] > 0), "domain {k}: {c:?}");
        }
    }
    // the tasks stay nested: task t positive only when task t - 1 is
    let t = &d.table;
    for r in 0..t.n_rows() {
        let y: Vec<&str> = (0..3)
            .map(|k| t.column(&task_name(k)).unwrap().get(r))
            .collect();
        let nested = (y[0] == "1" || y[1] == "0") && (y[1] == "1" || y[2] == "0");
        assert!(nested, "row {r}: {y:?}");
    }
    for c in [SyntheticConfig::default(), SyntheticConfig::tiny()] {
        assert_eq!(generate(&c).forced_labels, 0);
    }
}
