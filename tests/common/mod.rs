//! Helpers shared by the integration tests.

#![allow(dead_code)]

pub mod mutation;
pub mod reference;
pub mod temporal;

use std::path::{Path, PathBuf};
use std::process::Command;

use vipnas::arch::rng::Rng;

/// A deterministic CHW test image normalised like ImageNet input: smooth
/// gradients and blobs plus a little noise (values mostly within ±2.5).
pub fn test_image(c: usize, h: usize, w: usize, seed: u64) -> Vec<f32> {
    let mut rng = Rng::new(seed);
    let (cx, cy) = (rng.uniform() * w as f64, rng.uniform() * h as f64);
    let mut v = Vec::with_capacity(c * h * w);
    for ch in 0..c {
        for y in 0..h {
            for x in 0..w {
                let (fx, fy) = (x as f64 / w as f64, y as f64 / h as f64);
                let blob = (-((x as f64 - cx).powi(2) + (y as f64 - cy).powi(2)) / (0.05 * (h * w) as f64)).exp();
                let base = (fx * 3.0 + ch as f64).sin() * 0.8 + (fy * 5.0).cos() * 0.6 + 1.5 * blob;
                v.push((base + 0.2 * rng.normal()) as f32);
            }
        }
    }
    v
}

/// A fresh scratch directory under the target dir.
pub fn scratch(name: &str) -> PathBuf {
    let dir = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join(name);
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// Whether the tests run under qemu-user (cross/build.sh --test sets it): the
/// heaviest cases shrink there.
pub fn under_qemu() -> bool {
    std::env::var("VIPNAS_UNDER_QEMU").as_deref() == Ok("1")
}

/// The Python with the oracles: `VIPNAS_PYTHON` (scripts/setup.sh's venv) or `python3`.
pub fn python() -> String {
    std::env::var("VIPNAS_PYTHON").unwrap_or_else(|_| "python3".into())
}

/// A command running the `vipnas` binary under test. When the tests run under
/// qemu-user (cross/build.sh --test), `VIPNAS_BIN_RUNNER` names the emulator
/// command, since the kernel cannot start aarch64 binaries by itself here.
pub fn vipnas_command() -> Command {
    let bin = env!("CARGO_BIN_EXE_vipnas");
    match std::env::var("VIPNAS_BIN_RUNNER") {
        Ok(runner) if !runner.trim().is_empty() => {
            let mut parts = runner.split_whitespace();
            let mut cmd = Command::new(parts.next().unwrap());
            cmd.args(parts).arg(bin);
            cmd
        }
        _ => Command::new(bin),
    }
}

/// Whether the Python oracles (onnx, onnxruntime, numpy) can be used. With
/// `VIPNAS_REQUIRE_ORACLES=1` (set by the test script) their absence fails the
/// test; otherwise it is reported loudly and the oracle part is skipped.
pub fn python_oracles(modules: &str) -> bool {
    let ok = Command::new(python())
        .args(["-c", &format!("import {modules}")])
        .output()
        .map(|o| o.status.success())
        .unwrap_or(false);
    if !ok {
        let msg = format!("python3 with `{modules}` is not available: run scripts/setup.sh (pip install -r scripts/requirements-oracles.txt)");
        if std::env::var("VIPNAS_REQUIRE_ORACLES").as_deref() == Ok("1") {
            panic!("{msg}");
        }
        eprintln!("\n!!!!!!!! SKIPPING ORACLE CHECK: {msg} !!!!!!!!\n");
    }
    ok
}

/// Runs a Python oracle script from tests/oracle with arguments; panics with its output on failure.
pub fn run_oracle(script: &str, args: &[&Path]) -> String {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/oracle").join(script);
    let out = Command::new(python()).arg(&path).args(args).output().expect("python3 runs");
    let text = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    assert!(out.status.success(), "{script} failed:\n{text}");
    text
}

/// Writes f32 values as raw little-endian bytes.
pub fn write_f32(path: &Path, data: &[f32]) {
    let bytes: Vec<u8> = data.iter().flat_map(|v| v.to_le_bytes()).collect();
    std::fs::write(path, bytes).unwrap();
}

/// A real frame of the bundled clip, resized to `input`, ImageNet-normalised, CHW.
pub fn real_image(input: vipnas::arch::InputSize, index: usize) -> Vec<f32> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data/pose2sim-cam03");
    let mut files: Vec<_> = std::fs::read_dir(&dir).unwrap().map(|e| e.unwrap().path()).collect();
    files.retain(|p| p.extension().is_some_and(|e| e == "jpg" || e == "png"));
    files.sort();
    let img = image::open(&files[index]).unwrap().to_rgb8();
    let (h, w) = (input.height, input.width);
    let img = image::imageops::resize(&img, w, h, image::imageops::FilterType::Triangle);
    let (mean, std) = ([0.485f32, 0.456, 0.406], [0.229f32, 0.224, 0.225]);
    let mut out = vec![0f32; 3 * (h * w) as usize];
    for (i, px) in img.pixels().enumerate() {
        for c in 0..3 {
            out[c * (h * w) as usize + i] = (px[c] as f32 / 255.0 - mean[c]) / std[c];
        }
    }
    out
}

/// Waits until `path` has at least `n` lines, failing if `child` exits first
/// (how signal tests know the work they interrupt has begun).
pub fn wait_for_lines(path: &Path, n: usize, child: &mut std::process::Child) {
    loop {
        if std::fs::read_to_string(path).is_ok_and(|t| t.lines().count() >= n) {
            return;
        }
        if let Some(status) = child.try_wait().unwrap() {
            panic!("vipnas exited early: {status}");
        }
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
}
