//! BERT trained by hand: its embeddings and post-norm layers chained from
//! the primitives of [`super`], as `bert.rs` chains candle's ops.

use candle_core::Result;
use rayon::prelude::*;
use reasonembed_mkl::{Mat, Output};

use super::{
    AttentionTape, HandGrads, Heads, Layers, LinearTape, NormTape, Tape, add_assign, add_column_sums,
    add_embedding_rows, apply_mask, attention_backward, attention_forward, covers, f32_cpu, gelu_erf_backward,
    layer_norm_backward, layer_norm_forward, linear_backward, linear_forward,
};
use crate::batch::TokenBatch;
use crate::bert::{Bert, Embeddings, Layer};
use crate::nn::Activation;
use crate::ops::dropout_mask;
use crate::packed::{Packed, gelu_erf};

/// What BERT's backward pass needs.
pub(super) struct BertTape {
    embeddings: EmbeddingsTape,
    layers: Vec<LayerTape>,
}

struct EmbeddingsTape {
    norm: NormTape,
    dropout: Option<Vec<f32>>,
}

struct LayerTape {
    input: Vec<f32>,
    qkv: Vec<f32>,
    /// The tapes of the query, key, value, attention output, intermediate
    /// and output layers.
    linears: [LinearTape; 6],
    attention: AttentionTape,
    ctx: Vec<f32>,
    attn_dropout: Option<Vec<f32>>,
    attn_norm: NormTape,
    /// The attention block's output, the feed-forward block's input.
    mid: Vec<f32>,
    /// The feed-forward block's pre-activation.
    up: Vec<f32>,
    out_dropout: Option<Vec<f32>>,
    out_norm: NormTape,
}

impl Embeddings {
    fn forward_taped(&self, packed: &Packed) -> Result<(Vec<f32>, EmbeddingsTape)> {
        let x = self.sum_packed(packed)?;
        let mut out = vec![0f32; x.len()];
        let norm = layer_norm_forward(x, &self.norm, &mut out)?;
        let dropout = dropout_mask(out.len(), self.dropout)?;
        apply_mask(&mut out, &dropout);
        Ok((out, EmbeddingsTape { norm, dropout }))
    }

    fn backward(&self, mut dy: Vec<f32>, tape: &EmbeddingsTape, packed: &Packed, grads: &mut HandGrads) -> Result<()> {
        let dim = self.word.weight.dim(1)?;
        apply_mask(&mut dy, &tape.dropout);
        layer_norm_backward(&mut dy, &tape.norm, &self.norm, grads)?;
        add_embedding_rows(grads, &self.word.weight, packed.ids.iter().map(|&i| i as usize), &dy)?;
        add_embedding_rows(
            grads,
            &self.position.weight,
            packed.positions.iter().map(|&p| p as usize),
            &dy,
        )?;
        if let Some(g) = grads.of(&self.token_type.weight) {
            add_column_sums(Mat::dense(&dy, dy.len() / dim, dim), &mut g[..dim]);
        }
        Ok(())
    }
}

impl Layer {
    fn heads(&self) -> Result<Heads> {
        let hidden = self.query.parts().0.dim(0)?;
        Ok(Heads {
            q: self.heads,
            kv: self.heads,
            dim: hidden / self.heads,
            causal: false,
        })
    }

    fn forward_taped(&self, input: Vec<f32>, packed: &Packed) -> Result<(Vec<f32>, LayerTape)> {
        let heads = self.heads()?;
        let (t, h) = (packed.tokens(), heads.q * heads.dim);
        let inter = self.intermediate.parts().0.dim(0)?;
        let mut qkv = vec![0f32; t * 3 * h];
        let q = linear_forward(&input, t, &self.query, &mut qkv, 3 * h)?;
        let k = linear_forward(&input, t, &self.key, &mut qkv[h..], 3 * h)?;
        let v = linear_forward(&input, t, &self.value, &mut qkv[2 * h..], 3 * h)?;
        let (ctx, attention) = attention_forward(&qkv, packed, heads, self.attn_dropout)?;
        let mut z = vec![0f32; t * h];
        let o = linear_forward(&ctx, t, &self.attn_out, &mut z, h)?;
        let attn_dropout = dropout_mask(z.len(), self.hidden_dropout)?;
        apply_mask(&mut z, &attn_dropout);
        add_assign(&mut z, &input);
        let mut mid = vec![0f32; t * h];
        let attn_norm = layer_norm_forward(z, &self.attn_norm, &mut mid)?;
        let mut up = vec![0f32; t * inter];
        let i = linear_forward(&mid, t, &self.intermediate, &mut up, inter)?;
        let act = gelu(&up);
        let mut z = vec![0f32; t * h];
        let out_linear = linear_forward(&act, t, &self.output, &mut z, h)?;
        let out_dropout = dropout_mask(z.len(), self.hidden_dropout)?;
        apply_mask(&mut z, &out_dropout);
        add_assign(&mut z, &mid);
        let mut out = vec![0f32; t * h];
        let out_norm = layer_norm_forward(z, &self.out_norm, &mut out)?;
        let tape = LayerTape {
            input,
            qkv,
            linears: [q, k, v, o, i, out_linear],
            attention,
            ctx,
            attn_dropout,
            attn_norm,
            mid,
            up,
            out_dropout,
            out_norm,
        };
        Ok((out, tape))
    }

