//! `vipnas search` end to end on this machine's measured latency table
//! (`boards/host.lut.json`): every budget gets a subnet within it, the outputs
//! are written and consistent, the same seed gives the same subnets, a second
//! run resumes from the log without measuring again, and bad input is refused
//! with one line.

mod common;

use std::path::Path;
use std::process::Output;

use vipnas::arch::Subnet;
use vipnas::search::Candidate;

fn search(out: &Path, extra: &[&str]) -> Output {
    let mut args =
        vec!["search", "--board", "host", "--budget-ms", "45,60", "--fitness", "flops", "--population", "40"];
    args.extend(["--generations", "10", "--out", out.to_str().unwrap()]);
    args.extend(extra);
    common::vipnas_command().args(&args).output().expect("vipnas runs")
}

fn ok(o: Output) -> String {
    let (out, err) = (String::from_utf8_lossy(&o.stdout), String::from_utf8_lossy(&o.stderr));
    assert!(o.status.success(), "vipnas failed:\n{out}\n{err}");
    out.into_owned()
}

fn fails_with(o: Output, needle: &str) {
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(!o.status.success() && !err.contains("panicked"), "{err}");
    assert!(err.contains(needle), "stderr lacks `{needle}`:\n{err}");
    assert_eq!(err.trim_end().lines().count(), 1, "{err}");
}

#[test]
fn a_flops_search_fits_every_budget_and_resumes_from_its_log() {
    let dir = common::scratch("search-flops");
    let out = dir.join("a");
    let first = ok(search(&out, &[]));
    println!("{first}");
    for name in ["candidates.jsonl", "pareto.json", "pareto.png", "best-45.json", "best-60.json"] {
        assert!(out.join(name).is_file(), "{name} written");
    }
    let pareto: serde_json::Value = serde_json::from_slice(&std::fs::read(out.join("pareto.json")).unwrap()).unwrap();
    for b in pareto["budgets"].as_array().unwrap() {
        let best: Candidate = serde_json::from_value(b["best"].clone()).unwrap();
        let random: Candidate = serde_json::from_value(b["random_search_best"].clone()).unwrap();
        let budget = b["budget_ms"].as_f64().unwrap();
        assert!(best.ms <= budget && random.ms <= budget, "{budget} ms: {} / {}", best.ms, random.ms);
        assert!(best.gflops >= random.gflops, "{budget} ms: search {} < random {}", best.gflops, random.gflops);
        let file = std::fs::read_to_string(out.join(format!("best-{budget}.json"))).unwrap();
        assert_eq!(Subnet::from_json(&file, "best").unwrap(), best.subnet);
    }
    let front = pareto["front"].as_array().unwrap();
    assert!(front.len() >= 5, "a front of several subnets");
    let scaled = pareto["uniform_scaled"].as_array().unwrap();
    assert!(!scaled.is_empty(), "uniformly scaled baselines evaluated");
    // The log holds every candidate once.
    let log = std::fs::read_to_string(out.join("candidates.jsonl")).unwrap();
    let n = log.lines().count();
    let distinct: std::collections::HashSet<&str> = log.lines().collect();
    assert_eq!(distinct.len(), n);
    // The same command again: everything comes from the log, the same subnets.
    let again = ok(search(&out, &[]));
    assert!(again.contains(&format!("{n} candidates ({n} from an earlier run)")), "{again}");
    assert_eq!(std::fs::read_to_string(out.join("candidates.jsonl")).unwrap().lines().count(), n);
    let first_lines: Vec<&str> = first.lines().filter(|l| l.contains(" ms: ")).collect();
    let again_lines: Vec<&str> = again.lines().filter(|l| l.contains(" ms: ")).collect();
    assert_eq!(first_lines, again_lines);
    // Another seed in a fresh directory: other subnets.
    let other = ok(search(&dir.join("b"), &["--seed", "5"]));
    assert_ne!(first_lines, other.lines().filter(|l| l.contains(" ms: ")).collect::<Vec<_>>());
}

