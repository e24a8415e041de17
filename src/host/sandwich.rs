//! One supernet training step by the sandwich rule with in-place distillation
//! (BigNAS; the paper's supernet training): the max subnet learns from the
//! labels, the min subnet and random subnets learn from the max subnet's
//! (detached) heatmaps; their losses are summed and back-propagated once
//! into the shared tensors. With a dense teacher ([`crate::host::train::dense`])
//! the max subnet also learns the teacher's heatmaps, a second term beside
//! the labels' (knowledge distillation's soft targets beside the hard ones).

use burn::tensor::{Device, Tensor, TensorData};

use super::supernet::{Norm, Supernet};
use crate::arch::Network;
use crate::coco::KEYPOINTS;

/// A batch on the training device.
#[derive(Clone, Debug)]
pub struct Batch {
    /// `B × 3 × H × W`, normalised.
    pub x: Tensor<4>,
    /// `B × 17 × H/4 × W/4` Gaussian targets.
    pub targets: Tensor<4>,
    /// `B × 17 × 1 × 1` per-keypoint weights (0: no target).
    pub weights: Tensor<4>,
    /// A dense teacher's heatmaps (`B × 17 × H/4 × W/4`) and weights (`B × 17 × 1 × 1`).
    pub dense: Option<(Tensor<4>, Tensor<4>)>,
}

impl Batch {
    /// From host buffers (`x`: B·3·H·W, `targets`: B·17·h·w, `weights`: B·17).
    pub fn from_host(
        x: Vec<f32>,
        targets: Vec<f32>,
        weights: Vec<f32>,
        (b, h, w): (usize, usize, usize),
        device: &Device,
    ) -> Batch {
        Batch {
            x: Tensor::from_data(TensorData::new(x, [b, 3, h, w]), device),
            targets: Tensor::from_data(TensorData::new(targets, [b, KEYPOINTS, h / 4, w / 4]), device),
            weights: Tensor::from_data(TensorData::new(weights, [b, KEYPOINTS, 1, 1]), device),
            dense: None,
        }
    }

    /// Adds a dense teacher's heatmaps (`B·17·h·w`) and per-keypoint scores
    /// (`B·17`), the term weighted by `lambda` (the scores are scaled by
    /// √λ, as [`heatmap_loss`] squares its weights).
    pub fn with_dense(mut self, heatmaps: Vec<f32>, scores: Vec<f32>, lambda: f32, device: &Device) -> Batch {
        let [b, k, h, w] = self.targets.dims();
        let scale = lambda.max(0.0).sqrt();
        let scores: Vec<f32> = scores.into_iter().map(|s| s * scale).collect();
        self.dense = Some((
            Tensor::from_data(TensorData::new(heatmaps, [b, k, h, w]), device),
            Tensor::from_data(TensorData::new(scores, [b, k, 1, 1]), device),
        ));
        self
    }
}

/// mmpose's `KeypointMSELoss` with target weights: mean of (w·(pred − target))².
pub fn heatmap_loss(pred: Tensor<4>, target: Tensor<4>, weights: Tensor<4>) -> Tensor<1> {
    ((pred - target) * weights).powi_scalar(2).mean()
}

/// The losses of one step: the summed loss to back-propagate, each
/// subnet's (max first: its loss on the labels) as numbers, and the max
/// subnet's dense-teacher term.
pub struct StepLoss {
    pub total: Tensor<1>,
    pub each: Vec<f32>,
    pub dense: Option<f32>,
}

/// Forward passes of the sandwich: `nets[0]` is the max subnet (labels),
/// the others (min, random…) distil from its detached output.
pub fn sandwich_loss(sn: &Supernet, nets: &[Network], batch: &Batch) -> StepLoss {
    let max_out = sn.forward(&nets[0], batch.x.clone(), Norm::Batch, None);
    let teacher = max_out.clone().detach();
    let mut total = heatmap_loss(max_out.clone(), batch.targets.clone(), batch.weights.clone());
    let mut each = vec![total.clone().into_scalar::<f32>()];
    let mut dense = None;
    if let Some((targets, weights)) = &batch.dense {
        let l = heatmap_loss(max_out, targets.clone(), weights.clone());
        dense = Some(l.clone().into_scalar::<f32>());
        total = total + l;
    }
    let ones = batch.weights.ones_like();
    for net in &nets[1..] {
        let out = sn.forward(net, batch.x.clone(), Norm::Batch, None);
        let l = heatmap_loss(out, teacher.clone(), ones.clone());
        each.push(l.clone().into_scalar::<f32>());
        total = total + l;
    }
    StepLoss { total, each, dense }
}
