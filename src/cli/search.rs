//! `vipnas search` (host): the NAS-selected subnet for each latency budget of
//! a board, by evolution over the space; outputs under `--out`.

use std::collections::BTreeMap;
use std::path::PathBuf;

use anyhow::{bail, Context, Result};
use clap::{Args, ValueEnum};

use super::profile::board_table;
use vipnas::arch::{InputSize, Sample, SearchSpace, SpaceName, Subnet};
use vipnas::board::profiler::measure_if_here;
use vipnas::board::BoardProfile;
use vipnas::host::train::export::{BundleNotes, Calibration};
use vipnas::search::ap::ApFitness;
use vipnas::search::pareto::{plot, Reference};
use vipnas::search::predictor::{fit_and_check, PredictorFitness};
use vipnas::search::{front, Candidate, Candidates, EvolutionConfig, Fitness, FlopsFitness, Search};

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
enum FitnessArg {
    /// OKS AP of the subnet with inherited weights on --coco (needs --checkpoint).
    Ap,
    /// FLOPs: the largest network within the budget (no checkpoint, no data).
    Flops,
    /// AP predicted by an MLP trained on the AP evaluations of --predictor-log.
    Predictor,
}

/// Search the subnet that fits each latency budget of a board: evolution as
/// once-for-all does it, latency from the board's measured table, fitness the
/// OKS AP of the subnet with inherited supernet weights (or its FLOPs).
/// Every evaluation is logged; the same command resumes a stopped search.
#[derive(Args, Debug)]
#[command(after_help = "Examples:
  vipnas search --board host --budget-ms 20,30,40 --fitness flops --out runs/search-flops
  vipnas search --board rpi4 --budget-ms 60 --checkpoint runs/mbv3/checkpoint.vnck \\
      --coco data/splits/val.json --images data --evals 300 --out runs/search-rpi4

Outputs: candidates.jsonl (every evaluated subnet), pareto.json, pareto.png, best-<ms>.json,
and with --fitness ap a bundle per budget (bundle-<ms>/) whose manifest holds the predicted latency
(and the latency measured here, when the board's table was measured on this machine's CPU).")]
pub struct SearchArgs {
    /// Search space: mbv3, resnet50 or hrnet-w32 (default: the checkpoint's, else mbv3).
    #[arg(long)]
    space: Option<SpaceName>,
    /// Board profile name (boards/NAME.toml) or a .toml path.
    #[arg(long)]
    board: String,
    /// Latency table (default: the board profile's).
    #[arg(long)]
    table: Option<PathBuf>,
    /// Latency budgets in ms, comma-separated: one subnet per budget.
    #[arg(long, value_name = "MS[,MS…]", value_delimiter = ',', required = true)]
    budget_ms: Vec<f64>,
    /// What makes a subnet good.
    #[arg(long, value_enum, default_value = "ap")]
    fitness: FitnessArg,
    /// Trained supernet (with --fitness ap).
    #[arg(long, value_name = "CKPT")]
    checkpoint: Option<PathBuf>,
    /// Validation set the subnets are scored on (with --fitness ap).
    #[arg(long, value_name = "VAL.json")]
    coco: Option<PathBuf>,
    /// Directory the validation set's file names are relative to.
    #[arg(long, value_name = "DIR")]
    images: Option<PathBuf>,
    /// Training images for each subnet's BatchNorm recalibration.
    #[arg(long, default_value_t = 256)]
    calib_images: usize,
    /// Network input HEIGHTxWIDTH for --fitness flops and predictor (with ap: the checkpoint's).
    #[arg(long)]
    input: Option<InputSize>,
    #[arg(long, default_value_t = 0)]
    seed: u64,
    /// Subnets per generation.
    #[arg(long, default_value_t = 100)]
    population: usize,
    /// Generations after the first.
    #[arg(long, default_value_t = 30)]
    generations: usize,
    /// Pre-screen: breed K times the children and evaluate only the ones the
    /// accuracy predictor (fitted on the evaluations so far) ranks best.
    #[arg(long, value_name = "K", default_value_t = 1)]
    screen: usize,
    /// At most this many distinct subnets evaluated per budget.
    #[arg(long, value_name = "N")]
    evals: Option<usize>,
    /// A reference model scored on the same frames (with --fitness ap; repeatable,
    /// e.g. models/movenet-lightning): plotted at its latency measured here.
    #[arg(long = "reference", value_name = "MODEL")]
    references: Vec<PathBuf>,
    /// A candidates.jsonl with AP evaluations, to train the predictor on
    /// (with --fitness predictor; default: --out's own log).
    #[arg(long, value_name = "FILE")]
    predictor_log: Option<PathBuf>,
    /// Output directory.
    #[arg(long)]
    out: PathBuf,
}

/// The largest budget a search takes: 1000 s a frame (what a latency table can hold).
const MAX_BUDGET_MS: f64 = 1e6;

