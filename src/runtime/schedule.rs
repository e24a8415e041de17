//! Which net runs each frame of a temporal bundle: the spatial (key) net on
//! key frames, a temporal net on the frames between, from the bundle's cycle —
//! and, with a frame budget, a controller that keeps frames inside it from the
//! latencies it measures (not the table alone).
//!
//! The controller's rules, checked after every frame:
//! - a late key frame (over budget) lengthens the cycle by one frame (up to
//!   [`Schedule::MAX_INTERVAL`]): key frames come less often;
//! - a late propagated frame moves every temporal net of the cycle one net
//!   lighter (the bundle lists nets heaviest first), while a lighter one exists;
//! - two whole cycles without a late frame undo one step, the lighter nets
//!   first, then the longer cycle — never below the bundle's own cycle;
//! - a lost person (the tracker restarts) runs the key net at once.
//!
//! Without a budget the cycle is the bundle's, frame for frame (evaluation,
//! reproducible runs).

use crate::bundle::Temporal;

/// The net of one frame.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum NetChoice {
    /// The spatial net (a key frame).
    Key,
    /// Temporal net `k` of the bundle.
    Temporal(usize),
}

impl NetChoice {
    /// The key net 0, temporal net `k` at `k + 1` (the order of per-net tables).
    pub fn index(self) -> usize {
        match self {
            NetChoice::Key => 0,
            NetChoice::Temporal(k) => k + 1,
        }
    }
}

/// Per-frame choice of net for a temporal bundle.
#[derive(Clone, Debug)]
pub struct Schedule {
    /// The bundle's cycle: the net of each propagated frame.
    cycle: Vec<usize>,
    nets: usize,
    /// Propagated frames per cycle now (≥ the bundle's `key_interval`).
    interval: u32,
    since_key: u32,
    /// How many nets lighter than the cycle says propagated frames run.
    lighter: usize,
    /// `Some`: adapt to this many milliseconds per frame.
    budget_ms: Option<f64>,
    /// Frames in a row inside the budget.
    on_time: u32,
}

impl Schedule {
    /// The longest cycle the controller makes (frames propagated per key frame).
    pub const MAX_INTERVAL: u32 = 30;

    /// The bundle's cycle; with `budget_ms`, adapted to keep frames inside it.
    pub fn new(temporal: &Temporal, budget_ms: Option<f64>) -> Schedule {
        Schedule {
            cycle: temporal.cycle.clone(),
            nets: temporal.nets.len(),
            interval: temporal.key_interval,
            // The first frame is always a key frame.
            since_key: temporal.key_interval,
            lighter: 0,
            budget_ms,
            on_time: 0,
        }
    }

    /// The net for the next frame; `restart`: there is no pose to propagate
    /// (first frame, or the person was lost).
    pub fn choose(&mut self, restart: bool) -> NetChoice {
        if restart || self.since_key >= self.interval {
            self.since_key = 0;
            return NetChoice::Key;
        }
        let i = (self.since_key as usize).min(self.cycle.len() - 1);
        self.since_key += 1;
        NetChoice::Temporal((self.cycle[i] + self.lighter).min(self.nets - 1))
    }

    /// Takes the measured latency of the frame `choice` ran (a no-op without a budget).
    pub fn observe(&mut self, choice: NetChoice, ms: f64) {
        let Some(budget) = self.budget_ms else { return };
        if ms > budget {
            self.on_time = 0;
            match choice {
                NetChoice::Key => self.interval = (self.interval + 1).min(Self::MAX_INTERVAL),
                NetChoice::Temporal(k) if k + 1 < self.nets => self.lighter += 1,
                NetChoice::Temporal(_) => {}
            }
            return;
        }
        self.on_time += 1;
        if self.on_time >= 2 * (self.interval + 1) {
            self.on_time = 0;
            if self.lighter > 0 {
                self.lighter -= 1;
            } else if self.interval > self.cycle.len() as u32 {
                self.interval -= 1;
            }
        }
    }

