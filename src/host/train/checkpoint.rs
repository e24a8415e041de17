//! Training checkpoints: everything needed to continue a run exactly where it
//! stopped — the supernet's tensors (running statistics included), Adam's
//! moments, the step, and the run's configuration (the batch order and the
//! subnets of a step follow from the seed and the step, so no generator state
//! is stored; the header says where in the batch stream the run started).
//!
//! Layout of `checkpoint.vnck`: the magic line `VIPNAS-CHECKPOINT\n`, a
//! little-endian u64 header length, a JSON [`Header`], then the payload: for
//! each tensor of the header in order its f32 values (little-endian), then,
//! for trainable ones, Adam's first and second moments. The header carries an
//! FNV-1a 64 hash of the payload, so a truncated or damaged file is refused.
//! Written through a temporary file and a rename: a kill mid-write leaves the
//! previous checkpoint intact.
//!
//! A *weights-only* checkpoint ([`Checkpoint::weights_only`], `vipnas export
//! --weights-only`) is the same layout without Adam's moments, its values
//! stored as IEEE half floats (`"precision": "f16"` in the header) and its
//! provenance resolved when it was written: a sixth of the checkpoint's size,
//! small enough to keep in the repository, and all that `--init`, `export` and
//! `search` read. Rounding to f16 is an approximation (relative error ≤ 2⁻¹¹,
//! values beyond ±65 504 refused); it cannot be resumed, only continued with
//! `--init` (Adam starts afresh).

use std::path::Path;

use anyhow::{bail, ensure, Context, Result};
use serde::{Deserialize, Serialize};

use super::TrainConfig;
use crate::arch::weights::{Tensor, Weights};
use crate::arch::SupernetLayout;
use crate::bundle::write_atomic;

const MAGIC: &[u8] = b"VIPNAS-CHECKPOINT\n";
/// The bytes [`Checkpoint::is_one`] needs.
pub const MAGIC_LEN: usize = MAGIC.len();
/// Bumped whenever the layout of a checkpoint changes.
pub const CHECKPOINT_VERSION: u32 = 1;

/// One tensor's entry in the header.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct TensorEntry {
    pub name: String,
    pub shape: Vec<usize>,
    /// Adam moments follow (trainable tensors).
    pub moments: bool,
    /// Adam updates this tensor has had.
    #[serde(default)]
    pub updates: u64,
}

/// The JSON header.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Header {
    pub format_version: u32,
    /// `vipnas <version>` that wrote it.
    pub created_by: String,
    pub config: TrainConfig,
    /// Steps completed.
    pub step: u64,
    /// Where this run's batches start in its seed's stream of samples (see
    /// [`super::batches`]): where the run of its `--init` checkpoint left off,
    /// so that a run continued from a checkpoint trains on crops its initial
    /// weights have not seen (0 for a run from scratch or a weights file, and in
    /// checkpoints written before this field).
    #[serde(default, skip_serializing_if = "super::is_zero")]
    pub data_start: u64,
    /// How the payload's values are stored (f32 unless weights-only).
    #[serde(default, skip_serializing_if = "Precision::is_f32")]
    pub precision: Precision,
    /// A weights-only checkpoint's provenance, resolved when it was written, so
    /// that it stands alone (the run's `--init` need not exist where it is read).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub provenance: Option<Provenance>,
    pub tensors: Vec<TensorEntry>,
    pub payload_bytes: u64,
    pub payload_fnv1a64: String,
}

impl Header {
    /// Whether this is a weights-only checkpoint (no optimiser state).
    pub fn is_weights_only(&self) -> bool {
        self.provenance.is_some()
    }
}

/// How a checkpoint's payload stores its values.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Precision {
    #[default]
    F32,
    /// IEEE half floats: weights-only checkpoints.
    F16,
}

impl Precision {
    fn is_f32(&self) -> bool {
        *self == Precision::F32
    }

    fn bytes(self) -> usize {
        match self {
            Precision::F32 => 4,
            Precision::F16 => 2,
        }
    }
}

/// Where a weights-only checkpoint's weights came from.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Provenance {
    /// The run and the weights it started from, in turn.
    pub source: String,
    /// The terms of the weights it started from and of the training data.
    pub licence: String,
}

/// A checkpoint in memory.
#[derive(Clone, Debug, PartialEq)]
pub struct Checkpoint {
    pub header: Header,
    /// Supernet-shaped tensors (trained values and running statistics).
    pub weights: Weights,
    /// Adam's `(m, v)` per trainable tensor name.
    pub moments: std::collections::BTreeMap<String, (Vec<f32>, Vec<f32>)>,
}

