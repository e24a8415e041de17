//! Pretrained initial weights for a supernet (`vipnas train --init FILE`):
//! a weights file names some of the supernet's tensors and gives each one a
//! slice of it (leading channels, centred kernel — the elastic rules). The
//! supernet tensor becomes that slice, zero around it, so a subnet that takes
//! exactly the file's shapes computes what the pretrained network computed;
//! tensors the file does not name keep their seeded random init.
//!
//! Layout of a weights file (`.vnw`): the magic line `VIPNAS-WEIGHTS\n`, a
//! little-endian u64 header length, a JSON [`WeightsHeader`], then each
//! tensor's f32 values (little-endian, row-major) in the header's order.
//! `scripts/init-weights.py` writes one from EfficientNet-Lite0's ImageNet
//! weights.

use std::path::Path;

use anyhow::{bail, ensure, Context, Result};
use serde::{Deserialize, Serialize};

use super::checkpoint::{self, Checkpoint, Header as CheckpointHeader};
use crate::arch::weights::{Tensor, Weights};
use crate::arch::SupernetLayout;

const MAGIC: &[u8] = b"VIPNAS-WEIGHTS\n";
pub const WEIGHTS_VERSION: u32 = 1;

/// The header's length, after checking the magic line (what both readers start with).
fn header_len(start: &[u8]) -> Result<u64> {
    let Some(rest) = start.strip_prefix(MAGIC) else {
        bail!("not a vipnas weights file (no `VIPNAS-WEIGHTS` line at the start)");
    };
    ensure!(rest.len() >= 8, "truncated: no header");
    Ok(u64::from_le_bytes(rest[..8].try_into().expect("8 bytes")))
}

/// One tensor of a weights file.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WeightsEntry {
    pub name: String,
    pub shape: Vec<usize>,
}

/// Where the weights come from, for the bundle's provenance.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WeightsHeader {
    pub format_version: u32,
    /// The supernet's space (`mbv3`, …).
    pub space: String,
    /// The pretrained network and the package it was read from.
    pub source: String,
    pub licence: String,
    /// How its tensors were mapped onto the supernet.
    #[serde(default)]
    pub mapping: String,
    pub tensors: Vec<WeightsEntry>,
}

/// The longest chain of checkpoints, each initialised from the next, that
/// provenance follows (a longer one is a loop: a run started from itself).
const MAX_CHAIN: usize = 16;

/// The weights header that stands for training checkpoint `path`: its run,
/// and where that run's own weights came from (its `--init`, named in turn,
/// at most `left` checkpoints deep).
fn checkpoint_header(path: &Path, h: &CheckpointHeader, left: usize) -> Result<WeightsHeader> {
    ensure!(
        left > 0,
        "{}: more than {MAX_CHAIN} checkpoints each initialised from the next (a run started from itself?)",
        path.display()
    );
    let c = &h.config;
    let (mut source, mut licence) = match &h.provenance {
        // Weights-only: resolved when it was written (its --init may be elsewhere).
        Some(p) => (format!("{} (weights only, as f16: {})", p.source, path.display()), p.licence.clone()),
        None => (
            format!("vipnas training run {} (step {} of {}, {})", path.display(), h.step, c.steps, h.created_by),
            "the training data's terms".to_string(),
        ),
    };
    if let (None, Some(init)) = (&h.provenance, &c.init) {
        let before = InitWeights::read_header_within(init, left - 1)
            .with_context(|| format!("the checkpoint's --init {}", init.display()))?;
        source += &format!(", initialised from {}", before.source);
        licence = before.licence;
    }
    Ok(WeightsHeader {
        format_version: WEIGHTS_VERSION,
        space: c.space.as_str().to_string(),
        source,
        licence,
        mapping: "every supernet tensor as trained, running statistics included".into(),
        tensors: h.tensors.iter().map(|t| WeightsEntry { name: t.name.clone(), shape: t.shape.clone() }).collect(),
    })
}

/// Where training checkpoint `path`'s weights came from, its chain of `--init`s
/// followed: what a weights-only copy of it records.
pub fn provenance(path: &Path, header: &CheckpointHeader) -> Result<checkpoint::Provenance> {
    let h = checkpoint_header(path, header, MAX_CHAIN)?;
    Ok(checkpoint::Provenance { source: h.source, licence: h.licence })
}

