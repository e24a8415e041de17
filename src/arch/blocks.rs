//! A network as a sequence of blocks — the unit of latency look-up tables.
//!
//! A block is the stem, one residual block of a stage, one HRNet transition,
//! one term of an HRNet fusion (a branch brought to another's resolution and
//! width) or the fusion's sum, or one head layer, found from node names
//! (`stage2.block3.dw` belongs to block `stage2.block3`,
//! `stage3.module0.fuse1.from2.up` to `stage3.module0.fuse1.from2`). A fusion
//! is cut into its terms so that each block depends on at most two branch
//! widths: whole fusions would be one block per combination of all widths.
//!
//! A block's *signature* describes its computation completely (input shapes,
//! every op with its shapes and wiring) and nothing else, so two blocks with
//! one signature cost the same wherever they sit.

use std::fmt::Write;

use super::net::{Act, Network, Node, Op, ValueId};

/// One block of a network.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Block {
    /// `stem`, `stage2.block0`, `head.deconv1`, …
    pub name: String,
    /// Indices into `Network::nodes`, in order.
    pub nodes: Vec<usize>,
    /// Values read from outside the block.
    pub inputs: Vec<ValueId>,
    pub signature: String,
}

/// The block a node belongs to, from its dotted name.
fn block_name(node: &str) -> String {
    let parts: Vec<&str> = node.split('.').collect();
    match parts[0] {
        "stem" => "stem".into(),
        "fusion" => "fusion".into(),
        "head" => parts[..2.min(parts.len())].join("."),
        _ => {
            let end = match parts.iter().position(|p| p.starts_with("block") || p.starts_with("transition")) {
                Some(i) => i + 1,
                None => parts.iter().position(|p| p.starts_with("fuse")).map_or(parts.len(), |i| i + 2),
            };
            parts[..end.min(parts.len())].join(".")
        }
    }
}

fn act_code(a: Option<Act>) -> &'static str {
    match a {
        None => "",
        Some(Act::Relu) => "+relu",
        Some(Act::HSwish) => "+hswish",
        Some(Act::HSigmoid) => "+hsig",
        Some(Act::Sigmoid) => "+sig",
    }
}

/// The grouped (transposed) convolutions of a block signature
/// ([`Block::signature`]), depthwise included: (input channels, groups) of
/// each with groups > 1.
pub fn grouped_convs(signature: &str) -> Vec<(u32, u32)> {
    signature
        .split(' ')
        .filter_map(|op| op.strip_prefix("conv").or_else(|| op.strip_prefix("deconv")))
        .filter_map(|op| {
            // `conv16>16k3s1p1g16+bn+hswish(i0)`: input channels before `>`, groups after `g`.
            let core = op.split(['+', '(']).next()?;
            let cin = core.split_once('>')?.0.parse().ok()?;
            let groups = core.rsplit_once('g')?.1.parse().ok()?;
            (groups > 1).then_some((cin, groups))
        })
        .collect()
}

impl Network {
    /// The blocks, in network order ([`Op::Input`] nodes belong to none: they
    /// are the inputs of the block cut out with them).
    pub fn blocks(&self) -> Vec<Block> {
        let mut blocks: Vec<Block> = Vec::new();
        for (i, node) in self.nodes.iter().enumerate() {
            if let Op::Input { .. } = node.op {
                continue;
            }
            let name = block_name(&node.name);
            match blocks.last_mut() {
                Some(b) if b.name == name => b.nodes.push(i),
                _ => blocks.push(Block { name, nodes: vec![i], inputs: Vec::new(), signature: String::new() }),
            }
        }
        for b in &mut blocks {
            let inside = |v: ValueId| v > 0 && b.nodes.contains(&(v - 1));
            for &i in &b.nodes {
                for &v in &self.nodes[i].inputs {
                    if !inside(v) && !b.inputs.contains(&v) {
                        b.inputs.push(v);
                    }
                }
            }
            b.signature = self.signature(b);
        }
        blocks
    }

