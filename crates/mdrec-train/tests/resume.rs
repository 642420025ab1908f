//! Exact resume at the engine level: a checkpoint written to a file and restored into a freshly
//! built engine continues with the same losses and the same weights, bit for bit.

mod common;

use mdrec_nn::device::cpu;
use mdrec_nn::ModelContext;
use mdrec_train::engine::Engine;
use mdrec_train::resume::{read_checkpoint, write_checkpoint, TrainCheckpoint};
use mdrec_train::TrainConfig;

fn engine(model: &str, overrides: &serde_json::Value) -> Engine {
    let ctx = ModelContext::uniform(4, 12, 4, 1, 3, 2);
    let cfg = TrainConfig {
        lr: 0.01,
        batch_size: 64,
        ..TrainConfig::default()
    };
    let f = mdrec_models::find(model).unwrap();
    let c = f.resolve(overrides).unwrap();
    Engine::new(f, &c, ctx, &cfg, 7, &cpu()).unwrap()
}

#[test]
fn a_restored_engine_continues_bit_for_bit() {
    // deepfm: dropout and BatchNorm; m3oe bilevel: two optimizers, both with state when the
    // checkpoint is taken (an outer step before it); mmoe: plain
    let cases = [
        ("deepfm", serde_json::json!({})),
        ("m3oe", serde_json::json!({ "automl": "bilevel" })),
        ("mmoe", serde_json::json!({})),
    ];
    for (model, overrides) in cases {
        let data = common::random_data(640, 3, 4, 12, 3, 2);
        let rows: Vec<u32> = (0..640).collect();
        let outer_rows: Vec<u32> = (320..384).collect();
        let mut a = engine(model, &overrides);
        let bilevel = a.has_outer_params();
        assert_eq!(bilevel, model == "m3oe", "{model}: outer parameters");
        for (i, c) in rows.chunks(64).take(5).enumerate() {
            a.train_step(&data, c).unwrap();
            if bilevel && i == 2 {
                a.outer_step(&data, &outer_rows).unwrap();
            }
        }
        let dir = tempfile::tempdir().unwrap();
        let ck = TrainCheckpoint {
            engine: a.checkpoint().unwrap(),
            cursor: serde_json::json!({}),
            extra: Default::default(),
        };
        let (path, _) = write_checkpoint(dir.path(), 5, &ck, 2).unwrap();
        let mut b = engine(model, &overrides);
        b.restore_checkpoint(&read_checkpoint(&path).unwrap().engine)
            .unwrap();
        assert_eq!(
            a.model.named_tensors(),
            b.model.named_tensors(),
            "{model}: restored weights differ"
        );
        assert_eq!(a.store, b.store, "{model}: restored tables differ");
        assert_eq!(
            a.model.param_ids(),
            b.model.param_ids(),
            "{model}: parameter ids"
        );
        let probe: Vec<Vec<u32>> = vec![rows[..64].to_vec()];
        assert_eq!(
            a.eval_loss(&data, &probe).unwrap().to_bits(),
            b.eval_loss(&data, &probe).unwrap().to_bits(),
            "{model}: eval loss"
        );
        for (i, c) in rows.chunks(64).skip(5).enumerate() {
            let (la, lb) = (
                a.train_step(&data, c).unwrap(),
                b.train_step(&data, c).unwrap(),
            );
            assert_eq!(
                la.to_bits(),
                lb.to_bits(),
                "{model}: losses differ: {la} {lb}"
            );
            if bilevel && i % 2 == 0 {
                // the outer Adam continues from its saved moments (a fresh one would take a
                // different step)
                let (oa, ob) = (
                    a.outer_step(&data, &outer_rows).unwrap(),
                    b.outer_step(&data, &outer_rows).unwrap(),
                );
                assert_eq!(oa.to_bits(), ob.to_bits(), "{model}: outer losses differ");
            }
        }
        assert_eq!(
            a.model.named_tensors(),
            b.model.named_tensors(),
            "{model}: weights differ"
        );
        assert_eq!(a.model.report(), b.model.report(), "{model}: model report");
        assert_eq!(a.store, b.store, "{model}: tables differ");
    }
}
