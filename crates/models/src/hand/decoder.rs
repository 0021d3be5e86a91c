//! The decoders (Qwen3, Qwen2, Llama) trained by hand: pre-norm layers of
//! RMSNorm, rotary attention with grouped key/value heads (and Qwen3's
//! per-head QK-norm), SwiGLU, chained from the primitives of [`super`] as
//! `decoder.rs` chains candle's ops.

use candle_core::Result;
use multiversion::multiversion;
use rayon::prelude::*;
use reasonembed_mkl::{Mat, Output};

use super::{
    AttentionTape, HandGrads, Heads, Layers, LinearTape, Tape, add_assign, add_embedding_rows, add_partials,
    attention_backward, attention_forward, covers, f32_cpu, linear_backward, linear_forward, norm_row_backward,
    rms_norm_backward, rms_norm_forward, rms_row,
};
use crate::batch::{Attention, TokenBatch};
use crate::decoder::{Decoder, Layer};
use crate::nn::Activation;
use crate::packed::{Packed, add_rows, exp};

/// What a decoder's backward pass needs.
pub(super) struct DecoderTape {
    rope: Rope,
    layers: Vec<LayerTape>,
    /// The input of the final norm, and its `1/rms` per row.
    last: Vec<f32>,
    last_rstd: Vec<f32>,
}

struct LayerTape {
    input: Vec<f32>,
    input_rstd: Vec<f32>,
    normed: Vec<f32>,
    /// Q and K before QK-norm (`(q + kv)·dim` per row) and `1/rms` per row
    /// and head, when the model norms them.
    qk_raw: Option<(Vec<f32>, Vec<f32>)>,
    /// Q and K after QK-norm and rotation, and V.
    qkv: Vec<f32>,
    /// The tapes of q, k, v, o, gate, up and down.
    linears: [LinearTape; 7],
    attention: AttentionTape,
    ctx: Vec<f32>,
    /// The residual stream after attention, its `1/rms` and its norm.
    mid: Vec<f32>,
    mid_rstd: Vec<f32>,
    normed2: Vec<f32>,
    /// `[gate | up]` per row, before the activation.
    gate_up: Vec<f32>,
}

/// Rotary cosines and sines of each packed token, `half` of each per row.
struct Rope {
    cos: Vec<f32>,
    sin: Vec<f32>,
    half: usize,
}

impl Rope {
    fn new(packed: &Packed, inv_freq: &[f32]) -> Self {
        let angles = packed
            .positions
            .iter()
            .flat_map(|&p| inv_freq.iter().map(move |f| p as f32 * f));
        let (cos, sin) = angles.map(|a| (a.cos(), a.sin())).unzip();
        Self {
            cos,
            sin,
            half: inv_freq.len(),
        }
    }

    /// Rotates the Q and K heads of every `qkv` row by its token's angles
    /// (rotated halves, as [`crate::rope::apply`]); `inverse` rotates back,
    /// which is the rotation's backward pass.
    fn rotate(&self, qkv: &mut [f32], heads: Heads, inverse: bool) {
        let (w, d, half) = (heads.width(), heads.dim, self.half);
        let sign = if inverse { -1.0 } else { 1.0 };
        qkv.par_chunks_mut(w)
            .zip(self.cos.par_chunks(half).zip(self.sin.par_chunks(half)))
            .for_each(|(row, (cos, sin))| {
                for head in row[..(heads.q + heads.kv) * d].chunks_mut(d) {
                    let (a, b) = head.split_at_mut(half);
                    for (((a, b), c), s) in a.iter_mut().zip(b).zip(cos).zip(sin) {
                        let s = sign * s;
                        (*a, *b) = (*a * c - *b * s, *b * c + *a * s);
                    }
                }
            });
    }
}

/// `silu(gate) · up` of each `[gate | up]` row.
fn swiglu(gate_up: &[f32], inter: usize) -> Vec<f32> {
    let mut out = vec![0f32; gate_up.len() / 2];
    out.par_chunks_mut(inter)
        .zip(gate_up.par_chunks(2 * inter))
        .for_each(|(o, row)| swiglu_row(row, o));
    out
}

#[multiversion(targets("x86_64+avx512f+avx512bw+avx512vl+fma", "x86_64+avx2+fma"))]
fn swiglu_row(row: &[f32], out: &mut [f32]) {
    let (gate, up) = row.split_at(out.len());
    for ((o, g), u) in out.iter_mut().zip(gate).zip(up) {
        *o = g / (1.0 + exp(-g)) * u;
    }
}

