//! The real V4L2 path against a real kernel driver: tests/vivid/vm.sh boots
//! Debian's kernel in qemu with the `vivid` virtual camera, runs vipnas inside
//! (tests/vivid/init.sh) and brings back what it wrote; this test checks it.
//!
//! Skipped, loudly, where no VM can start (no qemu-system-x86_64, no kernel
//! package); `VIPNAS_REQUIRE_VM=1` (set by the test script) turns the skip into
//! a failure.

mod common;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;

fn read(dir: &Path, name: &str) -> String {
    std::fs::read_to_string(dir.join(name)).unwrap_or_else(|e| panic!("{name}: {e}"))
}

fn rc(dir: &Path, name: &str) -> i32 {
    read(dir, name).trim().parse().unwrap()
}

/// `key=value` pairs of a summary line.
fn fields(line: &str) -> BTreeMap<String, String> {
    line.split_whitespace().filter_map(|kv| kv.split_once('=')).map(|(k, v)| (k.into(), v.into())).collect()
}

/// Boots the VM once; `None` when it cannot run here.
fn vm_results() -> Option<PathBuf> {
    if !cfg!(all(target_arch = "x86_64", target_os = "linux")) || common::under_qemu() {
        eprintln!("vivid VM test: runs on the x86_64 host build only");
        return None;
    }
    let out = common::scratch("vivid_vm");
    let repo = Path::new(env!("CARGO_MANIFEST_DIR"));
    // Software emulation runs float code ~50x slower than the host: a small
    // exported subnet (random weights; the pattern holds no person anyway)
    // keeps 100 frames within a minute.
    let model = out.join("model");
    let export = common::vipnas_command()
        .args(["export", "--space", "mbv3", "--sample", "min", "--input", "128x96", "--out"])
        .arg(&model)
        .output()
        .unwrap();
    assert!(export.status.success(), "{}", String::from_utf8_lossy(&export.stderr));
    let status = Command::new("bash")
        .arg(repo.join("tests/vivid/vm.sh"))
        .arg(env!("CARGO_BIN_EXE_vipnas"))
        .arg(&model)
        .arg(out.join("vm"))
        .output()
        .expect("bash");
    let stdout = String::from_utf8_lossy(&status.stdout);
    println!("{stdout}{}", String::from_utf8_lossy(&status.stderr));
    let out = out.join("vm");
    if status.status.code() == Some(77) {
        let why = stdout.lines().find(|l| l.starts_with("SKIP:")).unwrap_or("SKIP").to_string();
        if std::env::var("VIPNAS_REQUIRE_VM").as_deref() == Ok("1") {
            panic!("the vivid VM is required (VIPNAS_REQUIRE_VM=1) but cannot run: {why}");
        }
        eprintln!("\n!!!!!!!! SKIPPING THE VIVID VM TEST: {why} !!!!!!!!\n");
        return None;
    }
    assert!(status.status.success(), "tests/vivid/vm.sh failed");
    Some(out)
}

/// vivid's default test pattern, 75 % colour bars: white, yellow, cyan, green,
/// magenta, red, blue, black, each 1/8 of the width.
const BARS: [[u8; 3]; 8] =
    [[191, 191, 191], [191, 191, 0], [0, 191, 191], [0, 191, 0], [191, 0, 191], [191, 0, 0], [0, 0, 191], [0, 0, 0]];

/// Largest channel difference between each bar's centre (below vivid's text
/// overlay) and the expected colour.
fn bar_error(png: &Path) -> u8 {
    let img = image::open(png).unwrap_or_else(|e| panic!("{}: {e}", png.display())).to_rgb8();
    assert_eq!(img.dimensions(), (640, 480), "{}", png.display());
    let mut worst = 0;
    for (i, want) in BARS.iter().enumerate() {
        let x = (img.width() / 8) * i as u32 + img.width() / 16;
        for y in [240, 360, 470] {
            let got = img.get_pixel(x, y).0;
            for c in 0..3 {
                worst = worst.max(got[c].abs_diff(want[c]));
            }
        }
    }
    worst
}

