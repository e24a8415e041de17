//! Weight sharing across the five elastic dimensions: every subnet's
//! parameters are slices of one set of supernet tensors.
//!
//! The rules, as the paper states them (and OFA/BigNAS do): depth takes the
//! first D blocks of a stage (names are positional, so this is free); width and
//! expansion take the first W output channels; group keeps the first I/g input
//! channels of every filter; kernel takes the centred k×k crop of the largest
//! kernel; attention on/off includes or leaves out the block's SE/GC
//! parameters. On a 4-D weight that is: prefix on dims 0 and 1, centred crop on
//! dims 2 and 3; on a 1-D parameter (bias, norm), a prefix.
//!
//! [`SupernetLayout`] is the shape of each supernet tensor: for every name any
//! subnet of the space has, the largest extent along each dim over all of its
//! subnets (the max subnet alone is not enough: its fewest groups at the
//! largest width can still give fewer inputs per filter than a narrower
//! choice with fewer groups).

use std::collections::BTreeMap;

use anyhow::{bail, ensure, Context, Result};

use super::lower::InputSize;
use super::net::Network;
use super::space::{BlockSpace, SearchSpace, SpaceName};
use super::subnet::{BlockChoice, HeadChoice, Sample, Subnet};
use super::weights::{residual_branch_ends, ParamKind, ParamSpec, Tensor, Weights};

/// Where a subnet tensor of `small` shape sits inside a supernet tensor of
/// `big` shape: the start offset along each dim.
pub fn slice_offsets(big: &[usize], small: &[usize]) -> Result<Vec<usize>> {
    ensure!(big.len() == small.len(), "rank {} vs {}", big.len(), small.len());
    big.iter()
        .zip(small)
        .enumerate()
        .map(|(d, (&b, &s))| {
            ensure!(s <= b, "dim {d}: {s} exceeds the supernet's {b}");
            // Kernel dims of a 4-D weight: centred crop (odd kernels in, odd out).
            Ok(if big.len() == 4 && d >= 2 { (b - s) / 2 } else { 0 })
        })
        .collect()
}

impl Tensor {
    /// The slice of this supernet tensor that a subnet tensor of `shape` uses.
    pub fn elastic_slice(&self, shape: &[usize]) -> Result<Tensor> {
        let at = slice_positions(&self.shape, shape)?;
        Ok(Tensor::new(shape.to_vec(), at.map(|i| self.data[i]).collect()))
    }

    /// The supernet tensor of shape `big` whose [`Tensor::elastic_slice`] of
    /// this tensor's shape is this tensor, and which is zero elsewhere (a
    /// pretrained kernel inside a larger elastic one, see `train --init`).
    pub fn elastic_embed(&self, big: &[usize]) -> Result<Tensor> {
        let mut data = vec![0f32; big.iter().product()];
        for (i, v) in slice_positions(big, &self.shape)?.zip(&self.data) {
            data[i] = *v;
        }
        Ok(Tensor::new(big.to_vec(), data))
    }
}

/// Row-major positions in a tensor of shape `big` of the elements of its
/// slice of shape `small`, in the slice's row-major order.
fn slice_positions(big: &[usize], small: &[usize]) -> Result<impl Iterator<Item = usize>> {
    let offsets = slice_offsets(big, small)?;
    let rank = small.len();
    let mut strides = vec![1usize; rank];
    for d in (0..rank.saturating_sub(1)).rev() {
        strides[d] = strides[d + 1] * big[d + 1];
    }
    let small = small.to_vec();
    let len: usize = small.iter().product();
    let mut idx = vec![0usize; rank];
    Ok((0..len).map(move |_| {
        let at: usize = (0..rank).map(|d| (idx[d] + offsets[d]) * strides[d]).sum();
        for d in (0..rank).rev() {
            idx[d] += 1;
            if idx[d] < small[d] {
                break;
            }
            idx[d] = 0;
        }
        at
    }))
}