/// The backward pass of [`swiglu`]: the gradient of `[gate | up]` rows.
fn swiglu_backward(dact: &[f32], gate_up: &[f32], inter: usize) -> Vec<f32> {
    let mut out = vec![0f32; gate_up.len()];
    out.par_chunks_mut(2 * inter)
        .zip(gate_up.par_chunks(2 * inter).zip(dact.par_chunks(inter)))
        .for_each(|(o, (row, d))| swiglu_row_backward(row, d, o));
    out
}

/// With `s = σ(g)`: `d gate = d · u · s · (1 + g·(1 − s))`, `d up = d · g · s`.
#[multiversion(targets("x86_64+avx512f+avx512bw+avx512vl+fma", "x86_64+avx2+fma"))]
fn swiglu_row_backward(row: &[f32], d: &[f32], out: &mut [f32]) {
    let (gate, up) = row.split_at(d.len());
    let (dgate, dup) = out.split_at_mut(d.len());
    for ((((dg, du), g), u), d) in dgate.iter_mut().zip(dup).zip(gate).zip(up).zip(d) {
        let s = 1.0 / (1.0 + exp(-g));
        *dg = d * u * s * (1.0 + g * (1.0 - s));
        *du = d * g * s;
    }
}

impl Layer {
    fn heads(&self, attention: Attention) -> Heads {
        let a = &self.attn;
        Heads {
            q: a.num_heads,
            kv: a.num_kv_heads,
            dim: a.head_dim,
            causal: attention == Attention::Causal,
        }
    }

    /// QK-norm on the Q and K heads of every `qkv` row, in place: the raw
    /// heads and `1/rms` per row and head, for the backward pass.
    fn qk_norm_forward(&self, qkv: &mut [f32], heads: Heads) -> Result<Option<(Vec<f32>, Vec<f32>)>> {
        let Some((q_norm, k_norm)) = &self.attn.qk_norm else {
            return Ok(None);
        };
        let ((qw, eps), (kw, _)) = (q_norm.parts_f32()?, k_norm.parts_f32()?);
        let (w, d, n) = (heads.width(), heads.dim, heads.q + heads.kv);
        let mut raw = vec![0f32; qkv.len() / w * n * d];
        let mut rstd = vec![0f32; qkv.len() / w * n];
        qkv.par_chunks_mut(w)
            .zip(raw.par_chunks_mut(n * d).zip(rstd.par_chunks_mut(n)))
            .for_each(|(row, (raw, rstd))| {
                raw.copy_from_slice(&row[..n * d]);
                for (j, (out, r)) in row[..n * d].chunks_mut(d).zip(rstd.iter_mut()).enumerate() {
                    let weight = if j < heads.q { &qw } else { &kw };
                    *r = rms_row(&raw[j * d..][..d], weight, eps, out);
                }
            });
        Ok(Some((raw, rstd)))
    }

    /// The backward pass of [`Layer::qk_norm_forward`] on `dqkv`, in place.
    fn qk_norm_backward(&self, dqkv: &mut [f32], tape: &LayerTape, heads: Heads, grads: &mut HandGrads) -> Result<()> {
        let (Some((q_norm, k_norm)), Some((raw, rstd))) = (&self.attn.qk_norm, &tape.qk_raw) else {
            return Ok(());
        };
        let ((qw, _), (kw, _)) = (q_norm.parts_f32()?, k_norm.parts_f32()?);
        let (w, d, n) = (heads.width(), heads.dim, heads.q + heads.kv);
        let rows = dqkv.len() / w;
        let block = crate::packed::chunk_rows(rows);
        let partial: Vec<(Vec<f32>, Vec<f32>)> = dqkv
            .par_chunks_mut(block * w)
            .zip(raw.par_chunks(block * n * d).zip(rstd.par_chunks(block * n)))
            .map(|(dqkv, (raw, rstd))| {
                let (mut dq, mut dk, mut xhat) = (vec![0f32; d], vec![0f32; d], vec![0f32; d]);
                for (row, (raw, rstd)) in dqkv.chunks_mut(w).zip(raw.chunks(n * d).zip(rstd.chunks(n))) {
                    for (j, ((dy, x), &r)) in row[..n * d].chunks_mut(d).zip(raw.chunks(d)).zip(rstd).enumerate() {
                        xhat.iter_mut().zip(x).for_each(|(h, x)| *h = x * r);
                        let (weight, dw) = if j < heads.q { (&qw, &mut dq) } else { (&kw, &mut dk) };
                        norm_row_backward(dy, &xhat, r, weight, dw, None);
                    }
                }
                (dq, dk)
            })
            .collect();
        let (dq, dk): (Vec<_>, Vec<_>) = partial.into_iter().unzip();
        add_partials(grads, q_norm.tensor(), dq.into_iter());
        add_partials(grads, k_norm.tensor(), dk.into_iter());
        Ok(())
    }