#[test]
fn every_space_can_be_searched_on_the_host_table_and_an_estimated_board_warns() {
    let dir = common::scratch("search-spaces");
    for space in ["resnet50", "hrnet-w32"] {
        let out = dir.join(space);
        let text = ok(search(&out, &["--space", space]));
        let pareto: serde_json::Value =
            serde_json::from_slice(&std::fs::read(out.join("pareto.json")).unwrap()).unwrap();
        for b in pareto["budgets"].as_array().unwrap() {
            let best: Candidate = serde_json::from_value(b["best"].clone()).unwrap();
            assert!(best.ms <= b["budget_ms"].as_f64().unwrap() && best.gflops > 0.0, "{space}: {text}");
        }
    }
    // A board whose shipped table is an estimate: searched, with a loud warning.
    let o = common::vipnas_command()
        .args(["search", "--board", "rpi5", "--budget-ms", "40", "--fitness", "flops", "--population", "20"])
        .args(["--generations", "2", "--out", dir.join("rpi5").to_str().unwrap()])
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(o.status.success() && err.contains("WARNING: ") && err.contains("is an ESTIMATE"), "{err}");
}

#[test]
fn bad_search_input_is_refused_on_one_line() {
    let dir = common::scratch("search-bad");
    let out = dir.join("x");
    let run = |args: &[&str]| {
        let mut v = vec!["search", "--board", "host", "--out", out.to_str().unwrap()];
        v.extend(args);
        common::vipnas_command().args(&v).output().unwrap()
    };
    fails_with(run(&["--budget-ms", "40", "--fitness", "ap"]), "--fitness ap needs --checkpoint, --coco and --images");
    fails_with(
        run(&["--budget-ms=40,-3", "--fitness", "flops"]),
        "--budget-ms -3: each budget must be a number of ms above 0 and at most 1000000",
    );
    fails_with(
        run(&["--budget-ms=1e300", "--fitness", "flops"]),
        "--budget-ms 1e300: each budget must be a number of ms above 0 and at most 1000000",
    );
    fails_with(run(&["--budget-ms=40,30,40", "--fitness", "flops"]), "--budget-ms 40: given twice");
    fails_with(run(&["--budget-ms", "5", "--fitness", "flops"]), "no subnet of mbv3 within 5 ms");
    fails_with(
        run(&["--budget-ms", "40", "--fitness", "flops", "--population", "2"]),
        "--population must be at least 4",
    );
    fails_with(
        run(&["--budget-ms", "40", "--fitness", "flops", "--table", "/nonexistent.lut.json"]),
        "/nonexistent.lut.json: no latency table for board host",
    );
    std::fs::create_dir_all(&out).unwrap();
    std::fs::write(out.join("candidates.jsonl"), "{\"not\": 1}\n{}\n").unwrap();
    fails_with(run(&["--budget-ms", "40", "--fitness", "flops"]), "candidates.jsonl:1: not a candidate");
}