fn fnv1a64(bytes: &[u8]) -> u64 {
    bytes.iter().fold(0xcbf2_9ce4_8422_2325u64, |h, &b| (h ^ b as u64).wrapping_mul(0x0100_0000_01b3))
}

/// The header's length, after checking the magic line.
fn header_len(bytes: &[u8]) -> Result<usize> {
    let Some(rest) = bytes.strip_prefix(MAGIC) else {
        bail!("not a vipnas training checkpoint (no `VIPNAS-CHECKPOINT` line at the start)");
    };
    ensure!(rest.len() >= 8, "truncated: no header");
    Ok(u64::from_le_bytes(rest[..8].try_into().expect("8 bytes")) as usize)
}

/// The JSON header, its version checked first so an old or new file says so.
fn parse_header(json: &[u8]) -> Result<Header> {
    let value: serde_json::Value = serde_json::from_slice(json).context("header is not JSON")?;
    let version = value.get("format_version").and_then(|v| v.as_u64());
    ensure!(
        version == Some(CHECKPOINT_VERSION as u64),
        "format_version {} — this vipnas ({}) reads version {CHECKPOINT_VERSION}",
        version.map_or("missing".to_string(), |v| v.to_string()),
        env!("CARGO_PKG_VERSION")
    );
    serde_json::from_value(value).context("header")
}

fn push_f32s(out: &mut Vec<u8>, v: &[f32]) {
    out.reserve(v.len() * 4);
    for x in v {
        out.extend_from_slice(&x.to_le_bytes());
    }
}

fn push_f16s(out: &mut Vec<u8>, v: &[f32]) {
    out.reserve(v.len() * 2);
    for x in v {
        out.extend_from_slice(&half::f16::from_f32(*x).to_le_bytes());
    }
}

impl Checkpoint {
    /// Writes the checkpoint atomically.
    pub fn save(&mut self, path: &Path) -> Result<()> {
        let mut payload = Vec::new();
        for e in &self.header.tensors {
            let t = self.weights.get(&e.name)?;
            ensure!(
                t.shape == e.shape,
                "checkpoint: `{}` has shape {:?}, the header says {:?}",
                e.name,
                t.shape,
                e.shape
            );
            match self.header.precision {
                Precision::F32 => push_f32s(&mut payload, &t.data),
                Precision::F16 => {
                    let max = half::f16::MAX.to_f32();
                    let big = t.data.iter().find(|v| !(v.abs() <= max));
                    ensure!(big.is_none(), "checkpoint: `{}` holds {}, beyond a half float", e.name, big.unwrap());
                    push_f16s(&mut payload, &t.data)
                }
            }
            if e.moments {
                ensure!(self.header.precision == Precision::F32, "checkpoint: Adam's moments are kept as f32 only");
                let (m, v) =
                    self.moments.get(&e.name).with_context(|| format!("checkpoint: no moments for `{}`", e.name))?;
                push_f32s(&mut payload, m);
                push_f32s(&mut payload, v);
            }
        }
        self.header.payload_bytes = payload.len() as u64;
        self.header.payload_fnv1a64 = format!("{:016x}", fnv1a64(&payload));
        let header = serde_json::to_vec_pretty(&self.header)?;
        let mut bytes = Vec::with_capacity(MAGIC.len() + 8 + header.len() + payload.len());
        bytes.extend_from_slice(MAGIC);
        bytes.extend_from_slice(&(header.len() as u64).to_le_bytes());
        bytes.extend_from_slice(&header);
        bytes.extend_from_slice(&payload);
        write_atomic(path, &bytes)
    }

    /// Reads and verifies a checkpoint; errors name the file and what is wrong.
    pub fn load(path: &Path) -> Result<Checkpoint> {
        let bytes = std::fs::read(path).with_context(|| format!("cannot read checkpoint {}", path.display()))?;
        Self::parse(&bytes).with_context(|| format!("checkpoint {}", path.display()))
    }

