//! Tracking a single person: the next frame's ROI comes from this frame's
//! confident keypoints (MoveNet / BlazePose-style crop tracking); when the pose
//! gets unreliable the tracker re-initialises on the whole frame. A One-Euro
//! filter (Casiez et al. 2012) smooths keypoints for display.

use super::pose::Pose;
use super::preprocess::Roi;
use crate::bundle::OutputKind;
use crate::coco::KEYPOINTS;

/// One-Euro filter parameters: cutoff in Hz, `beta` in 1/pixel.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct OneEuroConfig {
    pub min_cutoff: f32,
    pub beta: f32,
    pub d_cutoff: f32,
}

impl Default for OneEuroConfig {
    /// Steady at rest (1 Hz), follows fast limbs (beta 0.05 px⁻¹).
    fn default() -> Self {
        OneEuroConfig { min_cutoff: 1.0, beta: 0.05, d_cutoff: 1.0 }
    }
}

/// A One-Euro filter for one scalar.
#[derive(Clone, Copy, Debug, Default)]
pub struct OneEuro {
    prev: Option<(f32, f32)>, // (value, derivative), filtered
}

fn alpha(cutoff: f32, dt: f32) -> f32 {
    let tau = 1.0 / (2.0 * std::f32::consts::PI * cutoff);
    1.0 / (1.0 + tau / dt)
}

impl OneEuro {
    pub fn filter(&mut self, x: f32, dt: f32, cfg: &OneEuroConfig) -> f32 {
        let Some((px, pdx)) = self.prev else {
            self.prev = Some((x, 0.0));
            return x;
        };
        let dt = dt.max(1e-4);
        let dx = (x - px) / dt;
        let dx_hat = pdx + alpha(cfg.d_cutoff, dt) * (dx - pdx);
        let cutoff = cfg.min_cutoff + cfg.beta * dx_hat.abs();
        let x_hat = px + alpha(cutoff, dt) * (x - px);
        self.prev = Some((x_hat, dx_hat));
        x_hat
    }

    pub fn reset(&mut self) {
        self.prev = None;
    }
}

/// Tracker settings.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct TrackConfig {
    /// The next ROI is the confident keypoints' box times this (keypoints
    /// miss the head top and the feet, so more than mmpose's 1.25 for GT boxes).
    pub padding: f32,
    /// Keypoints at or above this score define the next ROI. Both thresholds
    /// are on MoveNet's score scale; [`TrackConfig::for_output`] gives a
    /// heatmap net's.
    pub min_keypoint_score: f32,
    /// Fewer confident keypoints than this, or a mean score below
    /// `reinit_below`, and the next frame starts again from the whole frame.
    pub min_keypoints: usize,
    pub reinit_below: f32,
    /// Smooth output keypoints (display); `None` for evaluation.
    pub smoothing: Option<OneEuroConfig>,
    /// On loss keep the last ROI instead of restarting from the whole frame
    /// (several trackers following different people must not all jump to one).
    pub hold_on_loss: bool,
}

impl Default for TrackConfig {
    fn default() -> Self {
        TrackConfig {
            padding: 1.4,
            min_keypoint_score: 0.3,
            min_keypoints: 4,
            reinit_below: 0.2,
            smoothing: None,
            hold_on_loss: false,
        }
    }
}

impl TrackConfig {
    /// The score thresholds for a model's kind of output. The defaults are on
    /// MoveNet's scale (keypoint outputs: the net's own confidence). A heatmap
    /// net's score is the peak of its heatmap — the height of a regressed unit
    /// Gaussian over a background near 0 — which stays well below 1 wherever
    /// the net is unsure of the exact spot, so its thresholds are at most 0.2
    /// (keypoints) and 0.1 (mean), the best of five pairs on a training view.
    /// On the held-out view a trained MBV3 net that scores OKS AP 0.23 with these
    /// scored 0.011 with MoveNet's, losing the person every few frames; MoveNet
    /// Lightning scores 0.878 with either.
    pub fn for_output(self, kind: OutputKind) -> TrackConfig {
        match kind {
            OutputKind::Keypoints => self,
            OutputKind::Heatmap => TrackConfig {
                min_keypoint_score: self.min_keypoint_score.min(0.2),
                reinit_below: self.reinit_below.min(0.1),
                ..self
            },
        }
    }
}

