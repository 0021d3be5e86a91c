//! Downloads from the Hugging Face Hub into its standard cache (feature `hub`).

use std::path::PathBuf;

use hf_hub::HFClientSync;

use crate::error::{Error, Result};
use crate::source::RepoKind;

/// Fetches the files of `repo` at `revision` that match `patterns`.
pub fn download(kind: RepoKind, repo: &str, revision: &str, patterns: &[&str]) -> Result<PathBuf> {
    let fetch_err = |e: hf_hub::HFError| Error::Fetch {
        what: format!("'{repo}' at revision '{revision}' from the Hugging Face Hub"),
        message: e.to_string(),
    };
    let (owner, name) = repo
        .split_once('/')
        .ok_or_else(|| Error::Input(format!("'{repo}' is not an owner/name id")))?;
    let client = HFClientSync::new().map_err(fetch_err)?;
    let patterns: Vec<String> = patterns.iter().map(|p| p.to_string()).collect();
    match kind {
        RepoKind::Model => client
            .model(owner, name)
            .snapshot_download()
            .revision(revision)
            .allow_patterns(patterns)
            .send(),
        RepoKind::Dataset => client
            .dataset(owner, name)
            .snapshot_download()
            .revision(revision)
            .allow_patterns(patterns)
            .send(),
    }
    .map_err(fetch_err)
}
