//! Frame sources behind one trait: `v4l:/dev/videoN[@WxH][:FOURCC]` (camera feature),
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

pub use convert::{jpeg_to_rgb, planar_to_rgb, rgb24_to_rgb, ycbcr_to_rgb, yuyv_to_rgb, Range};
pub use dir::DirSource;
pub use synthetic::SyntheticSource;
pub use y4m::{Chroma, Y4mHeader, Y4mSource};

use super::frame::Frame;

/// What one `read` produced.
#[derive(Debug, PartialEq, Eq)]
pub enum FrameRead {
    /// `frame` holds a new image.
    Frame,
    /// This frame could not be read (corrupt file, buffer flagged by the
    /// driver); it is counted as lost and the caller goes on with the next one.
    Lost(String),
    /// The device failed (unplugged, fatal streaming error, timeout): no frame
    /// was lost that the driver captured, the failure is counted in
    /// [`SourceStats::errors`] and the next read reconnects.
    Interrupted(String),
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
    /// Device failures (failed dequeues): events, not frames.
    pub errors: u64,
    /// Times the device was reopened after a failure.
    pub reconnects: u64,
}

impl SourceStats {
    /// Frames the source produced: every one was either delivered or lost.
    pub fn captured(&self) -> u64 {
        self.delivered + self.lost
    }
}

/// A stream of RGB frames.
pub trait FrameSource {
    /// Fills `frame` with the next image (reusing its buffer).
    fn read(&mut self, frame: &mut Frame) -> Result<FrameRead>;
    fn stats(&self) -> SourceStats;
    /// Nominal frame rate, when the source knows it.
    fn fps(&self) -> Option<f64> {
        None
    }
}

/// The camera pixel formats vipnas decodes, by V4L2 FourCC.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CaptureFormat {
    /// Packed YUV 4:2:2: most webcams' uncompressed format.
    Yuyv,
    /// Motion JPEG: webcams' format for large sizes at full rate.
    Mjpg,
    /// Packed RGB24.
    Rgb3,
}

impl CaptureFormat {
    /// In order of preference when none is asked for (no decode first).
    pub const ALL: [CaptureFormat; 3] = [CaptureFormat::Yuyv, CaptureFormat::Mjpg, CaptureFormat::Rgb3];

    pub fn fourcc(self) -> &'static [u8; 4] {
        match self {
            CaptureFormat::Yuyv => b"YUYV",
            CaptureFormat::Mjpg => b"MJPG",
            CaptureFormat::Rgb3 => b"RGB3",
        }
    }
}

impl fmt::Display for CaptureFormat {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(std::str::from_utf8(self.fourcc()).expect("ASCII"))
    }
}

impl FromStr for CaptureFormat {
    type Err = anyhow::Error;
    fn from_str(s: &str) -> Result<Self> {
        let up = s.to_ascii_uppercase();
        CaptureFormat::ALL.into_iter().find(|f| f.fourcc() == up.as_bytes()).ok_or_else(|| {
            anyhow::anyhow!("pixel format `{s}` is not one vipnas decodes (it decodes YUYV, MJPG, RGB3)")
        })
    }
}

/// A parsed `--source` argument.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum SourceSpec {
    /// A V4L2 camera; `format: None` takes the first of [`CaptureFormat::ALL`] it offers.
    V4l {
        device: PathBuf,
        size: Option<(u32, u32)>,
        format: Option<CaptureFormat>,
    },
    Dir(PathBuf),
    Y4m(PathBuf),
    Synthetic {
        frames: Option<u64>,
    },
}

