//! `Subnet`: one choice per elastic dimension per stage (per branch for HRNet),
//! serialised as JSON, validated against its [`SearchSpace`], and sampled.
//!
//! The same type is what the trainer slices supernet weights by, what the
//! exporter writes, what the profiler keys latency tables by and what the
//! runtime reads from a bundle manifest.

use std::fmt;

use anyhow::Context;

use serde::{Deserialize, Serialize};

use super::rng::Rng;
use super::space::{BlockSpace, Operator, Range, SearchSpace, SpaceName, StageSpace};

/// A subnet of one of the three supernets.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Subnet {
    pub space: SpaceName,
    pub stem: StemChoice,
    pub stages: Vec<StageChoice>,
    /// The deconvolution head (absent for HRNet).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub head: Option<HeadChoice>,
}

/// The stem's only elastic dimension.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StemChoice {
    pub width: u32,
}

/// The deconvolution head: all three transposed convs share width and groups.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HeadChoice {
    pub width: u32,
    pub group: u32,
}

/// What every block of a stage (or of one HRNet branch) shares.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BlockChoice {
    pub width: u32,
    pub kernel: u32,
    pub group: u32,
    pub attention: bool,
    #[serde(default = "one")]
    pub expansion: u32,
}

fn one() -> u32 {
    1
}

/// One stage: how many blocks, and the block choice of each branch (exactly one
/// branch outside HRNet). In JSON a single-branch stage is written flat
/// (`{"depth":4,"width":24,…}`) and a multi-branch one with `"branches": […]`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(try_from = "StageJson", into = "StageJson")]
pub struct StageChoice {
    pub depth: u32,
    pub branches: Vec<BlockChoice>,
}

impl StageChoice {
    /// The block choice of a single-branch stage (the first branch otherwise).
    pub fn block(&self) -> &BlockChoice {
        &self.branches[0]
    }
}

#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct StageJson {
    depth: u32,
    #[serde(skip_serializing_if = "Option::is_none")]
    width: Option<u32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    kernel: Option<u32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    group: Option<u32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    attention: Option<bool>,
    #[serde(skip_serializing_if = "Option::is_none")]
    expansion: Option<u32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    branches: Option<Vec<BlockChoice>>,
}

impl TryFrom<StageJson> for StageChoice {
    type Error = String;
    fn try_from(j: StageJson) -> Result<Self, String> {
        let flat = [j.width.is_some(), j.kernel.is_some(), j.group.is_some(), j.attention.is_some()];
        if let Some(branches) = j.branches {
            if flat.iter().any(|&f| f) || j.expansion.is_some() {
                return Err("a stage has either `branches` or width/kernel/group/attention, not both".into());
            }
            if branches.is_empty() {
                return Err("`branches` is empty".into());
            }
            return Ok(StageChoice { depth: j.depth, branches });
        }
        let missing: Vec<&str> = ["width", "kernel", "group", "attention"]
            .iter()
            .zip(flat)
            .filter(|(_, present)| !present)
            .map(|(name, _)| *name)
            .collect();
        if !missing.is_empty() {
            return Err(format!("stage is missing field(s) {}", missing.join(", ")));
        }
        Ok(StageChoice {
            depth: j.depth,
            branches: vec![BlockChoice {
                width: j.width.unwrap_or_default(),
                kernel: j.kernel.unwrap_or_default(),
                group: j.group.unwrap_or_default(),
                attention: j.attention.unwrap_or_default(),
                expansion: j.expansion.unwrap_or(1),
            }],
        })
    }
}

impl From<StageChoice> for StageJson {
    fn from(s: StageChoice) -> StageJson {
        if let [b] = s.branches[..] {
            StageJson {
                depth: s.depth,
                width: Some(b.width),
                kernel: Some(b.kernel),
                group: Some(b.group),
                attention: Some(b.attention),
                expansion: Some(b.expansion),
                branches: None,
            }
        } else {
            StageJson {
                depth: s.depth,
                width: None,
                kernel: None,
                group: None,
                attention: None,
                expansion: None,
                branches: Some(s.branches),
            }
        }
    }
}

