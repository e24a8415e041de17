//! The `vipnas space` and `vipnas export` commands, end to end, including the
//! errors users get for bad input (one line, file and field named, no panic).

mod common;

use std::process::Output;

use vipnas::bundle::Manifest;
use vipnas::runtime::TractEngine;

fn vipnas(args: &[&str]) -> Output {
    common::vipnas_command().args(args).output().expect("vipnas runs")
}

fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

/// A failed run: non-zero exit, no panic, a one-line `error:` containing `needle`.
fn assert_fails_with(o: &Output, needle: &str) {
    let err = stderr(o);
    assert!(!o.status.success(), "expected failure, got success: {}", stdout(o));
    assert!(!err.contains("panicked"), "{err}");
    assert!(err.contains(needle), "stderr lacks `{needle}`:\n{err}");
    assert_eq!(err.trim_end().lines().count(), 1, "error is not one line:\n{err}");
}

#[test]
fn space_prints_subnet_json_then_stats_last() {
    let o = vipnas(&["space", "--space", "mbv3", "--sample", "max", "--stats"]);
    assert!(o.status.success(), "{}", stderr(&o));
    let text = stdout(&o);
    let last = text.lines().last().unwrap();
    let (flops, params) = last.strip_prefix("flops=").unwrap().split_once(" params=").unwrap();
    let (flops, params): (f64, f64) = (flops.parse().unwrap(), params.parse().unwrap());
    // The JSON before the stats is a valid subnet whose counts are those printed.
    let json_end = text.find("\ninput=").unwrap();
    let subnet = vipnas::arch::Subnet::from_json(&text[..json_end], "stdout").unwrap();
    let cost = subnet.network(vipnas::arch::InputSize::DEFAULT).unwrap().cost();
    assert!((cost.gflops() - flops).abs() < 1e-3 && (cost.mparams() - params).abs() < 1e-3, "{last}");
    assert!(flops > 1.0, "max MBV3 subnet is above 1 GFLOP at 256x192: {flops}");

    let o = vipnas(&["space", "--space", "resnet50", "--published", "--stats"]);
    assert!(stdout(&o).trim_end().ends_with("flops=1.4899 params=7.2868"), "{}", stdout(&o));
    let o = vipnas(&["space", "--space", "hrnet-w32", "--table"]);
    let table = stdout(&o);
    assert!(table.contains("4.b4") && table.contains("[64, 256] step 64"), "{table}");
}

