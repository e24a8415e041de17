//! Temporal search: what runs on each frame of a cycle. A cycle is a key
//! frame (the spatial net) and `n` propagated frames, each run by one
//! temporal net of a *pool* — trained nets that differ in fusion stage,
//! fusion op and T-subnet. The search chooses `n` (the key interval) and a
//! net per propagated frame, under a budget on the cycle's mean latency per
//! frame, with the evolution loop of the spatial search
//! ([`super::evolution`]); fitness is measured on a labelled video
//! (OKS AP of the cycle through the runtime, PCK breaking ties).
//!
//! The pool is what was trained: fusion stage × op × T-subnet are searched
//! over the nets in it, not over a weight-sharing temporal supernet (each
//! net is trained alone, `vipnas train-temporal`).

use std::fmt;

use anyhow::Result;
use serde::{Deserialize, Serialize};

use super::candidates::{Candidates, Record};
use super::evolution::{self, Evolvable, Ranked};
use super::{Measured, Score};
use crate::arch::rng::Rng;

/// The net of each propagated frame of a cycle, in frame order (indices into
/// the pool); its length is the key interval.
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Cycle(pub Vec<usize>);

impl fmt::Display for Cycle {
    /// `key,2,0,0`: the key frame, then each propagated frame's pool index.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "key")?;
        self.0.iter().try_for_each(|k| write!(f, ",{k}"))
    }
}

/// One temporal net of the pool, as the search sees it.
#[derive(Clone, Debug, PartialEq)]
pub struct PoolNet {
    /// Its name in reports (e.g. the bundle directory's name).
    pub name: String,
    /// Its latency on the board, ms.
    pub ms: f64,
}

/// The key net's latency and the temporal nets a cycle may use.
#[derive(Clone, Debug, PartialEq)]
pub struct Pool {
    pub key_ms: f64,
    pub nets: Vec<PoolNet>,
    /// The longest cycle searched (frames propagated per key frame).
    pub max_interval: usize,
}

impl Pool {
    /// Mean latency per frame of `cycle`: its key frame's and each
    /// propagated frame's, over its frames.
    pub fn ms_per_frame(&self, cycle: &Cycle) -> f64 {
        let propagated: f64 = cycle.0.iter().map(|&k| self.nets[k].ms).sum();
        (self.key_ms + propagated) / (cycle.0.len() + 1) as f64
    }

    /// The cheapest cycle there is: the longest, with the lightest net on every frame.
    pub fn lightest(&self) -> Cycle {
        let k = (0..self.nets.len()).min_by(|&a, &b| self.nets[a].ms.total_cmp(&self.nets[b].ms)).unwrap_or(0);
        Cycle(vec![k; self.max_interval])
    }

    /// The names of `cycle`'s nets, frame by frame.
    pub fn names(&self, cycle: &Cycle) -> Vec<String> {
        cycle.0.iter().map(|&k| self.nets[k].name.clone()).collect()
    }

    pub fn check(&self) -> Result<()> {
        anyhow::ensure!(!self.nets.is_empty(), "the pool has no temporal nets");
        anyhow::ensure!(
            (1..=crate::bundle::Temporal::MAX_KEY_INTERVAL as usize).contains(&self.max_interval),
            "--max-interval {}: must lie in 1..={}",
            self.max_interval,
            crate::bundle::Temporal::MAX_KEY_INTERVAL
        );
        let ok = |ms: f64| ms.is_finite() && ms > 0.0;
        anyhow::ensure!(ok(self.key_ms), "key net latency {} ms: must be positive", self.key_ms);
        if let Some(n) = self.nets.iter().find(|n| !ok(n.ms)) {
            anyhow::bail!("{}: latency {} ms: must be positive", n.name, n.ms);
        }
        Ok(())
    }
}

/// How good a cycle is (higher is better).
pub trait CycleFitness {
    /// `ap` (stored with every candidate).
    fn name(&self) -> &'static str;
    fn measure(&mut self, cycle: &Cycle) -> Result<Measured>;
}