/// AP fitness on a tiny trained supernet: what it measures for a subnet is
/// what `vipnas eval` says of the same subnet exported by `vipnas export`.
#[test]
fn ap_fitness_scores_a_subnet_as_eval_scores_its_exported_bundle() {
    let clip = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/data/pose2sim-cam03");
    let coco = format!("{clip}.json");
    let dir = common::scratch("search-ap");
    let run = dir.join("run");
    ok(common::vipnas_command()
        .args(["train", "--space", "mbv3", "--coco", &coco, "--images", clip, "--input", "64x64", "--batch", "4"])
        .args(["--steps", "3", "--out", run.to_str().unwrap()])
        .output()
        .unwrap());
    let ckpt = run.join("checkpoint.vnck");
    let calib = vipnas::host::train::export::Calibration { set: None, images: 8 };
    let mut f = vipnas::search::ap::ApFitness::new(&ckpt, &calib, Path::new(&coco), Path::new(clip), &dir.join("cand"))
        .unwrap();
    let space = vipnas::arch::SearchSpace::get(vipnas::arch::SpaceName::Mbv3);
    let subnet = Subnet::sample(&space, vipnas::arch::Sample::Random(4));
    use vipnas::search::Fitness;
    let m = f.measure(&subnet).unwrap();
    let (ap, pck) = (m.ap.unwrap(), m.pck.unwrap());
    assert!((0.0..=1.0).contains(&ap) && (0.0..=1.0).contains(&pck));
    assert_eq!(m.score.value, ap);
    assert_eq!(m.score.tie, pck);
    // The same subnet through the CLI.
    let subnet_file = dir.join("subnet.json");
    std::fs::write(&subnet_file, subnet.to_string()).unwrap();
    let bundle = dir.join("bundle");
    ok(common::vipnas_command()
        .args(["export", "--checkpoint", ckpt.to_str().unwrap(), "--subnet", subnet_file.to_str().unwrap()])
        .args(["--calib-images", "8", "--out", bundle.to_str().unwrap()])
        .output()
        .unwrap());
    let e = ok(common::vipnas_command()
        .args(["eval", "--model", bundle.to_str().unwrap(), "--coco", &coco, "--images", clip])
        .output()
        .unwrap());
    let line = e.lines().find(|l| l.contains("Average Precision  (AP) @[ IoU=0.50:0.95 | area=   all")).unwrap();
    let cli_ap: f64 = line.rsplit(' ').next().unwrap().trim().parse().unwrap();
    println!("AP fitness {ap:.3} (PCK@0.2 {pck:.3}); vipnas eval {cli_ap:.3}");
    assert!((cli_ap - ap).abs() < 0.0005, "fitness {ap} vs eval {cli_ap}");
    // A second measurement of the same subnet is the same (recalibration is deterministic).
    assert_eq!(f.measure(&subnet).unwrap(), m);
}

#[test]
fn a_signal_stops_a_search_with_its_log_whole_and_the_rerun_resumes() {
    let dir = common::scratch("search-signal");
    let out = dir.join("s");
    // Generations enough that only the signal ends it.
    let mut child = common::vipnas_command()
        .args(["search", "--board", "host", "--budget-ms", "50", "--fitness", "flops", "--generations", "100000000"])
        .args(["--out", out.to_str().unwrap()])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    common::wait_for_lines(&out.join("candidates.jsonl"), 200, &mut child);
    unsafe { libc::kill(child.id() as i32, libc::SIGTERM) };
    let o = child.wait_with_output().unwrap();
    let err = String::from_utf8_lossy(&o.stderr);
    assert_eq!(o.status.code(), Some(143), "{err}");
    assert!(err.contains("the same command resumes it") && err.contains("SIGTERM"), "{err}");
    let log = std::fs::read_to_string(out.join("candidates.jsonl")).unwrap();
    assert!(log.ends_with('\n'));
    for l in log.lines() {
        serde_json::from_str::<Candidate>(l).unwrap();
    }
    let n = log.lines().count();
    let again = ok(common::vipnas_command()
        .args(["search", "--board", "host", "--budget-ms", "50", "--fitness", "flops", "--generations", "2"])
        .args(["--out", out.to_str().unwrap()])
        .output()
        .unwrap());
    assert!(again.contains(&format!("({n} from an earlier run)")), "{again}");
}

