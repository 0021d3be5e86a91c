//! Rotary position embeddings (Su et al., 2021) in the Hugging Face layout
//! (halves rotated, not interleaved), with the `llama3` frequency scaling of
//! Llama 3.1.

use candle_core::{DType, Tensor};
type Result<T, E = candle_core::Error> = std::result::Result<T, E>;
use serde::Deserialize;

/// `rope_scaling` (transformers 4) or `rope_parameters` (transformers 5).
#[derive(Debug, Clone, Default, Deserialize)]
pub struct RopeScaling {
    #[serde(alias = "type")]
    pub rope_type: Option<String>,
    pub rope_theta: Option<f64>,
    pub factor: Option<f64>,
    pub low_freq_factor: Option<f64>,
    pub high_freq_factor: Option<f64>,
    pub original_max_position_embeddings: Option<f64>,
}

/// Inverse frequencies `1 / θ^(2i/d)`, rescaled as `scaling` asks.
pub fn inv_freq(theta: f64, head_dim: usize, scaling: Option<&RopeScaling>) -> Result<Vec<f32>, String> {
    let base: Vec<f32> = (0..head_dim)
        .step_by(2)
        .map(|i| 1.0 / (theta as f32).powf(i as f32 / head_dim as f32))
        .collect();
    match scaling.and_then(|s| s.rope_type.as_deref()) {
        None | Some("default") => Ok(base),
        Some("llama3") => llama3(base, scaling.expect("checked above")),
        Some(other) => Err(format!("rope type '{other}' is not supported (default, llama3)")),
    }
}

/// Llama 3.1: long wavelengths slowed by `factor`, short ones kept, a smooth
/// blend in between (transformers' `_compute_llama3_parameters`).
fn llama3(base: Vec<f32>, s: &RopeScaling) -> Result<Vec<f32>, String> {
    let need = |v: Option<f64>, name: &str| v.ok_or(format!("llama3 rope scaling needs '{name}'"));
    let factor = need(s.factor, "factor")?;
    let low = need(s.low_freq_factor, "low_freq_factor")?;
    let high = need(s.high_freq_factor, "high_freq_factor")?;
    let old_ctx = need(s.original_max_position_embeddings, "original_max_position_embeddings")?;
    let (low_wavelen, high_wavelen) = (old_ctx / low, old_ctx / high);
    Ok(base
        .into_iter()
        .map(|f| {
            let f = f as f64;
            let wavelen = 2.0 * std::f64::consts::PI / f;
            let scaled = if wavelen > low_wavelen { f / factor } else { f };
            let smooth = (old_ctx / wavelen - low) / (high - low);
            let medium = (high_wavelen..=low_wavelen).contains(&wavelen);
            (if medium {
                (1.0 - smooth) * scaled / factor + smooth * scaled
            } else {
                scaled
            }) as f32
        })
        .collect())
}

/// `cos` and `sin` tables `[b, 1, s, head_dim]` for the given positions.
pub fn cos_sin(inv_freq: &[f32], position_ids: &Tensor, dtype: DType) -> Result<(Tensor, Tensor)> {
    let (b, s) = position_ids.dims2()?;
    let half = inv_freq.len();
    let positions = position_ids.to_dtype(DType::F32)?.flatten_all()?.to_vec1::<f32>()?;
    let (mut cos, mut sin) = (
        Vec::with_capacity(b * s * 2 * half),
        Vec::with_capacity(b * s * 2 * half),
    );
    for p in positions {
        let angles: Vec<f32> = inv_freq.iter().map(|f| p * f).collect();
        for _ in 0..2 {
            cos.extend(angles.iter().map(|a| a.cos()));
            sin.extend(angles.iter().map(|a| a.sin()));
        }
    }
    let device = position_ids.device();
    let shape = (b, 1, s, 2 * half);
    Ok((
        Tensor::from_vec(cos, shape, device)?.to_dtype(dtype)?,
        Tensor::from_vec(sin, shape, device)?.to_dtype(dtype)?,
    ))
}

/// `x·cos + rotate_half(x)·sin` for `x: [b, h, s, d]`.
pub fn apply(x: &Tensor, cos: &Tensor, sin: &Tensor) -> Result<Tensor> {
    let half = x.dim(3)? / 2;
    let rotated = Tensor::cat(&[&x.narrow(3, half, half)?.neg()?, &x.narrow(3, 0, half)?], 3)?;
    x.broadcast_mul(cos)? + rotated.broadcast_mul(sin)?
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn llama3_keeps_high_frequencies_and_slows_low_ones() {
        let scaling = RopeScaling {
            rope_type: Some("llama3".into()),
            factor: Some(8.0),
            low_freq_factor: Some(1.0),
            high_freq_factor: Some(4.0),
            original_max_position_embeddings: Some(8192.0),
            ..Default::default()
        };
        let plain = inv_freq(500000.0, 128, None).unwrap();
        let scaled = inv_freq(500000.0, 128, Some(&scaling)).unwrap();
        assert_eq!(plain[0], scaled[0]);
        let last = plain.len() - 1;
        assert!((scaled[last] - plain[last] / 8.0).abs() < 1e-12);
    }

    #[test]
    fn unknown_rope_types_are_refused() {
        let scaling = RopeScaling {
            rope_type: Some("yarn".into()),
            ..Default::default()
        };
        assert!(inv_freq(1e4, 8, Some(&scaling)).unwrap_err().contains("yarn"));
    }
}