/// One evaluated cycle: a line of the temporal search's `candidates.jsonl`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CycleCandidate {
    pub cycle: Cycle,
    /// The pool names of its nets, frame by frame (for reading the log).
    pub nets: Vec<String>,
    pub fitness: String,
    /// Mean predicted latency per frame.
    pub ms: f64,
    #[serde(flatten)]
    pub measured: Measured,
}

impl Record for CycleCandidate {
    fn key(&self) -> (String, String) {
        (self.fitness.clone(), self.cycle.to_string())
    }
}

impl Ranked for CycleCandidate {
    type Genome = Cycle;
    fn genome(&self) -> &Cycle {
        &self.cycle
    }
    fn score(&self) -> Score {
        self.measured.score
    }
    fn ms(&self) -> f64 {
        self.ms
    }
}

/// A search over the cycles of one pool.
pub struct CycleSearch<'a> {
    pub pool: &'a Pool,
    pub fitness: &'a mut dyn CycleFitness,
    pub log: &'a mut Candidates<CycleCandidate>,
}

impl CycleSearch<'_> {
    /// One evolution for a budget of `budget_ms` per frame.
    pub fn evolve(
        &mut self,
        budget_ms: f64,
        cfg: &super::EvolutionConfig,
        progress: impl FnMut(usize, &CycleCandidate),
    ) -> Result<evolution::Outcome<CycleCandidate>> {
        self.pool.check()?;
        evolution::evolve(self, budget_ms, cfg, progress)
    }

    /// Random search with `n` evaluations (the baseline).
    pub fn random(&mut self, budget_ms: f64, n: usize, seed: u64) -> Result<CycleCandidate> {
        evolution::random_search(self, budget_ms, n, seed)
    }
}

