//! Frame sources behind one trait: `v4l:/dev/videoN[@WxH]` (camera feature),
//! `dir:PATH` (JPEG/PNG, sorted by name), `y4m:PATH` (raw video) and
//! `synthetic[:N]` (a drawn moving figure, for tests and demos).

mod convert;
pub mod dir;
pub mod reconnect;
mod synthetic;
#[cfg(feature = "camera")]
pub mod v4l;
mod y4m;

use std::fmt;
use std::path::PathBuf;
use std::str::FromStr;

use anyhow::{bail, Result};

pub use convert::{jpeg_to_rgb, planar_to_rgb, ycbcr_to_rgb, yuyv_to_rgb, Range};
pub use dir::DirSource;
pub use synthetic::SyntheticSource;
pub use y4m::{Chroma, Y4mHeader, Y4mSource};

use super::frame::Frame;

/// What one `read` produced.
#[derive(Debug, PartialEq, Eq)]
pub enum Read {
    /// `frame` holds a new image.
    Frame,
    /// This frame could not be read (corrupt file, camera error); it is counted
    /// as lost and the caller goes on with the next one.
    Lost(String),
    /// No more frames.
    End,
}

/// Counters every source keeps.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct SourceStats {
    /// Frames delivered.
    pub delivered: u64,
    /// Frames counted as lost (unreadable, flagged by the driver, skipped sequence numbers).
    pub lost: u64,
    /// Times the device was reopened after a failure.
    pub reconnects: u64,
}

/// A stream of RGB frames.
pub trait FrameSource {
    /// Fills `frame` with the next image (reusing its buffer).
    fn read(&mut self, frame: &mut Frame) -> Result<Read>;
    fn stats(&self) -> SourceStats;
    /// Nominal frame rate, when the source knows it.
    fn fps(&self) -> Option<f64> {
        None
    }
}

/// A parsed `--source` argument.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum SourceSpec {
    V4l { device: PathBuf, size: Option<(u32, u32)> },
    Dir(PathBuf),
    Y4m(PathBuf),
    Synthetic { frames: Option<u64> },
}

impl FromStr for SourceSpec {
    type Err = anyhow::Error;
    fn from_str(s: &str) -> Result<Self> {
        let (kind, rest) = s.split_once(':').unwrap_or((s, ""));
        Ok(match kind {
            "v4l" => {
                let (dev, size) = match rest.rsplit_once('@') {
                    Some((d, wh)) => {
                        let (w, h) = wh
                            .split_once('x')
                            .and_then(|(w, h)| Some((w.parse().ok()?, h.parse().ok()?)))
                            .filter(|&(w, h): &(u32, u32)| w > 0 && h > 0)
                            .ok_or_else(|| anyhow::anyhow!("source `{s}`: `{wh}` is not WIDTHxHEIGHT"))?;
                        (d, Some((w, h)))
                    }
                    None => (rest, None),
                };
                let device = if dev.is_empty() { "/dev/video0" } else { dev };
                SourceSpec::V4l { device: device.into(), size }
            }
            "dir" if !rest.is_empty() => SourceSpec::Dir(rest.into()),
            "y4m" if !rest.is_empty() => SourceSpec::Y4m(rest.into()),
            "synthetic" => SourceSpec::Synthetic {
                frames: if rest.is_empty() {
                    None
                } else {
                    Some(rest.parse().map_err(|_| anyhow::anyhow!("source `{s}`: `{rest}` is not a frame count"))?)
                },
            },
            _ => bail!("source `{s}`: expected v4l:/dev/videoN[@WxH], dir:PATH, y4m:PATH or synthetic[:N]"),
        })
    }
}

impl fmt::Display for SourceSpec {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            SourceSpec::V4l { device, size: Some((w, h)) } => write!(f, "v4l:{}@{w}x{h}", device.display()),
            SourceSpec::V4l { device, size: None } => write!(f, "v4l:{}", device.display()),
            SourceSpec::Dir(p) => write!(f, "dir:{}", p.display()),
            SourceSpec::Y4m(p) => write!(f, "y4m:{}", p.display()),
            SourceSpec::Synthetic { frames: Some(n) } => write!(f, "synthetic:{n}"),
            SourceSpec::Synthetic { frames: None } => write!(f, "synthetic"),
        }
    }
}

impl SourceSpec {
    /// Opens the source; errors name the file or device.
    pub fn open(&self) -> Result<Box<dyn FrameSource>> {
        Ok(match self {
            SourceSpec::Dir(p) => Box::new(DirSource::open(p)?),
            SourceSpec::Y4m(p) => Box::new(Y4mSource::open(p)?),
            SourceSpec::Synthetic { frames } => Box::new(SyntheticSource::new(640, 480, *frames)),
            #[cfg(feature = "camera")]
            SourceSpec::V4l { device, size } => Box::new(v4l::open(device, *size)?),
            #[cfg(not(feature = "camera"))]
            SourceSpec::V4l { .. } => {
                bail!("this vipnas was built without the `camera` feature: no V4L2 capture")
            }
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn source_specs_parse_and_print() {
        for s in
            ["v4l:/dev/video2@1280x720", "v4l:/dev/video0", "dir:clips/a", "y4m:a.y4m", "synthetic:50", "synthetic"]
        {
            assert_eq!(s.parse::<SourceSpec>().unwrap().to_string(), s);
        }
        assert_eq!("v4l:".parse::<SourceSpec>().unwrap().to_string(), "v4l:/dev/video0");
        let e = "v4l:/dev/video0@640by480".parse::<SourceSpec>().unwrap_err().to_string();
        assert!(e.contains("not WIDTHxHEIGHT"), "{e}");
        assert!("rtsp://cam".parse::<SourceSpec>().unwrap_err().to_string().contains("expected v4l:"));
        assert!("synthetic:x".parse::<SourceSpec>().is_err());
    }
}
