//! The fast grouped convolution against tract's own op, inside whole models
//! on real frames: for every space, subnets that between them give every stage
//! every (kernel, channels-per-group) choice the space allows — the first block
//! of a stage carrying its stride, the second stride 1 — run with our op and
//! with tract's, and the heatmaps must agree to 1e-5 (relative to their scale).

mod common;

use vipnas::arch::subnet::BlockChoice;
use vipnas::arch::{InputSize, Sample, SearchSpace, SpaceName, Subnet, Weights};
use vipnas::bundle::InputType;
use vipnas::onnx::write_network;
use vipnas::onnx::WriteOptions;
use vipnas::runtime::engine::{Convolutions, EngineOptions};
use vipnas::runtime::{Engine, TractEngine};

/// Each stage's (kernel, group) choices at every expansion, one per distinct
/// (kernel, channels per group); subnet `j` gives stage `s` its choice `j`
/// (cycling), at depth 2 where the stage allows it.
fn covering_subnets(space: SpaceName) -> Vec<Subnet> {
    let s = SearchSpace::get(space);
    let base = Subnet::sample(&s, Sample::Max);
    let per_stage: Vec<Vec<Vec<BlockChoice>>> = s
        .stages
        .iter()
        .map(|stage| {
            stage
                .branches
                .iter()
                .map(|row| {
                    let width = row.width.max;
                    let mut seen = std::collections::BTreeSet::new();
                    let mut v = Vec::new();
                    for expansion in row.expansion.choices() {
                        let channels = row.grouped_channels(width, expansion);
                        for kernel in row.kernel.choices() {
                            for group in row.group.choices(channels) {
                                if seen.insert((kernel, channels / group)) {
                                    v.push(BlockChoice { width, kernel, group, attention: false, expansion });
                                }
                            }
                        }
                    }
                    v
                })
                .collect()
        })
        .collect();
    let n = per_stage.iter().flatten().map(Vec::len).max().unwrap_or(1);
    (0..n)
        .map(|j| {
            let mut sub = base.clone();
            for ((choice, branches), stage) in sub.stages.iter_mut().zip(&per_stage).zip(&s.stages) {
                choice.depth = 2.clamp(stage.depth.min, stage.depth.max);
                for (b, options) in choice.branches.iter_mut().zip(branches) {
                    *b = options[j % options.len()];
                }
            }
            sub.validate().unwrap();
            sub
        })
        .collect()
}

#[test]
fn fast_convolution_equals_tracts_op_on_every_stage_choice_of_every_space() {
    let input = if common::under_qemu() { InputSize::new(64, 64).unwrap() } else { InputSize::DEFAULT };
    let shape = [1, 3, input.height as usize, input.width as usize];
    for space in SpaceName::ALL {
        let mut subnets = covering_subnets(space);
        if common::under_qemu() {
            subnets.truncate(1);
        }
        let mut worst = 0f32;
        for (i, subnet) in subnets.iter().enumerate() {
            let net = subnet.network(input).unwrap();
            let model = write_network(&net, &Weights::random(&net, i as u64), &WriteOptions::default()).unwrap();
            let x = common::real_image(input, 3 * i);
            let run = |convolutions| {
                let opts = EngineOptions { datum: InputType::F32, threads: 1, convolutions };
                TractEngine::from_proto_with(&model, &shape, &opts).unwrap().run_f32(&x).unwrap().1
            };
            let (ours, tracts) = (run(Convolutions::Fast), run(Convolutions::Tract));
            let scale = tracts.iter().fold(0f32, |m, v| m.max(v.abs()));
            let diff = ours.iter().zip(&tracts).fold(0f32, |m, (a, b)| m.max((a - b).abs()));
            assert!(scale > 1e-3, "{space} subnet {i}: output scale {scale}");
            assert!(
                diff <= 1e-5 * scale.max(1.0),
                "{space} subnet {i}: fast conv differs from tract's by {diff} (scale {scale})\n{}",
                serde_json::to_string(subnet).unwrap()
            );
            worst = worst.max(diff / scale.max(1.0));
        }
        println!("{space}: {} subnets, max relative |ours - tract's| = {worst:.2e}", subnets.len());
    }
}