impl Weights {
    /// A subnet's weights cut out of supernet weights (for export, evaluation
    /// and the standalone-network checks).
    pub fn slice_for(&self, net: &Network) -> Result<Weights> {
        let mut tensors = BTreeMap::new();
        for node in &net.nodes {
            for p in node.param_specs() {
                let big = self.get(&p.name)?;
                let t = big.elastic_slice(&p.shape).with_context(|| format!("`{}`", p.name))?;
                tensors.insert(p.name, t);
            }
        }
        Ok(Weights { tensors })
    }
}

/// The heatmap layer's weight (every space ends in it).
const FINAL_WEIGHT: &str = "head.final.weight";

/// The supernet's tensors: name → largest shape, with what kind each is.
#[derive(Clone, Debug, PartialEq)]
pub struct SupernetLayout {
    pub space: SpaceName,
    pub input: InputSize,
    pub params: BTreeMap<String, ParamSpec>,
}

impl SupernetLayout {
    /// Sweeps every block choice of every stage (and branch) and every head
    /// choice, the rest held at the max subnet, and keeps the largest extent
    /// of each dim of each parameter.
    pub fn of(space_name: SpaceName, input: InputSize) -> Result<SupernetLayout> {
        let space = SearchSpace::get(space_name);
        let max = Subnet::sample(&space, Sample::Max);
        let mut layout = SupernetLayout { space: space_name, input, params: BTreeMap::new() };
        layout.absorb(&max.network(input)?)?;
        for (i, row) in space.stages.iter().enumerate() {
            for (b, branch) in row.branches.iter().enumerate() {
                for choice in all_choices(branch) {
                    let mut s = max.clone();
                    s.stages[i].branches[b] = choice;
                    layout.absorb(&s.network(input)?)?;
                }
            }
        }
        if let Some(head) = &space.head {
            for width in head.width.choices() {
                for group in head.group.choices(width) {
                    let mut s = max.clone();
                    s.head = Some(HeadChoice { width, group });
                    layout.absorb(&s.network(input)?)?;
                }
            }
        }
        Ok(layout)
    }

    /// The layout of one network trained alone (a temporal net): its own
    /// parameters at their own shapes, so its only "subnet" is itself.
    pub fn of_network(space: SpaceName, input: InputSize, net: &Network) -> Result<SupernetLayout> {
        let mut layout = SupernetLayout { space, input, params: BTreeMap::new() };
        layout.absorb(net)?;
        Ok(layout)
    }

    fn absorb(&mut self, net: &Network) -> Result<()> {
        for node in &net.nodes {
            for p in node.param_specs() {
                match self.params.get_mut(&p.name) {
                    None => {
                        self.params.insert(p.name.clone(), p);
                    }
                    Some(have) => {
                        if have.shape.len() != p.shape.len() {
                            bail!("`{}`: rank {} vs {}", p.name, have.shape.len(), p.shape.len());
                        }
                        for (a, b) in have.shape.iter_mut().zip(&p.shape) {
                            *a = (*a).max(*b);
                        }
                        if let (ParamKind::Weight { fan_in: a }, ParamKind::Weight { fan_in: b }) =
                            (&mut have.kind, p.kind)
                        {
                            *a = (*a).max(b);
                        }
                    }
                }
            }
        }
        Ok(())
    }

    /// Seeded random supernet tensors, as [`Weights::random`] draws them for
    /// one network (norm scales at the ends of the max subnet's residual
    /// branches kept small): for numerics tests and profiling.
    pub fn random_weights(&self, seed: u64) -> Result<Weights> {
        let max = Subnet::sample(&SearchSpace::get(self.space), Sample::Max).network(self.input)?;
        let damped: Vec<String> =
            residual_branch_ends(&max).into_iter().map(|v| format!("{}.", max.nodes[v - 1].name)).collect();
        let specs = self.params.values().map(|p| (p.clone(), damped.iter().any(|d| p.name.starts_with(d.as_str()))));
        Ok(Weights::random_specs(specs, seed))
    }