/// A subnet that is not in its space: where, and what.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{place}: {message}")]
pub struct SubnetError {
    /// `stem`, `stage 3`, `stage 3 branch 2`, `head` or `subnet`.
    pub place: String,
    pub message: String,
}

fn err(place: impl Into<String>, message: impl Into<String>) -> SubnetError {
    SubnetError { place: place.into(), message: message.into() }
}

/// `{3,5,7}`
fn set(values: &[u32]) -> String {
    let inner: Vec<String> = values.iter().map(u32::to_string).collect();
    format!("{{{}}}", inner.join(","))
}

fn check_range(place: &str, field: &str, v: u32, r: &Range) -> Result<(), SubnetError> {
    if r.contains(v) {
        Ok(())
    } else {
        Err(err(place, format!("{field} {v} not in {}", set(&r.choices()))))
    }
}

/// How to pick a subnet from a space.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Sample {
    /// The largest subnet: every dimension at its maximum, the fewest groups,
    /// attention on. Its weights are the whole supernet.
    Max,
    /// The smallest: minima everywhere, the most groups, attention off.
    Min,
    /// Uniform per dimension; groups uniform over the valid ones.
    Random(u64),
    /// Every dimension the same share of the way from its smallest to its
    /// largest choice (percent, rounded to a choice; groups from the most to
    /// the fewest; attention on from 50): the uniformly scaled baselines.
    Scaled(u8),
}

impl Sample {
    /// This rule applied to one range of choices.
    fn pick(self, r: &Range, rng: &mut Rng) -> u32 {
        match self {
            Sample::Max => r.max,
            Sample::Min => r.min,
            Sample::Random(_) => rng.pick(&r.choices()),
            Sample::Scaled(p) => {
                let c = r.choices();
                c[Self::share(p, c.len())]
            }
        }
    }

    /// The index `percent` of the way along `n` choices.
    fn share(percent: u8, n: usize) -> usize {
        ((n.saturating_sub(1)) as f64 * percent.min(100) as f64 / 100.0).round() as usize
    }

    /// This rule with the seed of `Random` and the share of `Scaled` given.
    pub fn with(self, seed: u64, percent: u8) -> Sample {
        match self {
            Sample::Random(_) => Sample::Random(seed),
            Sample::Scaled(_) => Sample::Scaled(percent),
            s => s,
        }
    }
}

/// On a command line (`--sample`) the rules are named `max`, `min`, `random`
/// and `scaled`; the seed and the share come from their own options through
/// [`Sample::with`] (0 and 50 until then).
impl clap::ValueEnum for Sample {
    fn value_variants<'a>() -> &'a [Self] {
        &[Sample::Max, Sample::Min, Sample::Random(0), Sample::Scaled(50)]
    }

    fn to_possible_value(&self) -> Option<clap::builder::PossibleValue> {
        use clap::builder::PossibleValue;
        Some(match self {
            Sample::Max => PossibleValue::new("max").help("The largest subnet (the whole supernet)"),
            Sample::Min => PossibleValue::new("min").help("The smallest subnet"),
            Sample::Random(_) => PossibleValue::new("random").help("Uniform per dimension (--seed)"),
            Sample::Scaled(_) => PossibleValue::new("scaled")
                .help("Every dimension --scale % of the way from its smallest to its largest"),
        })
    }
}

impl BlockSpace {
    /// Channels of the convolution(s) this row's group choice applies to.
    pub fn grouped_channels(&self, width: u32, expansion: u32) -> u32 {
        match self.operator {
            Operator::MobileBlock => width * expansion,
            _ => width,
        }
    }

