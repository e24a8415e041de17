//! Adam (Kingma & Ba; mmpose's optimiser for top-down pose nets) over the
//! supernet's tensors, with its moments kept here so a checkpoint can hold
//! them exactly, and mmpose's learning-rate schedule scaled to the run:
//! linear warm-up from 0.001·lr, then ×0.1 at 170/210 and 200/210 of the steps.

use burn::module::Param;
use burn::tensor::Gradients;
use burn::tensor::Tensor;

use super::super::supernet::Supernet;

/// Adam's constants (PyTorch's defaults, as mmpose uses them).
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct AdamConfig {
    pub beta1: f64,
    pub beta2: f64,
    pub epsilon: f64,
}

impl Default for AdamConfig {
    fn default() -> Self {
        AdamConfig { beta1: 0.9, beta2: 0.999, epsilon: 1e-8 }
    }
}

/// First and second moments per trainable tensor (supernet-shaped), and how
/// many updates each has had (a tensor no subnet of a step touched is not
/// updated that step, as in burn and PyTorch).
pub struct Adam {
    pub config: AdamConfig,
    /// `(m, v, updates)` per entry of `SupernetParams::tensors`.
    pub moments: Vec<(Tensor<4>, Tensor<4>, u64)>,
}

impl Adam {
    /// Zero moments for every tensor of `sn`.
    pub fn new(config: AdamConfig, sn: &Supernet) -> Adam {
        let moments = sn
            .params
            .tensors
            .iter()
            .map(|p| {
                let z = p.val().inner().zeros_like();
                (z.clone(), z, 0)
            })
            .collect();
        Adam { config, moments }
    }

    /// One update of every tensor that has a gradient in `grads`.
    pub fn step(&mut self, sn: &mut Supernet, grads: &Gradients, lr: f64) {
        let AdamConfig { beta1, beta2, epsilon } = self.config;
        let tensors = std::mem::take(&mut sn.params.tensors);
        sn.params.tensors = tensors
            .into_iter()
            .zip(self.moments.iter_mut())
            .map(|(p, (m, v, t))| {
                let Some(g) = p.grad(grads) else { return p };
                *t += 1;
                *m = m.clone().mul_scalar(beta1).add(g.clone().mul_scalar(1.0 - beta1));
                *v = v.clone().mul_scalar(beta2).add(g.square().mul_scalar(1.0 - beta2));
                let m_hat = m.clone().div_scalar(1.0 - beta1.powi(*t as i32));
                let v_hat = v.clone().div_scalar(1.0 - beta2.powi(*t as i32));
                let update = m_hat.div(v_hat.sqrt().add_scalar(epsilon)).mul_scalar(lr);
                let value = p.val().inner().sub(update);
                Param::from_tensor(Tensor::from_inner(value).require_grad())
            })
            .collect();
    }
}

/// The learning rate at each step.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct LrSchedule {
    pub base: f64,
    pub warmup: u64,
    pub steps: u64,
}

impl LrSchedule {
    /// The warm-up a run of `steps` gets unless told otherwise: mmpose's 500
    /// iterations, at most a tenth of the run.
    pub fn default_warmup(steps: u64) -> u64 {
        (steps / 10).min(500)
    }

    /// mmpose's COCO schedule (210 epochs, ×0.1 at 170 and 200, 500 warm-up
    /// iterations from 0.001·lr), with the milestones as fractions of `steps`.
    pub fn at(&self, step: u64) -> f64 {
        let decay = [170.0 / 210.0, 200.0 / 210.0]
            .iter()
            .filter(|&&f| step as f64 >= f * self.steps as f64)
            .fold(1.0, |a, _| a * 0.1);
        let warm = if step < self.warmup { 0.001 + 0.999 * step as f64 / self.warmup as f64 } else { 1.0 };
        self.base * decay * warm
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_schedule_warms_up_then_steps_down_twice() {
        let s = LrSchedule { base: 1e-3, warmup: 10, steps: 210 };
        assert!((s.at(0) - 1e-6).abs() < 1e-12);
        assert!((s.at(5) - 1e-3 * (0.001 + 0.999 * 0.5)).abs() < 1e-12);
        assert_eq!(s.at(10), 1e-3);
        assert_eq!(s.at(169), 1e-3);
        assert!((s.at(170) - 1e-4).abs() < 1e-15);
        assert!((s.at(200) - 1e-5).abs() < 1e-16);
    }
}