/// A weights file in memory.
#[derive(Clone, Debug)]
pub struct InitWeights {
    pub header: WeightsHeader,
    pub weights: Weights,
    /// For a training checkpoint, the position in its batch stream where its run
    /// stopped (its start plus the samples of its steps), where a run continued
    /// from it starts ([`super::batches`]); 0 for a weights file.
    pub data_end: u64,
}

impl InitWeights {
    /// A weights file, or a training checkpoint (`checkpoint.vnck`): every
    /// tensor of the supernet it holds, so that a finished run can go on under
    /// another schedule (e.g. the largest subnet trained alone, then the
    /// sandwich rule over all of them); Adam's moments start afresh.
    pub fn load(path: &Path) -> Result<InitWeights> {
        let bytes = std::fs::read(path).with_context(|| format!("cannot read weights file {}", path.display()))?;
        if Checkpoint::is_one(&bytes) {
            let c = Checkpoint::parse(&bytes).with_context(|| format!("checkpoint {}", path.display()))?;
            let h = &c.header;
            let data_end = h.data_start + h.step * h.config.batch as u64;
            return Ok(InitWeights { header: checkpoint_header(path, h, MAX_CHAIN)?, weights: c.weights, data_end });
        }
        Self::parse(&bytes).with_context(|| format!("weights file {}", path.display()))
    }

    /// The header alone (for provenance), without reading the tensors.
    pub fn read_header(path: &Path) -> Result<WeightsHeader> {
        Self::read_header_within(path, MAX_CHAIN)
    }

    /// [`Self::read_header`], following at most `left` checkpoints.
    fn read_header_within(path: &Path, left: usize) -> Result<WeightsHeader> {
        use std::io::Read;
        let mut start = Vec::new();
        std::fs::File::open(path)
            .and_then(|f| f.take(checkpoint::MAGIC_LEN as u64).read_to_end(&mut start))
            .with_context(|| format!("cannot read weights file {}", path.display()))?;
        if Checkpoint::is_one(&start) {
            return checkpoint_header(path, &Checkpoint::read_header(path)?, left);
        }
        let read = || -> Result<WeightsHeader> {
            let mut f = std::fs::File::open(path)?;
            let mut start = vec![0u8; MAGIC.len() + 8];
            f.read_exact(&mut start).context("truncated: no header")?;
            let n = header_len(&start)?;
            ensure!(n <= f.metadata()?.len(), "truncated: header of {n} bytes");
            let mut json = vec![0u8; n as usize];
            f.read_exact(&mut json).context("truncated header")?;
            serde_json::from_slice(&json).context("header")
        };
        read().with_context(|| format!("weights file {}", path.display()))
    }

    pub fn parse(bytes: &[u8]) -> Result<InitWeights> {
        let n = header_len(bytes)?;
        let rest = &bytes[MAGIC.len() + 8..];
        ensure!(n <= rest.len() as u64, "truncated: header of {n} bytes, {} left", rest.len());
        let (json, payload) = rest.split_at(n as usize);
        let header: WeightsHeader = serde_json::from_slice(json).context("header")?;
        ensure!(
            header.format_version == WEIGHTS_VERSION,
            "format_version {}: this vipnas reads version {WEIGHTS_VERSION}",
            header.format_version
        );
        let mut floats = payload.chunks_exact(4).map(|c| f32::from_le_bytes(c.try_into().expect("4 bytes")));
        let mut weights = Weights::default();
        for e in &header.tensors {
            let len = e.shape.iter().try_fold(1usize, |n, &d| n.checked_mul(d));
            let len = len.with_context(|| format!("`{}`: shape {:?} overflows", e.name, e.shape))?;
            let data: Vec<f32> = floats.by_ref().take(len).collect();
            ensure!(data.len() == len, "`{}`: payload ends early", e.name);
            ensure!(data.iter().all(|v| v.is_finite()), "`{}`: a value is not finite", e.name);
            ensure!(
                weights.tensors.insert(e.name.clone(), Tensor::new(e.shape.clone(), data)).is_none(),
                "`{}` is named twice",
                e.name
            );
        }
        ensure!(floats.next().is_none() && payload.len() % 4 == 0, "payload longer than the header's tensors");
        Ok(InitWeights { header, weights, data_end: 0 })
    }