/// Follows one person from frame to frame.
pub struct Tracker {
    pub cfg: TrackConfig,
    roi: Option<Roi>,
    /// The frame size `roi` was found in: a box from another size (a camera
    /// reconnecting at another resolution, a directory of mixed sizes) means
    /// nothing in this frame.
    frame: Option<(u32, u32)>,
    filters: [[OneEuro; 2]; KEYPOINTS],
    /// Times the tracker lost the person and restarted from the whole frame.
    pub reinits: u64,
}

impl Tracker {
    pub fn new(cfg: TrackConfig) -> Tracker {
        Tracker { cfg, roi: None, frame: None, filters: [[OneEuro::default(); 2]; KEYPOINTS], reinits: 0 }
    }

    /// Starts (or restarts) tracking from a given box, e.g. a person picked by hand.
    pub fn start_at(&mut self, roi: Roi) {
        self.roi = Some(roi);
        self.filters.iter_mut().flatten().for_each(OneEuro::reset);
    }

    /// The ROI for the next frame and whether it is a fresh start (whole frame).
    /// A change of frame size restarts tracking (counted in `reinits`).
    pub fn next_roi(&mut self, width: u32, height: u32, aspect: f32) -> (Roi, bool) {
        if self.frame.is_some_and(|f| f != (width, height)) && self.roi.take().is_some() {
            log::info!("frame size changed to {width}x{height}: tracking restarts from the whole frame");
            self.reinits += 1;
            self.filters.iter_mut().flatten().for_each(OneEuro::reset);
        }
        self.frame = Some((width, height));
        match self.roi {
            Some(r) => (r, false),
            None => (Roi::full_frame(width, height, aspect), true),
        }
    }