pub fn run(a: SearchArgs) -> Result<()> {
    let board = BoardProfile::load(&a.board)?;
    let (table_path, table) = board_table(&board, a.table.as_deref())?;
    for (i, &b) in a.budget_ms.iter().enumerate() {
        // (1e300 as 1e300, not as 301 digits.)
        let shown = if b.abs() < 1e9 { b.to_string() } else { format!("{b:e}") };
        anyhow::ensure!(
            b.is_finite() && b > 0.0 && b <= MAX_BUDGET_MS,
            "--budget-ms {shown}: each budget must be a number of ms above 0 and at most {MAX_BUDGET_MS}"
        );
        anyhow::ensure!(!a.budget_ms[..i].contains(&b), "--budget-ms {shown}: given twice");
    }
    std::fs::create_dir_all(&a.out).with_context(|| format!("cannot create {}", a.out.display()))?;
    let (space, input) = match (&a.checkpoint, a.fitness) {
        (Some(ckpt), FitnessArg::Ap) => {
            let h = vipnas::host::train::checkpoint::Checkpoint::read_header(ckpt)?;
            if let Some(s) = a.space.filter(|s| *s != h.config.space) {
                bail!("--space {s}: the checkpoint {} holds the {} supernet", ckpt.display(), h.config.space);
            }
            (h.config.space, h.config.input)
        }
        _ => (a.space.unwrap_or(SpaceName::Mbv3), a.input.unwrap_or(InputSize::DEFAULT)),
    };
    let mut flops = FlopsFitness { input };
    let mut ap = match a.fitness {
        FitnessArg::Flops | FitnessArg::Predictor => None,
        FitnessArg::Ap => {
            let (Some(ckpt), Some(coco), Some(images)) = (&a.checkpoint, &a.coco, &a.images) else {
                bail!("--fitness ap needs --checkpoint, --coco and --images (or use --fitness flops)");
            };
            let calib = Calibration { set: None, images: a.calib_images };
            Some(ApFitness::new(ckpt, &calib, coco, images, &a.out.join(".candidate"))?)
        }
    };
    let mut predictor = match a.fitness {
        FitnessArg::Predictor => {
            let path = a.predictor_log.clone().unwrap_or_else(|| a.out.join("candidates.jsonl"));
            let evaluated: Vec<Candidate> = Candidates::<Candidate>::open_read_only(&path)?
                .all
                .into_iter()
                .filter(|c| c.measured.ap.is_some())
                .collect();
            let (p, tau, held) = fit_and_check(&SearchSpace::get(space), &evaluated, a.seed)
                .with_context(|| format!("accuracy predictor from {}", path.display()))?;
            outln!(
                "accuracy predictor: {} AP evaluations of {}; Kendall tau on {held} held out: {tau:.3}",
                evaluated.len(),
                path.display()
            );
            Some(PredictorFitness { predictor: p })
        }
        _ => None,
    };
    let fitness: &mut dyn Fitness = match (&mut ap, &mut predictor) {
        (Some(f), _) => f,
        (_, Some(f)) => f,
        _ => &mut flops,
    };
    let cfg = EvolutionConfig {
        population: a.population,
        generations: a.generations,
        seed: a.seed,
        max_evals: a.evals,
        screen: a.screen,
        ..EvolutionConfig::default()
    };
    cfg.check()?;
    let log_path = a.out.join("candidates.jsonl");
    let mut log = Candidates::open(&log_path)?;
    let resumed = log.all.len();
    let t0 = std::time::Instant::now();
    let mut results = Vec::new();
    let mut search = Search { space: SearchSpace::get(space), input, table: &table, fitness, log: &mut log };
    for &budget in &a.budget_ms {
        let bar = generation_bar(cfg.generations);
        let outcome = search.evolve(budget, &cfg, |g, best| {
            bar.set_position(g as u64 + 1);
            bar.set_message(format!("{budget} ms: best {} ({:.2} ms)", describe(best), best.ms));
        })?;
        bar.finish_and_clear();
        let random = search.random(budget, outcome.evaluated, cfg.seed)?;
        let best_path = a.out.join(format!("best-{budget}.json"));
        vipnas::bundle::write_atomic(&best_path, serde_json::to_string_pretty(&outcome.best.subnet)?.as_bytes())?;
        outln!(
            "{budget} ms: {} at {:.2} ms predicted, {:.3} GFLOPs ({} evaluated; random search with as many: {}) -> {}",
            describe(&outcome.best),
            outcome.best.ms,
            outcome.best.gflops,
            outcome.evaluated,
            describe(&random),
            best_path.display()
        );
        results.push((budget, outcome, random));
    }
    // Uniformly scaled subnets: the baseline any search must beat.
    let mut scaled = Vec::new();
    for p in (0..=100).step_by(10) {
        let s = Subnet::sample(&search.space, Sample::Scaled(p));
        let ms = search.latency(&s)?;
        let seen = scaled.iter().any(|c: &Candidate| c.subnet == s);
        if !seen && a.budget_ms.iter().any(|&b| ms <= b * 1.5) {
            scaled.push(search.evaluate(&s, ms)?);
        }
    }
    let fitness_name = search.fitness.name();
    drop(search);
    let all: Vec<Candidate> = log.all.iter().filter(|c| c.fitness == fitness_name).cloned().collect();
    let pareto = serde_json::json!({
        "space": space, "input": input, "board": board.name, "table": table_path, "fitness": fitness_name,
        "seed": a.seed, "checkpoint": a.checkpoint,
        "budgets": results.iter().map(|(b, o, r)| serde_json::json!({
            "budget_ms": b, "best": o.best, "history": o.history, "evaluated": o.evaluated, "random_search_best": r,
        })).collect::<Vec<_>>(),
        "uniform_scaled": scaled,
        "front": front(&all),
    });
    vipnas::bundle::write_atomic(&a.out.join("pareto.json"), serde_json::to_string_pretty(&pareto)?.as_bytes())?;
    let mut refs = vec![
        Reference { label: "uniformly scaled".into(), points: scaled.iter().map(|c| (c.ms, c.value())).collect() },
        Reference {
            label: "random search, same evaluations".into(),
            points: results.iter().map(|(_, _, r)| (r.ms, r.value())).collect(),
        },
        Reference {
            label: "searched, per budget".into(),
            points: results.iter().map(|(_, o, _)| (o.best.ms, o.best.value())).collect(),
        },
    ];
    if let Some(f) = &ap {
        for m in &a.references {
            let (ap_m, pck_m, ms) = f.score_model(m).with_context(|| format!("reference {}", m.display()))?;
            outln!(
                "reference {}: AP {ap_m:.3} (PCK@0.2 {pck_m:.3}), {ms:.2} ms per estimate measured here",
                m.display()
            );
            refs.push(Reference { label: format!("{} (measured here)", name_of(m)), points: vec![(ms, ap_m)] });
        }
    }
    let y = match fitness_name {
        "ap" => "OKS AP",
        "predictor" => "predicted OKS AP",
        _ => "GFLOPs",
    };
    let title = format!("vipnas search: {space} on {} ({} candidates)", board.name, all.len());
    plot(&a.out.join("pareto.png"), &title, y, &all, &refs)?;
    if a.fitness == FitnessArg::Ap && all.len() >= 40 {
        let s = SearchSpace::get(space);
        match fit_and_check(&s, &all, a.seed) {
            Ok((_, tau, held)) => {
                outln!("accuracy predictor on these evaluations: Kendall tau {tau:.3} on {held} held out")
            }
            Err(e) => log::warn!("accuracy predictor: {e:#}"),
        }
    }
    if let Some(f) = &mut ap {
        for (budget, o, _) in &results {
            let measured = measure_if_here(&table, &o.best.subnet.network(input)?)?;
            let notes = BundleNotes {
                latency_ms: BTreeMap::from([(board.name.clone(), o.best.ms)]),
                measured_ms: measured.map(|ms| (board.name.clone(), ms)).into_iter().collect(),
                provenance: format!(
                    "vipnas search: space {space}, board {} (table {}), budget {budget} ms, seed {}, fitness {fitness_name}",
                    board.name,
                    table_path.display(),
                    a.seed
                ),
            };
            let dir = a.out.join(format!("bundle-{budget}"));
            f.exporter().export(&o.best.subnet, &dir, &format!("vipnas-{space}-{}-{budget}ms", board.name), &notes)?;
            let here = measured.map(|ms| format!(", measured {ms:.2} ms here")).unwrap_or_default();
            outln!("bundle {}: predicted {:.2} ms on {}{here}", dir.display(), o.best.ms, board.name);
        }
    }
    let _ = std::fs::remove_dir_all(a.out.join(".candidate"));
    outln!(
        "{} candidates ({} from an earlier run) in {:.1} s: {}",
        all.len(),
        resumed,
        t0.elapsed().as_secs_f64(),
        a.out.join("pareto.json").display()
    );
    Ok(())
}

/// A search's progress bar: one step per generation.
pub(super) fn generation_bar(generations: usize) -> indicatif::ProgressBar {
    let bar = indicatif::ProgressBar::new(generations as u64 + 1);
    bar.set_style(
        indicatif::ProgressStyle::with_template("{bar:30} generation {pos}/{len} | {msg} | ETA {eta}")
            .expect("valid template"),
    );
    bar
}

/// `AP 0.612 (PCK 0.93)` or `1.234 GFLOPs`.
fn describe(c: &Candidate) -> String {
    match (c.measured.ap, c.measured.pck) {
        (Some(ap), Some(pck)) => format!("AP {ap:.3} (PCK@0.2 {pck:.3})"),
        _ => format!("{:.3} GFLOPs", c.gflops),
    }
}

/// A model's directory name, for a plot legend.
fn name_of(p: &std::path::Path) -> String {
    p.file_name().map_or_else(|| p.display().to_string(), |n| n.to_string_lossy().into_owned())
}