impl FromStr for SourceSpec {
    type Err = anyhow::Error;
    fn from_str(s: &str) -> Result<Self> {
        let (kind, rest) = s.split_once(':').unwrap_or((s, ""));
        Ok(match kind {
            "v4l" => {
                let (rest, format) = match rest.split_once(':') {
                    // clap shows a parse error's own message, not its causes: keep it one message.
                    Some((r, f)) => (r, Some(f.parse().map_err(|e| anyhow::anyhow!("source `{s}`: {e}"))?)),
                    None => (rest, None),
                };
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
                SourceSpec::V4l { device: device.into(), size, format }
            }
            "dir" if !rest.is_empty() => SourceSpec::Dir(rest.into()),
            "y4m" if !rest.is_empty() => SourceSpec::Y4m(rest.into()),
            "synthetic" => SourceSpec::Synthetic {
                frames: if rest.is_empty() {
                    None
                } else {
                    let n: u64 =
                        rest.parse().map_err(|_| anyhow::anyhow!("source `{s}`: `{rest}` is not a frame count"))?;
                    if n == 0 {
                        bail!("source `{s}`: a synthetic clip needs at least 1 frame");
                    }
                    Some(n)
                },
            },
            _ => bail!("source `{s}`: expected v4l:/dev/videoN[@WxH][:FOURCC], dir:PATH, y4m:PATH or synthetic[:N]"),
        })
    }
}

impl fmt::Display for SourceSpec {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            SourceSpec::V4l { device, size, format } => {
                write!(f, "v4l:{}", device.display())?;
                if let Some((w, h)) = size {
                    write!(f, "@{w}x{h}")?;
                }
                if let Some(fourcc) = format {
                    write!(f, ":{fourcc}")?;
                }
                Ok(())
            }
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
        self.open_at(None, false)
    }

    /// Opens the source, asking a camera for `fps` frames per second (the
    /// frame budget's rate: frames the pipeline cannot take are dropped by
    /// the driver anyway); `None` asks for 30. With `wait`, a camera missing
    /// at start or gone for long is waited for instead of ending the run (a
    /// service's behaviour); files are never waited for.
    pub fn open_at(&self, fps: Option<f64>, wait: bool) -> Result<Box<dyn FrameSource>> {
        let _ = (fps, wait); // only cameras have a rate to ask for, and are waited for
        Ok(match self {
            SourceSpec::Dir(p) => Box::new(DirSource::open(p)?),
            SourceSpec::Y4m(p) => Box::new(Y4mSource::open(p)?),
            SourceSpec::Synthetic { frames } => Box::new(SyntheticSource::new(640, 480, *frames)),
            #[cfg(feature = "camera")]
            SourceSpec::V4l { device, size, format } => Box::new(v4l::open(device, *size, *format, fps, wait)?),
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
        for s in [
            "v4l:/dev/video2@1280x720",
            "v4l:/dev/video0",
            "v4l:/dev/video0:RGB3",
            "v4l:/dev/video1@320x240:MJPG",
            "dir:clips/a",
            "y4m:a.y4m",
            "synthetic:50",
            "synthetic",
        ] {
            assert_eq!(s.parse::<SourceSpec>().unwrap().to_string(), s);
        }
        assert_eq!("v4l:".parse::<SourceSpec>().unwrap().to_string(), "v4l:/dev/video0");
        let e = "v4l:/dev/video0@640by480".parse::<SourceSpec>().unwrap_err().to_string();
        assert!(e.contains("not WIDTHxHEIGHT"), "{e}");
        assert_eq!("v4l:/dev/video0:yuyv".parse::<SourceSpec>().unwrap().to_string(), "v4l:/dev/video0:YUYV");
        let e = "v4l:/dev/video0@640x480:H264".parse::<SourceSpec>().unwrap_err().to_string();
        assert_eq!(
            e,
            "source `v4l:/dev/video0@640x480:H264`: pixel format `H264` is not one vipnas decodes (it decodes YUYV, MJPG, RGB3)"
        );
        assert!("rtsp://cam".parse::<SourceSpec>().unwrap_err().to_string().contains("expected v4l:"));
        assert!("synthetic:x".parse::<SourceSpec>().is_err());
        assert!("synthetic:0".parse::<SourceSpec>().unwrap_err().to_string().contains("at least 1 frame"));
    }
}
