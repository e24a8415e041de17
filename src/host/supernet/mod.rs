//! The weight-sharing supernet, trainable with burn: one tensor per parameter
//! name of the space's [`SupernetLayout`]; a subnet's forward pass cuts its
//! parameters out of them by the elastic rules of [`crate::arch::elastic`],
//! so gradients of every subnet land in the shared tensors.
//!
//! BatchNorm trains on batch statistics; running statistics are not tracked
//! during training (they differ per subnet) but recalibrated for the subnet
//! that is evaluated or exported, as BigNAS/OFA do.

mod forward;
mod kernels;

use std::collections::BTreeMap;

use anyhow::{Context, Result};
use burn::module::{Module, Param};
use burn::tensor::{Device, Tensor, TensorData};

use crate::arch::elastic::slice_offsets;
use crate::arch::weights::{self, ParamKind, Weights};
use crate::arch::{Network, SupernetLayout};

pub use forward::{activation, BatchStats, Norm};

/// The trainable tensors, each stored 4-D (`[C]` as `[C,1,1,1]`).
#[derive(Module, Debug)]
pub struct SupernetParams {
    /// In the order of the layout's names.
    pub tensors: Vec<Param<Tensor<4>>>,
}

/// A supernet on a burn device.
#[derive(Debug)]
pub struct Supernet {
    pub layout: SupernetLayout,
    pub params: SupernetParams,
    /// BatchNorm running statistics, supernet-shaped (from the last recalibration).
    pub running: Weights,
    index: BTreeMap<String, usize>,
}

fn trainable(kind: ParamKind) -> bool {
    !matches!(kind, ParamKind::RunningMean | ParamKind::RunningVar)
}

fn as4(shape: &[usize]) -> [usize; 4] {
    let mut s = [1; 4];
    s[..shape.len()].copy_from_slice(shape);
    s
}

impl Supernet {
    /// A supernet holding `weights` (supernet-shaped: every layout name) on `device`.
    pub fn from_weights(layout: SupernetLayout, weights: &Weights, device: &Device) -> Result<Supernet> {
        let mut tensors = Vec::new();
        let mut index = BTreeMap::new();
        let mut running = Weights::default();
        for (name, spec) in &layout.params {
            let t = weights.get(name)?;
            anyhow::ensure!(t.shape == spec.shape, "`{name}`: shape {:?}, the supernet has {:?}", t.shape, spec.shape);
            if trainable(spec.kind) {
                let data = TensorData::new(t.data.clone(), as4(&t.shape));
                index.insert(name.clone(), tensors.len());
                tensors.push(Param::from_tensor(Tensor::from_data(data, device)));
            } else {
                running.tensors.insert(name.clone(), t.clone());
            }
        }
        Ok(Supernet { layout, params: SupernetParams { tensors }, running, index })
    }

    /// Checks that `net` is a subnet of this supernet: every parameter it needs
    /// exists and fits. [`Supernet::forward`] assumes it (and panics otherwise);
    /// a subnet wider than its space's tables fails here, naming the tensor.
    pub fn check(&self, net: &Network) -> Result<()> {
        for node in &net.nodes {
            for p in node.param_specs() {
                let Some(big) = self.layout.params.get(&p.name) else {
                    anyhow::bail!("the {} supernet has no parameter `{}`", self.layout.space, p.name);
                };
                slice_offsets(&big.shape, &p.shape).with_context(|| {
                    format!("`{}` of shape {:?} is not a slice of the supernet's {:?}", p.name, p.shape, big.shape)
                })?;
            }
        }
        Ok(())
    }

