//! `vipnas export`: write a model bundle (manifest + ONNX) for a subnet.

use std::path::PathBuf;

use anyhow::Result;
use clap::Args;

use vipnas::arch::Weights;
use vipnas::bundle::{write_bundle, Manifest, SPATIAL_ONNX};
use vipnas::onnx::{to_bytes, write_network, WriteOptions};

use super::subnet_args::SubnetArgs;

/// Write a model bundle: manifest.json + spatial.onnx (BatchNorm folded).
/// Without a checkpoint the weights are random (seeded): for profiling and tests.
#[derive(Args, Debug)]
#[command(
    after_help = "Examples:\n  vipnas export --space mbv3 --sample random --seed 1 --out /tmp/b\n  vipnas export --subnet my_subnet.json --input 128x96 --out models/mine"
)]
pub struct ExportArgs {
    #[command(flatten)]
    pick: SubnetArgs,
    /// Output directory (created if missing).
    #[arg(long, value_name = "DIR")]
    out: PathBuf,
    /// Seed of the random weights.
    #[arg(long, default_value_t = 0)]
    weight_seed: u64,
    /// Bundle name (defaults to the output directory's name).
    #[arg(long)]
    name: Option<String>,
}

pub fn run(a: ExportArgs) -> Result<()> {
    let subnet = a.pick.resolve()?;
    let input = a.pick.input;
    let net = subnet.network(input)?;
    let weights = Weights::random(&net, a.weight_seed);
    let opts =
        WriteOptions { doc: subnet.to_string(), graph_name: format!("vipnas-{}", subnet.space), ..Default::default() };
    let model = write_network(&net, &weights, &opts)?;
    let name = a.name.clone().unwrap_or_else(|| {
        a.out.file_name().map(|s| s.to_string_lossy().into_owned()).unwrap_or_else(|| "bundle".into())
    });
    let cost = net.cost();
    let manifest = Manifest::for_subnet(&name, &subnet, input, cost, format!("random (seed {})", a.weight_seed));
    let path = write_bundle(&a.out, &manifest, &[(SPATIAL_ONNX, to_bytes(&model))])?;
    println!(
        "wrote {} ({} {}, {} nodes, flops={:.4}G params={:.4}M)",
        path.display(),
        subnet.space,
        input,
        model.graph.as_ref().map_or(0, |g| g.node.len()),
        cost.gflops(),
        cost.mparams()
    );
    Ok(())
}
