//! Tables 1–3 of the ViPNAS supplementary material, row by row, as data.
//!
//! Ranges are exactly as printed. Steps and group rules are ours (the paper
//! gives steps for ResNet-50 only) and are explained in `docs/search-spaces.md`,
//! together with the places where the printed resolution column differs from
//! the network that the rest of the table describes.

use super::space::{
    AttentionKind, BlockSpace, GroupRule, GroupSpace, Operator, Range, SearchSpace, SpaceName, StageSpace,
};

/// The table behind a space name.
pub fn table(name: SpaceName) -> SearchSpace {
    match name {
        SpaceName::Mbv3 => mbv3(),
        SpaceName::Resnet50 => resnet50(),
        SpaceName::HrnetW32 => hrnet_w32(),
    }
}

/// A row whose only elastic dimension is its width (stems).
fn stem_row(operator: Operator, width: Range, kernel: u32, resolution: u32) -> BlockSpace {
    BlockSpace {
        operator,
        width,
        kernel: Range::fixed(kernel),
        group: GroupSpace::fixed(1),
        attention: AttentionKind::None,
        attention_searchable: false,
        expansion: Range::fixed(1),
        printed_resolution: resolution,
        resolution,
    }
}

/// Table 1: MobileNetV3. Kernel step 2 (the paper's rule), depth and expansion
/// step 1, widths fixed; groups keep a power-of-two number of channels per group.
fn mbv3() -> SearchSpace {
    // (depth, width, group range, expansion range, resolution)
    let rows: [((u32, u32), u32, (u32, u32), (u32, u32), u32); 6] = [
        ((1, 1), 16, (2, 16), (1, 1), 2),
        ((2, 4), 24, (9, 144), (3, 6), 4),
        ((2, 4), 40, (15, 240), (3, 6), 8),
        ((2, 4), 80, (30, 480), (3, 6), 16),
        ((2, 4), 112, (42, 672), (3, 6), 16),
        ((2, 4), 160, (60, 960), (3, 6), 32),
    ];
    let stages = rows
        .iter()
        .enumerate()
        .map(|(i, &(depth, width, group, expansion, res))| StageSpace {
            index: i + 1,
            depth: Range::new(depth.0, depth.1, 1),
            branches: vec![BlockSpace {
                operator: Operator::MobileBlock,
                width: Range::fixed(width),
                kernel: if i == 0 { Range::fixed(3) } else { Range::new(3, 7, 2) },
                group: GroupSpace {
                    min: group.0,
                    max: group.1,
                    // Stage 1's [2, 16] over 16 channels allows at most 8 per group.
                    rule: GroupRule::PowerOfTwoPerGroup { max_per_group: if i == 0 { 8 } else { 16 } },
                },
                attention: AttentionKind::Se,
                attention_searchable: true,
                expansion: Range::new(expansion.0, expansion.1, 1),
                printed_resolution: res,
                resolution: res,
            }],
        })
        .collect();
    SearchSpace {
        name: SpaceName::Mbv3,
        stem: stem_row(Operator::Conv, Range::fixed(16), 3, 2),
        stages,
        head: Some(BlockSpace {
            operator: Operator::Deconv,
            width: Range::fixed(256),
            kernel: Range::fixed(4),
            group: GroupSpace { min: 32, max: 256, rule: GroupRule::PowerOfTwoPerGroup { max_per_group: 8 } },
            attention: AttentionKind::None,
            attention_searchable: false,
            expansion: Range::fixed(1),
            printed_resolution: 4,
            resolution: 4,
        }),
    }
}

/// Table 2: ResNet-50 (SimpleBaseline). Steps as the paper gives them: depth 1,
/// width 16, kernel 2, group 16. Expansion is printed `[1, 1]`: the Bottleneck's
/// inner width equals its output width (as in mmpose's ViPNAS_ResNet).
fn resnet50() -> SearchSpace {
    // (depth, width, printed resolution, built resolution)
    let rows: [((u32, u32), (u32, u32), u32, u32); 4] = [
        ((3, 4), (64, 80), 8, 4),
        ((4, 6), (128, 160), 8, 8),
        ((6, 8), (256, 320), 16, 16),
        ((3, 4), (512, 640), 32, 32),
    ];
    let group = GroupSpace { min: 16, max: 64, rule: GroupRule::Step(16) };
    let stages = rows
        .iter()
        .enumerate()
        .map(|(i, &(depth, width, printed, res))| StageSpace {
            index: i + 1,
            depth: Range::new(depth.0, depth.1, 1),
            branches: vec![BlockSpace {
                operator: Operator::Bottleneck,
                width: Range::new(width.0, width.1, 16),
                kernel: Range::new(3, 5, 2),
                group,
                attention: AttentionKind::Gc,
                attention_searchable: true,
                expansion: Range::fixed(1),
                printed_resolution: printed,
                resolution: res,
            }],
        })
        .collect();
    SearchSpace {
        name: SpaceName::Resnet50,
        stem: stem_row(Operator::ConvPool, Range::new(32, 64, 16), 7, 4),
        stages,
        head: Some(BlockSpace {
            operator: Operator::Deconv,
            width: Range::new(64, 256, 16),
            kernel: Range::fixed(4),
            group,
            attention: AttentionKind::None,
            attention_searchable: false,
            expansion: Range::fixed(1),
            printed_resolution: 4,
            resolution: 4,
        }),
    }
}

/// Table 3: HRNet-W32. Stage depth counts BasicBlocks per branch; stages 2–4
/// are built from HRNet modules of 4 blocks each, so their depth step is 4.
/// Branch width step is the branch's minimum (four choices per branch).
fn hrnet_w32() -> SearchSpace {
    let branch = |b: usize| {
        let min = 8u32 << b; // 8, 16, 32, 64
        BlockSpace {
            operator: Operator::BasicBlock,
            width: Range::new(min, 4 * min, min),
            kernel: Range::fixed(3),
            group: GroupSpace { min: 1, max: 4 * min, rule: GroupRule::PowerOfTwo },
            attention: AttentionKind::Se,
            attention_searchable: true,
            expansion: Range::fixed(1),
            printed_resolution: 4 << b,
            resolution: 4 << b,
        }
    };
    let stage = |index: usize, depth: Range, branches: usize| StageSpace {
        index,
        depth,
        branches: (0..branches).map(branch).collect(),
    };
    SearchSpace {
        name: SpaceName::HrnetW32,
        stem: stem_row(Operator::Conv, Range::new(16, 64, 16), 3, 4),
        stages: vec![
            StageSpace {
                index: 1,
                depth: Range::new(2, 4, 1),
                branches: vec![BlockSpace {
                    operator: Operator::Bottleneck,
                    width: Range::new(16, 64, 16),
                    kernel: Range::fixed(3),
                    group: GroupSpace { min: 1, max: 16, rule: GroupRule::PowerOfTwo },
                    attention: AttentionKind::Se,
                    attention_searchable: true,
                    // Not printed: HRNet's stage-1 Bottleneck outputs 4x its width.
                    expansion: Range::fixed(4),
                    printed_resolution: 4,
                    resolution: 4,
                }],
            },
            stage(2, Range::new(4, 4, 4), 2),
            stage(3, Range::new(8, 16, 4), 3),
            stage(4, Range::new(8, 12, 4), 4),
        ],
        head: None,
    }
}
