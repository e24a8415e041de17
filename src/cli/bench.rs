//! `vipnas bench` (host): tract vs onnxruntime, pipeline stage costs, tract's
//! per-op profile. Prints ratios measured in one run.

use std::path::PathBuf;

use anyhow::Result;
use clap::Args;

use vipnas::host::bench::{default_models, op_profile, ort_latency, pipeline_stages, tract_latency, LatencyRow};

/// Runtime benchmark: tract (ours) vs onnxruntime (peer) on the same ONNX files
/// at 1 and 2 threads, back to back; pipeline overhead; tract's time per op.
#[derive(Args, Debug)]
#[command(
    after_help = "Example:\n  vipnas bench --runs 30\n\nThe peer runs through benches/ort_latency.py with $VIPNAS_PYTHON (default .cache/venv/bin/python)."
)]
pub struct BenchArgs {
    /// Timed inferences per measurement (after 5 warm-ups).
    #[arg(long, default_value_t = 30)]
    runs: usize,
    /// Thread counts to compare.
    #[arg(long, value_delimiter = ',', default_value = "1,2")]
    threads: Vec<usize>,
    /// Repository root (bundled model, clip, peer script).
    #[arg(long, default_value = ".")]
    repo: PathBuf,
    /// Op kinds to list in the per-op profile.
    #[arg(long, default_value_t = 8)]
    top: usize,
}

pub fn run(a: BenchArgs) -> Result<()> {
    let python = std::env::var("VIPNAS_PYTHON").unwrap_or_else(|_| {
        let venv = a.repo.join(".cache/venv/bin/python");
        if venv.exists() {
            venv.display().to_string()
        } else {
            "python3".into()
        }
    });
    let script = a.repo.join("benches/ort_latency.py");
    let scratch = std::env::temp_dir().join("vipnas-bench");
    let models = default_models(&a.repo, &scratch)?;
    println!("== inference latency, median of {} runs (ms); ratio = tract / onnxruntime", a.runs);
    println!("{:<30} {:>7} {:>9} {:>9} {:>8}", "model", "threads", "tract", "ort", "ratio");
    for m in &models {
        for &t in &a.threads {
            // Ours and the peer back to back, same machine state.
            let row = LatencyRow {
                model: m.name.clone(),
                threads: t,
                tract_ms: tract_latency(m, t, a.runs)?,
                ort_ms: ort_latency(&python, &script, m, t, a.runs)?,
            };
            let (ort, ratio) = match (row.ort_ms, row.ratio()) {
                (Some(o), Some(r)) => (format!("{o:.2}"), format!("{r:.2}x")),
                _ => ("n/a".into(), "n/a".into()),
            };
            println!("{:<30} {:>7} {:>9.2} {:>9} {:>8}", row.model, t, row.tract_ms, ort, ratio);
        }
    }
    let s = pipeline_stages(&a.repo.join("models/movenet-lightning"), &a.repo.join("tests/data/pose2sim-cam03"), 1)?;
    println!("\n== pipeline on {} real frames (MoveNet Lightning, 1 thread), ms per frame", s.frames);
    println!(
        "capture(jpeg)={:.2} preprocess={:.2} infer={:.2} decode+track={:.3} render={:.3}",
        s.capture, s.preprocess, s.infer, s.decode_track, s.render
    );
    println!("overhead = (capture+preprocess+decode+track+render)/infer = {:.1}%", 100.0 * s.overhead_fraction());
    for m in &models {
        let ops = op_profile(m, a.runs.min(10))?;
        let total: f64 = ops.iter().map(|o| o.ms).sum();
        println!("\n== tract per-op profile, {} (1 thread): {total:.2} ms in {} op kinds", m.name, ops.len());
        for o in ops.iter().take(a.top) {
            println!("{:<28} {:>8.2} ms {:>5.1}% {:>4} nodes", o.op, o.ms, 100.0 * o.ms / total, o.nodes);
        }
    }
    Ok(())
}