#[test]
fn the_fast_op_is_in_the_plan_and_threads_give_the_same_heatmaps() {
    let s = SearchSpace::get(SpaceName::Mbv3);
    let input = InputSize::new(128, 96).unwrap();
    let shape = [1, 3, 128, 96];
    let x = common::real_image(input, 0);
    // The smallest subnet has 16-channel depthwise stages: where tract has a
    // channel-last depthwise kernel (aarch64) it would move such a graph to
    // channel-last, and no convolution would be ours.
    let min = Subnet::sample(&s, Sample::Min).network(input).unwrap();
    let min = write_network(&min, &Weights::random(&min, 1), &WriteOptions::default()).unwrap();
    let mut engine = TractEngine::from_proto_with(&min, &shape, &EngineOptions::new(InputType::F32, 1)).unwrap();
    let ops = engine.profile(&vipnas::runtime::engine::InputTensor::F32(x.clone()), 1).unwrap();
    assert!(ops.iter().any(|o| o.op == "VipnasGroupedConv"), "{ops:?}");
    assert!(!ops.iter().any(|o| o.op == "DepthWiseConv"), "{ops:?}");
    // Every 1×1 convolution is ours, and so is the stem's 3×3 on the image: no
    // matrix product is left.
    assert!(ops.iter().any(|o| o.op == "VipnasPointwiseConv" && o.nodes >= 10), "{ops:?}");
    assert!(!ops.iter().any(|o| o.op.contains("MatMul")), "{ops:?}");
    // Every ReLU after our convolutions is folded into them (HardSwish is not a clamp).
    assert!(!ops.iter().any(|o| o.op.contains("Max")), "{ops:?}");
    // The head's grouped transposed convolutions are ours too.
    assert!(ops.iter().any(|o| o.op == "VipnasGroupedDeconv"), "{ops:?}");
    assert!(!ops.iter().any(|o| o.op.contains("Deconv") && o.op != "VipnasGroupedDeconv"), "{ops:?}");

    let net = Subnet::sample(&s, Sample::Random(5)).network(input).unwrap();
    let model = write_network(&net, &Weights::random(&net, 5), &WriteOptions::default()).unwrap();
    let mut one = TractEngine::from_proto_with(&model, &shape, &EngineOptions::new(InputType::F32, 1)).unwrap();
    let ops = one.profile(&vipnas::runtime::engine::InputTensor::F32(x.clone()), 1).unwrap();
    assert!(ops.iter().any(|o| o.op == "VipnasGroupedConv"), "{ops:?}");
    assert!(!ops.iter().any(|o| o.op == "DepthWiseConv"), "{ops:?}");
    let mut two = TractEngine::from_proto_with(&model, &shape, &EngineOptions::new(InputType::F32, 2)).unwrap();
    let mut out = (vec![0.0; 17 * 32 * 24], vec![0.0; 17 * 32 * 24]);
    let t = vipnas::runtime::engine::InputTensor::F32(x);
    one.run(&[&t], &mut out.0).unwrap();
    two.run(&[&t], &mut out.1).unwrap();
    // Groups and pointwise channel tiles are split across threads, each
    // computed as on one: bit-identical.
    assert_eq!(out.0, out.1);
}

/// MoveNet Lightning (tf2onnx's graph, not ours) on real frames: its keypoint
/// heatmaps, read inside the graph before any arg-max, with our convolutions
/// and with tract's.
#[test]
fn movenet_heatmaps_with_the_fast_ops_equal_tracts() {
    use vipnas::runtime::engine::InputTensor;
    let onnx = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("models/movenet-lightning/spatial.onnx");
    let heatmaps = "StatefulPartitionedCall/Sigmoid:0";
    let shape = [1, 192, 192, 3];
    let frames = if common::under_qemu() { 1 } else { 3 };
    for index in 0..frames {
        // The clip's frame as MoveNet takes it: 0–255, NHWC, int32.
        let chw = common::real_image(InputSize::new(192, 192).unwrap(), 7 * index);
        let (mean, std) = ([0.485f32, 0.456, 0.406], [0.229f32, 0.224, 0.225]);
        let nhwc: Vec<i32> = (0..192 * 192 * 3)
            .map(|j| {
                let (px, c) = (j / 3, j % 3);
                ((chw[c * 192 * 192 + px] * std[c] + mean[c]) * 255.0).round() as i32
            })
            .collect();
        let run = |convolutions| {
            let opts = EngineOptions { datum: InputType::I32, threads: 1, convolutions };
            let mut e = TractEngine::from_path_selecting(&onnx, &shape, &opts, &[heatmaps]).unwrap();
            let mut out = vec![0f32; e.output_shape().iter().product()];
            e.run(&[&InputTensor::I32(nhwc.clone())], &mut out).unwrap();
            (out, e.profile(&InputTensor::I32(nhwc.clone()), 1).unwrap())
        };
        let ((ours, ops), (tracts, _)) = (run(Convolutions::Fast), run(Convolutions::Tract));
        assert!(ops.iter().any(|o| o.op == "VipnasPointwiseConv" && o.nodes >= 30), "{ops:?}");
        assert!(ops.iter().any(|o| o.op == "VipnasGroupedConv"), "{ops:?}");
        // Its ReLU6s are folded into our convolutions.
        assert!(!ops.iter().any(|o| o.op.contains("Max")), "{ops:?}");
        let scale = tracts.iter().fold(0f32, |m, v| m.max(v.abs()));
        let diff = ours.iter().zip(&tracts).fold(0f32, |m, (a, b)| m.max((a - b).abs()));
        assert!(scale > 0.1, "frame {index}: heatmap peak {scale}");
        assert!(diff <= 1e-5 * scale.max(1.0), "frame {index}: fast ops differ from tract's by {diff}");
        println!("MoveNet Lightning frame {index}: max |ours - tract's| = {diff:.2e} (peak {scale:.3})");
    }
}