#[test]
fn an_export_for_a_board_carries_its_predicted_latency() {
    let dir = common::scratch("search-export-board");
    let b = dir.join("b");
    ok(common::vipnas_command()
        .args(["export", "--space", "mbv3", "--sample", "scaled", "--scale", "50", "--board", "host"])
        .args(["--out", b.to_str().unwrap()])
        .output()
        .unwrap());
    let m = vipnas::bundle::Manifest::load(&b).unwrap();
    let predicted = ok(common::vipnas_command()
        .args(["predict", "--board", "host", "--model", b.to_str().unwrap()])
        .output()
        .unwrap());
    let ms: f64 = predicted.lines().find_map(|l| l.strip_prefix("predicted_ms=")).unwrap().parse().unwrap();
    assert!((m.latency_ms["host"] - ms).abs() < 1e-3, "{} vs {ms}", m.latency_ms["host"]);
    // Measured too exactly when the board's table was measured on this CPU:
    // the shipped table (whichever machine runs this), and a copy of it
    // marked as measured on this machine's CPU and on another's.
    let boards = Path::new(env!("CARGO_MANIFEST_DIR")).join("boards");
    let table = vipnas::board::LatencyTable::load(&boards.join("host.lut.json")).unwrap();
    let here = vipnas::board::profiler::cpu_string();
    assert_eq!(m.measured_ms.contains_key("host"), table.cpu == here, "{:?} on {here}", m.measured_ms);
    for (cpu, measured) in [(here.as_str(), true), ("another CPU (2 cores)", false)] {
        let copy = dir.join(format!("boards-{measured}"));
        std::fs::create_dir_all(&copy).unwrap();
        std::fs::copy(boards.join("host.toml"), copy.join("host.toml")).unwrap();
        let mut t = table.clone();
        t.cpu = cpu.into();
        std::fs::write(copy.join("host.lut.json"), serde_json::to_string(&t).unwrap()).unwrap();
        let b = dir.join(format!("measured-{measured}"));
        ok(common::vipnas_command()
            .args(["export", "--space", "mbv3", "--sample", "scaled", "--scale", "50"])
            .args(["--board", copy.join("host.toml").to_str().unwrap(), "--out", b.to_str().unwrap()])
            .output()
            .unwrap());
        let copied = vipnas::bundle::Manifest::load(&b).unwrap();
        assert_eq!(copied.latency_ms, m.latency_ms, "the same prediction");
        assert_eq!(copied.measured_ms.get("host").is_some_and(|&ms| ms > 0.0), measured, "{:?}", copied.measured_ms);
    }
    // A table without the subnet's input size: refused, naming the table.
    let o = common::vipnas_command()
        .args(["export", "--space", "mbv3", "--sample", "min", "--input", "64x64", "--board", "host"])
        .args(["--out", dir.join("c").to_str().unwrap()])
        .output()
        .unwrap();
    fails_with(o, "host.lut.json: no prediction for --board host: the latency table lacks");
}

/// A pool of two temporal bundles (random weights, MoveNet as the key net)
/// whose manifests record latencies for `host` — key net 20 ms, the add net
/// 6 ms, the mul net 2 ms — so that the search times nothing.
fn temporal_pool(dir: &Path) -> Vec<std::path::PathBuf> {
    use common::temporal::{bundle, tnet};
    use vipnas::arch::{FusionOp, InputSize};
    let input = InputSize::new(64, 64).unwrap();
    [("add", FusionOp::Add, 6.0), ("mul", FusionOp::Mul, 2.0)]
        .into_iter()
        .map(|(name, op, ms)| {
            let b = bundle(&dir.join(name), input, &[tnet(op)], vec![0]);
            let path = b.join("manifest.json");
            let mut m: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap();
            m["latency_ms"] = serde_json::json!({"host": 20.0});
            m["temporal"]["nets"][0]["latency_ms"] = serde_json::json!({"host": ms});
            std::fs::write(&path, serde_json::to_string(&m).unwrap()).unwrap();
            b
        })
        .collect()
}

fn search_temporal(pool: &[std::path::PathBuf], out: &Path, budget: &str, extra: &[&str]) -> Output {
    let nets = pool.iter().map(|p| p.to_str().unwrap()).collect::<Vec<_>>().join(",");
    let clip = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data");
    common::vipnas_command()
        .args(["search-temporal", "--nets", &nets, "--board", "host", "--budget-ms", budget, "--max-interval", "4"])
        .args(["--population", "4", "--generations", "1", "--evals", "6", "--out", out.to_str().unwrap()])
        .arg("--coco")
        .arg(clip.join("pose2sim-cam03.json"))
        .arg("--images")
        .arg(clip.join("pose2sim-cam03"))
        .args(extra)
        .output()
        .expect("vipnas runs")
}

