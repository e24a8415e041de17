//! `vipnas profile` and `vipnas predict` end to end (quick tables: the numbers
//! are not checked here, the benchmark does that), and their errors.

mod common;

use std::process::Output;

fn vipnas(args: &[&str]) -> Output {
    common::vipnas_command()
        .env("VIPNAS_BOARDS", std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("boards"))
        .args(args)
        .output()
        .expect("vipnas runs")
}

fn text(o: &Output) -> (String, String) {
    (String::from_utf8_lossy(&o.stdout).into_owned(), String::from_utf8_lossy(&o.stderr).into_owned())
}

/// Small enough for the qemu run of the aarch64 suite.
const INPUT: &str = "64x64";

#[test]
fn quick_profile_then_predict_and_measure() {
    let dir = common::scratch("latency_quick");
    let lut = dir.join("host.lut.json");
    let lut_s = lut.to_str().unwrap();
    let o = vipnas(&["profile", "--board", "host", "--quick", "--input", INPUT, "--out", lut_s]);
    let (out, err) = text(&o);
    assert!(o.status.success(), "{err}");
    assert!(out.contains("entries") && out.contains("correction"), "{out}");
    let table: serde_json::Value = serde_json::from_slice(&std::fs::read(&lut).unwrap()).unwrap();
    assert_eq!(table["measured"], true);
    assert_eq!(table["tract_version"], "0.23.9");
    assert_eq!(table["kernels"], vipnas::runtime::grouped_conv::KERNEL_VERSION, "the table names the fast convolution");
    assert!(table["entries"].as_object().unwrap().len() > 20);
    assert!(table["cpu"].as_str().unwrap().contains("cores"));

    // The quick table covers the max subnet: predict, then measure it whole.
    let predict = |extra: &[&str]| {
        let base = ["predict", "--board", "host", "--table", lut_s, "--space", "mbv3", "--input", INPUT];
        vipnas(&[base.as_slice(), extra].concat())
    };
    let o = predict(&["--sample", "max", "--measure", "--runs", "5"]);
    let (out, err) = text(&o);
    assert!(o.status.success(), "{err}");
    let value = |key: &str| -> f64 {
        let line = out.lines().find(|l| l.starts_with(key)).unwrap_or_else(|| panic!("no {key} in {out}"));
        line[key.len()..].split_whitespace().next().unwrap().parse().unwrap()
    };
    assert!(value("predicted_ms=") > 0.0 && value("measured_ms=") > 0.0, "{out}");

    // Resuming a finished table re-measures nothing and keeps it.
    let before = std::fs::read(&lut).unwrap();
    let o = vipnas(&["profile", "--board", "host", "--quick", "--input", INPUT, "--out", lut_s]);
    assert!(o.status.success());
    let after: serde_json::Value = serde_json::from_slice(&std::fs::read(&lut).unwrap()).unwrap();
    let before: serde_json::Value = serde_json::from_slice(&before).unwrap();
    assert_eq!(after["entries"], before["entries"]);

    // A subnet the quick table does not cover: a clear error, never 0.
    let o = predict(&["--sample", "random", "--seed", "99"]);
    let (out, err) = text(&o);
    assert!(!o.status.success() && err.contains("the latency table lacks") && !out.contains("predicted_ms"), "{err}");
    // … which stops the prediction only: --measure still measures.
    let o = predict(&["--sample", "random", "--seed", "99", "--measure", "--runs", "3"]);
    let (out, err) = text(&o);
    assert!(!o.status.success() && err.contains("no prediction: the latency table lacks"), "{err}");
    assert!(out.contains("measured_ms=") && !out.contains("predicted_ms"), "{out}");
}

