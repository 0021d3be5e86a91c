//! A padded batch of token sequences and the masks derived from it.
//!
//! Padding may sit on either side; every position-dependent quantity (attention
//! bias, position ids, the first and last real token) is computed from each
//! row's real length, so left and right padding give the same embeddings.

use candle_core::{DType, Device, Result, Tensor};
use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum PaddingSide {
    Left,
    Right,
}

/// How tokens may attend to each other.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Attention {
    /// Every real token sees every real token (encoders; gte-Qwen2, ReasonIR).
    Bidirectional,
    /// A token sees itself and the real tokens before it (decoders).
    Causal,
}

/// Additive bias for masked attention scores. Finite, so a row with every key
/// masked (a pad query under causal attention) gives a uniform softmax, not NaN.
const MASKED: f32 = f32::MIN;

#[derive(Debug, Clone)]
pub struct TokenBatch {
    pub input_ids: Tensor,
    lengths: Vec<usize>,
    seq_len: usize,
    padding_side: PaddingSide,
}

impl TokenBatch {
    /// Pads `seqs` to the longest one with `pad_id` on `padding_side`.
    pub fn new(seqs: &[&[u32]], pad_id: u32, padding_side: PaddingSide, device: &Device) -> Result<Self> {
        if seqs.iter().any(|s| s.is_empty()) {
            candle_core::bail!("cannot embed an empty token sequence");
        }
        let seq_len = seqs.iter().map(|s| s.len()).max().unwrap_or(0);
        let mut ids = Vec::with_capacity(seqs.len() * seq_len);
        for seq in seqs {
            let pads = std::iter::repeat_n(pad_id, seq_len - seq.len());
            match padding_side {
                PaddingSide::Left => ids.extend(pads.chain(seq.iter().copied())),
                PaddingSide::Right => ids.extend(seq.iter().copied().chain(pads)),
            }
        }
        let input_ids = Tensor::from_vec(ids, (seqs.len(), seq_len), device)?;
        let lengths = seqs.iter().map(|s| s.len()).collect();
        Ok(Self {
            input_ids,
            lengths,
            seq_len,
            padding_side,
        })
    }

    pub fn len(&self) -> usize {
        self.lengths.len()
    }

    pub fn is_empty(&self) -> bool {
        self.lengths.is_empty()
    }

    /// The real length of each sequence.
    pub fn lengths(&self) -> &[usize] {
        &self.lengths
    }

    pub fn real_tokens(&self) -> usize {
        self.lengths.iter().sum()
    }

    fn offset(&self, row: usize) -> usize {
        match self.padding_side {
            PaddingSide::Left => self.seq_len - self.lengths[row],
            PaddingSide::Right => 0,
        }
    }

    /// Index of the first real token of `row` (the CLS position).
    pub fn first_token(&self, row: usize) -> usize {
        self.offset(row)
    }

    /// Index of the last real token of `row`, whatever the padding side.
    pub fn last_token(&self, row: usize) -> usize {
        self.offset(row) + self.lengths[row] - 1
    }

    fn is_real(&self, row: usize, pos: usize) -> bool {
        let start = self.offset(row);
        pos >= start && pos < start + self.lengths[row]
    }

    /// `[b, s]` with 1 on real tokens and 0 on padding, in `dtype`.
    pub fn mask(&self, dtype: DType) -> Result<Tensor> {
        let values: Vec<f32> = (0..self.len())
            .flat_map(|r| (0..self.seq_len).map(move |p| (r, p)))
            .map(|(r, p)| if self.is_real(r, p) { 1.0 } else { 0.0 })
            .collect();
        Tensor::from_vec(values, (self.len(), self.seq_len), self.input_ids.device())?.to_dtype(dtype)
    }

    /// `[b, s]` positions counted from each row's first real token (0 on pads),
    /// so rotary and absolute position embeddings ignore the padding.
    pub fn position_ids(&self) -> Result<Tensor> {
        let values: Vec<u32> = (0..self.len())
            .flat_map(|r| (0..self.seq_len).map(move |p| (r, p)))
            .map(|(r, p)| p.saturating_sub(self.offset(r)).min(self.lengths[r].saturating_sub(1)) as u32)
            .collect();
        Tensor::from_vec(values, (self.len(), self.seq_len), self.input_ids.device())
    }

