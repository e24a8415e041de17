//! Capture that survives its device: any camera behind [`Camera`] is reopened
//! with exponential back-off when a dequeue fails (unplug: ENODEV, fatal
//! streaming error: EIO, timeouts). Every frame that does not reach the
//! pipeline is counted as lost; nothing here panics. The V4L2 camera is one
//! implementation; the tests drive this logic with a scripted fake.

use std::io;
use std::time::Duration;

use anyhow::Result;

use super::convert::{jpeg_to_rgb, rgb24_to_rgb, yuyv_to_rgb, Range};
use super::{FrameRead, FrameSource, SourceStats};
use crate::runtime::frame::Frame;

/// The pixel layouts we negotiate.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PixelFormat {
    /// Packed 4:2:2, `stride` bytes per row.
    Yuyv {
        stride: usize,
    },
    /// Packed R, G, B bytes (V4L2 `RGB3`), `stride` bytes per row.
    Rgb24 {
        stride: usize,
    },
    Mjpeg,
}

/// One dequeued buffer.
pub struct RawFrame<'a> {
    pub data: &'a [u8],
    /// The driver's frame counter (gaps are dropped frames).
    pub sequence: u32,
    /// The driver flagged the buffer as corrupt (`V4L2_BUF_FLAG_ERROR`).
    pub error: bool,
}

/// A streaming capture device.
pub trait Camera {
    fn format(&self) -> (PixelFormat, u32, u32);
    fn fps(&self) -> Option<f64>;
    /// Blocks for the next buffer.
    fn next(&mut self) -> io::Result<RawFrame<'_>>;
}

/// Opens (and reopens) a camera.
pub trait CameraOpener {
    type Cam: Camera;
    fn open(&mut self) -> Result<Self::Cam>;
    fn describe(&self) -> String;
}

/// Exponential back-off between reconnection attempts.
#[derive(Clone, Debug)]
pub struct Backoff {
    pub initial: Duration,
    pub max: Duration,
    /// Give up (error) after this many failed opens in a row; `None`: never
    /// (a service waiting for its camera).
    pub max_attempts: Option<u32>,
    current: Duration,
    attempts: u32,
}

impl Backoff {
    pub fn new(initial: Duration, max: Duration, max_attempts: u32) -> Backoff {
        Backoff { initial, max, max_attempts: Some(max_attempts), current: initial, attempts: 0 }
    }

    /// For a service: 50 ms doubling to a minute, never giving up; a camera
    /// missing at start is waited for too.
    pub fn waiting() -> Backoff {
        Backoff { max_attempts: None, ..Backoff::new(Duration::from_millis(50), Duration::from_secs(60), 0) }
    }

    fn next_delay(&mut self) -> Option<Duration> {
        self.attempts = self.attempts.saturating_add(1);
        if self.max_attempts.is_some_and(|m| self.attempts > m) {
            return None;
        }
        let d = self.current;
        self.current = (self.current * 2).min(self.max);
        Some(d)
    }

    fn reset(&mut self) {
        self.current = self.initial;
        self.attempts = 0;
    }
}

impl Default for Backoff {
    /// 50 ms doubling to 2 s; gives up after 60 failed opens in a row (~2 min).
    fn default() -> Backoff {
        Backoff::new(Duration::from_millis(50), Duration::from_secs(2), 60)
    }
}

/// A frame source over a reopenable camera.
pub struct Reconnecting<O: CameraOpener> {
    opener: O,
    cam: Option<O::Cam>,
    backoff: Backoff,
    last_sequence: Option<u32>,
    stats: SourceStats,
    sleep: Box<dyn FnMut(Duration)>,
}

impl<O: CameraOpener> Reconnecting<O> {
    /// Opens the camera. A device missing at start is a fatal error, unless
    /// the back-off never gives up ([`Backoff::waiting`]): then the first read
    /// waits for it as for a lost one, and the wait is logged.
    pub fn open(mut opener: O, backoff: Backoff) -> Result<Self> {
        let cam = match opener.open() {
            Ok(cam) => Some(cam),
            Err(e) if backoff.max_attempts.is_none() => {
                log::warn!(
                    "{e:#}: waiting for {} (retried with back-off up to {} s)",
                    opener.describe(),
                    backoff.max.as_secs()
                );
                None
            }
            Err(e) => return Err(e),
        };
        Ok(Reconnecting {
            opener,
            cam,
            backoff,
            last_sequence: None,
            stats: SourceStats::default(),
            sleep: Box::new(std::thread::sleep),
        })
    }

    /// Replaces `thread::sleep` (tests record the back-off instead of waiting).
    pub fn with_sleep(mut self, sleep: impl FnMut(Duration) + 'static) -> Self {
        self.sleep = Box::new(sleep);
        self
    }