    /// Trainable tensors' names and 4-D shapes, in `params.tensors` order.
    pub fn trainable_names(&self) -> impl Iterator<Item = (&str, [usize; 4])> + '_ {
        self.layout.params.iter().filter(|(_, p)| trainable(p.kind)).map(|(n, p)| (n.as_str(), as4(&p.shape)))
    }

    /// Every supernet tensor, trained values and running statistics.
    pub fn to_weights(&self) -> Result<Weights> {
        let mut out = self.running.clone();
        for (name, &i) in &self.index {
            let shape = self.layout.params[name].shape.clone();
            let data = self.params.tensors[i]
                .val()
                .into_data()
                .try_to_vec::<f32>()
                .with_context(|| format!("reading `{name}` back to the host"))?;
            out.tensors.insert(name.clone(), weights::Tensor::new(shape, data));
        }
        Ok(out)
    }

    fn param(&self, name: &str) -> (Tensor<4>, [usize; 4]) {
        let i = *self.index.get(name).unwrap_or_else(|| panic!("supernet: no parameter `{name}`"));
        (self.params.tensors[i].val(), as4(&self.layout.params[name].shape))
    }

    /// A 4-D parameter cut to `shape` (prefixes, centred kernel crop).
    pub(crate) fn slice4(&self, name: &str, shape: [usize; 4]) -> Tensor<4> {
        let (t, big) = self.param(name);
        if big == shape {
            return t;
        }
        let o = slice_offsets(&big, &shape).with_context(|| name.to_string()).expect("subnet within the supernet");
        t.slice([o[0]..o[0] + shape[0], o[1]..o[1] + shape[1], o[2]..o[2] + shape[2], o[3]..o[3] + shape[3]])
    }

    /// The first `n` values of a 1-D parameter.
    pub(crate) fn slice1(&self, name: &str, n: usize) -> Tensor<1> {
        let (t, big) = self.param(name);
        let t = if big[0] == n { t } else { t.slice([0..n, 0..1, 0..1, 0..1]) };
        t.reshape([n])
    }

    /// The first `n` running statistics, as a constant on `like`'s device.
    fn running(&self, name: &str, n: usize, like: &Tensor<4>) -> Tensor<1> {
        let t = self.running.get(name).unwrap_or_else(|e| panic!("supernet: {e}"));
        Tensor::from_data(TensorData::new(t.data[..n].to_vec(), [n]), &like.device())
    }
}

impl Supernet {
    /// BatchNorm recalibration for one subnet: its batch statistics averaged
    /// over `batches` (equal weight per batch; biased variances, so a single
    /// batch reproduces training-mode outputs exactly) become the running
    /// statistics of the slices it uses. Run before evaluating or exporting.
    pub fn recalibrate(&mut self, net: &Network, batches: impl IntoIterator<Item = Tensor<4>>) -> Result<usize> {
        self.recalibrate_with_prior(net, batches.into_iter().map(|x| (x, None)))
    }

    /// [`Supernet::recalibrate`] of a temporal net: each batch with its priors.
    pub fn recalibrate_with_prior(
        &mut self,
        net: &Network,
        batches: impl IntoIterator<Item = (Tensor<4>, Option<Tensor<4>>)>,
    ) -> Result<usize> {
        let mut sums: BTreeMap<String, (Vec<f64>, Vec<f64>)> = BTreeMap::new();
        let mut n = 0usize;
        for (x, prior) in batches {
            let mut stats = BatchStats::new();
            // Values only: no graph is kept.
            let _ = self.forward_with_prior(net, x.detach(), prior.map(|p| p.detach()), Norm::Batch, Some(&mut stats));
            for (name, mean, var) in stats {
                let e = sums.entry(name).or_insert_with(|| (vec![0.0; mean.len()], vec![0.0; var.len()]));
                e.0.iter_mut().zip(&mean).for_each(|(s, v)| *s += *v as f64);
                e.1.iter_mut().zip(&var).for_each(|(s, v)| *s += *v as f64);
            }
            n += 1;
        }
        anyhow::ensure!(n > 0, "BN recalibration needs at least one batch");
        for (node, (mean, var)) in sums {
            for (suffix, values) in [("bn.running_mean", mean), ("bn.running_var", var)] {
                let name = format!("{node}.{suffix}");
                let t = self.running.tensors.get_mut(&name).with_context(|| format!("supernet: no `{name}`"))?;
                for (dst, s) in t.data.iter_mut().zip(values) {
                    *dst = (s / n as f64) as f32;
                }
            }
        }
        Ok(n)
    }
}