    /// The header alone (the settings and step of a run), without reading the tensors.
    pub fn read_header(path: &Path) -> Result<Header> {
        use std::io::Read;
        let mut f = std::fs::File::open(path).with_context(|| format!("cannot read checkpoint {}", path.display()))?;
        let mut start = Vec::with_capacity(MAGIC.len() + 8);
        let read = (|| -> Result<Header> {
            (&mut f).take(MAGIC.len() as u64 + 8).read_to_end(&mut start)?;
            let n = header_len(&start)?;
            // The length comes from the file: no allocation beyond what it holds.
            let left = f.metadata()?.len().saturating_sub(start.len() as u64);
            ensure!(n as u64 <= left, "truncated: header of {n} bytes, {left} left");
            let mut json = vec![0u8; n];
            f.read_exact(&mut json).context("truncated header")?;
            parse_header(&json)
        })();
        read.with_context(|| format!("checkpoint {}", path.display()))
    }

    /// Whether `start` (a file's first [`MAGIC_LEN`] bytes or more) begins as a checkpoint does.
    pub fn is_one(start: &[u8]) -> bool {
        start.starts_with(MAGIC)
    }

    /// A checkpoint's bytes, verified (what [`Checkpoint::load`] reads).
    pub fn parse(bytes: &[u8]) -> Result<Checkpoint> {
        let n = header_len(bytes)?;
        let rest = &bytes[MAGIC.len()..];
        ensure!(rest.len() - 8 >= n, "truncated: header of {n} bytes, {} left", rest.len() - 8);
        let header = parse_header(&rest[8..8 + n])?;
        let payload = &rest[8 + n..];
        ensure!(
            payload.len() as u64 == header.payload_bytes,
            "truncated or padded: {} payload bytes, the header says {}",
            payload.len(),
            header.payload_bytes
        );
        ensure!(
            format!("{:016x}", fnv1a64(payload)) == header.payload_fnv1a64,
            "damaged: the payload's hash differs from the header's"
        );
        let precision = header.precision;
        let mut floats = payload.chunks_exact(precision.bytes()).map(|c| match precision {
            Precision::F32 => f32::from_le_bytes(c.try_into().unwrap()),
            Precision::F16 => half::f16::from_le_bytes(c.try_into().unwrap()).to_f32(),
        });
        let mut take = |len: usize| -> Vec<f32> { floats.by_ref().take(len).collect() };
        let (mut weights, mut moments) = (Weights::default(), std::collections::BTreeMap::new());
        for e in &header.tensors {
            let len = e.shape.iter().try_fold(1usize, |n, &d| n.checked_mul(d));
            let len = len.with_context(|| format!("`{}`: shape {:?} overflows", e.name, e.shape))?;
            let data = take(len);
            ensure!(data.len() == len, "`{}`: payload ends early", e.name);
            weights.tensors.insert(e.name.clone(), Tensor::new(e.shape.clone(), data));
            if e.moments {
                let (m, v) = (take(len), take(len));
                ensure!(v.len() == len, "`{}`: payload ends early", e.name);
                moments.insert(e.name.clone(), (m, v));
            }
        }
        Ok(Checkpoint { header, weights, moments })
    }

    /// This checkpoint as a weights-only one (see the module doc): no moments,
    /// half floats, and `provenance` (what its run's chain of `--init`s says)
    /// recorded in the header.
    pub fn weights_only(mut self, provenance: Provenance) -> Checkpoint {
        self.moments.clear();
        for e in &mut self.header.tensors {
            e.moments = false;
        }
        self.header.precision = Precision::F16;
        self.header.provenance = Some(provenance);
        self
    }