    fn check(&self, place: &str, b: &BlockChoice) -> Result<(), SubnetError> {
        check_range(place, "width", b.width, &self.width)?;
        check_range(place, "expansion", b.expansion, &self.expansion)?;
        check_range(place, "kernel", b.kernel, &self.kernel)?;
        let channels = self.grouped_channels(b.width, b.expansion);
        let groups = self.group.choices(channels);
        if !groups.contains(&b.group) {
            return Err(err(
                place,
                format!("group {} not in {} (valid for {channels} channels)", b.group, set(&groups)),
            ));
        }
        if b.attention && !self.attention_searchable {
            return Err(err(place, "attention is not searchable here"));
        }
        Ok(())
    }

    fn sample(&self, how: Sample, rng: &mut Rng) -> BlockChoice {
        let width = how.pick(&self.width, rng);
        let expansion = how.pick(&self.expansion, rng);
        let kernel = how.pick(&self.kernel, rng);
        let groups = self.group.choices(self.grouped_channels(width, expansion));
        let group = match how {
            Sample::Max => groups[0],
            Sample::Min => groups[groups.len() - 1],
            Sample::Random(_) => rng.pick(&groups),
            Sample::Scaled(p) => groups[groups.len() - 1 - Sample::share(p, groups.len())],
        };
        let attention = self.attention_searchable
            && match how {
                Sample::Max => true,
                Sample::Min => false,
                Sample::Random(_) => rng.below(2) == 1,
                Sample::Scaled(p) => p >= 50,
            };
        BlockChoice { width, kernel, group, attention, expansion }
    }

    /// `b` with each dimension redrawn with probability `prob`; the group is
    /// redrawn too when it no longer divides the channels.
    fn mutate(&self, b: &BlockChoice, prob: f64, rng: &mut Rng) -> BlockChoice {
        let mut c = *b;
        let redraw = |r: &Range, v: &mut u32, rng: &mut Rng| {
            if rng.uniform() < prob {
                *v = rng.pick(&r.choices());
            }
        };
        redraw(&self.width, &mut c.width, rng);
        redraw(&self.expansion, &mut c.expansion, rng);
        redraw(&self.kernel, &mut c.kernel, rng);
        if self.attention_searchable && rng.uniform() < prob {
            c.attention = rng.below(2) == 1;
        }
        let groups = self.group.choices(self.grouped_channels(c.width, c.expansion));
        if rng.uniform() < prob || !groups.contains(&c.group) {
            c.group = rng.pick(&groups);
        }
        c
    }
}

impl StageSpace {
    fn place(&self, branch: usize) -> String {
        if self.branches.len() > 1 {
            format!("stage {} branch {}", self.index, branch + 1)
        } else {
            format!("stage {}", self.index)
        }
    }
}

impl Subnet {
    /// The shape every subnet of `space` has, in or out of its tables: the
    /// stage count, each stage's branch count, a head exactly where the space
    /// has one. Shared by [`Subnet::validate`] and `check_structure`.
    pub(crate) fn check_shape(&self, space: &SearchSpace) -> Result<(), SubnetError> {
        if self.stages.len() != space.stages.len() {
            return Err(err(
                "subnet",
                format!("{} has {} stages, got {}", self.space, space.stages.len(), self.stages.len()),
            ));
        }
        for (stage, choice) in space.stages.iter().zip(&self.stages) {
            if choice.branches.len() != stage.branches.len() {
                return Err(err(
                    format!("stage {}", stage.index),
                    format!("expected {} branch(es), got {}", stage.branches.len(), choice.branches.len()),
                ));
            }
        }
        match (&space.head, &self.head) {
            (None, Some(_)) => Err(err("head", format!("{} has no deconvolution head", self.space))),
            (Some(_), None) => Err(err("head", "missing (width, group)")),
            _ => Ok(()),
        }
    }

