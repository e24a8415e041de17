//! `v4l:/dev/videoN[@WxH][:FOURCC]`: V4L2 capture with mmap streaming.
//! Negotiates the requested pixel format, or the first of YUYV (no decode),
//! MJPEG, RGB24 the device offers, at the requested size and frame rate
//! (default [`DEFAULT_FPS`]), and reconnects with back-off through
//! [`super::reconnect::Reconnecting`] when the device fails.

pub mod controls;

use std::io;
use std::mem::ManuallyDrop;
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{bail, Context, Result};
use v4l::buffer::{Flags, Type};
use v4l::io::traits::{CaptureStream, Stream};
use v4l::prelude::{Device, MmapStream};
use v4l::video::capture::Parameters;
use v4l::video::Capture;
use v4l::{Format, FourCC, Fraction};

use super::reconnect::{Backoff, Camera, CameraOpener, PixelFormat, RawFrame, Reconnecting};
use super::CaptureFormat;

/// Default capture size when none is requested.
pub const DEFAULT_SIZE: (u32, u32) = (640, 480);
/// A dequeue that waits longer than this, or 10 frame intervals if that is
/// longer, counts as a failure (then reconnect).
pub const DEQUEUE_TIMEOUT: Duration = Duration::from_secs(2);

/// How long a dequeue may wait at `fps` before the device counts as failed:
/// a slow camera (or one dropping a few frames in a row) is not a dead one.
pub fn dequeue_timeout(fps: Option<f64>) -> Duration {
    let intervals = fps.filter(|f| *f > 0.0).map(|f| Duration::from_secs_f64(10.0 / f)).unwrap_or_default();
    DEQUEUE_TIMEOUT.max(intervals)
}
/// The frame rate asked of the driver when none is given (it may give less).
pub const DEFAULT_FPS: f64 = 30.0;

pub struct V4lOpener {
    path: PathBuf,
    size: (u32, u32),
    format: Option<CaptureFormat>,
    fps: f64,
}

pub struct V4lCamera {
    // The stream holds the device handle; `Drop` below drops it first.
    stream: ManuallyDrop<MmapStream<'static>>,
    _device: Device,
    format: (PixelFormat, u32, u32),
    fps: Option<f64>,
}

/// Opens a V4L2 device as a reconnecting frame source; with `wait`, a device
/// missing at start or gone for long is waited for ([`Backoff::waiting`]).
pub fn open(
    path: &Path,
    size: Option<(u32, u32)>,
    format: Option<CaptureFormat>,
    fps: Option<f64>,
    wait: bool,
) -> Result<Reconnecting<V4lOpener>> {
    let fps = fps.unwrap_or(DEFAULT_FPS);
    let opener = V4lOpener { path: path.to_path_buf(), size: size.unwrap_or(DEFAULT_SIZE), format, fps };
    Reconnecting::open(opener, if wait { Backoff::waiting() } else { Backoff::default() })
}

/// The FourCCs a device offers for capture, e.g. `["YUYV", "RGB3"]`.
pub fn offered_formats(device: &Device) -> io::Result<Vec<FourCC>> {
    Ok(device.enum_formats()?.iter().map(|d| d.fourcc).collect())
}

/// A FourCC as text: its characters when printable (`Y10`), else its hex value
/// (big-endian variants set the top bit).
pub fn fourcc_name(f: FourCC) -> String {
    if f.repr.iter().all(|b| b.is_ascii_graphic() || *b == b' ') {
        String::from_utf8_lossy(&f.repr).trim_end().to_string()
    } else {
        format!("0x{:08x}", u32::from_le_bytes(f.repr))
    }
}

fn names(fourccs: &[FourCC]) -> String {
    fourccs.iter().map(|&f| fourcc_name(f)).collect::<Vec<_>>().join(", ")
}

impl CameraOpener for V4lOpener {
    type Cam = V4lCamera;

