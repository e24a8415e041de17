//! The host side of the temporal search ([`crate::search::temporal`]): the
//! pool read from temporal bundles that share one key net, each net's
//! latency on the board, a cycle written as a temporal bundle, and the OKS AP
//! of a cycle on a labelled video as its fitness.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};

use super::coco::CocoDataset;
use super::eval::{coco_stats, pck, predict_with, RoiMode};
use crate::arch::{InputSize, Network, SpaceName, SubnetError};
use crate::board::lut::{LatencyTable, LutEntry};
use crate::board::profiler::{is_here, test_input, TimedNet};
use crate::bundle::{temporal_onnx, write_temporal_bundle, InputSpec, InputType, Manifest, Temporal, TemporalNetSpec};
use crate::runtime::engine::{EngineOptions, InputTensor, TractEngine};
use crate::runtime::model::input_shape;
use crate::runtime::track::TrackConfig;
use crate::runtime::Estimator;
use crate::search::temporal::{Cycle, CycleFitness, Pool, PoolNet};
use crate::search::{Measured, Score};

/// Where a latency came from: the command line, the board's table (its
/// prediction now, or the one recorded in the bundle), a measurement on the
/// board recorded in the bundle, or one taken now (the board is this machine).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum LatencySource {
    Given,
    Table,
    RecordedTable,
    RecordedMeasurement,
    MeasuredNow,
}

impl LatencySource {
    pub fn name(self) -> &'static str {
        match self {
            LatencySource::Given => "given",
            LatencySource::Table => "the board's table",
            LatencySource::RecordedTable => "the table's, recorded in the bundle",
            LatencySource::RecordedMeasurement => "measured on the board, recorded in the bundle",
            LatencySource::MeasuredNow => "measured now",
        }
    }
}

/// One net of the pool: where it lives and where its latency came from.
#[derive(Clone, Debug)]
pub struct PoolEntry {
    pub bundle: PathBuf,
    pub spec: TemporalNetSpec,
    pub source: LatencySource,
}

/// Temporal bundles as a search pool.
pub struct PoolBundles {
    /// The first bundle: its key net and manifest make every cycle's bundle.
    pub key_dir: PathBuf,
    pub key_source: LatencySource,
    pub entries: Vec<PoolEntry>,
    pub prior_min_score: f32,
    pub pool: Pool,
}

impl PoolBundles {
    /// Every temporal net of every bundle in `dirs`; the bundles must share
    /// the key net (the same spatial ONNX). Latencies on `board`: `table`'s
    /// prediction (with its correction) where it covers the net, else the
    /// table's prediction recorded in the manifest, else the latency measured
    /// on the board recorded there, else — when the board is this machine —
    /// measured now ([`time_here`]). `key_ms`, when given, is the key net's.
    pub fn load(
        dirs: &[PathBuf],
        board: &str,
        table: &LatencyTable,
        max_interval: usize,
        key_ms: Option<f64>,
    ) -> Result<PoolBundles> {
        let Some(key_dir) = dirs.first() else { bail!("--nets: no temporal bundles given") };
        let key = Manifest::load(key_dir)?;
        let key_bytes = read(&key_dir.join(&key.spatial))?;
        let here = is_here(table);
        let key_net = match (&key.subnet, key.input.dtype) {
            (Some(subnet), InputType::F32) => predict(table, key_dir, &key.input, |i| subnet.network(i), subnet.space),
            _ => None,
        };
        let (key_ms, key_source) = if let Some(ms) = key_ms {
            (ms, LatencySource::Given)
        } else {
            latency(key_dir, board, here, table.threads, key_net, &key.latency_ms, &key.measured_ms, || {
                time_here(&key_dir.join(&key.spatial), &key.input, table.threads)
            })?
        };
        let (mut entries, mut nets) = (Vec::new(), Vec::new());
        let mut prior_min_score = None;
        for dir in dirs {
            let m = Manifest::load(dir)?;
            let Some(t) = &m.temporal else {
                bail!(
                    "{}: not a temporal bundle (no `temporal` section; train one with `vipnas train-temporal`)",
                    dir.display()
                )
            };
            if read(&dir.join(&m.spatial))? != key_bytes {
                bail!(
                    "{}: its key net ({}) differs from {}'s: a pool's nets must share the key net",
                    dir.display(),
                    m.spatial,
                    key_dir.display()
                );
            }
            prior_min_score.get_or_insert(t.prior_min_score);
            for (k, spec) in t.nets.iter().enumerate() {
                let path = dir.join(&spec.file);
                let predicted = predict(table, dir, &spec.input, |i| spec.net.network(i), spec.net.subnet.space);
                let (ms, source) =
                    latency(dir, board, here, table.threads, predicted, &spec.latency_ms, &spec.measured_ms, || {
                        time_here(&path, &spec.input, table.threads)
                    })?;
                let base =
                    dir.file_name().map_or_else(|| dir.display().to_string(), |n| n.to_string_lossy().into_owned());
                let name = if t.nets.len() > 1 { format!("{base}#{k}") } else { base };
                nets.push(PoolNet { name, ms });
                entries.push(PoolEntry { bundle: dir.clone(), spec: spec.clone(), source });
            }
        }
        let pool = Pool { key_ms, nets, max_interval };
        pool.check()?;
        Ok(PoolBundles {
            key_dir: key_dir.clone(),
            key_source,
            entries,
            prior_min_score: prior_min_score.unwrap_or(0.3),
            pool,
        })
    }