impl Evolvable for CycleSearch<'_> {
    type Genome = Cycle;
    type Candidate = CycleCandidate;

    fn id(&self, c: &Cycle) -> String {
        c.to_string()
    }
    fn latency(&self, c: &Cycle) -> Result<f64> {
        Ok(self.pool.ms_per_frame(c))
    }
    fn sample(&self, rng: &mut Rng) -> Cycle {
        let n = 1 + rng.below(self.pool.max_interval);
        Cycle((0..n).map(|_| rng.below(self.pool.nets.len())).collect())
    }
    /// With probability `prob` the cycle loses its last frame or gains one
    /// (a random net); then each frame's net is redrawn with probability `prob`.
    fn mutate(&self, c: &Cycle, prob: f64, rng: &mut Rng) -> Cycle {
        let mut v = c.0.clone();
        if rng.uniform() < prob {
            if rng.below(2) == 0 && v.len() > 1 {
                v.pop();
            } else if v.len() < self.pool.max_interval {
                v.push(rng.below(self.pool.nets.len()));
            }
        }
        for k in &mut v {
            if rng.uniform() < prob {
                *k = rng.below(self.pool.nets.len());
            }
        }
        Cycle(v)
    }
    /// The length of either parent; each frame's net from either parent that has the frame.
    fn crossover(&self, a: &Cycle, b: &Cycle, rng: &mut Rng) -> Cycle {
        let n = if rng.below(2) == 0 { a.0.len() } else { b.0.len() };
        Cycle(
            (0..n)
                .map(|i| match (a.0.get(i), b.0.get(i)) {
                    (Some(&x), Some(&y)) => {
                        if rng.below(2) == 0 {
                            x
                        } else {
                            y
                        }
                    }
                    (Some(&x), None) | (None, Some(&x)) => x,
                    (None, None) => unreachable!("the length of a parent"),
                })
                .collect(),
        )
    }
    fn evaluate(&mut self, c: &Cycle, ms: f64) -> Result<CycleCandidate> {
        let key = (self.fitness.name().to_string(), c.to_string());
        if let Some(found) = self.log.get(&key) {
            return Ok(found.clone());
        }
        evolution::check_stop(self.log.all.len())?;
        let measured = self.fitness.measure(c)?;
        let found = CycleCandidate {
            cycle: c.clone(),
            nets: self.pool.names(c),
            fitness: self.fitness.name().into(),
            ms,
            measured,
        };
        self.log.push(found.clone())?;
        Ok(found)
    }
    fn nothing_within(&self, budget_ms: f64) -> anyhow::Error {
        let light = self.pool.lightest();
        anyhow::anyhow!(
            "no cycle within {budget_ms} ms per frame: the cheapest ({} frames propagated per key frame, all by {}) \
             predicts {:.2} ms (key net {:.2} ms)",
            light.0.len(),
            self.pool.nets[light.0[0]].name,
            self.pool.ms_per_frame(&light),
            self.pool.key_ms
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::search::EvolutionConfig;

    fn pool() -> Pool {
        let net = |name: &str, ms| PoolNet { name: name.into(), ms };
        Pool { key_ms: 20.0, nets: vec![net("heavy", 6.0), net("mid", 4.0), net("light", 2.0)], max_interval: 6 }
    }

    /// A made-up fitness with a known best: heavier nets early in the cycle
    /// help more than late ones, and every propagated frame costs accuracy.
    struct Toy(usize);
    impl CycleFitness for Toy {
        fn name(&self) -> &'static str {
            "ap"
        }
        fn measure(&mut self, c: &Cycle) -> Result<Measured> {
            self.0 += 1;
            let quality = [1.0, 0.7, 0.4];
            let v: f64 =
                c.0.iter().enumerate().map(|(i, &k)| quality[k] / (i + 1) as f64).sum::<f64>() - 0.3 * c.0.len() as f64;
            Ok(Measured::score(v))
        }
    }

    #[test]
    fn cycles_cost_their_frames_and_stay_within_the_budget() {
        let p = pool();
        assert_eq!(p.ms_per_frame(&Cycle(vec![0, 2])), (20.0 + 6.0 + 2.0) / 3.0);
        assert_eq!(p.lightest(), Cycle(vec![2; 6]));
        assert_eq!(Cycle(vec![2, 0]).to_string(), "key,2,0");
        let mut log = Candidates::in_memory();
        let mut f = Toy(0);
        let cfg = EvolutionConfig { population: 12, generations: 6, ..EvolutionConfig::default() };
        let budget = 8.0;
        let out = CycleSearch { pool: &p, fitness: &mut f, log: &mut log }.evolve(budget, &cfg, |_, _| {}).unwrap();
        assert!(log.all.iter().all(|c| c.ms <= budget && (1..=6).contains(&c.cycle.0.len())));
        assert!(out.history.windows(2).all(|w| w[1] >= w[0]), "{:?}", out.history);
        // Every cycle within 8 ms per frame, enumerated: the search comes close to the best of
        // them, and does at least as well as random search with as many evaluations.
        let (mut best, mut valid) = (f64::MIN, 0);
        for n in 1..=6u32 {
            for code in 0..3usize.pow(n) {
                let c = Cycle((0..n).map(|i| code / 3usize.pow(i) % 3).collect());
                if p.ms_per_frame(&c) <= budget {
                    best = best.max(Toy(0).measure(&c).unwrap().score.value);
                    valid += 1;
                }
            }
        }
        let found = out.best.measured.score.value;
        assert!(out.evaluated < valid / 4, "{} of {valid} cycles evaluated", out.evaluated);
        assert!(found >= 0.95 * best, "{found} vs the best {best}");
        let mut rlog = Candidates::in_memory();
        let random =
            CycleSearch { pool: &p, fitness: &mut Toy(0), log: &mut rlog }.random(budget, out.evaluated, 0).unwrap();
        assert!(found >= random.measured.score.value, "{found} vs random search's {}", random.measured.score.value);
        // Cached: the same search again measures nothing.
        let calls = f.0;
        CycleSearch { pool: &p, fitness: &mut f, log: &mut log }.evolve(budget, &cfg, |_, _| {}).unwrap();
        assert_eq!(f.0, calls);
    }

    #[test]
    fn a_budget_no_cycle_meets_names_the_cheapest() {
        let p = pool();
        let mut log = Candidates::in_memory();
        let e = CycleSearch { pool: &p, fitness: &mut Toy(0), log: &mut log }
            .evolve(4.0, &EvolutionConfig::default(), |_, _| {})
            .unwrap_err()
            .to_string();
        assert_eq!(
            e,
            "no cycle within 4 ms per frame: the cheapest (6 frames propagated per key frame, all by light) \
             predicts 4.57 ms (key net 20.00 ms)"
        );
    }
}
