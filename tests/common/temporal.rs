//! Temporal bundles for tests: the bundled MoveNet as the key net and
//! temporal nets with seeded random weights (the machinery, not accuracy).

use std::path::{Path, PathBuf};

use vipnas::arch::{Fusion, FusionOp, InputSize, Sample, SearchSpace, SpaceName, Subnet, TemporalNet, Weights};
use vipnas::bundle::{write_temporal_bundle, Provenance, Temporal, TemporalNetSpec};

pub const MOVENET: &str = "models/movenet-lightning";

pub fn tnet(op: FusionOp) -> TemporalNet {
    let subnet = Subnet::sample(&SearchSpace::get(SpaceName::Mbv3), Sample::Min);
    TemporalNet { subnet, fusion: Fusion { stage: 2, op } }
}

/// A temporal bundle in `dir`: MoveNet on key frames, `nets` (random
/// weights, at `input`) on `cycle`.
pub fn bundle(dir: &Path, input: InputSize, nets: &[TemporalNet], cycle: Vec<usize>) -> PathBuf {
    bundle_with(dir, input, nets, cycle, |_| {})
}

/// [`bundle`], the random weights edited by `edit`.
pub fn bundle_with(
    dir: &Path,
    input: InputSize,
    nets: &[TemporalNet],
    cycle: Vec<usize>,
    edit: impl Fn(&mut Weights),
) -> PathBuf {
    let mut specs = Vec::new();
    let mut files = Vec::new();
    for (k, net) in nets.iter().enumerate() {
        let graph = net.network(input).unwrap();
        let mut weights = Weights::random(&graph, k as u64);
        edit(&mut weights);
        let provenance = Provenance {
            created_by: "tests".into(),
            created_at: String::new(),
            weights: format!("random (seed {k})"),
            license: None,
        };
        let (spec, bytes) = TemporalNetSpec::write(net, input, &weights, k, provenance).unwrap();
        specs.push(spec);
        files.push(bytes);
    }
    let temporal = Temporal { key_interval: cycle.len() as u32, cycle, nets: specs, prior_min_score: 0.3 };
    write_temporal_bundle(
        &Path::new(env!("CARGO_MANIFEST_DIR")).join(MOVENET),
        dir,
        "movenet-temporal-test",
        temporal,
        files,
    )
    .unwrap();
    dir.to_path_buf()
}
