//! Estimated latency tables: a board's table before anyone has measured on
//! it, so that a user can search for a board they do not own yet.
//!
//! **An approximation**, flagged `measured: false` with its method in the
//! table: a table measured here is scaled block by block by how much slower
//! the board is than a reference machine on a published benchmark of the same
//! framework — one ratio for blocks with a convolution the engine runs on its
//! own grouped kernel (depthwise and small groups: a MobileNetV3's ratio),
//! one for every other block, whose convolutions are dense: tract's matrix
//! products and our pointwise kernel (a ResNet-50's). It ignores that tract's kernels and the benchmark's
//! framework are not equally good on each ISA, that the reference is not this
//! host, and how each board's caches treat each block; `search` and `predict`
//! warn loudly on it, and `vipnas profile` on the board replaces it.

use std::path::Path;

use anyhow::{ensure, Context, Result};

use super::lut::LatencyTable;
use super::profile::BoardProfile;
use crate::arch::blocks::grouped_convs;
use crate::runtime::grouped_conv::MAX_IN_PER_GROUP;

/// Whether a block has a convolution the engine runs on its grouped kernel.
fn runs_grouped_kernel(signature: &str) -> bool {
    grouped_convs(signature).iter().any(|&(cin, groups)| (cin / groups) as usize <= MAX_IN_PER_GROUP)
}