    /// Checks that this checkpoint holds the supernet `layout` describes:
    /// the same space and every tensor with the same shape.
    pub fn check_layout(&self, layout: &SupernetLayout) -> Result<()> {
        let c = &self.header.config;
        ensure!(c.space == layout.space, "it holds the {} supernet, not the {} one", c.space, layout.space);
        let have: Vec<(&str, &[usize])> = self.header.tensors.iter().map(|e| (e.name.as_str(), &e.shape[..])).collect();
        let want: Vec<(&str, &[usize])> = layout.params.iter().map(|(n, p)| (n.as_str(), &p.shape[..])).collect();
        if have != want {
            let diff = want
                .iter()
                .find(|w| !have.contains(w))
                .map(|(n, s)| format!("this vipnas has `{n}` {s:?}, the checkpoint does not"))
                .or_else(|| {
                    have.iter()
                        .find(|h| !want.contains(h))
                        .map(|(n, s)| format!("it has `{n}` {s:?}, this vipnas does not"))
                })
                .unwrap_or_default();
            bail!("its {} supernet differs from this vipnas' (written by {}): {diff}", c.space, self.header.created_by);
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::arch::{InputSize, SpaceName};

    fn small() -> Checkpoint {
        let config = TrainConfig::new(SpaceName::Mbv3, "a.json".into(), "imgs".into(), 10);
        let mut weights = Weights::default();
        weights.tensors.insert("a.weight".into(), Tensor::new(vec![2, 1, 1, 1], vec![1.0, -2.5]));
        weights.tensors.insert("a.bn.running_mean".into(), Tensor::new(vec![2], vec![0.25, f32::MIN_POSITIVE]));
        let tensors = vec![
            TensorEntry { name: "a.bn.running_mean".into(), shape: vec![2], moments: false, updates: 0 },
            TensorEntry { name: "a.weight".into(), shape: vec![2, 1, 1, 1], moments: true, updates: 3 },
        ];
        let moments = [("a.weight".to_string(), (vec![0.5, 0.125], vec![1e-8, 3.0]))].into();
        let header = Header {
            format_version: CHECKPOINT_VERSION,
            created_by: "vipnas test".into(),
            config,
            step: 7,
            data_start: 40,
            precision: Default::default(),
            provenance: None,
            tensors,
            payload_bytes: 0,
            payload_fnv1a64: String::new(),
        };
        Checkpoint { header, weights, moments }
    }

    #[test]
    fn a_checkpoint_reads_back_bit_exactly() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path();
        let path = dir.join("c.vnck");
        let mut c = small();
        c.save(&path).unwrap();
        assert_eq!(c.header.payload_bytes, 4 * (2 + 2 * 3));
        assert_eq!(Checkpoint::load(&path).unwrap(), c);
        assert_eq!(Checkpoint::read_header(&path).unwrap(), c.header);
        assert!(!path.with_extension("partial").exists(), "written through a temporary file");
    }

    #[test]
    fn a_weights_only_checkpoint_keeps_the_weights_in_half_floats_and_drops_the_moments() {
        let tmp = tempfile::tempdir().unwrap();
        let path = tmp.path().join("w.vnck");
        let c = small();
        let provenance = Provenance { source: "run r".into(), licence: "terms".into() };
        let mut w = c.clone().weights_only(provenance.clone());
        w.save(&path).unwrap();
        assert_eq!(w.header.payload_bytes, 2 * 4, "two bytes a value, no moments");
        let back = Checkpoint::load(&path).unwrap();
        assert!(back.moments.is_empty() && back.header.tensors.iter().all(|e| !e.moments));
        assert!(back.header.is_weights_only() && !c.header.is_weights_only());
        assert_eq!(back.header.precision, Precision::F16);
        assert_eq!(back.header.provenance, Some(provenance));
        assert_eq!(back.weights.tensors["a.weight"].data, vec![1.0, -2.5], "exact where f16 is");
        let mean = back.weights.tensors["a.bn.running_mean"].data[0];
        assert_eq!(mean, 0.25);
        // 1/3 is not a half float: rounded to the nearest one (relative error ≤ 2⁻¹¹).
        w.weights.tensors.get_mut("a.weight").unwrap().data[0] = 1.0 / 3.0;
        w.save(&path).unwrap();
        let before = Checkpoint::load(&path).unwrap();
        let third = before.weights.tensors["a.weight"].data[0];
        assert!(third != 1.0 / 3.0 && ((third - 1.0 / 3.0) * 3.0).abs() <= 1.0 / 2048.0, "{third}");

        w.weights.tensors.get_mut("a.weight").unwrap().data[1] = 1e5;
        let e = w.save(&path).unwrap_err().to_string();
        assert_eq!(e, "checkpoint: `a.weight` holds 100000, beyond a half float");
        let mut mixed = c.clone();
        mixed.header.precision = Precision::F16;
        let e = mixed.save(&path).unwrap_err().to_string();
        assert_eq!(e, "checkpoint: Adam's moments are kept as f32 only");
        assert_eq!(Checkpoint::load(&path).unwrap(), before, "a refused write leaves the file as it was");
    }

    #[test]
    fn a_checkpoint_of_another_space_or_shape_is_refused_by_tensor() {
        let input = InputSize::new(64, 64).unwrap();
        let c = small();
        let e = c.check_layout(&SupernetLayout::of(SpaceName::Resnet50, input).unwrap()).unwrap_err().to_string();
        assert_eq!(e, "it holds the mbv3 supernet, not the resnet50 one");
        let e = c.check_layout(&SupernetLayout::of(SpaceName::Mbv3, input).unwrap()).unwrap_err().to_string();
        assert!(
            e.starts_with("its mbv3 supernet differs from this vipnas' (written by vipnas test): this vipnas has `"),
            "{e}"
        );
    }
}
