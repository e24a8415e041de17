//! `vipnas camera`: what a V4L2 device offers (formats, controls), setting
//! controls by name, and a snapshot through the same capture path as `run`.

use std::path::PathBuf;

use anyhow::{bail, Context, Result};
use clap::Args;
use v4l::prelude::Device;
use v4l::video::Capture;

use vipnas::runtime::frame::Frame;
use vipnas::runtime::render::save_png;
use vipnas::runtime::source::v4l::controls::{self, Assignment};
use vipnas::runtime::source::v4l::fourcc_name;
use vipnas::runtime::source::{CaptureFormat, FrameRead, SourceSpec};

/// Inspect a camera: its formats and controls; set controls; save a snapshot.
#[derive(Args, Debug)]
#[command(
    after_help = "Examples:\n  vipnas camera                                  # /dev/video0: formats and controls\n  vipnas camera /dev/video2 --set Brightness=140 --set \"Auto Exposure=1\"\n  vipnas camera /dev/video0@640x480:RGB3 --snapshot frame.png"
)]
pub struct CameraArgs {
    /// The device, as in `--source v4l:…`: /dev/videoN[@WxH][:YUYV|MJPG|RGB3].
    #[arg(default_value = "/dev/video0")]
    device: String,
    /// Set a control: NAME=VALUE, or NAME alone for a button (repeatable).
    #[arg(long = "set", value_name = "NAME=VALUE")]
    set: Vec<Assignment>,
    /// Capture through the runtime's path (format negotiation, conversion) and
    /// write one frame as PNG.
    #[arg(long, value_name = "FILE.png")]
    snapshot: Option<PathBuf>,
    /// Frames to skip before the snapshot (auto exposure settles).
    #[arg(long, default_value_t = 3)]
    skip: u32,
}

pub fn run(a: CameraArgs) -> Result<()> {
    let spec_text = if a.device.starts_with("v4l:") { a.device.clone() } else { format!("v4l:{}", a.device) };
    let spec: SourceSpec = spec_text.parse()?;
    let SourceSpec::V4l { device: path, .. } = &spec else { bail!("`{}` is not a V4L2 device", a.device) };
    if !a.set.is_empty() {
        let dev = Device::with_path(path).with_context(|| format!("{}: cannot open", path.display()))?;
        let list = controls::list(&dev).with_context(|| format!("{}: cannot list controls", path.display()))?;
        for s in &a.set {
            controls::set(&dev, &list, s).with_context(|| path.display().to_string())?;
            log::info!(
                "{}: set control {}{}",
                path.display(),
                s.name,
                s.value.map(|v| format!("={v}")).unwrap_or_default()
            );
            outln!("set {}{}", s.name, s.value.map(|v| format!("={v}")).unwrap_or_default());
        }
        return Ok(());
    }
    if let Some(out) = &a.snapshot {
        return snapshot(&spec, a.skip, out);
    }
    describe(path)
}

fn describe(path: &std::path::Path) -> Result<()> {
    let dev = Device::with_path(path).with_context(|| format!("{}: cannot open", path.display()))?;
    let caps = dev.query_caps().with_context(|| format!("{}: not a V4L2 device", path.display()))?;
    outln!("{}: {} ({}, {})", path.display(), caps.card, caps.driver, caps.bus);
    outln!("formats:");
    for f in dev.enum_formats().with_context(|| format!("{}: cannot list formats", path.display()))? {
        let decodes = CaptureFormat::ALL.iter().any(|c| c.fourcc() == &f.fourcc.repr);
        let name = fourcc_name(f.fourcc);
        outln!("  {name:<10} {:<32}{}", f.description, if decodes { " (vipnas decodes)" } else { "" });
    }
    outln!("controls:");
    for c in controls::list(&dev).with_context(|| format!("{}: cannot list controls", path.display()))? {
        outln!("  {c}");
    }
    Ok(())
}

fn snapshot(spec: &SourceSpec, skip: u32, out: &std::path::Path) -> Result<()> {
    let mut src = spec.open()?;
    let mut frame = Frame::default();
    let mut got = 0;
    while got <= skip {
        match src.read(&mut frame)? {
            FrameRead::Frame => got += 1,
            FrameRead::Lost(why) | FrameRead::Interrupted(why) => log::warn!("{why}"),
            FrameRead::End => bail!("{spec}: the stream ended before a frame arrived"),
        }
    }
    save_png(&frame, out)?;
    let s = src.stats();
    outln!(
        "{}: {}x{} frame seq {} written to {} (captured={} lost={} errors={})",
        spec,
        frame.width,
        frame.height,
        frame.sequence,
        out.display(),
        s.captured(),
        s.lost,
        s.errors
    );
    Ok(())
}
