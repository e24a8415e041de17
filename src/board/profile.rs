//! Board profiles (`boards/<name>.toml`): the target, the CPU, how many threads
//! to run, camera defaults, the frame budget and the latency table to use.

use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};
use serde::{Deserialize, Serialize};

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CameraDefaults {
    pub device: String,
    pub width: u32,
    pub height: u32,
    pub fps: u32,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BudgetSpec {
    /// Frames per second the board must sustain; the budget is 1000/fps ms.
    pub fps: f64,
}

/// One model's published latency on this board and on a reference machine,
/// same framework and settings: their ratio scales a measured table's blocks
/// of one op class into an estimate for this board.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PublishedPair {
    pub model: String,
    pub board_ms: f64,
    pub reference_ms: f64,
}

impl PublishedPair {
    /// How many times slower this board is than the reference.
    pub fn ratio(&self) -> f64 {
        self.board_ms / self.reference_ms
    }
}

/// Published numbers that turn a measured table into this board's estimate
/// (`vipnas profile --board B --estimate-from host`; [`super::estimate`]).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EstimateSpec {
    /// Where the numbers are published.
    pub source: String,
    /// The runs behind `board_ms`: machine and threads.
    pub board_run: String,
    /// The runs behind `reference_ms`, and why they stand for the machine the
    /// scaled table was measured on.
    pub reference_run: String,
    /// Scales blocks with a grouped convolution (depthwise included).
    pub depthwise: PublishedPair,
    /// Scales every other block.
    pub dense: PublishedPair,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BoardProfile {
    pub name: String,
    pub description: String,
    pub target: String,
    pub cpu: String,
    pub cores: usize,
    /// Inference threads.
    pub threads: usize,
    /// Relative to the profile's directory.
    pub latency_table: String,
    pub camera: CameraDefaults,
    pub budget: BudgetSpec,
    /// How to estimate the board's latency table before anyone measured on
    /// it (absent: only a measured table will do).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub estimate: Option<EstimateSpec>,
    /// Where the profile was read from (not in the file).
    #[serde(skip)]
    pub dir: PathBuf,
}

/// The boards directory: `$VIPNAS_BOARDS`, else `boards/` under the current
/// directory, else the installation's ([`crate::install::data_path`]).
pub fn boards_dir() -> PathBuf {
    std::env::var_os("VIPNAS_BOARDS")
        .map(PathBuf::from)
        .unwrap_or_else(|| crate::install::data_path(Path::new("boards")))
}

impl BoardProfile {
    /// Loads `NAME` from the boards directory, or a `.toml` path.
    pub fn load(name: &str) -> Result<BoardProfile> {
        let path =
            if name.ends_with(".toml") { PathBuf::from(name) } else { boards_dir().join(format!("{name}.toml")) };
        if !path.is_file() {
            let dir = boards_dir();
            if !name.ends_with(".toml") && !dir.is_dir() {
                bail!(
                    "unknown board `{name}`: no boards directory {} here (run from the checkout, install the package, or set VIPNAS_BOARDS)",
                    dir.display()
                );
            }
            let known: Vec<String> = std::fs::read_dir(dir)
                .map(|d| {
                    d.filter_map(|e| e.ok()?.file_name().to_str()?.strip_suffix(".toml").map(str::to_string)).collect()
                })
                .unwrap_or_default();
            let mut known = known;
            known.sort();
            bail!("unknown board `{name}` (no {}; known: {})", path.display(), known.join(", "));
        }
        Self::from_file(&path)
    }

    pub fn from_file(path: &Path) -> Result<BoardProfile> {
        let text = std::fs::read_to_string(path).with_context(|| format!("cannot read {}", path.display()))?;
        Self::parse(&text, path)
    }

    /// A profile's TOML, checked; `path` is where it came from (errors name
    /// it; relative table paths are resolved against its directory).
    pub fn parse(text: &str, path: &Path) -> Result<BoardProfile> {
        let mut p: BoardProfile = toml::from_str(text).with_context(|| path.display().to_string())?;
        if p.threads == 0 || p.threads > p.cores.max(1) * 2 {
            bail!("{}: threads = {} (cores = {})", path.display(), p.threads, p.cores);
        }
        crate::runtime::budget::FrameBudget::check_fps(p.budget.fps)
            .with_context(|| format!("{}: budget.fps", path.display()))?;
        if let Some(e) = &p.estimate {
            for (class, pair) in [("depthwise", &e.depthwise), ("dense", &e.dense)] {
                for (field, ms) in [("board_ms", pair.board_ms), ("reference_ms", pair.reference_ms)] {
                    if !(ms.is_finite() && ms > 0.0) {
                        bail!(
                            "{}: estimate.{class}.{field} = {ms}: a latency must be positive and finite",
                            path.display()
                        );
                    }
                }
            }
        }
        p.dir = path.parent().map(Path::to_path_buf).unwrap_or_default();
        Ok(p)
    }

    pub fn latency_table_path(&self) -> PathBuf {
        self.dir.join(&self.latency_table)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn impossible_frame_rates_are_refused_naming_the_file_and_field() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path();
        let good = std::fs::read_to_string(boards_dir().join("rpi4.toml")).unwrap();
        assert!(good.contains("[budget]\nfps = 15\n"));
        for bad in ["inf", "nan", "0.0", "-30.0", "1e9"] {
            let path = dir.join("b.toml");
            std::fs::write(&path, good.replace("[budget]\nfps = 15\n", &format!("[budget]\nfps = {bad}\n"))).unwrap();
            let e = format!("{:#}", BoardProfile::from_file(&path).unwrap_err());
            assert!(e.starts_with(&path.display().to_string()) && e.contains("budget.fps: "), "{bad}: {e}");
        }
    }

    #[test]
    fn shipped_profiles_load() {
        let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("boards");
        for name in ["host", "rpi4", "rpi5", "jetson-nano", "jetson-orin-nano"] {
            let p = BoardProfile::from_file(&dir.join(format!("{name}.toml"))).unwrap();
            assert_eq!(p.name, name);
            assert!(p.threads >= 1 && p.budget.fps > 0.0);
        }
        let cpus: Vec<String> = ["rpi4", "rpi5", "jetson-nano", "jetson-orin-nano"]
            .iter()
            .map(|n| BoardProfile::from_file(&dir.join(format!("{n}.toml"))).unwrap().cpu)
            .collect();
        assert_eq!(cpus, ["Cortex-A72", "Cortex-A76", "Cortex-A57", "Cortex-A78AE"]);
    }

    #[test]
    fn bad_profiles_name_file_and_field() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path();
        let p = dir.join("bad.toml");
        std::fs::write(&p, "name = \"x\"\ncores = \"four\"\n").unwrap();
        let e = format!("{:#}", BoardProfile::from_file(&p).unwrap_err());
        assert!(e.contains("bad.toml") && e.contains("cores"), "{e}");
        let e = format!("{:#}", BoardProfile::load("no-such-board").unwrap_err());
        assert!(e.contains("unknown board `no-such-board`"), "{e}");
    }
}