    /// Input shapes, then each op with its parameters and where its inputs come
    /// from (`i0` = first block input, `n2` = the block's third node).
    fn signature(&self, b: &Block) -> String {
        let mut s = String::new();
        for (k, &v) in b.inputs.iter().enumerate() {
            let sh = self.shape(v);
            let _ = write!(s, "{}{}x{}x{}", if k > 0 { "," } else { "" }, sh.c, sh.h, sh.w);
        }
        for &i in &b.nodes {
            let node = &self.nodes[i];
            let refs: Vec<String> = node
                .inputs
                .iter()
                .map(|&v| match b.nodes.iter().position(|&n| v > 0 && n == v - 1) {
                    Some(p) => format!("n{p}"),
                    None => format!("i{}", b.inputs.iter().position(|&x| x == v).unwrap_or(0)),
                })
                .collect();
            let op = match node.op {
                Op::Conv(c) => format!(
                    "{}{}>{}k{}s{}p{}g{}{}{}{}",
                    if c.transposed { "deconv" } else { "conv" },
                    c.cin,
                    c.cout,
                    c.kernel,
                    c.stride,
                    c.pad,
                    c.groups,
                    if c.bias { "+b" } else { "" },
                    if c.bn { "+bn" } else { "" },
                    act_code(c.act)
                ),
                Op::Se { channels, squeeze, gate } => format!("se{channels}/{squeeze}{}", act_code(Some(gate))),
                Op::Gc { channels, planes } => format!("gc{channels}/{planes}"),
                Op::Sum { relu } => format!("sum{}", if relu { "+relu" } else { "" }),
                Op::MaxPool { kernel, stride, pad } => format!("maxpool{kernel}s{stride}p{pad}"),
                Op::Upsample { factor } => format!("up{factor}"),
                Op::Prior => format!("prior{}x{}x{}", node.shape.c, node.shape.h, node.shape.w),
                Op::Concat => "concat".into(),
                Op::Product => "mul".into(),
                Op::Input { .. } => unreachable!("not in any block"),
            };
            let _ = write!(s, " {op}({})", refs.join(","));
        }
        s
    }

    /// The block as a network of its own: its first input is the network's,
    /// each further one an [`Op::Input`] node, so the cut-out has the block's
    /// signature.
    pub fn extract(&self, b: &Block) -> Network {
        let mut nodes: Vec<Node> = b.inputs[1..]
            .iter()
            .enumerate()
            .map(|(k, &v)| Node {
                name: format!("{}.input{}", b.name, k + 1),
                op: Op::Input { index: k as u32 + 1 },
                inputs: Vec::new(),
                shape: self.shape(v),
            })
            .collect();
        let extra = nodes.len();
        for &i in &b.nodes {
            let mut node = self.nodes[i].clone();
            for v in node.inputs.iter_mut() {
                // Block input k is value k of the cut-out (0: its input, k ≥ 1: Input node k − 1).
                *v = match b.inputs.iter().position(|x| x == v) {
                    Some(k) => k,
                    None => extra + b.nodes.iter().position(|&n| n == *v - 1).expect("inside") + 1,
                };
            }
            nodes.push(node);
        }
        Network { input: self.shape(b.inputs[0]), nodes }
    }
}

#[cfg(test)]
mod tests {
    use crate::arch::{InputSize, Sample, SearchSpace, SpaceName, Subnet};

