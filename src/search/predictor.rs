//! An accuracy predictor: a small MLP on a subnet's choices, trained on the
//! subnets a search has evaluated (OKS AP with inherited weights), used to
//! rank candidates without evaluating them (`--fitness predictor`), as
//! once-for-all's accuracy predictor does.
//!
//! Features: per stage its depth, width, expansion, kernel, channels per group
//! (log2) and attention, the stem width and the head's width and channels per
//! group (log2), each scaled to [0, 1] by the space's range. One hidden layer
//! of 32 tanh units, trained full-batch with Adam on the mean squared error,
//! seeded: the same candidates give the same predictor.

use anyhow::{ensure, Result};

use super::{Candidate, Fitness, Measured};
use crate::arch::rng::Rng;
use crate::arch::{SearchSpace, Subnet};

/// A subnet as numbers in [0, 1].
pub fn features(space: &SearchSpace, s: &Subnet) -> Vec<f64> {
    let unit = |v: f64, lo: f64, hi: f64| if hi > lo { (v - lo) / (hi - lo) } else { 0.0 };
    let per_group = |channels: u32, group: u32| ((channels / group.max(1)).max(1) as f64).log2() / 4.0;
    let mut f = vec![unit(s.stem.width as f64, space.stem.width.min as f64, space.stem.width.max as f64)];
    for (row, st) in space.stages.iter().zip(&s.stages) {
        f.push(unit(st.depth as f64, row.depth.min as f64, row.depth.max as f64));
        for (b, c) in row.branches.iter().zip(&st.branches) {
            f.push(unit(c.width as f64, b.width.min as f64, b.width.max as f64));
            f.push(unit(c.expansion as f64, b.expansion.min as f64, b.expansion.max as f64));
            f.push(unit(c.kernel as f64, b.kernel.min as f64, b.kernel.max as f64));
            f.push(per_group(b.grouped_channels(c.width, c.expansion), c.group));
            f.push(c.attention as u8 as f64);
        }
    }
    if let (Some(row), Some(h)) = (&space.head, &s.head) {
        f.push(unit(h.width as f64, row.width.min as f64, row.width.max as f64));
        f.push(per_group(h.width, h.group));
    }
    f
}

const HIDDEN: usize = 32;

/// The trained MLP.
#[derive(Clone, Debug)]
pub struct AccuracyPredictor {
    space: SearchSpace,
    w1: Vec<f64>, // HIDDEN × inputs
    b1: Vec<f64>,
    w2: Vec<f64>,
    b2: f64,
    inputs: usize,
    /// Target mean and spread (the net learns standardised targets).
    mean: f64,
    spread: f64,
}

impl AccuracyPredictor {
    /// Fits the predictor to `(subnet, value)` pairs.
    pub fn fit(space: &SearchSpace, data: &[(Subnet, f64)], seed: u64) -> Result<AccuracyPredictor> {
        ensure!(data.len() >= 8, "the accuracy predictor needs at least 8 evaluated subnets, got {}", data.len());
        let xs: Vec<Vec<f64>> = data.iter().map(|(s, _)| features(space, s)).collect();
        let inputs = xs[0].len();
        let mean = data.iter().map(|d| d.1).sum::<f64>() / data.len() as f64;
        let var = data.iter().map(|d| (d.1 - mean).powi(2)).sum::<f64>() / data.len() as f64;
        let spread = var.sqrt().max(1e-9);
        let ys: Vec<f64> = data.iter().map(|d| (d.1 - mean) / spread).collect();
        let mut rng = Rng::new(seed ^ 0xACC);
        let scale = (1.0 / inputs as f64).sqrt();
        let mut p = AccuracyPredictor {
            space: space.clone(),
            w1: (0..HIDDEN * inputs).map(|_| rng.normal() * scale).collect(),
            b1: vec![0.0; HIDDEN],
            w2: (0..HIDDEN).map(|_| rng.normal() * (1.0 / HIDDEN as f64).sqrt()).collect(),
            b2: 0.0,
            inputs,
            mean,
            spread,
        };
        // Adam over all parameters, laid out [w1, b1, w2, b2].
        let n = HIDDEN * inputs + 2 * HIDDEN + 1;
        let (mut m, mut v) = (vec![0.0; n], vec![0.0; n]);
        let (lr, b1, b2, eps, l2) = (0.01, 0.9, 0.999, 1e-8, 1e-4);
        for t in 1..=2000 {
            let mut g = vec![0.0; n];
            for (x, y) in xs.iter().zip(&ys) {
                let (h, out) = p.forward(x);
                let d = 2.0 * (out - y) / xs.len() as f64;
                for j in 0..HIDDEN {
                    let dh = d * p.w2[j] * (1.0 - h[j] * h[j]);
                    for (i, xi) in x.iter().enumerate() {
                        g[j * inputs + i] += dh * xi;
                    }
                    g[HIDDEN * inputs + j] += dh;
                    g[HIDDEN * inputs + HIDDEN + j] += d * h[j];
                }
                g[n - 1] += d;
            }
            for (k, gk) in g.iter_mut().enumerate() {
                *gk += l2 * p.param(k);
                m[k] = b1 * m[k] + (1.0 - b1) * *gk;
                v[k] = b2 * v[k] + (1.0 - b2) * *gk * *gk;
                let (mh, vh) = (m[k] / (1.0 - f64::powi(b1, t)), v[k] / (1.0 - f64::powi(b2, t)));
                *p.param_mut(k) -= lr * mh / (vh.sqrt() + eps);
            }
        }
        Ok(p)
    }