    /// Closes the camera (its handle too: some drivers, vivid's among them,
    /// come back only once every handle is closed).
    fn close(&mut self) {
        // (A camera's drop must not panic: the shipped binary aborts on a panic.
        // V4L2's leaks a stream it cannot stop rather than let v4l panic.)
        drop(self.cam.take());
    }

    /// Reopens after a failure, sleeping the back-off between attempts.
    fn reconnect(&mut self) -> Result<()> {
        let start = std::time::Instant::now();
        loop {
            let Some(delay) = self.backoff.next_delay() else {
                anyhow::bail!(
                    "{}: gave up after {} reconnection attempts",
                    self.opener.describe(),
                    self.backoff.attempts - 1
                );
            };
            (self.sleep)(delay);
            match self.opener.open() {
                Ok(cam) => {
                    log::warn!(
                        "{}: reconnected after {} attempt(s), {} ms",
                        self.opener.describe(),
                        self.backoff.attempts,
                        start.elapsed().as_millis()
                    );
                    self.cam = Some(cam);
                    self.stats.reconnects += 1;
                    self.last_sequence = None;
                    self.backoff.reset();
                    return Ok(());
                }
                Err(e) => log::warn!("{}: reopen failed: {e:#}", self.opener.describe()),
            }
        }
    }
}

impl<O: CameraOpener> FrameSource for Reconnecting<O> {
    fn read(&mut self, frame: &mut Frame) -> Result<FrameRead> {
        if self.cam.is_none() {
            self.reconnect()?;
        }
        let cam = self.cam.as_mut().expect("camera is open");
        let (format, w, h) = cam.format();
        match cam.next() {
            Ok(raw) => {
                if let Some(last) = self.last_sequence {
                    let gap = raw.sequence.wrapping_sub(last).wrapping_sub(1);
                    if gap < u32::MAX / 2 {
                        self.stats.lost += gap as u64;
                    }
                }
                self.last_sequence = Some(raw.sequence);
                if raw.error {
                    self.stats.lost += 1;
                    return Ok(FrameRead::Lost(format!(
                        "frame {}: the driver flagged the buffer as corrupt",
                        raw.sequence
                    )));
                }
                let converted = match format {
                    PixelFormat::Yuyv { stride } => yuyv_to_rgb(raw.data, w, h, stride, Range::Limited, frame),
                    PixelFormat::Rgb24 { stride } => rgb24_to_rgb(raw.data, w, h, stride, frame),
                    PixelFormat::Mjpeg => jpeg_to_rgb(raw.data, frame),
                };
                match converted {
                    Ok(()) => {
                        frame.sequence = raw.sequence as u64;
                        self.stats.delivered += 1;
                        Ok(FrameRead::Frame)
                    }
                    Err(e) => {
                        self.stats.lost += 1;
                        Ok(FrameRead::Lost(format!("frame {}: {e:#}", raw.sequence)))
                    }
                }
            }
            Err(e) => {
                self.stats.errors += 1;
                log::warn!("{}: capture failed ({e}); closing and reconnecting", self.opener.describe());
                self.close();
                Ok(FrameRead::Interrupted(format!("{}: {e}", self.opener.describe())))
            }
        }
    }

    fn stats(&self) -> SourceStats {
        self.stats
    }

    fn fps(&self) -> Option<f64> {
        self.cam.as_ref().and_then(|c| c.fps())
    }
}

#[cfg(test)]
mod tests {
    use std::cell::RefCell;
    use std::collections::VecDeque;
    use std::rc::Rc;

    use super::*;

    /// What the fake device does on each dequeue / open, in order.
    #[derive(Clone, Debug)]
    enum Step {
        Frame(u32),
        Flagged(u32),
        Fail(io::ErrorKind),
        Garbage(u32),
    }

    struct FakeCam {
        script: Rc<RefCell<VecDeque<Step>>>,
        buf: Vec<u8>,
    }