    /// Additive f32 attention bias: `[b, 1, 1, s]` (padding only) for
    /// bidirectional attention, `[b, 1, s, s]` (padding and causality) otherwise.
    pub fn attention_bias(&self, attention: Attention) -> Result<Tensor> {
        let (b, s) = (self.len(), self.seq_len);
        let device = self.input_ids.device();
        match attention {
            Attention::Bidirectional => {
                let values: Vec<f32> = (0..b)
                    .flat_map(|r| (0..s).map(move |k| (r, k)))
                    .map(|(r, k)| if self.is_real(r, k) { 0.0 } else { MASKED })
                    .collect();
                Tensor::from_vec(values, (b, 1, 1, s), device)
            }
            Attention::Causal => {
                let mut values = Vec::with_capacity(b * s * s);
                for r in 0..b {
                    for q in 0..s {
                        values.extend((0..s).map(|k| if k <= q && self.is_real(r, k) { 0.0 } else { MASKED }));
                    }
                }
                Tensor::from_vec(values, (b, 1, s, s), device)
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn batch(side: PaddingSide) -> TokenBatch {
        TokenBatch::new(&[&[5, 6, 7], &[8]], 0, side, &Device::Cpu).unwrap()
    }

    #[test]
    fn pads_on_the_requested_side() {
        let right = batch(PaddingSide::Right).input_ids.to_vec2::<u32>().unwrap();
        assert_eq!(right, vec![vec![5, 6, 7], vec![8, 0, 0]]);
        let left = batch(PaddingSide::Left).input_ids.to_vec2::<u32>().unwrap();
        assert_eq!(left, vec![vec![5, 6, 7], vec![0, 0, 8]]);
    }

    #[test]
    fn first_and_last_real_tokens_follow_the_padding() {
        let left = batch(PaddingSide::Left);
        assert_eq!((left.first_token(1), left.last_token(1)), (2, 2));
        let right = batch(PaddingSide::Right);
        assert_eq!((right.first_token(1), right.last_token(1)), (0, 0));
        assert_eq!(right.last_token(0), 2);
    }

    #[test]
    fn position_ids_start_at_the_first_real_token() {
        let left = batch(PaddingSide::Left)
            .position_ids()
            .unwrap()
            .to_vec2::<u32>()
            .unwrap();
        assert_eq!(left, vec![vec![0, 1, 2], vec![0, 0, 0]]);
        let right = batch(PaddingSide::Right)
            .position_ids()
            .unwrap()
            .to_vec2::<u32>()
            .unwrap();
        assert_eq!(right, vec![vec![0, 1, 2], vec![0, 0, 0]]);
    }

    #[test]
    fn causal_bias_masks_future_and_padding() {
        let bias = batch(PaddingSide::Left).attention_bias(Attention::Causal).unwrap();
        let row1 = bias.get(1).unwrap().get(0).unwrap().to_vec2::<f32>().unwrap();
        // Query at the real token (position 2) sees only itself.
        assert_eq!(row1[2], vec![MASKED, MASKED, 0.0]);
        let row0 = bias.get(0).unwrap().get(0).unwrap().to_vec2::<f32>().unwrap();
        assert_eq!(row0[1], vec![0.0, 0.0, MASKED]);
    }

    #[test]
    fn bidirectional_bias_masks_only_padding() {
        let bias = batch(PaddingSide::Right)
            .attention_bias(Attention::Bidirectional)
            .unwrap();
        assert_eq!(bias.dims(), &[2, 1, 1, 3]);
        let row1 = bias.get(1).unwrap().flatten_all().unwrap().to_vec1::<f32>().unwrap();
        assert_eq!(row1, vec![0.0, MASKED, MASKED]);
    }

    #[test]
    fn rejects_empty_sequences() {
        assert!(TokenBatch::new(&[&[]], 0, PaddingSide::Right, &Device::Cpu).is_err());
    }
}