#[test]
fn vivid_camera_in_a_vm() {
    let Some(out) = vm_results() else { return };
    let boot = read(&out, "boot.txt");
    println!("{boot}");
    assert!(boot.contains("/dev/video0"), "vivid did not create /dev/video0:\n{boot}");
    assert!(!boot.contains("failed"), "{boot}");

    // Formats and controls as the driver lists them.
    let camera = read(&out, "camera.txt");
    assert_eq!(rc(&out, "camera.rc"), 0, "{camera}");
    assert!(camera.lines().any(|l| l.trim_start().starts_with("YUYV") && l.ends_with("(vipnas decodes)")), "{camera}");
    for control in [
        "Disconnect",
        "Inject Fatal Streaming Error",
        "Inject V4L2_BUF_FLAG_ERROR",
        "Inject VIDIOC_QBUF Error",
        "Inject VIDIOC_STREAMON Error",
        "Percentage of Dropped Buffers",
    ] {
        assert!(camera.contains(control), "no `{control}` control:\n{camera}");
    }

    // Each decoded format reproduces the test pattern.
    for (fourcc, tolerance) in [("YUYV", 6), ("RGB3", 0)] {
        let text = read(&out, &format!("snap_{fourcc}.txt"));
        assert_eq!(rc(&out, &format!("snap_{fourcc}.rc")), 0, "{text}");
        let err = bar_error(&out.join(format!("snap_{fourcc}.png")));
        println!("{fourcc}: colour bars within {err} levels");
        assert!(err <= tolerance, "{fourcc} snapshot differs from vivid's colour bars by {err} levels");
    }

    // Bad format requests: a clear one-line error, non-zero exit, no panic.
    let mjpg = read(&out, "bad_MJPG.txt");
    assert_ne!(rc(&out, "bad_MJPG.rc"), 0, "{mjpg}");
    assert!(mjpg.contains("error: /dev/video0: does not offer MJPG (it offers: YUYV,"), "{mjpg}");
    let h264 = read(&out, "bad_H264.txt");
    assert_ne!(rc(&out, "bad_H264.rc"), 0, "{h264}");
    assert!(h264.contains("pixel format `H264` is not one vipnas decodes"), "{h264}");
    assert!(!mjpg.contains("panicked") && !h264.contains("panicked"));

    // The run with faults.
    let log = read(&out, "run.log");
    let faults = read(&out, "faults.log");
    let summary = read(&out, "run.txt");
    println!("faults:\n{faults}\nrun log:\n{log}\nsummary:\n{summary}");
    assert_eq!(rc(&out, "run.rc"), 0, "vipnas run failed:\n{log}");
    assert!(!log.contains("panicked"), "{log}");
    let mut s = fields(summary.lines().rev().nth(1).unwrap());
    s.extend(fields(summary.lines().last().unwrap()));
    let n = |k: &str| s[k].parse::<u64>().unwrap_or_else(|_| panic!("{k} in {summary}"));
    let poses: Vec<serde_json::Value> =
        read(&out, "run/poses.jsonl").lines().map(|l| serde_json::from_str(l).unwrap()).collect();
    assert_eq!(n("frames"), poses.len() as u64, "one poses.jsonl line per processed frame");
    assert_eq!(n("captured"), n("frames") + n("lost"), "captured = processed + lost");
    // The driver's sequence numbers, recorded per processed frame, account for
    // the losses: gaps within each streaming session (a reconnect restarts
    // the count) are dropped or flagged frames.
    let seqs: Vec<u64> = poses.iter().map(|p| p["seq"].as_u64().unwrap()).collect();
    let sessions = 1 + seqs.windows(2).filter(|w| w[1] <= w[0]).count() as u64;
    let gaps: u64 = seqs.windows(2).filter(|w| w[1] > w[0]).map(|w| w[1] - w[0] - 1).sum();
    let flagged = log.matches("flagged the buffer as corrupt").count() as u64;
    println!("sessions={sessions} seq gaps={gaps} flagged={flagged}");
    assert!(n("lost") >= gaps && n("lost") <= gaps + flagged, "lost {} vs gaps {gaps} + flagged {flagged}", n("lost"));
    assert!(gaps > flagged, "dropped buffers show as sequence gaps");
    assert!(flagged >= 1, "the V4L2_BUF_FLAG_ERROR buffer is counted:\n{log}");
    // EIO (fatal streaming error), EINVAL (failed QBUF; failed STREAMON right
    // after a reopen) and ENODEV (disconnect): each closes, reconnects, resumes.
    assert!(log.contains("capture failed (Input/output error"), "{log}");
    assert!(log.contains("capture failed (No such device"), "{log}");
    assert_eq!(log.matches("capture failed (Invalid argument").count(), 2, "{log}");
    assert_eq!((n("errors"), n("reconnects")), (4, 4), "{summary}");
    // Each reconnect restarts the driver's count, but for the reopen whose
    // STREAMON was made to fail: that session delivered nothing.
    assert_eq!(sessions, n("reconnects"), "streaming sessions that delivered frames");
    assert_eq!(log.matches("reconnected after").count() as u64, n("reconnects"));
    assert!(n("frames") + n("lost") >= 100 - 1, "the run went on to its 100 frames: {summary}");
    for p in &poses {
        let kps = p["keypoints"].as_array().unwrap();
        assert_eq!(kps.len(), 17);
        assert!(kps.iter().flat_map(|k| k.as_array().unwrap()).all(|v| v.as_f64().unwrap().is_finite()));
    }
}