    /// Checks every choice against the table of its space.
    pub fn validate(&self) -> Result<(), SubnetError> {
        let space = SearchSpace::get(self.space);
        self.check_shape(&space)?;
        check_range("stem", "width", self.stem.width, &space.stem.width)?;
        for (stage, choice) in space.stages.iter().zip(&self.stages) {
            check_range(&format!("stage {}", stage.index), "depth", choice.depth, &stage.depth)?;
            for (i, (row, b)) in stage.branches.iter().zip(&choice.branches).enumerate() {
                row.check(&stage.place(i), b)?;
            }
        }
        if let (Some(row), Some(h)) = (&space.head, &self.head) {
            check_range("head", "width", h.width, &row.width)?;
            let groups = row.group.choices(h.width);
            if !groups.contains(&h.group) {
                return Err(err("head", format!("group {} not in {}", h.group, set(&groups))));
            }
        }
        Ok(())
    }

    /// A subnet of `space` picked by `how`. Always valid (tested).
    pub fn sample(space: &SearchSpace, how: Sample) -> Subnet {
        let mut rng = Rng::new(match how {
            Sample::Random(seed) => seed,
            _ => 0,
        });
        let stem = StemChoice { width: how.pick(&space.stem.width, &mut rng) };
        let stages = space
            .stages
            .iter()
            .map(|s| StageChoice {
                depth: how.pick(&s.depth, &mut rng),
                branches: s.branches.iter().map(|b| b.sample(how, &mut rng)).collect(),
            })
            .collect();
        let head = space.head.as_ref().map(|row| {
            let b = row.sample(how, &mut rng);
            HeadChoice { width: b.width, group: b.group }
        });
        Subnet { space: space.name, stem, stages, head }
    }

    /// A mutation for evolutionary search: each choice (the stem's width; per
    /// stage its depth and per branch width, expansion, kernel, group and
    /// attention; the head's width and group) redrawn with probability `prob`.
    /// Valid whenever `self` is (tested).
    pub fn mutate(&self, space: &SearchSpace, prob: f64, rng: &mut Rng) -> Subnet {
        let mut out = self.clone();
        if rng.uniform() < prob {
            out.stem.width = rng.pick(&space.stem.width.choices());
        }
        for (row, stage) in space.stages.iter().zip(&mut out.stages) {
            if rng.uniform() < prob {
                stage.depth = rng.pick(&row.depth.choices());
            }
            for (b, choice) in row.branches.iter().zip(&mut stage.branches) {
                *choice = b.mutate(choice, prob, rng);
            }
        }
        if let (Some(row), Some(h)) = (&space.head, &mut out.head) {
            // The head's row as a block: only width and group are elastic.
            let b =
                BlockChoice { width: h.width, kernel: row.kernel.min, group: h.group, attention: false, expansion: 1 };
            let b = row.mutate(&b, prob, rng);
            *h = HeadChoice { width: b.width, group: b.group };
        }
        out
    }

    /// A crossover for evolutionary search: the stem, each stage and the head
    /// taken whole from one of the two parents at random (a stage's choices
    /// depend on each other through the group rule; stages do not).
    pub fn crossover(&self, other: &Subnet, rng: &mut Rng) -> Subnet {
        let mut theirs = || rng.below(2) == 1;
        let mut out = self.clone();
        if theirs() {
            out.stem = other.stem;
        }
        for (mine, other) in out.stages.iter_mut().zip(&other.stages) {
            if theirs() {
                *mine = other.clone();
            }
        }
        if theirs() {
            out.head = other.head;
        }
        out
    }

    /// Parses and validates Subnet JSON; errors name the source and the field.
    pub fn from_json(text: &str, source: &str) -> anyhow::Result<Subnet> {
        let subnet: Subnet = serde_json::from_str(text).with_context(|| format!("{source}: not a valid subnet"))?;
        subnet.validate().with_context(|| source.to_string())?;
        Ok(subnet)
    }
}

impl fmt::Display for Subnet {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&serde_json::to_string(self).map_err(|_| fmt::Error)?)
    }
}