    impl Camera for FakeCam {
        fn format(&self) -> (PixelFormat, u32, u32) {
            (PixelFormat::Yuyv { stride: 8 }, 4, 2)
        }
        fn fps(&self) -> Option<f64> {
            Some(30.0)
        }
        fn next(&mut self) -> io::Result<RawFrame<'_>> {
            match self.script.borrow_mut().pop_front().unwrap_or(Step::Fail(io::ErrorKind::UnexpectedEof)) {
                Step::Frame(s) => Ok(RawFrame { data: &self.buf, sequence: s, error: false }),
                Step::Flagged(s) => Ok(RawFrame { data: &self.buf, sequence: s, error: true }),
                Step::Garbage(s) => Ok(RawFrame { data: &self.buf[..3], sequence: s, error: false }),
                Step::Fail(kind) => Err(io::Error::new(kind, "fake failure")),
            }
        }
    }

    struct FakeOpener {
        script: Rc<RefCell<VecDeque<Step>>>,
        /// Results of successive opens (true = success); exhausted = success.
        opens: VecDeque<bool>,
    }

    impl CameraOpener for FakeOpener {
        type Cam = FakeCam;
        fn open(&mut self) -> Result<FakeCam> {
            if self.opens.pop_front().unwrap_or(true) {
                Ok(FakeCam { script: self.script.clone(), buf: vec![128; 16] })
            } else {
                anyhow::bail!("ENOENT")
            }
        }
        fn describe(&self) -> String {
            "fake".into()
        }
    }

    fn run(steps: Vec<Step>, opens: Vec<bool>, reads: usize) -> (Vec<FrameRead>, SourceStats, Vec<Duration>) {
        run_with(Backoff::new(Duration::from_millis(50), Duration::from_millis(400), 5), steps, opens, reads)
    }

    fn run_with(
        backoff: Backoff,
        steps: Vec<Step>,
        opens: Vec<bool>,
        reads: usize,
    ) -> (Vec<FrameRead>, SourceStats, Vec<Duration>) {
        let script = Rc::new(RefCell::new(VecDeque::from(steps)));
        let opener = FakeOpener { script, opens: VecDeque::from(opens) };
        let slept = Rc::new(RefCell::new(Vec::new()));
        let s2 = slept.clone();
        let mut src = Reconnecting::open(opener, backoff).unwrap().with_sleep(move |d| s2.borrow_mut().push(d));
        let mut frame = Frame::default();
        let out = (0..reads).map(|_| src.read(&mut frame).unwrap_or(FrameRead::End)).collect();
        let stats = src.stats();
        let slept = slept.borrow().clone();
        (out, stats, slept)
    }

    #[test]
    fn unplug_reconnects_with_backoff_and_counts_losses() {
        use io::ErrorKind::*;
        let steps = vec![Step::Frame(0), Step::Frame(1), Step::Fail(NotConnected), Step::Frame(0), Step::Frame(1)];
        // First open succeeds; after the failure two reopens fail, the third works.
        let (out, stats, slept) = run(steps, vec![true, false, false, true], 5);
        assert_eq!(out[0], FrameRead::Frame);
        assert!(matches!(out[2], FrameRead::Interrupted(ref m) if m.contains("fake failure")));
        assert_eq!(&out[3..], &[FrameRead::Frame, FrameRead::Frame]);
        assert_eq!(stats, SourceStats { delivered: 4, lost: 0, errors: 1, reconnects: 1 });
        assert_eq!(slept, vec![Duration::from_millis(50), Duration::from_millis(100), Duration::from_millis(200)]);
    }

    #[test]
    fn flagged_buffers_sequence_gaps_and_garbage_are_lost_not_fatal() {
        let steps = vec![Step::Frame(0), Step::Flagged(1), Step::Frame(5), Step::Garbage(6), Step::Frame(7)];
        let (out, stats, _) = run(steps, vec![], 5);
        assert!(matches!(out[1], FrameRead::Lost(ref m) if m.contains("flagged")));
        assert!(matches!(out[3], FrameRead::Lost(ref m) if m.contains("YUYV buffer")));
        // Lost: the flagged one, sequences 2, 3, 4 (gap), the garbage one.
        assert_eq!(stats, SourceStats { delivered: 3, lost: 5, errors: 0, reconnects: 0 });
        assert_eq!(stats.captured(), 8, "sequences 0..=7");
    }

    #[test]
    fn gives_up_after_max_attempts() {
        let steps = vec![Step::Frame(0), Step::Fail(io::ErrorKind::Other)];
        let (out, _, slept) = run(steps, vec![true, false, false, false, false, false, false], 3);
        assert!(matches!(out[1], FrameRead::Interrupted(_)));
        assert_eq!(out[2], FrameRead::End, "the error surfaces (mapped to End by the test)");
        assert_eq!(slept.len(), 5);
        assert_eq!(*slept.last().unwrap(), Duration::from_millis(400));
    }

    #[test]
    fn a_missing_camera_is_fatal_unless_the_backoff_waits() {
        let opener = |opens: Vec<bool>| FakeOpener { script: Rc::default(), opens: VecDeque::from(opens) };
        let e = Reconnecting::open(opener(vec![false]), Backoff::default()).err().expect("missing at start");
        assert_eq!(e.to_string(), "ENOENT");
        // Waiting: 13 failed opens (the delay doubles from 50 ms up to 60 s), then the camera is there.
        let mut opens = vec![false; 13];
        opens.push(true);
        let (out, stats, slept) = run_with(Backoff::waiting(), vec![Step::Frame(0), Step::Frame(1)], opens, 2);
        assert_eq!(out, vec![FrameRead::Frame, FrameRead::Frame]);
        assert_eq!(slept.len(), 13);
        assert_eq!(slept[0], Duration::from_millis(50));
        assert_eq!(slept[11], Duration::from_secs(60), "50 ms * 2^11 is capped at a minute");
        assert_eq!(stats.delivered, 2);
    }
}