    /// The usual starting point for training ([`Weights::for_training`]),
    /// except the final 1×1 conv: normal with σ 0.001, as mmpose initialises
    /// its heatmap heads, so training starts from near-zero heatmaps.
    pub fn training_weights(&self, seed: u64) -> Weights {
        let mut w = Weights::for_training(self.params.values().cloned(), seed);
        if let Some(t) = w.tensors.get_mut(FINAL_WEIGHT) {
            let mut rng = crate::arch::rng::Rng::new(seed ^ 0xF1A1);
            t.data.iter_mut().for_each(|v| *v = (rng.normal() * 1e-3) as f32);
        }
        w
    }

    /// Number of scalars in the supernet.
    pub fn numel(&self) -> usize {
        self.params.values().map(|p| p.shape.iter().product::<usize>()).sum()
    }
}

/// Every block choice a row allows.
fn all_choices(row: &BlockSpace) -> Vec<BlockChoice> {
    let mut out = Vec::new();
    let attention: &[bool] = if row.attention_searchable { &[false, true] } else { &[false] };
    for width in row.width.choices() {
        for expansion in row.expansion.choices() {
            for kernel in row.kernel.choices() {
                for group in row.group.choices(row.grouped_channels(width, expansion)) {
                    for &attention in attention {
                        out.push(BlockChoice { width, kernel, group, attention, expansion });
                    }
                }
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::arch::rng::Rng;

    #[test]
    fn slices_take_prefixes_and_centred_kernels() {
        // 2 out × 1 in × 3×3, values = their flat index.
        let t = Tensor::new(vec![2, 1, 3, 3], (0..18).map(|v| v as f32).collect());
        let s = t.elastic_slice(&[1, 1, 1, 1]).unwrap();
        assert_eq!(s.data, vec![4.0], "the centre tap of the first filter");
        let s = t.elastic_slice(&[2, 1, 3, 3]).unwrap();
        assert_eq!(s, t);
        let b = Tensor::new(vec![4], vec![1.0, 2.0, 3.0, 4.0]);
        assert_eq!(b.elastic_slice(&[2]).unwrap().data, vec![1.0, 2.0]);
        let e = t.elastic_slice(&[3, 1, 3, 3]).unwrap_err().to_string();
        assert_eq!(e, "dim 0: 3 exceeds the supernet's 2");
    }

    #[test]
    fn an_embedded_tensor_is_its_own_slice_and_zero_around_it() {
        let k3 = Tensor::new(vec![2, 1, 3, 3], (1..=18).map(|v| v as f32).collect());
        let k5 = k3.elastic_embed(&[3, 2, 5, 5]).unwrap();
        assert_eq!(k5.elastic_slice(&[2, 1, 3, 3]).unwrap(), k3);
        assert_eq!(k5.data.iter().filter(|v| **v != 0.0).count(), 18);
        assert_eq!(k5.data[0], 0.0, "filter 0, channel 0: the ring is zero");
        assert_eq!(k5.data[5 + 1], 1.0, "the 3x3 sits centred");
        let e = k5.elastic_embed(&[2, 1, 3, 3]).unwrap_err().to_string();
        assert_eq!(e, "dim 0: 3 exceeds the supernet's 2");
    }

    #[test]
    fn every_sampled_subnet_is_a_slice_of_the_layout() {
        let input = InputSize::new(128, 96).unwrap();
        for name in SpaceName::ALL {
            let layout = SupernetLayout::of(name, input).unwrap();
            let space = SearchSpace::get(name);
            let mut rng = Rng::new(7);
            for how in [Sample::Max, Sample::Min].into_iter().chain((0..20).map(|_| Sample::Random(rng.next_u64()))) {
                let net = Subnet::sample(&space, how).network(input).unwrap();
                for node in &net.nodes {
                    for p in node.param_specs() {
                        let big = &layout.params.get(&p.name).unwrap_or_else(|| panic!("{name}: {}", p.name)).shape;
                        slice_offsets(big, &p.shape).unwrap_or_else(|e| panic!("{name} {}: {e}", p.name));
                    }
                }
            }
        }
    }
}