#[test]
fn a_temporal_search_picks_a_cycle_within_the_budget_writes_its_bundle_and_resumes() {
    let dir = common::scratch("search-temporal");
    let pool = temporal_pool(&dir);
    let out = dir.join("out");
    let first = ok(search_temporal(&pool, &out, "10", &[]));
    // Within 10 ms per frame a cycle propagates at least 2 frames: (20 + 2 + 2) / 3 = 8 ms.
    let log = std::fs::read_to_string(out.join("candidates.jsonl")).unwrap();
    let cands: Vec<serde_json::Value> = log.lines().map(|l| serde_json::from_str(l).unwrap()).collect();
    assert!(cands.len() >= 4, "{first}");
    for c in &cands {
        let cycle: Vec<usize> = serde_json::from_value(c["cycle"].clone()).unwrap();
        let ms = (20.0 + cycle.iter().map(|&k| [6.0, 2.0][k]).sum::<f64>()) / (cycle.len() + 1) as f64;
        assert!((c["ms"].as_f64().unwrap() - ms).abs() < 1e-9 && ms <= 10.0, "{c}");
        assert!((2..=4).contains(&cycle.len()) && c["ap"].as_f64().is_some(), "{c}");
    }
    let best: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(out.join("best-10.json")).unwrap()).unwrap();
    let best_ap = best["best"]["ap"].as_f64().unwrap();
    assert!(cands.iter().any(|c| c["cycle"] == best["best"]["cycle"] && c["ap"].as_f64() == Some(best_ap)), "logged");
    // The bundle holds the better of the evolution's best and random search's.
    let random = &best["random_search_best"];
    let rank = |c: &serde_json::Value| {
        let f = |k: &str| c[k].as_f64().unwrap();
        (f("ap"), f("pck"), -f("ms"))
    };
    let winner = if rank(random) > rank(&best["best"]) { random } else { &best["best"] };
    let cycle: Vec<usize> = serde_json::from_value(winner["cycle"].clone()).unwrap();
    // Its bundle: that cycle, the nets it uses heaviest first, and it runs.
    let m = vipnas::bundle::Manifest::load(&out.join("bundle-10")).unwrap();
    let t = m.temporal.unwrap();
    assert_eq!(t.key_interval as usize, cycle.len());
    let names = ["add", "mul"];
    let used: Vec<&str> = t.cycle.iter().map(|&k| t.nets[k].net.fusion.op.name()).collect();
    assert_eq!(used, cycle.iter().map(|&k| names[k]).collect::<Vec<_>>());
    if t.nets.len() == 2 {
        assert_eq!(t.nets[0].net.fusion.op.name(), "add", "heaviest first");
    }
    assert!(first.contains("spatial-only") && first.contains("held"), "{first}");
    let run = common::vipnas_command()
        .args(["run", "--model", out.join("bundle-10").to_str().unwrap(), "--frames", "6", "--out"])
        .arg(dir.join("run"))
        .output()
        .unwrap();
    assert!(run.status.success(), "{}", String::from_utf8_lossy(&run.stderr));
    // The same command again measures nothing new.
    let again = ok(search_temporal(&pool, &out, "10", &[]));
    assert_eq!(std::fs::read_to_string(out.join("candidates.jsonl")).unwrap(), log, "{again}");
    assert!(
        again.contains(&format!("{} cycles evaluated ({} from an earlier run)", cands.len(), cands.len())),
        "{again}"
    );

    // Bad input, one line each.
    fails_with(
        search_temporal(&pool, &dir.join("tight"), "5", &[]),
        "no cycle within 5 ms per frame: the cheapest (4 frames propagated per key frame, all by mul) predicts 5.60 ms",
    );
    // The key net's latency as given on the command line.
    fails_with(
        search_temporal(&pool, &dir.join("slow-key"), "10", &["--key-ms", "60"]),
        "no cycle within 10 ms per frame: the cheapest (4 frames propagated per key frame, all by mul) predicts 13.60 ms (key net 60.00 ms)",
    );
    std::fs::write(pool[1].join("spatial.onnx"), b"another key net").unwrap();
    fails_with(search_temporal(&pool, &dir.join("other"), "10", &[]), "its key net (spatial.onnx) differs from");
}