    /// Writes `cycle` as a temporal bundle in `out`: the key bundle's
    /// spatial net, the cycle's nets (heaviest first, as a budget
    /// controller expects) as `temporal_<k>.onnx`.
    pub fn write(&self, cycle: &Cycle, out: &Path, name: &str) -> Result<PathBuf> {
        let mut used: Vec<usize> = cycle.0.clone();
        used.sort_unstable();
        used.dedup();
        used.sort_by(|&a, &b| self.pool.nets[b].ms.total_cmp(&self.pool.nets[a].ms));
        let mut nets = Vec::new();
        let mut onnx = Vec::new();
        for (k, &i) in used.iter().enumerate() {
            let e = &self.entries[i];
            onnx.push(read(&e.bundle.join(&e.spec.file))?);
            nets.push(TemporalNetSpec { file: temporal_onnx(k), ..e.spec.clone() });
        }
        let order: Vec<usize> =
            cycle.0.iter().map(|i| used.iter().position(|u| u == i).expect("every net of the cycle is used")).collect();
        let temporal =
            Temporal { key_interval: cycle.0.len() as u32, cycle: order, nets, prior_min_score: self.prior_min_score };
        if out.exists() {
            std::fs::remove_dir_all(out).with_context(|| format!("cannot replace {}", out.display()))?;
        }
        write_temporal_bundle(&self.key_dir, out, name, temporal, onnx)
    }
}

fn read(path: &Path) -> Result<Vec<u8>> {
    std::fs::read(path).with_context(|| format!("cannot read {}", path.display()))
}

/// The latency of the model at `path` with input `spec`, here: the median of
/// three loads, each the p50 of 30 runs after 5 warm-ups. (One load's p50
/// moves by up to ~25 % from process to process on a shared 2-vCPU machine:
/// MoveNet Lightning measured 20.5–25.4 ms in four processes a minute apart.)
fn time_here(path: &Path, spec: &InputSpec, threads: usize) -> Result<f64> {
    let input = test_input(spec.dtype, InputTensor::for_spec(spec).len());
    let mut p50 = Vec::new();
    for _ in 0..3 {
        let options = EngineOptions::new(spec.dtype, threads);
        let engine = TractEngine::from_path_with(path, &input_shape(spec), &options)?;
        p50.push(LutEntry::of_times(TimedNet::new(engine, input.clone()).time(5, 30)?).p50_ms);
    }
    log::info!("{}: {p50:.2?} ms in three loads", path.display());
    p50.sort_by(f64::total_cmp);
    Ok(p50[1])
}

/// The table's prediction for the net `build` makes at `input`'s size, when
/// the table covers every block of it.
fn predict(
    table: &LatencyTable,
    dir: &Path,
    input: &InputSpec,
    build: impl FnOnce(InputSize) -> Result<Network, SubnetError>,
    space: SpaceName,
) -> Option<f64> {
    let net = InputSize::new(input.height, input.width).map_err(anyhow::Error::msg).and_then(|i| Ok(build(i)?));
    match net.and_then(|n| table.predict(&n, space)) {
        Ok(p) => Some(p.ms),
        Err(e) => {
            log::info!("{}: the table does not predict it ({e:#})", dir.display());
            None
        }
    }
}

/// A net's latency on `board` and its source (see [`PoolBundles::load`]).
#[allow(clippy::too_many_arguments)]
fn latency(
    dir: &Path,
    board: &str,
    here: bool,
    threads: usize,
    predicted: Option<f64>,
    recorded: &BTreeMap<String, f64>,
    measured: &BTreeMap<String, f64>,
    measure: impl FnOnce() -> Result<f64>,
) -> Result<(f64, LatencySource)> {
    if let Some(ms) = predicted {
        return Ok((ms, LatencySource::Table));
    }
    if let Some(&ms) = recorded.get(board) {
        return Ok((ms, LatencySource::RecordedTable));
    }
    if let Some(&ms) = measured.get(board) {
        return Ok((ms, LatencySource::RecordedMeasurement));
    }
    if here {
        log::info!("{}: no latency for {board} recorded; measuring it here ({threads} thread(s))", dir.display());
        return Ok((measure()?, LatencySource::MeasuredNow));
    }
    bail!(
        "{}: no latency for board {board}: the table does not cover it, the bundle records neither \
         `latency_ms.{board}` nor `measured_ms.{board}`, and {board} is not this machine: measure it on the board",
        dir.display()
    )
}

/// OKS AP of a cycle on a labelled video (its images in order, crop
/// tracking, as `vipnas eval`), PCK@0.2 breaking ties: the cycle is written
/// as a bundle in `scratch` and run with its cycle fixed (no controller).
pub struct CycleApFitness<'a> {
    pub bundles: &'a PoolBundles,
    pub val: CocoDataset,
    pub images: PathBuf,
    pub scratch: PathBuf,
}

impl CycleFitness for CycleApFitness<'_> {
    fn name(&self) -> &'static str {
        "ap"
    }

    fn measure(&mut self, cycle: &Cycle) -> Result<Measured> {
        self.bundles.write(cycle, &self.scratch, "candidate")?;
        let est = Estimator::load(&self.scratch, 1, TrackConfig::default(), false, None)?;
        let p = predict_with(est, &self.val, &self.images, RoiMode::Track)?;
        let ap = coco_stats(&self.val, &p.results)?[0];
        let pck = pck(&self.val, &p.results, &[0.2]).overall[0];
        Ok(Measured { score: Score { value: ap, tie: pck }, ap: Some(ap), pck: Some(pck) })
    }
}