/// `board`'s estimated table from `source` (measured, 1 thread, at
/// `source_path`), scaled by the board profile's `[estimate]` numbers.
pub fn estimate(source: &LatencyTable, source_path: &Path, board: &BoardProfile) -> Result<LatencyTable> {
    let spec = board.estimate.as_ref().with_context(|| {
        format!(
            "board {}: its profile has no [estimate] section (published numbers to scale by): measure with `vipnas profile --board {}` on the board",
            board.name, board.name
        )
    })?;
    let from = source_path.display();
    let name = source_path.file_name().map_or(from.to_string(), |n| n.to_string_lossy().into_owned());
    ensure!(source.measured, "{from}: an estimate itself: estimates are made from measured tables only");
    ensure!(
        source.threads == 1,
        "{from}: measured at {} threads; the reference runs are one thread: estimate from a 1-thread table",
        source.threads
    );
    let (dw, dense) = (spec.depthwise.ratio(), spec.dense.ratio());
    // Four significant digits: more would claim a precision an estimate lacks.
    let round = |v: f64| {
        let scale = 10f64.powi(3 - v.log10().floor() as i32);
        (v * scale).round() / scale
    };
    let mut table = source.clone();
    for (sig, e) in table.entries.iter_mut() {
        let r = if runs_grouped_kernel(sig) { dw } else { dense };
        e.p50_ms = round(e.p50_ms * r);
        e.p90_ms = round(e.p90_ms * r);
    }
    for c in table.corrections.values_mut() {
        c.offset_ms *= dense;
    }
    let pair = |p: &super::profile::PublishedPair| format!("{} {} / {} ms", p.model, p.board_ms, p.reference_ms);
    table.method = Some(format!(
        "ESTIMATED, not measured: {name} ({}, {} thread, {}) scaled per block — blocks with a depthwise or small-group convolution x{dw:.3} ({}), the others x{dense:.3} ({}); corrections: the source's scales, offsets x{dense:.3}. Published numbers: {}; board: {}; reference: {}",
        source.cpu,
        source.threads,
        source.date,
        pair(&spec.depthwise),
        pair(&spec.dense),
        spec.source,
        spec.board_run,
        spec.reference_run,
    ));
    table.board = board.name.clone();
    table.cpu = format!("{} (estimated)", board.cpu);
    table.threads = board.threads;
    table.measured = false;
    table.date = crate::timestamp::utc_now_rfc3339();
    table.validate().map_err(anyhow::Error::msg).with_context(|| format!("estimate for {}", board.name))?;
    Ok(table)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::arch::{InputSize, Sample, SearchSpace, SpaceName, Subnet};

    fn shipped(name: &str) -> BoardProfile {
        BoardProfile::from_file(&Path::new(env!("CARGO_MANIFEST_DIR")).join(format!("boards/{name}.toml"))).unwrap()
    }

    fn host_table() -> (std::path::PathBuf, LatencyTable) {
        let p = Path::new(env!("CARGO_MANIFEST_DIR")).join("boards/host.lut.json");
        let t = LatencyTable::load(&p).unwrap();
        (p, t)
    }

    #[test]
    fn an_estimate_scales_each_op_class_by_its_published_ratio() {
        let (path, host) = host_table();
        let rpi4 = shipped("rpi4");
        let spec = rpi4.estimate.clone().unwrap();
        let est = estimate(&host, &path, &rpi4).unwrap();
        assert!(!est.measured && est.method.as_deref().unwrap().starts_with("ESTIMATED"));
        assert_eq!((est.board.as_str(), est.threads), ("rpi4", rpi4.threads));
        est.check_compatible(&path, "rpi4", rpi4.threads).unwrap();
        // A MobileNetV3 subnet has small-group convs in every stage block, not
        // in its stem; HRNet's 1-group subnet has none.
        let mut hrnet = Subnet::sample(&SearchSpace::get(SpaceName::HrnetW32), Sample::Min);
        for b in hrnet.stages.iter_mut().flat_map(|s| s.branches.iter_mut()) {
            b.group = 1;
        }
        for (space, subnet, ratio) in [
            (SpaceName::Mbv3, Subnet::sample(&SearchSpace::get(SpaceName::Mbv3), Sample::Random(3)), None),
            (SpaceName::HrnetW32, hrnet, Some(spec.dense.ratio())),
        ] {
            let net = subnet.network(InputSize::DEFAULT).unwrap();
            let (h, b) = (host.predict(&net, space).unwrap(), est.predict(&net, space).unwrap());
            let r = b.sum_ms / h.sum_ms;
            match ratio {
                Some(dense) => assert!((r - dense).abs() < 1e-3 * dense, "{space}: {r} vs {dense}"),
                None => assert!(r > spec.dense.ratio() && r < spec.depthwise.ratio(), "{space}: {r}"),
            }
        }
    }

    #[test]
    fn estimates_need_published_numbers_and_a_measured_one_thread_source() {
        let (path, host) = host_table();
        let mut board = shipped("rpi4");
        let mut est = estimate(&host, &path, &board).unwrap();
        let e = format!("{:#}", estimate(&est, &path, &board).unwrap_err());
        assert!(e.contains("an estimate itself"), "{e}");
        est.measured = true;
        est.threads = 4;
        let e = format!("{:#}", estimate(&est, &path, &board).unwrap_err());
        assert!(e.contains("measured at 4 threads"), "{e}");
        board.estimate = None;
        let e = format!("{:#}", estimate(&host, &path, &board).unwrap_err());
        assert!(e.contains("no [estimate] section"), "{e}");
    }

    #[test]
    fn the_shipped_estimates_are_what_the_shipped_numbers_make() {
        // boards/<board>.lut.json were written by `vipnas profile --estimate-from
        // host`: the same entries as estimating again now (only the date differs).
        let (path, host) = host_table();
        for name in ["rpi4", "rpi5", "jetson-nano", "jetson-orin-nano"] {
            let board = shipped(name);
            let shipped_table = LatencyTable::load(&board.latency_table_path()).unwrap();
            let again = estimate(&host, &path, &board).unwrap();
            assert!(!shipped_table.measured, "{name}");
            assert_eq!(shipped_table.entries.len(), again.entries.len(), "{name}");
            for (sig, e) in &again.entries {
                let s = &shipped_table.entries[sig];
                assert!((s.p50_ms - e.p50_ms).abs() <= 1e-9 * e.p50_ms, "{name}: {sig}");
            }
        }
    }
}