    fn forward_taped(
        &self,
        input: Vec<f32>,
        packed: &Packed,
        decoder: &Decoder,
        rope: &Rope,
    ) -> Result<(Vec<f32>, LayerTape)> {
        let (a, m) = (&self.attn, &self.mlp);
        let heads = self.heads(decoder.attention);
        let (t, h, d) = (packed.tokens(), decoder.hidden_size(), heads.dim);
        let (w, inter) = (heads.width(), m.gate_proj.parts().0.dim(0)?);
        let mut normed = vec![0f32; t * h];
        let input_rstd = rms_norm_forward(&input, &self.input_norm, &mut normed)?;
        let mut qkv = vec![0f32; t * w];
        let q = linear_forward(&normed, t, &a.q_proj, &mut qkv, w)?;
        let k = linear_forward(&normed, t, &a.k_proj, &mut qkv[heads.q * d..], w)?;
        let v = linear_forward(&normed, t, &a.v_proj, &mut qkv[(heads.q + heads.kv) * d..], w)?;
        let qk_raw = self.qk_norm_forward(&mut qkv, heads)?;
        rope.rotate(&mut qkv, heads, false);
        let (ctx, attention) = attention_forward(&qkv, packed, heads, a.dropout)?;
        let mut mid = vec![0f32; t * h];
        let o = linear_forward(&ctx, t, &a.o_proj, &mut mid, h)?;
        add_assign(&mut mid, &input);
        let mut normed2 = vec![0f32; t * h];
        let mid_rstd = rms_norm_forward(&mid, &self.post_attn_norm, &mut normed2)?;
        let mut gate_up = vec![0f32; t * 2 * inter];
        let gate = linear_forward(&normed2, t, &m.gate_proj, &mut gate_up, 2 * inter)?;
        let up = linear_forward(&normed2, t, &m.up_proj, &mut gate_up[inter..], 2 * inter)?;
        let act = swiglu(&gate_up, inter);
        let mut out = vec![0f32; t * h];
        let down = linear_forward(&act, t, &m.down_proj, &mut out, h)?;
        add_assign(&mut out, &mid);
        let tape = LayerTape {
            input,
            input_rstd,
            normed,
            qk_raw,
            qkv,
            linears: [q, k, v, o, gate, up, down],
            attention,
            ctx,
            mid,
            mid_rstd,
            normed2,
            gate_up,
        };
        Ok((out, tape))
    }