    /// The gradient of the layer's input from that of its output (`dy`).
    fn backward(&self, mut dy: Vec<f32>, tape: &LayerTape, packed: &Packed, grads: &mut HandGrads) -> Result<Vec<f32>> {
        let heads = self.heads()?;
        let (t, h) = (packed.tokens(), heads.q * heads.dim);
        let inter = self.intermediate.parts().0.dim(0)?;
        let [q, k, v, o, i, out_linear] = &tape.linears;
        // Feed-forward block: out = LN(mid + drop(W₂·GELU(W₁·mid)))
        layer_norm_backward(&mut dy, &tape.out_norm, &self.out_norm, grads)?;
        let mut dmid = dy.clone();
        apply_mask(&mut dy, &tape.out_dropout);
        let mut dact = vec![0f32; t * inter];
        let act = gelu(&tape.up);
        let dy = Mat::dense(&dy, t, h);
        linear_backward(
            dy,
            &act,
            &self.output,
            out_linear,
            grads,
            Some((&mut dact, Output::Overwrite)),
        )?;
        drop(act);
        dact.par_chunks_mut(4096)
            .zip(tape.up.par_chunks(4096))
            .for_each(|(d, x)| gelu_erf_backward(x, d));
        let dact = Mat::dense(&dact, t, inter);
        linear_backward(
            dact,
            &tape.mid,
            &self.intermediate,
            i,
            grads,
            Some((&mut dmid, Output::Accumulate)),
        )?;
        // Attention block: mid = LN(input + drop(Wₒ·attention(W_qkv·input)))
        layer_norm_backward(&mut dmid, &tape.attn_norm, &self.attn_norm, grads)?;
        let mut dinput = dmid.clone();
        apply_mask(&mut dmid, &tape.attn_dropout);
        let mut dctx = vec![0f32; t * h];
        let dmid = Mat::dense(&dmid, t, h);
        linear_backward(
            dmid,
            &tape.ctx,
            &self.attn_out,
            o,
            grads,
            Some((&mut dctx, Output::Overwrite)),
        )?;
        let dqkv = attention_backward(&tape.qkv, &dctx, &tape.attention, packed, heads);
        for (n, (layer, linear)) in [(&self.query, q), (&self.key, k), (&self.value, v)]
            .into_iter()
            .enumerate()
        {
            let dy = Mat::strided(&dqkv[n * h..], t, h, 3 * h);
            let dx = Some((&mut dinput[..], Output::Accumulate));
            linear_backward(dy, &tape.input, layer, linear, grads, dx)?;
        }
        Ok(dinput)
    }
}

/// The exact GELU of every value.
fn gelu(x: &[f32]) -> Vec<f32> {
    let mut out = x.to_vec();
    out.par_chunks_mut(4096).for_each(gelu_erf);
    out
}

impl Bert {
    /// Whether [`Bert::forward_taped`] covers this model: MKL linked, f32
    /// weights (and LoRA adapters) on the CPU, exact GELU.
    pub(crate) fn trains_by_hand(&self) -> bool {
        crate::packed::AVAILABLE
            && f32_cpu(&self.embeddings.word.weight)
            && self
                .layers
                .iter()
                .all(|l| l.act == Activation::Gelu && l.linears().all(covers))
    }

    /// The forward pass in training mode (dropout on) on packed rows: the
    /// last hidden states of the real tokens, `[tokens, hidden]`, and the
    /// tape for [`Bert::backward_taped`].
    pub(crate) fn forward_taped(&self, batch: &TokenBatch) -> Result<(Vec<f32>, Tape)> {
        let packed = Packed::new(batch)?;
        let (mut x, embeddings) = self.embeddings.forward_taped(&packed)?;
        let mut layers = Vec::with_capacity(self.layers.len());
        for layer in &self.layers {
            let (out, tape) = layer.forward_taped(x, &packed)?;
            layers.push(tape);
            x = out;
        }
        let layers = Layers::Bert(BertTape { embeddings, layers });
        Ok((x, Tape { packed, layers }))
    }

    /// Adds the trainable parameters' gradients to `grads`, given the
    /// gradient of the last hidden states that [`Bert::forward_taped`] gave.
    pub(crate) fn backward_taped(&self, tape: Tape, mut dy: Vec<f32>, grads: &mut HandGrads) -> Result<()> {
        let Tape {
            packed,
            layers: Layers::Bert(mut tape),
        } = tape
        else {
            candle_core::bail!("a tape of another architecture");
        };
        for layer in self.layers.iter().rev() {
            let layer_tape = tape.layers.pop().expect("a tape per layer");
            dy = layer.backward(dy, &layer_tape, &packed, grads)?;
        }
        self.embeddings.backward(dy, &tape.embeddings, &packed, grads)
    }
}
