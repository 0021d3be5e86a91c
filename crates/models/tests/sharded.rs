//! A checkpoint split into shards with a `model.safetensors.index.json`, as
//! large models are published, loads and embeds exactly as the single file.

mod common;

use std::collections::HashMap;

use candle_core::{Device, Tensor};
use common::fixture;
use reasonembed_models::{Embedder, EmbedderOptions};

#[test]
fn sharded_checkpoints_load_like_single_files() {
    let source = fixture("tiny-qwen2");
    let dir = tempfile::tempdir().unwrap();
    for entry in std::fs::read_dir(&source).unwrap() {
        let path = entry.unwrap().path();
        if path.file_name().unwrap() != "model.safetensors" {
            std::fs::copy(&path, dir.path().join(path.file_name().unwrap())).unwrap();
        }
    }
    let tensors = candle_core::safetensors::load(source.join("model.safetensors"), &Device::Cpu).unwrap();
    let mut names: Vec<&String> = tensors.keys().collect();
    names.sort();
    let (first, second): (Vec<&String>, Vec<&String>) = names.iter().partition(|n| n.len().is_multiple_of(2)); // any split will do
    let mut weight_map = serde_json::Map::new();
    for (k, shard) in [
        (first, "model-00001-of-00002.safetensors"),
        (second, "model-00002-of-00002.safetensors"),
    ] {
        let part: HashMap<String, Tensor> = k.into_iter().map(|n| (n.clone(), tensors[n].clone())).collect();
        for name in part.keys() {
            weight_map.insert(name.clone(), shard.into());
        }
        candle_core::safetensors::save(&part, dir.path().join(shard)).unwrap();
    }
    let index = serde_json::json!({ "metadata": {}, "weight_map": weight_map });
    std::fs::write(dir.path().join("model.safetensors.index.json"), index.to_string()).unwrap();

    let texts = ["a sharded checkpoint", "the same vectors"];
    let single = Embedder::from_spec(source.to_str().unwrap(), EmbedderOptions::default()).unwrap();
    let sharded = Embedder::from_spec(dir.path().to_str().unwrap(), EmbedderOptions::default()).unwrap();
    assert_eq!(sharded.weight_files().len(), 2);
    let (a, b) = (
        single
            .encode(
                &texts,
                &reasonembed_models::EncodeOptions::default().with_batch_size(2),
                |_, _| {},
            )
            .unwrap(),
        sharded
            .encode(
                &texts,
                &reasonembed_models::EncodeOptions::default().with_batch_size(2),
                |_, _| {},
            )
            .unwrap(),
    );
    assert_eq!(a.data, b.data);

    // A missing shard is named.
    std::fs::remove_file(dir.path().join("model-00002-of-00002.safetensors")).unwrap();
    let err = Embedder::from_spec(dir.path().to_str().unwrap(), EmbedderOptions::default())
        .err()
        .unwrap()
        .to_string();
    assert!(err.contains("model-00002-of-00002.safetensors"), "{err}");
}