    fn open(&mut self) -> Result<V4lCamera> {
        let p = &self.path;
        if !p.exists() {
            bail!("{}: no such video device (is the camera plugged in? `ls /dev/video*`)", p.display());
        }
        let device = Device::with_path(p).with_context(|| format!("{}: cannot open", p.display()))?;
        let offered =
            offered_formats(&device).with_context(|| format!("{}: not a V4L2 capture device", p.display()))?;
        let candidates: Vec<CaptureFormat> = match self.format {
            Some(want) if !offered.contains(&FourCC::new(want.fourcc())) => {
                bail!("{}: does not offer {want} (it offers: {})", p.display(), names(&offered))
            }
            Some(want) => vec![want],
            None => CaptureFormat::ALL.into_iter().filter(|f| offered.contains(&FourCC::new(f.fourcc()))).collect(),
        };
        let (w, h) = self.size;
        let mut chosen = None;
        for want in candidates {
            let fourcc = FourCC::new(want.fourcc());
            let got = device
                .set_format(&Format::new(w, h, fourcc))
                .with_context(|| format!("{}: VIDIOC_S_FMT {want} {w}x{h} failed", p.display()))?;
            if got.fourcc == fourcc {
                chosen = Some((want, got));
                break;
            }
        }
        let Some((kind, fmt)) = chosen else {
            bail!("{}: offers none of YUYV, MJPG, RGB3 (it offers: {})", p.display(), names(&offered));
        };
        if (fmt.width, fmt.height) != (w, h) {
            log::warn!("{}: asked for {w}x{h}, the driver gives {}x{}", p.display(), fmt.width, fmt.height);
        }
        let pixel = match kind {
            CaptureFormat::Yuyv => PixelFormat::Yuyv { stride: fmt.stride as usize },
            CaptureFormat::Rgb3 => PixelFormat::Rgb24 { stride: fmt.stride as usize },
            CaptureFormat::Mjpg => PixelFormat::Mjpeg,
        };
        // V4L2 asks for a frame interval: 1/fps as a fraction in milliseconds.
        let interval = Parameters::new(Fraction::new(1000, (self.fps * 1000.0).round().max(1.0) as u32));
        if let Err(e) = device.set_params(&interval) {
            log::info!("{}: cannot set the frame rate ({e}); keeping the driver's", p.display());
        }
        let fps = device
            .params()
            .ok()
            .filter(|p| p.interval.numerator > 0)
            .map(|p| p.interval.denominator as f64 / p.interval.numerator as f64);
        let mut stream = MmapStream::with_buffers(&device, Type::VideoCapture, 4)
            .with_context(|| format!("{}: cannot start mmap streaming", p.display()))?;
        stream.set_timeout(dequeue_timeout(fps));
        log::info!("{}: {} {}x{} at {:?} fps", p.display(), fmt.fourcc, fmt.width, fmt.height, fps);
        Ok(V4lCamera {
            stream: ManuallyDrop::new(stream),
            _device: device,
            format: (pixel, fmt.width, fmt.height),
            fps,
        })
    }

    fn describe(&self) -> String {
        self.path.display().to_string()
    }
}

/// Linux's "no such device": the device is gone (unplugged, driver unbound).
const ENODEV: i32 = 19;

impl Drop for V4lCamera {
    /// v4l's stream panics in its own drop when STREAMOFF fails with anything
    /// but ENODEV, and the shipped binary aborts on a panic (`panic = "abort"`):
    /// the stream is stopped here first, and if that fails so, it is leaked
    /// (its buffers stay mapped, its handle open) rather than dropped. A
    /// reconnect then opens the device anew.
    fn drop(&mut self) {
        match self.stream.stop() {
            Err(e) if e.raw_os_error() != Some(ENODEV) => {
                log::error!("V4L2: stopping the broken stream failed ({e}); leaving its buffers mapped")
            }
            // SAFETY: dropped once, here, and never used again.
            _ => unsafe { ManuallyDrop::drop(&mut self.stream) },
        }
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
        let (buf, meta) = CaptureStream::next(&mut *self.stream)?;
        let used = (meta.bytesused as usize).min(buf.len());
        Ok(RawFrame { data: &buf[..used], sequence: meta.sequence, error: meta.flags.contains(Flags::ERROR) })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn slow_cameras_get_longer_dequeue_timeouts() {
        assert_eq!(dequeue_timeout(Some(30.0)), DEQUEUE_TIMEOUT);
        assert_eq!(dequeue_timeout(None), DEQUEUE_TIMEOUT);
        assert_eq!(dequeue_timeout(Some(2.0)), Duration::from_secs(5));
    }

    #[test]
    fn fourcc_names_are_printable() {
        assert_eq!(fourcc_name(FourCC::new(b"YUYV")), "YUYV");
        assert_eq!(fourcc_name(FourCC::new(b"Y10 ")), "Y10");
        // Big-endian variants set the top bit: shown as hex, not as blanks.
        assert_eq!(fourcc_name(FourCC::new(&[b'R', b'G', b'B', b'R' | 0x80])), "0xd2424752");
    }
}
