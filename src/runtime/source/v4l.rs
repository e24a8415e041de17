//! `v4l:/dev/videoN[@WxH]`: V4L2 capture with mmap streaming. Negotiates YUYV
//! (preferred: no decode) or MJPEG at the requested size, and reconnects with
//! back-off through [`super::reconnect::Reconnecting`] when the device fails.

use std::io;
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{bail, Context, Result};
use v4l::buffer::{Flags, Type};
use v4l::io::traits::CaptureStream;
use v4l::prelude::{Device, MmapStream};
use v4l::video::Capture;
use v4l::{Format, FourCC};

use super::reconnect::{Backoff, Camera, CameraOpener, PixelFormat, RawFrame, Reconnecting};

/// Default capture size when none is requested.
pub const DEFAULT_SIZE: (u32, u32) = (640, 480);
/// A dequeue that waits longer than this counts as a failure (then reconnect).
pub const DEQUEUE_TIMEOUT: Duration = Duration::from_secs(2);

pub struct V4lOpener {
    path: PathBuf,
    size: (u32, u32),
}

pub struct V4lCamera {
    // The stream holds the device handle; it must drop first.
    stream: MmapStream<'static>,
    _device: Device,
    format: (PixelFormat, u32, u32),
    fps: Option<f64>,
}

/// Opens a V4L2 device as a reconnecting frame source.
pub fn open(path: &Path, size: Option<(u32, u32)>) -> Result<Reconnecting<V4lOpener>> {
    let opener = V4lOpener { path: path.to_path_buf(), size: size.unwrap_or(DEFAULT_SIZE) };
    Reconnecting::open(opener, Backoff::default())
}

impl CameraOpener for V4lOpener {
    type Cam = V4lCamera;

    fn open(&mut self) -> Result<V4lCamera> {
        let p = &self.path;
        if !p.exists() {
            bail!("{}: no such video device (is the camera plugged in? `ls /dev/video*`)", p.display());
        }
        let device = Device::with_path(p).with_context(|| format!("{}: cannot open", p.display()))?;
        let offered = device.enum_formats().with_context(|| format!("{}: not a V4L2 capture device", p.display()))?;
        let offered: Vec<FourCC> = offered.iter().map(|d| d.fourcc).collect();
        let (w, h) = self.size;
        let mut chosen = None;
        for fourcc in [FourCC::new(b"YUYV"), FourCC::new(b"MJPG")] {
            if !offered.contains(&fourcc) {
                continue;
            }
            let got = device.set_format(&Format::new(w, h, fourcc))?;
            if got.fourcc == fourcc {
                chosen = Some(got);
                break;
            }
        }
        let Some(fmt) = chosen else {
            let names: Vec<String> = offered.iter().map(|f| f.to_string()).collect();
            bail!("{}: offers none of YUYV, MJPG (it offers: {})", p.display(), names.join(", "));
        };
        if (fmt.width, fmt.height) != (w, h) {
            log::warn!("{}: asked for {w}x{h}, the driver gives {}x{}", p.display(), fmt.width, fmt.height);
        }
        let pixel = if fmt.fourcc == FourCC::new(b"YUYV") {
            PixelFormat::Yuyv { stride: fmt.stride as usize }
        } else {
            PixelFormat::Mjpeg
        };
        let fps = device
            .params()
            .ok()
            .filter(|p| p.interval.numerator > 0)
            .map(|p| p.interval.denominator as f64 / p.interval.numerator as f64);
        let mut stream = MmapStream::with_buffers(&device, Type::VideoCapture, 4)
            .with_context(|| format!("{}: cannot start mmap streaming", p.display()))?;
        stream.set_timeout(DEQUEUE_TIMEOUT);
        log::info!("{}: {} {}x{} at {:?} fps", p.display(), fmt.fourcc, fmt.width, fmt.height, fps);
        Ok(V4lCamera { stream, _device: device, format: (pixel, fmt.width, fmt.height), fps })
    }

    fn describe(&self) -> String {
        self.path.display().to_string()
    }
}

impl Camera for V4lCamera {
    fn format(&self) -> (PixelFormat, u32, u32) {
        self.format
    }

    fn fps(&self) -> Option<f64> {
        self.fps
    }

    fn next(&mut self) -> io::Result<RawFrame<'_>> {
        let (buf, meta) = CaptureStream::next(&mut self.stream)?;
        let used = (meta.bytesused as usize).min(buf.len());
        Ok(RawFrame { data: &buf[..used], sequence: meta.sequence, error: meta.flags.contains(Flags::ERROR) })
    }
}