    /// Propagated frames per key frame now.
    pub fn interval(&self) -> u32 {
        self.interval
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::arch::{Fusion, FusionOp, InputSize, Sample, SearchSpace, SpaceName, Subnet, TemporalNet};
    use crate::bundle::{InputSpec, TemporalNetSpec};

    fn temporal(key_interval: u32, cycle: Vec<usize>, nets: usize) -> Temporal {
        let subnet = Subnet::sample(&SearchSpace::get(SpaceName::Mbv3), Sample::Min);
        let spec = TemporalNetSpec {
            file: "temporal_0.onnx".into(),
            net: TemporalNet { subnet, fusion: Fusion { stage: 2, op: FusionOp::Add } },
            input: InputSpec::for_subnet(InputSize::DEFAULT),
            flops: None,
            latency_ms: Default::default(),
            measured_ms: Default::default(),
            provenance: crate::bundle::Provenance {
                created_by: String::new(),
                created_at: String::new(),
                weights: "random".into(),
                license: None,
            },
        };
        Temporal { key_interval, cycle, nets: vec![spec; nets], prior_min_score: 0.3 }
    }

    fn run(s: &mut Schedule, frames: usize, ms: impl Fn(NetChoice) -> f64) -> Vec<NetChoice> {
        (0..frames)
            .map(|_| {
                let c = s.choose(false);
                s.observe(c, ms(c));
                c
            })
            .collect()
    }

    #[test]
    fn without_a_budget_the_bundles_cycle_repeats() {
        let mut s = Schedule::new(&temporal(3, vec![0, 1, 1], 2), None);
        let got = run(&mut s, 9, |_| 1e6);
        use NetChoice::*;
        assert_eq!(got, [Key, Temporal(0), Temporal(1), Temporal(1), Key, Temporal(0), Temporal(1), Temporal(1), Key]);
    }

    #[test]
    fn a_lost_person_gets_the_key_net_at_once() {
        let mut s = Schedule::new(&temporal(4, vec![0; 4], 1), None);
        assert_eq!(s.choose(false), NetChoice::Key);
        assert_eq!(s.choose(false), NetChoice::Temporal(0));
        assert_eq!(s.choose(true), NetChoice::Key);
        assert_eq!(s.choose(false), NetChoice::Temporal(0));
    }

    #[test]
    fn late_key_frames_lengthen_the_cycle_up_to_the_cap() {
        let mut s = Schedule::new(&temporal(2, vec![0, 0], 1), Some(33.0));
        // The key net takes 50 ms, the temporal net 10: every key frame is late.
        let got = run(&mut s, 2000, |c| if c == NetChoice::Key { 50.0 } else { 10.0 });
        assert_eq!(s.interval(), Schedule::MAX_INTERVAL);
        let keys: Vec<usize> = (1000..2000).filter(|&i| got[i] == NetChoice::Key).collect();
        assert!(keys.windows(2).all(|w| w[1] - w[0] == 31), "one key frame in 31: {keys:?}");
    }

    #[test]
    fn late_propagated_frames_move_to_lighter_nets_and_slack_moves_back() {
        let mut s = Schedule::new(&temporal(3, vec![0, 0, 0], 3), Some(33.0));
        // Net 0 is too slow (40 ms), nets 1 and 2 fit.
        let slow = std::cell::Cell::new(true);
        let ms = |c: NetChoice| match c {
            NetChoice::Temporal(0) if slow.get() => 40.0,
            _ => 10.0,
        };
        let got = run(&mut s, 40, ms);
        assert_eq!(got[1], NetChoice::Temporal(0));
        assert_eq!(got[2], NetChoice::Temporal(1), "one late frame: one net lighter");
        // Slack undoes it after two cycles; net 0 is late again and is left again.
        assert!(got[2..].iter().filter(|&&c| c == NetChoice::Temporal(0)).count() >= 2);
        assert!(got.iter().all(|&c| c != NetChoice::Temporal(2)), "never lighter than needed");
        // Once net 0 fits, it stays.
        slow.set(false);
        let got = run(&mut s, 40, ms);
        assert!(got[20..].iter().all(|&c| matches!(c, NetChoice::Key | NetChoice::Temporal(0))), "{got:?}");
        assert_eq!(s.interval(), 3, "never shorter than the bundle's cycle");
    }

    #[test]
    fn slack_shortens_a_lengthened_cycle_back_to_the_bundles() {
        let mut s = Schedule::new(&temporal(2, vec![0, 0], 1), Some(33.0));
        run(&mut s, 200, |c| if c == NetChoice::Key { 50.0 } else { 10.0 });
        assert!(s.interval() > 10);
        run(&mut s, 2000, |_| 10.0);
        assert_eq!(s.interval(), 2);
    }
}