    /// Puts these weights into `into` (supernet-shaped, of `layout`); returns
    /// how many tensors and scalars came from the file. Every tensor must be
    /// one of the supernet's and fit inside it.
    pub fn apply(&self, layout: &SupernetLayout, into: &mut Weights) -> Result<(usize, usize)> {
        ensure!(
            self.header.space == layout.space.as_str(),
            "holds weights for the {} space, not {}",
            self.header.space,
            layout.space
        );
        let mut scalars = 0;
        for (name, t) in &self.weights.tensors {
            let Some(spec) = layout.params.get(name) else {
                bail!("the {} supernet has no tensor `{name}`", layout.space);
            };
            let big = t.elastic_embed(&spec.shape).with_context(|| {
                format!("`{name}` of shape {:?} is not a slice of the supernet's {:?}", t.shape, spec.shape)
            })?;
            scalars += t.data.len();
            into.tensors.insert(name.clone(), big);
        }
        Ok((self.weights.tensors.len(), scalars))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::arch::{InputSize, SpaceName};

    fn file(header: &WeightsHeader, payload: &[f32]) -> Vec<u8> {
        let json = serde_json::to_vec(header).unwrap();
        let mut b = MAGIC.to_vec();
        b.extend((json.len() as u64).to_le_bytes());
        b.extend(json);
        payload.iter().for_each(|v| b.extend(v.to_le_bytes()));
        b
    }

    fn header(tensors: &[(&str, &[usize])]) -> WeightsHeader {
        WeightsHeader {
            format_version: 1,
            space: "mbv3".into(),
            source: "test".into(),
            licence: "none".into(),
            mapping: String::new(),
            tensors: tensors.iter().map(|(n, s)| WeightsEntry { name: n.to_string(), shape: s.to_vec() }).collect(),
        }
    }

    #[test]
    fn a_pretrained_kernel_lands_centred_and_the_rest_is_zero() {
        let layout = SupernetLayout::of(SpaceName::Mbv3, InputSize::new(64, 64).unwrap()).unwrap();
        let name = "stage2.block0.dw.weight";
        let big = layout.params[name].shape.clone();
        assert_eq!(big, vec![144, 16, 7, 7]);
        let values: Vec<f32> = (0..144 * 16 * 9).map(|i| i as f32 + 1.0).collect();
        let w = InitWeights::parse(&file(&header(&[(name, &[144, 16, 3, 3])]), &values)).unwrap();
        let mut into = layout.training_weights(0);
        let before = into.tensors["stage2.block0.expand.weight"].clone();
        assert_eq!(w.apply(&layout, &mut into).unwrap(), (1, values.len()));
        let t = &into.tensors[name];
        assert_eq!(t.elastic_slice(&[144, 16, 3, 3]).unwrap().data, values);
        assert_eq!(t.data.iter().filter(|v| **v != 0.0).count(), values.len());
        assert_eq!(into.tensors["stage2.block0.expand.weight"], before, "tensors not in the file keep their init");
    }

    #[test]
    fn a_training_checkpoint_initialises_every_tensor_and_names_its_own_init() {
        use crate::host::train::checkpoint::{Header, TensorEntry, CHECKPOINT_VERSION};
        use crate::host::train::TrainConfig;
        let tmp = tempfile::tempdir().unwrap();
        let layout = SupernetLayout::of(SpaceName::Mbv3, InputSize::new(64, 64).unwrap()).unwrap();
        let pretrained = tmp.path().join("lite0.vnw");
        std::fs::write(&pretrained, file(&header(&[("stem.conv.bn.bias", &[16])]), &[0.5; 16])).unwrap();
        let mut config = TrainConfig::new(SpaceName::Mbv3, "a.json".into(), "imgs".into(), 1500);
        config.init = Some(pretrained);
        let trained = layout.training_weights(3);
        let tensors = trained
            .tensors
            .iter()
            .map(|(name, t)| TensorEntry { name: name.clone(), shape: t.shape.clone(), moments: false, updates: 0 })
            .collect();
        let header = Header {
            format_version: CHECKPOINT_VERSION,
            created_by: "vipnas test".into(),
            config,
            step: 1500,
            data_start: 800,
            precision: Default::default(),
            provenance: None,
            tensors,
            payload_bytes: 0,
            payload_fnv1a64: String::new(),
        };
        let path = tmp.path().join("checkpoint.vnck");
        Checkpoint { header, weights: trained.clone(), moments: Default::default() }.save(&path).unwrap();

        let w = InitWeights::load(&path).unwrap();
        let mut into = layout.training_weights(0);
        assert_eq!(w.apply(&layout, &mut into).unwrap().0, layout.params.len(), "every tensor, running statistics too");
        assert_eq!(into, trained);
        assert_eq!(w.data_end, 800 + 1500 * 16, "a run from it goes on where this one's batches stopped");
        let h = InitWeights::read_header(&path).unwrap();
        assert_eq!(h, w.header);
        assert!(h.source.contains("step 1500 of 1500") && h.source.ends_with("initialised from test"), "{}", h.source);
        assert_eq!(h.licence, "none", "the pretrained weights' licence carries over");

        // Its weights-only copy stands alone: provenance kept, its --init no longer read.
        let lean = tmp.path().join("supernet.vnck");
        let c = Checkpoint::load(&path).unwrap();
        c.clone().weights_only(provenance(&path, &c.header).unwrap()).save(&lean).unwrap();
        std::fs::remove_file(tmp.path().join("lite0.vnw")).unwrap();
        assert!(InitWeights::load(&path).is_err(), "the full checkpoint follows its --init");
        let l = InitWeights::load(&lean).unwrap();
        assert!(l.header.source.starts_with(&h.source), "{}", l.header.source);
        assert!(l.header.source.contains("weights only, as f16"), "{}", l.header.source);
        assert_eq!((l.header.licence.as_str(), l.data_end), ("none", w.data_end));
        for (name, t) in &trained.tensors {
            let near =
                t.data.iter().zip(&l.weights.tensors[name].data).all(|(a, b)| (a - b).abs() <= a.abs() / 2048.0 + 1e-7);
            assert!(near, "`{name}` within f16 rounding");
        }

        // A run started from itself: refused, not followed for ever.
        let mut looped = Checkpoint::load(&path).unwrap();
        looped.header.config.init = Some(path.clone());
        looped.save(&path).unwrap();
        let e = format!("{:#}", InitWeights::load(&path).unwrap_err());
        assert!(e.contains("more than 16 checkpoints each initialised from the next"), "{e}");

        // A damaged checkpoint is refused as one.
        let mut bytes = std::fs::read(&path).unwrap();
        let n = bytes.len();
        bytes[n - 1] ^= 1;
        std::fs::write(&path, bytes).unwrap();
        let e = format!("{:#}", InitWeights::load(&path).unwrap_err());
        assert!(e.starts_with(&format!("checkpoint {}", path.display())), "{e}");
    }

    #[test]
    fn bad_files_are_refused_by_name() {
        let layout = SupernetLayout::of(SpaceName::Mbv3, InputSize::new(64, 64).unwrap()).unwrap();
        let mut into = layout.training_weights(0);
        let apply = |h: WeightsHeader, p: &[f32]| {
            let mut into = into.clone();
            InitWeights::parse(&file(&h, p)).and_then(|w| w.apply(&layout, &mut into)).unwrap_err().to_string()
        };
        assert_eq!(apply(header(&[("nope.weight", &[1])]), &[1.0]), "the mbv3 supernet has no tensor `nope.weight`");
        assert_eq!(
            apply(header(&[("stem.conv.weight", &[32, 3, 3, 3])]), &[0.5; 864]),
            "`stem.conv.weight` of shape [32, 3, 3, 3] is not a slice of the supernet's [16, 3, 3, 3]"
        );
        assert_eq!(
            apply(header(&[("stem.conv.bn.weight", &[16])]), &[1.0; 15]),
            "`stem.conv.bn.weight`: payload ends early"
        );
        assert_eq!(
            apply(header(&[("stem.conv.bn.weight", &[2])]), &[1.0, f32::NAN]),
            "`stem.conv.bn.weight`: a value is not finite"
        );
        let mut h = header(&[]);
        h.space = "resnet50".into();
        assert_eq!(apply(h, &[]), "holds weights for the resnet50 space, not mbv3");
        let e = InitWeights::parse(b"VIPNAS-CHECKPOINT\n").unwrap_err().to_string();
        assert!(e.starts_with("not a vipnas weights file"), "{e}");
        assert!(InitWeights::parse(&file(&header(&[]), &[1.0])).is_err(), "trailing payload");
        let (n, _) = InitWeights::parse(&file(&header(&[]), &[])).unwrap().apply(&layout, &mut into).unwrap();
        assert_eq!(n, 0);
    }
}
