//! The `vipnas space` and `vipnas export` commands, end to end, including the
//! errors users get for bad input (one line, file and field named, no panic).

mod common;

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Output, Stdio};

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

/// A failed run whose last stderr line is the `error:` containing `needle`
/// (warnings about lost frames, or tract's about the CPU, may come before it).
fn assert_ends_with_error(o: &Output, needle: &str) {
    let err = stderr(o);
    let last = err.trim_end().lines().last().unwrap_or_default();
    assert!(!o.status.success() && !err.contains("panicked"), "{err}");
    assert!(last.starts_with("error: ") && last.contains(needle), "stderr does not end with `{needle}`:\n{err}");
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

/// A model small enough for qemu: MoveNet on the host, an exported 64x64
/// subnet under qemu.
fn small_model(dir: &Path) -> PathBuf {
    if !common::under_qemu() {
        return Path::new(env!("CARGO_MANIFEST_DIR")).join("models/movenet-lightning");
    }
    let m = dir.join("mbv3-min-64");
    let o = vipnas(&["export", "--space", "mbv3", "--sample", "min", "--input", "64x64", "--out", m.to_str().unwrap()]);
    assert!(o.status.success(), "{}", stderr(&o));
    m
}

#[test]
fn rotation_keeps_the_last_run_beside_the_new_one() {
    let dir = common::scratch("cli_run_rotate");
    let model = small_model(&dir);
    let out = dir.join("out");
    let run = |frames: &str, rotate: &str| {
        vipnas(&[
            "run",
            "--model",
            model.to_str().unwrap(),
            "--source",
            frames,
            "--out",
            out.to_str().unwrap(),
            "--rotate-mb",
            rotate,
        ])
    };
    for frames in ["synthetic:3", "synthetic:2"] {
        let o = run(frames, "1");
        assert!(o.status.success(), "{}", stderr(&o));
    }
    let count = |name: &str| std::fs::read_to_string(out.join(name)).unwrap().lines().count();
    assert_eq!((count("poses.jsonl"), count("poses.jsonl.1")), (2, 3), "the new run, and the one before");
    let o = run("synthetic:1", "0");
    assert!(!o.status.success() && stderr(&o).contains("invalid value '0' for '--rotate-mb <MB>'"), "{}", stderr(&o));
}

#[test]
fn runs_that_cannot_or_did_not_work_fail_loudly() {
    let dir = common::scratch("cli_run_nothing");
    let model = small_model(&dir);
    let out = dir.join("out");
    let run = |extra: &[&str]| {
        let mut args = vec!["run", "--model", model.to_str().unwrap(), "--out", out.to_str().unwrap()];
        args.extend_from_slice(extra);
        vipnas(&args)
    };
    let cores = std::thread::available_parallelism().unwrap().get();
    assert_fails_with(
        &run(&["--source", "synthetic:1", "--threads", "10000"]),
        &format!("--threads 10000: this machine has {cores} core(s)"),
    );
    let o = run(&["--source", "synthetic:0"]);
    assert!(!o.status.success() && stderr(&o).contains("a synthetic clip needs at least 1 frame"), "{}", stderr(&o));
    for fps in ["nan", "0", "1e-300", "1e9"] {
        assert_fails_with(
            &run(&["--source", "synthetic:1", "--fps", fps]),
            &format!("--fps: {:?}: a frame rate", fps.parse::<f64>().unwrap()),
        );
    }
    let o = run(&["--source", "synthetic:5", "--frames", "0"]);
    assert!(!o.status.success() && stderr(&o).contains("--frames") && !stderr(&o).contains("panicked"));

    // Sources that deliver nothing: the summary, then an error.
    let header_only = dir.join("empty.y4m");
    std::fs::write(&header_only, b"YUV4MPEG2 W64 H64 C444\n").unwrap();
    let o = run(&["--source", &format!("y4m:{}", header_only.display())]);
    assert!(stdout(&o).contains("frames=0 "), "{}", stdout(&o));
    assert_ends_with_error(&o, "no frame was processed (0 lost");
    let junk = dir.join("junk");
    std::fs::create_dir_all(&junk).unwrap();
    std::fs::write(junk.join("a.jpg"), b"not a jpeg").unwrap();
    std::fs::write(junk.join("b.png"), b"not a png").unwrap();
    let o = run(&["--source", &format!("dir:{}", junk.display())]);
    // One warning per lost frame, then the error.
    assert_ends_with_error(&o, "no frame was processed (2 lost");
    assert!(stderr(&o).contains("a.jpg") && stderr(&o).contains("b.png"), "each lost frame is named: {}", stderr(&o));
}

#[test]
fn a_closed_or_full_stdout_is_an_error_not_a_panic() {
    let args = ["space", "--space", "mbv3", "--table"];
    // The reader is gone before the first write (`vipnas … | head -c0`): a quiet stop.
    let mut fds = [0; 2];
    assert_eq!(unsafe { libc::pipe(fds.as_mut_ptr()) }, 0);
    unsafe { libc::close(fds[0]) };
    let closed = unsafe { <std::fs::File as std::os::fd::FromRawFd>::from_raw_fd(fds[1]) };
    let o = common::vipnas_command().args(args).stdout(closed).output().unwrap();
    assert!(o.status.success() && stderr(&o).is_empty(), "{:?}: {}", o.status, stderr(&o));
    // A full disk: one line naming stdout.
    if let Ok(full) = std::fs::OpenOptions::new().write(true).open("/dev/full") {
        let o = common::vipnas_command().args(args).stdout(full).output().unwrap();
        assert_fails_with(&o, "cannot write to stdout: No space left on device");
    }
}

/// Waits until `path` has at least `n` lines (the child is running).
#[test]
fn signals_end_run_and_profile_with_their_work_saved() {
    let dir = common::scratch("cli_signals");
    let model = small_model(&dir);
    for (signal, code, name) in [(libc::SIGINT, 130, "SIGINT"), (libc::SIGTERM, 143, "SIGTERM")] {
        let out = dir.join(name);
        // An endless source: only the signal ends this run.
        let mut child = common::vipnas_command()
            .args(["run", "--model", model.to_str().unwrap(), "--source", "synthetic", "--out", out.to_str().unwrap()])
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        common::wait_for_lines(&out.join("poses.jsonl"), 3, &mut child);
        unsafe { libc::kill(child.id() as i32, signal) };
        let o = child.wait_with_output().unwrap();
        assert_eq!(o.status.code(), Some(code), "{name}: {}", stderr(&o));
        assert!(stderr(&o).contains(&format!("interrupted by {name}")), "{}", stderr(&o));
        let summary = stdout(&o);
        let frames: usize = summary
            .lines()
            .last()
            .and_then(|l| l.strip_prefix("frames="))
            .and_then(|l| l.split(' ').next())
            .and_then(|n| n.parse().ok())
            .unwrap_or_else(|| panic!("no summary line: {summary}"));
        let lines = std::fs::read_to_string(out.join("poses.jsonl")).unwrap();
        assert!(frames >= 3 && lines.lines().count() == frames, "{frames} frames, {} lines", lines.lines().count());
        for l in lines.lines() {
            serde_json::from_str::<serde_json::Value>(l).unwrap();
        }
    }

    // profile saves what it measured before its first periodic save.
    let lut = dir.join("partial.lut.json");
    let mut child = common::vipnas_command()
        .env("VIPNAS_BOARDS", Path::new(env!("CARGO_MANIFEST_DIR")).join("boards"))
        .env("RUST_LOG", "vipnas=info")
        .args(["profile", "--board", "host", "--quick", "--input", "64x64", "--out", lut.to_str().unwrap()])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut err = BufReader::new(child.stderr.take().unwrap());
    let mut line = String::new();
    while !line.contains("profiling ") {
        line.clear();
        assert!(err.read_line(&mut line).unwrap() > 0, "profile ended before measuring");
    }
    unsafe { libc::kill(child.id() as i32, libc::SIGINT) };
    let mut rest = String::new();
    std::io::Read::read_to_string(&mut err, &mut rest).unwrap();
    let status = child.wait().unwrap();
    assert_eq!(status.code(), Some(130), "{rest}");
    assert!(rest.contains("interrupted by SIGINT") && rest.contains("resumes"), "{rest}");
    let table = vipnas::board::LatencyTable::load(&lut).unwrap();
    assert!(!table.entries.is_empty());
}
