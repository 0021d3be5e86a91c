//! The Redapter loss and its gradients against the authors' algorithm, as a
//! committed PyTorch script implements it (`scripts/make_redapter_goldens.py`
//! → `fixtures/goldens/redapter.json`): warm-up mean, weighting with the
//! clamp active, queries whose reasoning version is harder (RI < 1), mapping
//! and normalisation switched off, start step −1, and plain InfoNCE.

use std::path::PathBuf;

use candle_core::{DType, Device, Tensor, Var};
use reasonembed_train::loss::{BatchEmbeddings, Loss, LossKind, Mapping, Normalization, RedapterConfig};
use serde_json::Value;

fn matrix(v: &Value, dtype: DType) -> Tensor {
    let rows: Vec<Vec<f64>> = serde_json::from_value(v.clone()).unwrap();
    let (r, c) = (rows.len(), rows[0].len());
    Tensor::from_vec(rows.concat(), (r, c), &Device::Cpu)
        .unwrap()
        .to_dtype(dtype)
        .unwrap()
}

fn relative_error(ours: &Tensor, expected: &Value) -> f64 {
    let e = matrix(expected, DType::F64);
    let ours = ours.to_dtype(DType::F64).unwrap();
    let diff = (&ours - &e)
        .unwrap()
        .abs()
        .unwrap()
        .max_all()
        .unwrap()
        .to_scalar::<f64>()
        .unwrap();
    diff / e
        .abs()
        .unwrap()
        .max_all()
        .unwrap()
        .to_scalar::<f64>()
        .unwrap()
        .max(1e-12)
}

fn loss_of(case: &Value) -> Loss {
    let name = case["name"].as_str().unwrap();
    let kind = if name == "infonce" {
        LossKind::InfoNce
    } else {
        LossKind::Redapter(RedapterConfig {
            start_step: case["start_step"].as_i64().unwrap(),
            mapping: if case["mapping"] == "clamp" {
                Mapping::Clamp
            } else {
                Mapping::None
            },
            clamp_min: case["clamp_min"].as_f64().unwrap(),
            clamp_max: case["clamp_max"].as_f64().unwrap(),
            normalization: if case["norm"] == "l1" {
                Normalization::L1
            } else {
                Normalization::None
            },
        })
    };
    Loss {
        temperature: case["tau"].as_f64().unwrap(),
        kind,
    }
}

#[test]
fn loss_and_gradients_match_the_released_algorithm() {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../fixtures/goldens/redapter.json");
    let golden: Value = serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap();
    let cases = golden["cases"].as_array().unwrap();
    assert!(cases.len() >= 8);
    for (dtype, tolerance) in [(DType::F64, 1e-10), (DType::F32, 1e-5)] {
        for case in cases {
            let name = case["name"].as_str().unwrap();
            let q = Var::from_tensor(&matrix(&case["q"], dtype)).unwrap();
            let p = Var::from_tensor(&matrix(&case["p"], dtype)).unwrap();
            let reasoning = matrix(&case["q_reason"], dtype);
            let batch = BatchEmbeddings {
                queries: q.as_tensor(),
                passages: p.as_tensor(),
                reasoning: Some(&reasoning),
                group: case["G"].as_u64().unwrap() as usize,
                exclude: None,
            };
            let out = loss_of(case).compute(&batch, case["step"].as_u64().unwrap()).unwrap();
            let expected = &case["expected"];
            let loss = out.loss.to_dtype(DType::F64).unwrap().to_scalar::<f64>().unwrap();
            let want = expected["loss"].as_f64().unwrap();
            assert!(
                ((loss - want) / want).abs() < tolerance,
                "{name} {dtype:?}: loss {loss} vs {want}"
            );
            if let Some(weights) = out.weights.as_ref() {
                let want: Vec<f64> = serde_json::from_value(expected["weights"].clone()).unwrap();
                for (a, b) in weights.iter().zip(&want) {
                    assert!(
                        (a - b).abs() < tolerance * 10.0,
                        "{name}: weights {weights:?} vs {want:?}"
                    );
                }
            }
            let grads = out.loss.backward().unwrap();
            let dq = relative_error(grads.get(q.as_tensor()).unwrap(), &expected["grad_q"]);
            let dp = relative_error(grads.get(p.as_tensor()).unwrap(), &expected["grad_p"]);
            assert!(
                dq < tolerance && dp < tolerance,
                "{name} {dtype:?}: gradient relative errors {dq:.2e} (q), {dp:.2e} (p)"
            );
        }
    }
}
