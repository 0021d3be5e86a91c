//! AdamW exactly as PyTorch's `torch.optim.AdamW` (decoupled weight decay,
//! bias-corrected moments), with its state exposed so that checkpoints can
//! hold it; the Hugging Face linear warm-up/decay schedule; and clipping by
//! global gradient norm. (candle's AdamW keeps its moments private.)

use std::collections::HashMap;

use candle_core::{Result, Tensor, Var};

#[derive(Debug, Clone, Copy, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct AdamWConfig {
    pub beta1: f64,
    pub beta2: f64,
    pub eps: f64,
    pub weight_decay: f64,
}

impl Default for AdamWConfig {
    /// The Hugging Face Trainer's defaults (weight decay 0).
    fn default() -> Self {
        Self {
            beta1: 0.9,
            beta2: 0.999,
            eps: 1e-8,
            weight_decay: 0.0,
        }
    }
}

/// First and second moments of one parameter.
#[derive(Debug, Clone)]
pub struct Moments {
    pub m: Tensor,
    pub v: Tensor,
}

pub struct AdamW {
    config: AdamWConfig,
    /// Optimiser steps taken.
    pub steps: u64,
    pub state: HashMap<String, Moments>,
}

impl AdamW {
    pub fn new(config: AdamWConfig) -> Self {
        Self {
            config,
            steps: 0,
            state: HashMap::new(),
        }
    }

    /// One update of every parameter that has a gradient, at learning rate `lr`.
    pub fn step(&mut self, params: &[(String, Var)], grads: &HashMap<String, Tensor>, lr: f64) -> Result<()> {
        self.steps += 1;
        let c = self.config;
        let (bias1, bias2) = (
            1.0 - c.beta1.powi(self.steps as i32),
            1.0 - c.beta2.powi(self.steps as i32),
        );
        for (name, var) in params {
            let Some(grad) = grads.get(name) else { continue };
            let grad = grad.to_dtype(var.dtype())?;
            let moments = match self.state.remove(name) {
                Some(m) => m,
                None => Moments {
                    m: grad.zeros_like()?,
                    v: grad.zeros_like()?,
                },
            };
            let m = ((&moments.m * c.beta1)? + (&grad * (1.0 - c.beta1))?)?;
            let v = ((&moments.v * c.beta2)? + (grad.sqr()? * (1.0 - c.beta2))?)?;
            let decayed = (var.as_tensor() * (1.0 - lr * c.weight_decay))?;
            let update = ((&m / bias1)? / ((&v / bias2)?.sqrt()? + c.eps)?)?;
            var.set(&(decayed - (update * lr)?)?)?;
            self.state.insert(name.clone(), Moments { m, v });
        }
        Ok(())
    }
}

/// Linear warm-up from 0 then linear decay to 0, as
/// `transformers.get_linear_schedule_with_warmup`: the multiplier at step
/// `step` (0-based, so the very first update uses 0 when there is warm-up).
pub fn linear_schedule(step: u64, warmup: u64, total: u64) -> f64 {
    if step < warmup {
        step as f64 / warmup.max(1) as f64
    } else {
        (total.saturating_sub(step)) as f64 / total.saturating_sub(warmup).max(1) as f64
    }
}

/// Warm-up steps for a ratio, rounded up as the Hugging Face Trainer does.
pub fn warmup_steps(total: u64, ratio: f64) -> u64 {
    (total as f64 * ratio).ceil() as u64
}

/// Scales `grads` so that their global L2 norm is at most `max_norm`, as
/// `torch.nn.utils.clip_grad_norm_`; returns the norm before clipping.
pub fn clip_grad_norm(grads: &mut HashMap<String, Tensor>, max_norm: f64) -> Result<f64> {
    let mut total = 0f64;
    for g in grads.values() {
        total += g
            .to_dtype(candle_core::DType::F64)?
            .sqr()?
            .sum_all()?
            .to_scalar::<f64>()?;
    }
    let norm = total.sqrt();
    if max_norm > 0.0 && norm > max_norm {
        let scale = max_norm / (norm + 1e-6);
        for g in grads.values_mut() {
            *g = (&*g * scale)?;
        }
    }
    Ok(norm)
}

#[cfg(test)]
mod tests {
    use super::*;
    use candle_core::Device;

    /// Two steps of torch.optim.AdamW(lr=0.1, weight_decay=0.01) on p = [1, -2]
    /// with gradients [0.5, 0.5] then [-1, 2], computed by hand.
    #[test]
    fn matches_pytorch_adamw() {
        let var = Var::new(&[1.0f64, -2.0], &Device::Cpu).unwrap();
        let params = vec![("p".to_string(), var.clone())];
        let mut opt = AdamW::new(AdamWConfig {
            weight_decay: 0.01,
            ..Default::default()
        });
        let grads = |g: [f64; 2]| HashMap::from([("p".to_string(), Tensor::new(&g, &Device::Cpu).unwrap())]);
        opt.step(&params, &grads([0.5, 0.5]), 0.1).unwrap();
        opt.step(&params, &grads([-1.0, 2.0]), 0.1).unwrap();
        // Reference from the update rule in torch/optim/adamw.py, evaluated in f64.
        let reference = |p0: f64, g1: f64, g2: f64| {
            let (b1, b2, eps, lr, wd) = (0.9f64, 0.999f64, 1e-8, 0.1, 0.01);
            let mut p = p0 * (1.0 - lr * wd);
            let (m1, v1) = ((1.0 - b1) * g1, (1.0 - b2) * g1 * g1);
            p -= lr * (m1 / (1.0 - b1)) / ((v1 / (1.0 - b2)).sqrt() + eps);
            p *= 1.0 - lr * wd;
            let (m2, v2) = (b1 * m1 + (1.0 - b1) * g2, b2 * v1 + (1.0 - b2) * g2 * g2);
            p - lr * (m2 / (1.0 - b1 * b1)) / ((v2 / (1.0 - b2 * b2)).sqrt() + eps)
        };
        let got = var.as_tensor().to_vec1::<f64>().unwrap();
        assert!((got[0] - reference(1.0, 0.5, -1.0)).abs() < 1e-12);
        assert!((got[1] - reference(-2.0, 0.5, 2.0)).abs() < 1e-12);
    }

    #[test]
    fn schedule_warms_up_then_decays_to_zero() {
        assert_eq!(warmup_steps(95, 0.1), 10);
        assert_eq!(linear_schedule(0, 10, 100), 0.0);
        assert_eq!(linear_schedule(5, 10, 100), 0.5);
        assert_eq!(linear_schedule(10, 10, 100), 1.0);
        assert_eq!(linear_schedule(55, 10, 100), 0.5);
        assert_eq!(linear_schedule(100, 10, 100), 0.0);
    }

    #[test]
    fn clipping_scales_to_the_global_norm() {
        let mut grads = HashMap::from([
            ("a".to_string(), Tensor::new(&[3.0f32], &Device::Cpu).unwrap()),
            ("b".to_string(), Tensor::new(&[4.0f32], &Device::Cpu).unwrap()),
        ]);
        assert!((clip_grad_norm(&mut grads, 1.0).unwrap() - 5.0).abs() < 1e-9);
        let a = grads["a"].to_vec1::<f32>().unwrap()[0];
        assert!((a - 0.6).abs() < 1e-5);
    }
}