    #[test]
    fn blocks_partition_the_network_and_signatures_identify_computation() {
        let net = Subnet::sample(&SearchSpace::get(SpaceName::Mbv3), Sample::Max).network(InputSize::DEFAULT).unwrap();
        let blocks = net.blocks();
        let names: Vec<&str> = blocks.iter().map(|b| b.name.as_str()).collect();
        assert_eq!(names[..3], ["stem", "stage1.block0", "stage2.block0"]);
        assert_eq!(names[names.len() - 4..], ["head.deconv0", "head.deconv1", "head.deconv2", "head.final"]);
        assert_eq!(blocks.len(), 1 + 1 + 5 * 4 + 4);
        assert_eq!(blocks.iter().map(|b| b.nodes.len()).sum::<usize>(), net.nodes.len());
        // Stage 3's blocks 1..3 compute the same thing; block 0 (stride 2) differs.
        let s3: Vec<&str> =
            blocks.iter().filter(|b| b.name.starts_with("stage3.")).map(|b| b.signature.as_str()).collect();
        assert_ne!(s3[0], s3[1]);
        assert_eq!(s3[1], s3[2]);
        assert!(s3[1].starts_with("40x32x24 conv40>240k1s1p0g1+bn+relu(i0)"), "{}", s3[1]);
        assert!(s3[1].ends_with("sum(i0,n3)"), "{}", s3[1]);
        for b in &blocks {
            let sub = net.extract(b);
            assert_eq!(sub.output_shape(), net.nodes[*b.nodes.last().unwrap()].shape);
            assert_eq!(sub.blocks().len(), 1);
            assert_eq!(sub.blocks()[0].signature, b.signature);
        }
    }

    #[test]
    fn grouped_convs_are_read_from_signatures() {
        let net = Subnet::sample(&SearchSpace::get(SpaceName::Mbv3), Sample::Max).network(InputSize::DEFAULT).unwrap();
        // MobileNetV3's stages are built on grouped (depthwise-like) convs; its stem is dense.
        for b in net.blocks() {
            if b.name == "stem" || b.name.starts_with("stage") {
                assert_eq!(super::grouped_convs(&b.signature).is_empty(), b.name == "stem", "{}", b.signature);
            }
        }
        assert_eq!(super::grouped_convs("16x8x8 conv16>16k3s1p1g16+bn+hsig(i0)"), [(16, 16)]);
        assert_eq!(super::grouped_convs("16x8x8 conv16>32k3s1p1g1+bn(i0) deconv32>16k4s2p1g4(n0)"), [(32, 4)]);
        assert!(super::grouped_convs("16x8x8 conv16>32k3s1p1g1+bn+hsig(i0) se32/8+hsig(n0)").is_empty());
    }

    #[test]
    fn resnet_and_hrnet_blocks() {
        let net =
            Subnet::sample(&SearchSpace::get(SpaceName::Resnet50), Sample::Min).network(InputSize::DEFAULT).unwrap();
        let blocks = net.blocks();
        assert_eq!(blocks[0].name, "stem");
        assert_eq!(net.nodes[blocks[0].nodes[1]].name, "stem.pool");
        assert!(blocks.iter().all(|b| b.inputs.len() == 1));
        let net =
            Subnet::sample(&SearchSpace::get(SpaceName::HrnetW32), Sample::Min).network(InputSize::DEFAULT).unwrap();
        let blocks = net.blocks();
        let names: Vec<&str> = blocks.iter().map(|b| b.name.as_str()).filter(|n| n.contains(".fuse2")).collect();
        assert_eq!(names[..2], ["stage2.module0.fuse2.from1", "stage2.module0.fuse2.sum"]);
        // A fusion's sum reads every branch: cut out, it keeps its signature.
        let sum = blocks.iter().find(|b| b.name == "stage4.module0.fuse1.sum").unwrap();
        assert_eq!(sum.inputs.len(), 4);
        let sub = net.extract(sum);
        assert_eq!(sub.nodes.iter().filter(|n| matches!(n.op, crate::arch::net::Op::Input { .. })).count(), 3);
        assert_eq!(sub.blocks().len(), 1);
        assert_eq!(sub.blocks()[0].signature, sum.signature);
        assert_eq!(sub.output_shape(), net.nodes[*sum.nodes.last().unwrap()].shape);
        assert!(sum.signature.ends_with("sum+relu(i0,i1,i2,i3)"), "{}", sum.signature);
    }
}
