//! The ONNX writer, numerically: written models run in tract and agree with a
//! naive unfolded-BatchNorm reference forward pass, and onnx.checker and
//! onnxruntime (Python oracles) accept them and agree with tract to 1e-4.

mod common;

use vipnas::arch::published::published;
use vipnas::arch::{InputSize, Sample, SearchSpace, SpaceName, Subnet, Weights};
use vipnas::onnx::{to_bytes, write_network, WriteOptions};
use vipnas::runtime::TractEngine;

/// Max, min, two random and the published subnet of every space; under qemu
/// (the aarch64 suite, ~50x slower) one random subnet per space.
fn cases() -> Vec<(String, Subnet)> {
    let mut v = Vec::new();
    if common::under_qemu() {
        for name in SpaceName::ALL {
            v.push((format!("{name}-random1"), Subnet::sample(&SearchSpace::get(name), Sample::Random(1))));
        }
        return v;
    }
    for name in SpaceName::ALL {
        let space = SearchSpace::get(name);
        v.push((format!("{name}-max"), Subnet::sample(&space, Sample::Max)));
        v.push((format!("{name}-min"), Subnet::sample(&space, Sample::Min)));
        for seed in [1, 2] {
            v.push((format!("{name}-random{seed}"), Subnet::sample(&space, Sample::Random(seed))));
        }
        if let Some(p) = published(name) {
            v.push((format!("{name}-mmpose"), p.subnet));
        }
    }
    v
}

/// Tract on the written (BN-folded) model vs the unfolded f64 reference.
#[test]
fn tract_runs_written_models_like_the_reference() {
    let input = InputSize::new(64, 64).unwrap();
    for (i, (name, subnet)) in cases().into_iter().enumerate() {
        let net = subnet.network(input).unwrap();
        let weights = Weights::random(&net, i as u64);
        let model = write_network(&net, &weights, &WriteOptions::default()).unwrap();
        let mut engine = TractEngine::from_proto(&model, &[1, 3, 64, 64]).unwrap();
        let x = common::test_image(3, 64, 64, i as u64);
        let (shape, out) = engine.run_f32(&x).unwrap();
        assert_eq!(shape, vec![1, 17, 16, 16], "{name}");
        let reference = common::reference::forward(&net, &weights, &x);
        let scale = reference.data.iter().fold(0f64, |m, v| m.max(v.abs()));
        let diff = out.iter().zip(&reference.data).fold(0f64, |m, (a, b)| m.max((*a as f64 - b).abs()));
        println!("{name}: max|tract-reference| = {diff:.2e}, max|out| = {scale:.3}");
        assert!(scale > 1e-2 && scale < 1e3, "{name}: output scale {scale} (random init should keep it O(1))");
        assert!(diff <= 1e-4 * (1.0 + scale), "{name}: tract differs from the reference by {diff}");
    }
}

/// onnx.checker + onnxruntime vs tract at 256x192 (the deployment size; 128x96 under qemu).
#[test]
fn onnx_checker_and_onnxruntime_agree_with_tract() {
    let dir = common::scratch("ort_compare");
    let input = if common::under_qemu() { InputSize::new(128, 96).unwrap() } else { InputSize::DEFAULT };
    let mut listed = Vec::new();
    for (i, (name, subnet)) in cases().into_iter().enumerate() {
        let net = subnet.network(input).unwrap();
        let weights = Weights::random(&net, 100 + i as u64);
        let model = write_network(&net, &weights, &WriteOptions::default()).unwrap();
        std::fs::write(dir.join(format!("{name}.onnx")), to_bytes(&model)).unwrap();
        let shape = [1, 3, input.height as usize, input.width as usize];
        let x = common::test_image(3, shape[2], shape[3], 7 + i as u64);
        let mut engine = TractEngine::from_proto(&model, &shape).unwrap();
        let (out_shape, out) = engine.run_f32(&x).unwrap();
        assert_eq!(out_shape, vec![1, 17, shape[2] / 4, shape[3] / 4]);
        assert!(out.iter().all(|v| v.is_finite()), "{name}");
        common::write_f32(&dir.join(format!("{name}.input.f32")), &x);
        common::write_f32(&dir.join(format!("{name}.tract.f32")), &out);
        listed.push(serde_json::json!({"name": name, "input_shape": shape, "output_shape": out_shape, "tol": 1e-4}));
    }
    std::fs::write(dir.join("cases.json"), serde_json::to_vec(&listed).unwrap()).unwrap();
    if common::python_oracles("onnx, onnxruntime, numpy") {
        let report = common::run_oracle("ort_compare.py", &[&dir]);
        println!("{report}");
        assert_eq!(report.matches("ok  ").count(), listed.len());
    }
}