    /// The gradient of the layer's input from that of its output (`dy`).
    fn backward(
        &self,
        dy: Vec<f32>,
        tape: &LayerTape,
        packed: &Packed,
        decoder: &Decoder,
        rope: &Rope,
        grads: &mut HandGrads,
    ) -> Result<Vec<f32>> {
        let (a, m) = (&self.attn, &self.mlp);
        let heads = self.heads(decoder.attention);
        let (t, h, d) = (packed.tokens(), decoder.hidden_size(), heads.dim);
        let (w, inter) = (heads.width(), m.gate_proj.parts().0.dim(0)?);
        let [q, k, v, o, gate, up, down] = &tape.linears;
        // Feed-forward block: out = mid + down(silu(gate(n)) · up(n)), n = RMSNorm(mid)
        let mut dmid = dy.clone();
        let act = swiglu(&tape.gate_up, inter);
        let mut dact = vec![0f32; t * inter];
        linear_backward(
            Mat::dense(&dy, t, h),
            &act,
            &m.down_proj,
            down,
            grads,
            Some((&mut dact, Output::Overwrite)),
        )?;
        drop(act);
        let dgate_up = swiglu_backward(&dact, &tape.gate_up, inter);
        let mut dnormed = vec![0f32; t * h];
        for (layer, linear, offset, output) in [
            (&m.gate_proj, gate, 0, Output::Overwrite),
            (&m.up_proj, up, inter, Output::Accumulate),
        ] {
            let dy = Mat::strided(&dgate_up[offset..], t, inter, 2 * inter);
            linear_backward(dy, &tape.normed2, layer, linear, grads, Some((&mut dnormed, output)))?;
        }
        rms_norm_backward(
            &dnormed,
            &tape.mid,
            &tape.mid_rstd,
            &self.post_attn_norm,
            grads,
            &mut dmid,
        )?;
        // Attention block: mid = input + o(attention(rope(qk_norm(qkv(n))))), n = RMSNorm(input)
        let mut dinput = dmid.clone();
        let mut dctx = vec![0f32; tape.ctx.len()];
        linear_backward(
            Mat::dense(&dmid, t, h),
            &tape.ctx,
            &a.o_proj,
            o,
            grads,
            Some((&mut dctx, Output::Overwrite)),
        )?;
        let mut dqkv = attention_backward(&tape.qkv, &dctx, &tape.attention, packed, heads);
        rope.rotate(&mut dqkv, heads, true);
        self.qk_norm_backward(&mut dqkv, tape, heads, grads)?;
        for (layer, linear, offset, width, output) in [
            (&a.q_proj, q, 0, heads.q * d, Output::Overwrite),
            (&a.k_proj, k, heads.q * d, heads.kv * d, Output::Accumulate),
            (&a.v_proj, v, (heads.q + heads.kv) * d, heads.kv * d, Output::Accumulate),
        ] {
            let dy = Mat::strided(&dqkv[offset..], t, width, w);
            linear_backward(dy, &tape.normed, layer, linear, grads, Some((&mut dnormed, output)))?;
        }
        rms_norm_backward(
            &dnormed,
            &tape.input,
            &tape.input_rstd,
            &self.input_norm,
            grads,
            &mut dinput,
        )?;
        Ok(dinput)
    }
}

impl Decoder {
    /// Whether [`Decoder::forward_taped`] covers this model: MKL linked, f32
    /// weights (and LoRA adapters) on the CPU, SwiGLU with SiLU.
    pub(crate) fn trains_by_hand(&self) -> bool {
        crate::packed::AVAILABLE
            && f32_cpu(&self.embed_tokens.weight)
            && self
                .layers
                .iter()
                .all(|l| l.mlp.act == Activation::Silu && l.linears().all(covers))
    }

    /// The forward pass in training mode on packed rows: the final-norm
    /// hidden states of the real tokens, `[tokens, hidden]`, and the tape
    /// for [`Decoder::backward_taped`].
    pub(crate) fn forward_taped(&self, batch: &TokenBatch) -> Result<(Vec<f32>, Tape)> {
        let packed = Packed::new(batch)?;
        let h = self.hidden_size();
        let mut x = vec![0f32; packed.tokens() * h];
        add_rows(
            &self.embed_tokens.weight,
            packed.ids.iter().map(|&i| i as usize),
            &mut x,
        )?;
        let rope = Rope::new(&packed, &self.inv_freq);
        let mut layers = Vec::with_capacity(self.layers.len());
        for layer in &self.layers {
            let (out, tape) = layer.forward_taped(x, &packed, self, &rope)?;
            layers.push(tape);
            x = out;
        }
        let mut hidden = vec![0f32; x.len()];
        let last_rstd = rms_norm_forward(&x, &self.norm, &mut hidden)?;
        let tape = DecoderTape {
            rope,
            layers,
            last: x,
            last_rstd,
        };
        let layers = Layers::Decoder(tape);
        Ok((hidden, Tape { packed, layers }))
    }

    /// Adds the trainable parameters' gradients to `grads`, given the
    /// gradient of the hidden states that [`Decoder::forward_taped`] gave.
    pub(crate) fn backward_taped(&self, tape: Tape, dy: Vec<f32>, grads: &mut HandGrads) -> Result<()> {
        let Tape {
            packed,
            layers: Layers::Decoder(mut tape),
        } = tape
        else {
            candle_core::bail!("a tape of another architecture");
        };
        let mut dx = vec![0f32; dy.len()];
        rms_norm_backward(&dy, &tape.last, &tape.last_rstd, &self.norm, grads, &mut dx)?;
        for layer in self.layers.iter().rev() {
            let layer_tape = tape.layers.pop().expect("a tape per layer");
            dx = layer.backward(dx, &layer_tape, &packed, self, &tape.rope, grads)?;
        }
        add_embedding_rows(
            grads,
            &self.embed_tokens.weight,
            packed.ids.iter().map(|&i| i as usize),
            &dx,
        )
    }
}