#[test]
fn bad_boards_and_tables_are_refused() {
    let dir = common::scratch("latency_errors");
    let o = vipnas(&["profile", "--board", "pi-zero", "--quick"]);
    assert!(
        !o.status.success() && text(&o).1.contains("unknown board `pi-zero`") && text(&o).1.contains("rpi4"),
        "{}",
        text(&o).1
    );
    // The shipped rpi4 table is an estimate: it predicts, with a loud warning.
    let o = vipnas(&["predict", "--board", "rpi4", "--space", "mbv3"]);
    let (out, err) = text(&o);
    assert!(
        o.status.success() && err.contains("rpi4.lut.json is an ESTIMATE") && out.contains("predicted_ms"),
        "{err}"
    );
    // A board with neither a table nor published numbers: told to measure.
    let rpi4 =
        std::fs::read_to_string(std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("boards/rpi4.toml")).unwrap();
    let zero = dir.join("pi-zero.toml");
    let profile = rpi4.split("\n[estimate]").next().unwrap().replace("rpi4", "pi-zero");
    std::fs::write(&zero, profile).unwrap();
    let o = vipnas(&["predict", "--board", zero.to_str().unwrap(), "--space", "mbv3"]);
    assert!(!o.status.success() && text(&o).1.contains("vipnas profile --board pi-zero"), "{}", text(&o).1);
    let o = vipnas(&["profile", "--board", zero.to_str().unwrap(), "--estimate-from", "host"]);
    assert!(!o.status.success() && text(&o).1.contains("no [estimate] section"), "{}", text(&o).1);
    // An estimate is written from the host's measured table, flagged.
    let est = dir.join("rpi5.lut.json");
    let o = vipnas(&["profile", "--board", "rpi5", "--estimate-from", "host", "--out", est.to_str().unwrap()]);
    assert!(o.status.success(), "{}", text(&o).1);
    let t = vipnas::board::LatencyTable::load(&est).unwrap();
    assert!(!t.measured && t.board == "rpi5" && t.method.unwrap().contains("ESTIMATED"));
    // ... but never over a measured table.
    let measured = dir.join("measured.lut.json");
    std::fs::copy(std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("boards/host.lut.json"), &measured).unwrap();
    let o = vipnas(&["profile", "--board", "rpi5", "--estimate-from", "host", "--out", measured.to_str().unwrap()]);
    assert!(!o.status.success() && text(&o).1.contains("an estimate never replaces one"), "{}", text(&o).1);
    assert!(vipnas::board::LatencyTable::load(&measured).unwrap().measured, "the measured table is untouched");
    // Away from the checkout and not installed: no boards directory at all.
    let o = common::vipnas_command()
        .env_remove("VIPNAS_BOARDS")
        .current_dir(&dir)
        .args(["predict", "--board", "rpi4", "--space", "mbv3"])
        .output()
        .unwrap();
    assert!(
        !o.status.success()
            && text(&o).1.contains("unknown board `rpi4`: no boards directory boards here (run from the checkout"),
        "{}",
        text(&o).1
    );
    let corrupt = dir.join("corrupt.lut.json");
    std::fs::write(&corrupt, "{\"format\": 1, \"board\": ").unwrap();
    let o = vipnas(&["predict", "--board", "host", "--table", corrupt.to_str().unwrap(), "--space", "mbv3"]);
    assert!(!o.status.success() && text(&o).1.contains("corrupt.lut.json: corrupt latency table"), "{}", text(&o).1);
    let old = dir.join("old.lut.json");
    let table = serde_json::json!({
        "format": vipnas::board::lut::LUT_FORMAT, "board": "host", "cpu": "x", "tract_version": "0.21.3", "threads": 1, "date": "2026-01-01T00:00:00Z",
        "profiled": [{"space": "mbv3", "input": {"height": 256, "width": 192}, "quick": false}], "measured": true, "warmup": 1, "runs": 1, "entries": {}
    });
    std::fs::write(&old, table.to_string()).unwrap();
    let o = vipnas(&["predict", "--board", "host", "--table", old.to_str().unwrap(), "--space", "mbv3"]);
    assert!(!o.status.success() && text(&o).1.contains("measured with tract 0.21.3"), "{}", text(&o).1);
    // A table of format 1 (blocks timed with a warm cache): refused.
    let mut t = table.clone();
    t["format"] = 1.into();
    std::fs::write(&old, t.to_string()).unwrap();
    let o = vipnas(&["predict", "--board", "host", "--table", old.to_str().unwrap(), "--space", "mbv3"]);
    let err = text(&o).1;
    assert!(!o.status.success() && err.contains("table format 1 (this vipnas reads 2): profile again"), "{err}");
    // A table of this tract measured without the fast convolution: refused.
    let mut t = table.clone();
    t["tract_version"] = "0.23.9".into();
    std::fs::write(&old, t.to_string()).unwrap();
    let o = vipnas(&["predict", "--board", "host", "--table", old.to_str().unwrap(), "--space", "mbv3"]);
    let err = text(&o).1;
    assert!(!o.status.success() && err.contains("measured with tract's own convolutions"), "{err}");
    let estimate = dir.join("estimate.lut.json");
    t["kernels"] = vipnas::runtime::grouped_conv::KERNEL_VERSION.into();
    t["measured"] = false.into();
    t["method"] = "scaled from host".into();
    std::fs::write(&estimate, t.to_string()).unwrap();
    let o = vipnas(&["predict", "--board", "host", "--table", estimate.to_str().unwrap(), "--space", "mbv3"]);
    let err = text(&o).1;
    assert!(err.contains("WARNING") && err.contains("ESTIMATE") && err.contains("scaled from host"), "{err}");
    assert!(err.contains("the latency table lacks"), "an empty estimate still predicts nothing: {err}");
}
