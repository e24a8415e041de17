//! How commands pick a subnet: from a JSON file, mmpose's published one, or
//! sampled from a space.

use std::fs;
use std::path::PathBuf;

use anyhow::{bail, Context, Result};
use clap::Args;

use vipnas::arch::published::published;
use vipnas::arch::{InputSize, Sample, SearchSpace, SpaceName, Subnet};

#[derive(Args, Debug)]
pub struct SubnetArgs {
    /// Search space: mbv3, resnet50 or hrnet-w32.
    #[arg(long)]
    pub space: Option<SpaceName>,
    /// Read the subnet from a JSON file (as printed by `vipnas space`).
    #[arg(long, value_name = "FILE", conflicts_with_all = ["sample", "published"])]
    pub subnet: Option<PathBuf>,
    /// Sample the subnet from the space.
    #[arg(long, value_enum)]
    pub sample: Option<Sample>,
    /// Seed for `--sample random`.
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
    /// For `--sample scaled`: percent of the way from each dimension's smallest to its largest choice.
    #[arg(long, default_value_t = 50, value_parser = clap::value_parser!(u8).range(0..=100))]
    pub scale: u8,
    /// mmpose's published ViPNAS subnet of the space (mbv3, resnet50).
    #[arg(long, conflicts_with = "sample")]
    pub published: bool,
    /// Network input HEIGHTxWIDTH (multiples of 32) [default: 256x192; a checkpoint's own].
    #[arg(long)]
    pub input: Option<InputSize>,
}

impl SubnetArgs {
    /// `--input`, or mmpose's 256×192.
    pub fn input(&self) -> InputSize {
        self.input.unwrap_or(InputSize::DEFAULT)
    }

    /// The chosen subnet; sampling defaults to `max`. Off-table subnets are
    /// accepted only when published (mmpose's MBV3 head is outside Table 1).
    pub fn resolve(&self) -> Result<Subnet> {
        if let Some(path) = &self.subnet {
            let text =
                fs::read_to_string(path).with_context(|| format!("cannot read subnet file {}", path.display()))?;
            let subnet = Subnet::from_json(&text, &path.display().to_string())?;
            if let Some(space) = self.space {
                if space != subnet.space {
                    bail!("{}: space is `{}` but --space says `{space}`", path.display(), subnet.space);
                }
            }
            return Ok(subnet);
        }
        let Some(space) = self.space else {
            bail!("say which subnet: --space S with --sample/--published, or --subnet FILE");
        };
        if self.published {
            return published(space)
                .map(|p| p.subnet)
                .with_context(|| format!("mmpose publishes no ViPNAS subnet for `{space}` (only mbv3 and resnet50)"));
        }
        let how = self.sample.unwrap_or(Sample::Max).with(self.seed, self.scale);
        Ok(Subnet::sample(&SearchSpace::get(space), how))
    }
}
