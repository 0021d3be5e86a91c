//! Downloads from the Hugging Face Hub into its standard cache (feature `hub`).
//! Only the files an embedder reads are fetched: configs, tokenizer,
//! safetensors weights and the sentence-transformers module folders.

use std::path::PathBuf;

use hf_hub::HFClientSync;

use crate::error::{Error, Result};

const FILES: &[&str] = &["*.json", "*.safetensors", "*/config.json", "*/*.json"];

pub fn download(repo: &str, revision: &str) -> Result<PathBuf> {
    let fetch_err = |e: hf_hub::HFError| Error::Fetch {
        what: format!("'{repo}' at revision '{revision}' from the Hugging Face Hub"),
        message: e.to_string(),
    };
    let (owner, name) = repo.split_once('/').expect("hub ids are owner/name");
    let client = HFClientSync::new().map_err(fetch_err)?;
    client
        .model(owner, name)
        .snapshot_download()
        .revision(revision)
        .allow_patterns(FILES.iter().map(|p| p.to_string()).collect())
        .send()
        .map_err(fetch_err)
}
