//! `vipnas space`: print a subnet (or a whole search space) of Tables 1–3.

use anyhow::{Context, Result};
use clap::Args;

use vipnas::arch::space::{BlockSpace, GroupRule, Range};
use vipnas::arch::SearchSpace;

use super::subnet_args::SubnetArgs;

/// Print a subnet as JSON; with --stats its FLOPs and parameters.
#[derive(Args, Debug)]
#[command(
    after_help = "Examples:\n  vipnas space --space mbv3 --sample max --stats\n  vipnas space --space resnet50 --sample random --seed 7\n  vipnas space --space resnet50 --published --stats\n  vipnas space --space hrnet-w32 --table"
)]
pub struct SpaceArgs {
    #[command(flatten)]
    pick: SubnetArgs,
    /// Also print MACs, then `flops=<G> params=<M>` (mmcv's FLOPs convention) last.
    #[arg(long)]
    stats: bool,
    /// Print the search space itself (ranges as printed, choices as enumerated).
    #[arg(long, conflicts_with_all = ["stats", "sample", "subnet", "published"])]
    table: bool,
}

pub fn run(a: SpaceArgs) -> Result<()> {
    if a.table {
        let space = a.pick.space.context("--table needs --space")?;
        return print_table(&SearchSpace::get(space));
    }
    let subnet = a.pick.resolve()?;
    outln!("{}", serde_json::to_string_pretty(&subnet)?);
    if a.stats {
        let net = subnet.network(a.pick.input())?;
        let cost = net.cost();
        let out = net.output_shape();
        outln!("input={} heatmaps={}x{}x{} macs={:.4}G", a.pick.input(), out.c, out.h, out.w, cost.macs as f64 / 1e9);
        outln!("flops={:.4} params={:.4}", cost.gflops(), cost.mparams());
    }
    Ok(())
}

fn range(r: &Range) -> String {
    if r.min == r.max {
        format!("[{0}, {0}]", r.min)
    } else {
        format!("[{}, {}] step {}", r.min, r.max, r.step)
    }
}

fn row(stage: &str, b: &BlockSpace, depth: &str) -> Result<()> {
    let rule = match b.group.rule {
        GroupRule::PowerOfTwoPerGroup { max_per_group } => {
            format!("C/g in 1..{max_per_group} pow2")
        }
        GroupRule::Step(1) => "fixed".into(),
        GroupRule::Step(s) => format!("step {s}"),
        GroupRule::PowerOfTwo => "pow2".into(),
    };
    let attention = if b.attention_searchable { format!("{:?} [0, 1]", b.attention) } else { "-".into() };
    outln!(
        "{stage:<9} {:<12} {depth:<16} {:<20} {:<16} [{}, {}] {rule:<18} {attention:<10} {:<16} 1/{}{}",
        format!("{:?}", b.operator),
        range(&b.width),
        range(&b.kernel),
        b.group.min,
        b.group.max,
        range(&b.expansion),
        b.printed_resolution,
        if b.printed_resolution != b.resolution { format!(" (built 1/{})", b.resolution) } else { String::new() },
    );
    Ok(())
}

fn print_table(space: &SearchSpace) -> Result<()> {
    outln!("search space {}", space.name);
    outln!(
        "{:<9} {:<12} {:<16} {:<20} {:<16} {:<28} {:<10} {:<16} resolution",
        "stage",
        "operator",
        "depth",
        "width",
        "kernel",
        "group",
        "attention",
        "expansion"
    );
    row("stem", &space.stem, "-")?;
    for s in &space.stages {
        for (i, b) in s.branches.iter().enumerate() {
            let stage = if s.branches.len() > 1 { format!("{}.b{}", s.index, i + 1) } else { s.index.to_string() };
            row(&stage, b, &range(&s.depth))?;
        }
    }
    if let Some(head) = &space.head {
        row("head", head, "3 layers")?;
    }
    Ok(())
}
