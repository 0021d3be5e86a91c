//! Text → token ids, exactly as the reference pipeline would produce them:
//! the checkpoint's `tokenizer.json` with its special tokens, truncation at the
//! model's max length (special tokens included), an EOS appended where the
//! model expects one, and no padding (batches are padded later, per batch).

use std::path::Path;

use tokenizers::{PostProcessor, Tokenizer, TruncationParams};

use crate::error::{Error, Result};

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TokenizerSettings {
    /// Maximum tokens per text, special tokens and appended EOS included.
    pub max_length: usize,
    /// EOS id appended after truncation, for models whose tokenizer does not
    /// add it itself (FlagEmbedding's `add_eos_token=True`).
    pub append_eos: Option<u32>,
    /// Lower-case texts first (`do_lower_case` in `sentence_bert_config.json`).
    pub lowercase: bool,
}

pub struct TextTokenizer {
    inner: Tokenizer,
    settings: TokenizerSettings,
}

impl TextTokenizer {
    /// Loads `tokenizer.json` and drops any padding or truncation it pins
    /// (all-MiniLM's file pins both to 128; sentence-transformers ignores them).
    pub fn from_file(path: &Path) -> Result<Tokenizer> {
        let mut tokenizer = Tokenizer::from_file(path).map_err(|e| {
            if !path.exists() {
                Error::MissingFile {
                    path: path.into(),
                    hint: "only fast tokenizers (tokenizer.json) are supported".into(),
                }
            } else {
                Error::Tokenizer {
                    path: path.into(),
                    message: e.to_string(),
                }
            }
        })?;
        tokenizer.with_padding(None);
        tokenizer.with_truncation(None).map_err(|e| Error::Tokenizer {
            path: path.into(),
            message: e.to_string(),
        })?;
        Ok(tokenizer)
    }

    pub fn new(mut inner: Tokenizer, settings: TokenizerSettings) -> Result<Self> {
        let reserved = inner.get_post_processor().map_or(0, |p| p.added_tokens(false))
            + usize::from(settings.append_eos.is_some());
        if settings.max_length <= reserved {
            return Err(Error::Input(format!(
                "max length {} leaves no room for text after {reserved} special tokens",
                settings.max_length
            )));
        }
        let params = TruncationParams {
            max_length: settings.max_length - usize::from(settings.append_eos.is_some()),
            ..Default::default()
        };
        inner
            .with_truncation(Some(params))
            .map_err(|e| Error::Input(e.to_string()))?;
        Ok(Self { inner, settings })
    }

    /// The same tokenizer with another maximum length.
    pub fn with_max_length(&self, max_length: usize) -> Result<Self> {
        Self::new(
            self.inner.clone(),
            TokenizerSettings {
                max_length,
                ..self.settings.clone()
            },
        )
    }

    /// Token ids of each text, truncated, with special tokens.
    pub fn encode(&self, texts: &[&str]) -> Result<Vec<Vec<u32>>> {
        let inputs: Vec<String> = if self.settings.lowercase {
            texts.iter().map(|t| t.to_lowercase()).collect()
        } else {
            texts.iter().map(|t| t.to_string()).collect()
        };
        let encodings = self
            .inner
            .encode_batch(inputs, true)
            .map_err(|e| Error::Input(format!("tokenization failed: {e}")))?;
        Ok(encodings
            .into_iter()
            .map(|e| {
                let mut ids = e.get_ids().to_vec();
                ids.extend(self.settings.append_eos);
                ids
            })
            .collect())
    }
}

/// Whether `tokenizer`'s post-processor already ends every sequence with `eos`.
pub fn appends_eos(tokenizer: &Tokenizer, eos: u32) -> bool {
    tokenizer
        .encode("a", true)
        .is_ok_and(|e| e.get_ids().last() == Some(&eos))
}