    fn param(&self, k: usize) -> f64 {
        let a = HIDDEN * self.inputs;
        match k {
            k if k < a => self.w1[k],
            k if k < a + HIDDEN => self.b1[k - a],
            k if k < a + 2 * HIDDEN => self.w2[k - a - HIDDEN],
            _ => self.b2,
        }
    }

    fn param_mut(&mut self, k: usize) -> &mut f64 {
        let a = HIDDEN * self.inputs;
        match k {
            k if k < a => &mut self.w1[k],
            k if k < a + HIDDEN => &mut self.b1[k - a],
            k if k < a + 2 * HIDDEN => &mut self.w2[k - a - HIDDEN],
            _ => &mut self.b2,
        }
    }

    /// Hidden activations and the standardised output.
    fn forward(&self, x: &[f64]) -> (Vec<f64>, f64) {
        let h: Vec<f64> = (0..HIDDEN)
            .map(|j| {
                let row = &self.w1[j * self.inputs..(j + 1) * self.inputs];
                (self.b1[j] + row.iter().zip(x).map(|(w, x)| w * x).sum::<f64>()).tanh()
            })
            .collect();
        let out = self.b2 + h.iter().zip(&self.w2).map(|(h, w)| h * w).sum::<f64>();
        (h, out)
    }

    /// The predicted value (AP) of `s`.
    pub fn predict(&self, s: &Subnet) -> f64 {
        self.mean + self.spread * self.forward(&features(&self.space, s)).1
    }
}

/// Kendall's τ-a between two rankings of the same items.
pub fn kendall_tau(a: &[f64], b: &[f64]) -> f64 {
    let n = a.len().min(b.len());
    let (mut concordant, mut discordant) = (0i64, 0i64);
    for i in 0..n {
        for j in i + 1..n {
            let s = (a[i] - a[j]).signum() * (b[i] - b[j]).signum();
            if s > 0.0 {
                concordant += 1;
            } else if s < 0.0 {
                discordant += 1;
            }
        }
    }
    let pairs = (n * n.saturating_sub(1) / 2).max(1) as f64;
    (concordant - discordant) as f64 / pairs
}

/// The predictor trained on a share of `evaluated` and its τ on the rest:
/// every fifth candidate (by log order) is held out.
pub fn fit_and_check(
    space: &SearchSpace,
    evaluated: &[Candidate],
    seed: u64,
) -> Result<(AccuracyPredictor, f64, usize)> {
    let data: Vec<(Subnet, f64)> =
        evaluated.iter().filter_map(|c| c.measured.ap.map(|ap| (c.subnet.clone(), ap))).collect();
    let (train, held): (Vec<_>, Vec<_>) = data.iter().cloned().enumerate().partition(|(i, _)| i % 5 != 4);
    let train: Vec<(Subnet, f64)> = train.into_iter().map(|(_, d)| d).collect();
    let held: Vec<(Subnet, f64)> = held.into_iter().map(|(_, d)| d).collect();
    let p = AccuracyPredictor::fit(space, &train, seed)?;
    let tau = kendall_tau(
        &held.iter().map(|(s, _)| p.predict(s)).collect::<Vec<_>>(),
        &held.iter().map(|d| d.1).collect::<Vec<_>>(),
    );
    // The predictor the search uses learns from every evaluation.
    let all = AccuracyPredictor::fit(space, &data, seed)?;
    Ok((all, tau, held.len()))
}

/// Predicted AP as fitness (no evaluation).
pub struct PredictorFitness {
    pub predictor: AccuracyPredictor,
}

impl Fitness for PredictorFitness {
    fn name(&self) -> &'static str {
        "predictor"
    }
    fn measure(&mut self, subnet: &Subnet) -> Result<Measured> {
        Ok(Measured::score(self.predictor.predict(subnet)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::arch::{InputSize, Sample, SpaceName};

    #[test]
    fn kendall_tau_counts_agreeing_pairs() {
        assert_eq!(kendall_tau(&[1.0, 2.0, 3.0], &[10.0, 20.0, 30.0]), 1.0);
        assert_eq!(kendall_tau(&[1.0, 2.0, 3.0], &[3.0, 2.0, 1.0]), -1.0);
        assert!((kendall_tau(&[1.0, 2.0, 3.0, 4.0], &[1.0, 3.0, 2.0, 4.0]) - 4.0 / 6.0).abs() < 1e-12);
    }

    #[test]
    fn the_predictor_ranks_held_out_subnets_by_a_quantity_it_learned() {
        // A stand-in for AP with the shape accuracy has: rising with FLOPs, saturating.
        let space = SearchSpace::get(SpaceName::Mbv3);
        let truth = |s: &Subnet| (s.network(InputSize::new(128, 96).unwrap()).unwrap().cost().gflops() * 3.0).tanh();
        let data: Vec<(Subnet, f64)> = (0..200)
            .map(|i| {
                let s = Subnet::sample(&space, Sample::Random(i));
                let t = truth(&s);
                (s, t)
            })
            .collect();
        let p = AccuracyPredictor::fit(&space, &data[..150], 0).unwrap();
        let held = &data[150..];
        let tau = kendall_tau(
            &held.iter().map(|(s, _)| p.predict(s)).collect::<Vec<_>>(),
            &held.iter().map(|d| d.1).collect::<Vec<_>>(),
        );
        println!("Kendall tau on 50 held-out subnets: {tau:.3}");
        assert!(tau > 0.6, "tau {tau}");
        let again = AccuracyPredictor::fit(&space, &data[..150], 0).unwrap();
        assert_eq!(p.predict(&held[0].0), again.predict(&held[0].0), "seeded: the same fit");
        let e = AccuracyPredictor::fit(&space, &data[..3], 0).unwrap_err().to_string();
        assert_eq!(e, "the accuracy predictor needs at least 8 evaluated subnets, got 3");
    }
}