    /// Takes the pose estimated in this frame: decides the next ROI, then
    /// smooths the keypoints in place if smoothing is on (`dt` in seconds).
    /// Returns whether the person was lost in this frame.
    pub fn update(&mut self, pose: &mut Pose, aspect: f32, dt: f32) -> bool {
        let c = &self.cfg;
        let seen = || pose.keypoints.iter().filter(|k| k[2] >= c.min_keypoint_score);
        let lost = seen().count() < c.min_keypoints || pose.mean_score() < c.reinit_below;
        if lost {
            if self.roi.is_some() {
                self.reinits += 1;
            }
            if !c.hold_on_loss {
                self.roi = None;
            }
            self.filters.iter_mut().flatten().for_each(OneEuro::reset);
        } else if let Some(roi) = Roi::around(seen(), aspect, c.padding) {
            self.roi = Some(match self.frame {
                Some((w, h)) => roi.within(w, h, aspect),
                None => roi,
            });
        }
        if let (Some(cfg), false) = (c.smoothing, lost) {
            for (k, f) in pose.keypoints.iter_mut().zip(self.filters.iter_mut()) {
                k[0] = f[0].filter(k[0], dt, &cfg);
                k[1] = f[1].filter(k[1], dt, &cfg);
            }
        }
        lost
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pose_at(x: f32, y: f32, score: f32) -> Pose {
        let mut p = Pose::default();
        for (i, k) in p.keypoints.iter_mut().enumerate() {
            *k = [x + (i % 3) as f32 * 10.0, y + i as f32 * 10.0, score];
        }
        p
    }

    #[test]
    fn roi_follows_keypoints_and_reinitialises_when_lost() {
        let mut t = Tracker::new(TrackConfig::default());
        let (roi, fresh) = t.next_roi(640, 480, 0.75);
        assert!(fresh && roi.h >= 480.0 && roi.w >= 640.0);
        let mut p = pose_at(100.0, 50.0, 0.9);
        t.update(&mut p, 0.75, 1.0 / 30.0);
        let (roi, fresh) = t.next_roi(640, 480, 0.75);
        assert!(!fresh);
        assert_eq!((roi.cx, roi.cy), (110.0, 130.0));
        assert!((roi.h - 160.0 * 1.4).abs() < 1e-3 && (roi.w / roi.h - 0.75).abs() < 1e-4);
        let mut weak = pose_at(100.0, 50.0, 0.1);
        t.update(&mut weak, 0.75, 1.0 / 30.0);
        assert!(t.next_roi(640, 480, 0.75).1);
        assert_eq!(t.reinits, 1);
    }

    #[test]
    fn a_heatmap_nets_lower_scores_keep_the_person() {
        // Peaks of 0.25 everywhere: lost on MoveNet's scale, followed on a heatmap net's.
        let lost = |cfg: TrackConfig| {
            let mut t = Tracker::new(cfg);
            t.next_roi(640, 480, 0.75);
            t.update(&mut pose_at(100.0, 50.0, 0.9), 0.75, 1.0 / 30.0);
            t.next_roi(640, 480, 0.75);
            t.update(&mut pose_at(100.0, 50.0, 0.25), 0.75, 1.0 / 30.0);
            t.next_roi(640, 480, 0.75).1
        };
        assert!(lost(TrackConfig::default()));
        assert!(lost(TrackConfig::default().for_output(OutputKind::Keypoints)));
        assert!(!lost(TrackConfig::default().for_output(OutputKind::Heatmap)));
        // Peaks of 0.08: lost on either.
        let weak = TrackConfig::default().for_output(OutputKind::Heatmap);
        let mut t = Tracker::new(weak);
        t.next_roi(640, 480, 0.75);
        t.update(&mut pose_at(100.0, 50.0, 0.08), 0.75, 1.0 / 30.0);
        assert!(t.next_roi(640, 480, 0.75).1);
        // A caller's lower thresholds stay.
        let open = TrackConfig { reinit_below: f32::NEG_INFINITY, ..TrackConfig::default() };
        assert_eq!(open.for_output(OutputKind::Heatmap).reinit_below, f32::NEG_INFINITY);
    }

    #[test]
    fn a_change_of_frame_size_restarts_tracking() {
        let mut t = Tracker::new(TrackConfig::default());
        t.next_roi(640, 480, 0.75);
        t.update(&mut pose_at(400.0, 300.0, 0.9), 0.75, 1.0 / 30.0);
        assert!(!t.next_roi(640, 480, 0.75).1);
        let (roi, fresh) = t.next_roi(320, 240, 0.75);
        assert!(fresh, "a box from a 640x480 frame used in a 320x240 one");
        assert_eq!((roi.cx, roi.cy), (160.0, 120.0));
        assert_eq!(t.reinits, 1);
        // Same size again: a new box from this frame's pose is kept.
        t.update(&mut pose_at(100.0, 50.0, 0.9), 0.75, 1.0 / 30.0);
        assert!(!t.next_roi(320, 240, 0.75).1);
    }

    #[test]
    fn a_tracked_box_never_outgrows_the_frame() {
        let mut t = Tracker::new(TrackConfig::default());
        let (mut roi, _) = t.next_roi(320, 240, 0.75);
        let full = roi;
        for _ in 0..50 {
            // Keypoints spread over the whole crop, and beyond the frame's right edge.
            let mut p = Pose::default();
            for (i, k) in p.keypoints.iter_mut().enumerate() {
                let f = i as f32 / 16.0;
                *k = [roi.cx + roi.w * (f - 0.3), roi.cy + roi.h * (0.5 - f), 0.9];
            }
            t.update(&mut p, 0.75, 1.0 / 30.0);
            roi = t.next_roi(320, 240, 0.75).0;
            assert!(roi.h <= full.h + 1e-3 && (0.0..=320.0).contains(&roi.cx), "{roi:?}");
        }
    }

    #[test]
    fn one_euro_smooths_jitter_and_follows_motion() {
        let cfg = OneEuroConfig::default();
        let mut f = OneEuro::default();
        let jitter: Vec<f32> = (0..60).map(|i| 100.0 + if i % 2 == 0 { 2.0 } else { -2.0 }).collect();
        let out: Vec<f32> = jitter.iter().map(|&x| f.filter(x, 1.0 / 30.0, &cfg)).collect();
        let spread = out[30..].iter().fold(0f32, |m, v| m.max((v - 100.0).abs()));
        assert!(spread < 1.0, "jitter ±2 px smoothed to ±{spread}");
        let mut f = OneEuro::default();
        let mut last = 0.0;
        for i in 0..60 {
            last = f.filter(i as f32 * 10.0, 1.0 / 30.0, &cfg);
        }
        assert!((590.0 - last) < 20.0, "fast motion followed with little lag: {last}");
    }
}