#[test]
fn export_writes_a_bundle_the_engine_loads() {
    let dir = common::scratch("cli_export");
    let out = dir.join("bundle");
    let o = vipnas(&[
        "export",
        "--space",
        "mbv3",
        "--sample",
        "random",
        "--seed",
        "1",
        "--input",
        "128x96",
        "--out",
        out.to_str().unwrap(),
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
    let m = Manifest::load(&out).unwrap();
    assert_eq!((m.input.height, m.input.width), (128, 96));
    assert_eq!(m.keypoints.len(), 17);
    assert!(m.provenance.weights.contains("random"));
    let subnet = m.subnet.clone().unwrap();
    assert_eq!(
        subnet,
        vipnas::arch::Subnet::sample(&vipnas::arch::SearchSpace::get(subnet.space), vipnas::arch::Sample::Random(1))
    );
    let mut engine = TractEngine::from_path(&out.join(&m.spatial), &[1, 3, 128, 96]).unwrap();
    let (shape, out) = engine.run_f32(&common::test_image(3, 128, 96, 3)).unwrap();
    assert_eq!(shape, vec![1, 17, 32, 24]);
    assert!(out.iter().all(|v| v.is_finite()));
    assert!(!dir.join("bundle").join("spatial.partial").exists());
}

#[test]
fn bad_input_gives_one_line_errors() {
    let dir = common::scratch("cli_errors");
    let o = vipnas(&["space", "--space", "vgg16"]);
    assert!(!o.status.success() && stderr(&o).contains("unknown space `vgg16`"), "{}", stderr(&o));

    let malformed = dir.join("malformed.json");
    std::fs::write(&malformed, "{\"space\": \"mbv3\", \"stem\": ").unwrap();
    let o = vipnas(&["space", "--subnet", malformed.to_str().unwrap()]);
    assert_fails_with(&o, &format!("{}: not a valid subnet", malformed.display()));

    let off = dir.join("kernel4.json");
    let text = stdout(&vipnas(&["space", "--space", "mbv3", "--sample", "min"]));
    let mut v: serde_json::Value = serde_json::from_str(&text).unwrap();
    v["stages"][2]["kernel"] = 4.into();
    std::fs::write(&off, v.to_string()).unwrap();
    let o = vipnas(&["export", "--subnet", off.to_str().unwrap(), "--out", dir.join("x").to_str().unwrap()]);
    assert_fails_with(&o, &format!("{}: stage 3: kernel 4 not in {{3,5,7}}", off.display()));
    assert!(!dir.join("x").exists(), "nothing is written for a bad subnet");

    let o = vipnas(&["space", "--subnet", dir.join("missing.json").to_str().unwrap()]);
    assert_fails_with(&o, "cannot read subnet file");

    let o = vipnas(&["export", "--space", "mbv3", "--out", "/proc/vipnas-cannot-write-here"]);
    assert_fails_with(&o, "cannot create output directory /proc/vipnas-cannot-write-here");

    let o = vipnas(&["space", "--space", "hrnet-w32", "--published"]);
    assert_fails_with(&o, "mmpose publishes no ViPNAS subnet for `hrnet-w32`");

    let o = vipnas(&["space", "--space", "mbv3", "--input", "100x100", "--stats"]);
    assert!(!o.status.success() && stderr(&o).contains("multiples of 32"), "{}", stderr(&o));
}

#[test]
fn run_on_synthetic_frames_writes_poses_and_the_summary_line() {
    let out = common::scratch("cli_run_synthetic");
    // MoveNet on the host; under qemu (~50x slower) a small exported subnet.
    let model = if common::under_qemu() {
        let m = out.join("mbv3-min-64");
        let o =
            vipnas(&["export", "--space", "mbv3", "--sample", "min", "--input", "64x64", "--out", m.to_str().unwrap()]);
        assert!(o.status.success(), "{}", stderr(&o));
        m
    } else {
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("models/movenet-lightning")
    };
    let o = vipnas(&[
        "run",
        "--model",
        model.to_str().unwrap(),
        "--source",
        "synthetic:50",
        "--out",
        out.to_str().unwrap(),
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
    let text = stdout(&o);
    let last = text.trim_end().lines().last().unwrap();
    assert!(last.starts_with("frames=50 fps=") && last.contains(" in_budget=") && last.contains(" p99_ms="), "{text}");
    let lines = std::fs::read_to_string(out.join("poses.jsonl")).unwrap();
    assert_eq!(lines.lines().count(), 50);
    for l in lines.lines() {
        let v: serde_json::Value = serde_json::from_str(l).unwrap();
        assert_eq!(v["keypoints"].as_array().unwrap().len(), 17);
    }
}

#[test]
fn run_reports_missing_sources_and_models_clearly() {
    let out = common::scratch("cli_run_errors");
    let o = vipnas(&["run", "--source", "v4l:/dev/video97", "--out", out.to_str().unwrap()]);
    assert_fails_with(&o, "/dev/video97: no such video device");
    let o = vipnas(&["run", "--source", "y4m:/nonexistent/clip.y4m", "--out", out.to_str().unwrap()]);
    assert_fails_with(&o, "cannot open y4m file /nonexistent/clip.y4m");
    let o =
        vipnas(&["run", "--model", "/nonexistent/model", "--source", "synthetic:1", "--out", out.to_str().unwrap()]);
    assert_fails_with(&o, "/nonexistent/model: no such model bundle or ONNX file");
    let o = vipnas(&["run", "--source", "rtsp://camera", "--out", out.to_str().unwrap()]);
    assert!(!o.status.success() && stderr(&o).contains("expected v4l:/dev/videoN"), "{}", stderr(&o));
}
