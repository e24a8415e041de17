//! HRNet-W32 backbone (Table 3): two stride-2 3×3 stem convs, a stage of
//! Bottlenecks (output 4× their width), then stages of parallel branches built
//! from HRNet modules of 4 BasicBlocks per branch followed by the all-to-all
//! fusion (1×1 conv + nearest upsampling from lower resolutions, chains of
//! stride-2 3×3 convs from higher ones). Transitions adapt a branch whose width
//! changes between stages with a 3×3 conv and open each new branch with a
//! stride-2 3×3 conv from the previous lowest-resolution branch. The last
//! module outputs branch 1 only, which the final 1×1 conv turns into heatmaps.
//! SE (ReLU / Sigmoid, squeeze = C / 4) sits after a block's last BN.

use super::se_squeeze;
use crate::arch::net::{Act, NetBuilder, ValueId};
use crate::arch::space::SearchSpace;
use crate::arch::subnet::Subnet;
use crate::arch::temporal::{fuse as fuse_prior, Fusion};

/// Blocks per branch in one HRNet module.
pub(crate) const MODULE_BLOCKS: u32 = 4;

pub(super) fn backbone(b: &mut NetBuilder, subnet: &Subnet, space: &SearchSpace, fusion: Option<Fusion>) -> ValueId {
    let relu = Some(Act::Relu);
    let w = subnet.stem.width;
    let x = b.conv_bn("stem.conv1".into(), 0, w, 3, 2, 1, relu);
    let mut x = b.conv_bn("stem.conv2".into(), x, w, 3, 2, 1, relu);

    // Stage 1: Bottlenecks.
    let s1 = &subnet.stages[0];
    let c = s1.block();
    let out = c.width * c.expansion;
    for j in 0..s1.depth {
        let name = format!("stage1.block{j}");
        let input = x;
        let mut y = b.conv_bn(format!("{name}.conv1"), input, c.width, 1, 1, 1, relu);
        y = b.conv_bn(format!("{name}.conv2"), y, c.width, c.kernel, 1, c.group, relu);
        y = b.conv_bn(format!("{name}.conv3"), y, out, 1, 1, 1, None);
        if c.attention {
            y = b.se(format!("{name}.se"), y, se_squeeze(out), Act::Sigmoid);
        }
        let shortcut = if b.shape(input).c != out {
            b.conv_bn(format!("{name}.downsample"), input, out, 1, 1, 1, None)
        } else {
            input
        };
        x = b.sum(format!("{name}.add"), vec![y, shortcut], true);
    }
    x = fuse_prior(b, fusion, space.stages[0].index, x);

    // Stages 2-4: multi-resolution modules.
    let mut branches = vec![x];
    let last_stage = subnet.stages.len() - 1;
    for (si, (row, stage)) in space.stages.iter().zip(&subnet.stages).enumerate().skip(1) {
        let k = row.index;
        let widths: Vec<u32> = stage.branches.iter().map(|c| c.width).collect();
        branches = (0..widths.len())
            .map(|i| {
                let name = format!("stage{k}.transition{}", i + 1);
                match branches.get(i) {
                    Some(&v) if b.shape(v).c == widths[i] => v,
                    Some(&v) => b.conv_bn(name, v, widths[i], 3, 1, 1, relu),
                    None => {
                        let from = *branches.last().expect("at least one branch");
                        b.conv_bn(name, from, widths[i], 3, 2, 1, relu)
                    }
                }
            })
            .collect();
        let modules = stage.depth / MODULE_BLOCKS;
        for m in 0..modules {
            for (i, c) in stage.branches.iter().enumerate() {
                for j in 0..MODULE_BLOCKS {
                    let name = format!("stage{k}.module{m}.branch{}.block{j}", i + 1);
                    let input = branches[i];
                    let mut y = b.conv_bn(format!("{name}.conv1"), input, c.width, c.kernel, 1, c.group, relu);
                    y = b.conv_bn(format!("{name}.conv2"), y, c.width, c.kernel, 1, c.group, None);
                    if c.attention {
                        y = b.se(format!("{name}.se"), y, se_squeeze(c.width), Act::Sigmoid);
                    }
                    branches[i] = b.sum(format!("{name}.add"), vec![y, input], true);
                }
            }
            let outputs = if si == last_stage && m == modules - 1 { 1 } else { branches.len() };
            branches =
                (0..outputs).map(|i| fuse(b, &format!("stage{k}.module{m}.fuse{}", i + 1), &branches, i)).collect();
        }
        branches[0] = fuse_prior(b, fusion, k, branches[0]);
    }
    branches[0]
}

/// Output `i` of an HRNet fusion: the sum of every branch brought to branch
/// `i`'s resolution and width, then ReLU.
fn fuse(b: &mut NetBuilder, name: &str, branches: &[ValueId], i: usize) -> ValueId {
    let width = b.shape(branches[i]).c;
    let terms = branches
        .iter()
        .enumerate()
        .map(|(j, &v)| {
            if j == i {
                v
            } else if j > i {
                let y = b.conv_bn(format!("{name}.from{}", j + 1), v, width, 1, 1, 1, None);
                b.upsample(format!("{name}.from{}.up", j + 1), y, 1 << (j - i))
            } else {
                let mut y = v;
                let own = b.shape(v).c;
                for step in 0..(i - j) {
                    let last = step == i - j - 1;
                    let (cout, act) = if last { (width, None) } else { (own, Some(Act::Relu)) };
                    y = b.conv_bn(format!("{name}.from{}.down{step}", j + 1), y, cout, 3, 2, 1, act);
                }
                y
            }
        })
        .collect();
    b.sum(format!("{name}.sum"), terms, true)
}
