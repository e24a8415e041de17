//! Minimal PNG plots drawn with embedded-graphics on our RGB frame (no plotting
//! dependency): scatter plots with a y = x diagonal, and line plots (loss curves).

use std::path::Path;

use anyhow::Result;
use embedded_graphics::mono_font::ascii::FONT_6X10;
use embedded_graphics::mono_font::MonoTextStyle;
use embedded_graphics::pixelcolor::Rgb888;
use embedded_graphics::prelude::*;
use embedded_graphics::primitives::{Circle, Line, PrimitiveStyle, Rectangle};
use embedded_graphics::text::{Alignment, Text};

use crate::runtime::render::save_png;
use crate::runtime::Frame;

/// One named set of points.
pub struct Series<'a> {
    pub label: &'a str,
    pub color: Rgb888,
    pub points: &'a [(f64, f64)],
    /// Join the points with lines (else dots).
    pub line: bool,
}

pub const BLUE: Rgb888 = Rgb888::new(40, 90, 200);
pub const ORANGE: Rgb888 = Rgb888::new(230, 120, 20);
pub const GREY: Rgb888 = Rgb888::new(150, 150, 150);

const W: u32 = 640;
const H: u32 = 480;
const LEFT: i32 = 70;
const RIGHT: i32 = 20;
const TOP: i32 = 40;
const BOTTOM: i32 = 50;

/// "Nice" tick step for a span.
fn tick_step(span: f64) -> f64 {
    let raw = span / 6.0;
    let mag = 10f64.powf(raw.log10().floor());
    [1.0, 2.0, 5.0, 10.0].iter().map(|m| m * mag).find(|s| *s >= raw).unwrap_or(10.0 * mag)
}

/// Draws the series and writes a PNG. `diagonal` adds y = x (for predicted vs measured).
pub fn plot_png(
    path: &Path,
    title: &str,
    x_label: &str,
    y_label: &str,
    series: &[Series],
    diagonal: bool,
) -> Result<()> {
    let mut f = Frame::new(W, H);
    f.rgb.fill(255);
    let all: Vec<(f64, f64)> = series.iter().flat_map(|s| s.points.iter().copied()).collect();
    let (mut x0, mut x1, mut y0, mut y1) =
        all.iter().fold((f64::MAX, f64::MIN, f64::MAX, f64::MIN), |(a, b, c, d), &(x, y)| {
            (a.min(x), b.max(x), c.min(y), d.max(y))
        });
    if diagonal {
        (x0, y0) = (x0.min(y0), x0.min(y0));
        (x1, y1) = (x1.max(y1), x1.max(y1));
    }
    if !(x1 > x0) {
        x1 = x0 + 1.0;
    }
    if !(y1 > y0) {
        y1 = y0 + 1.0;
    }
    let pad = |a: f64, b: f64| ((a - 0.05 * (b - a)), (b + 0.05 * (b - a)));
    let ((x0, x1), (y0, y1)) = (pad(x0, x1), pad(y0, y1));
    let (pw, ph) = ((W as i32 - LEFT - RIGHT) as f64, (H as i32 - TOP - BOTTOM) as f64);
    let px = |x: f64| LEFT + ((x - x0) / (x1 - x0) * pw) as i32;
    let py = |y: f64| H as i32 - BOTTOM - ((y - y0) / (y1 - y0) * ph) as i32;
    let black = Rgb888::BLACK;
    let text = MonoTextStyle::new(&FONT_6X10, black);
    let axis = PrimitiveStyle::with_stroke(black, 1);
    let _ = Rectangle::new(Point::new(LEFT, TOP), Size::new(pw as u32, ph as u32)).into_styled(axis).draw(&mut f);
    let grid = PrimitiveStyle::with_stroke(Rgb888::new(225, 225, 225), 1);
    let step = tick_step(x1 - x0);
    let mut t = (x0 / step).ceil() * step;
    while t <= x1 {
        let _ = Line::new(Point::new(px(t), TOP + 1), Point::new(px(t), H as i32 - BOTTOM - 1))
            .into_styled(grid)
            .draw(&mut f);
        let _ = Text::with_alignment(
            format!("{t:.4}").trim_end_matches('0').trim_end_matches('.'),
            Point::new(px(t), H as i32 - BOTTOM + 14),
            text,
            Alignment::Center,
        )
        .draw(&mut f);
        t += step;
    }
    let step = tick_step(y1 - y0);
    let mut t = (y0 / step).ceil() * step;
    while t <= y1 {
        let _ = Line::new(Point::new(LEFT + 1, py(t)), Point::new(W as i32 - RIGHT - 1, py(t)))
            .into_styled(grid)
            .draw(&mut f);
        let _ = Text::with_alignment(
            format!("{t:.4}").trim_end_matches('0').trim_end_matches('.'),
            Point::new(LEFT - 6, py(t) + 3),
            text,
            Alignment::Right,
        )
        .draw(&mut f);
        t += step;
    }
    if diagonal {
        let _ = Line::new(Point::new(px(x0), py(x0)), Point::new(px(x1), py(x1)))
            .into_styled(PrimitiveStyle::with_stroke(GREY, 1))
            .draw(&mut f);
    }
    for s in series {
        if s.line {
            for w in s.points.windows(2) {
                let _ = Line::new(Point::new(px(w[0].0), py(w[0].1)), Point::new(px(w[1].0), py(w[1].1)))
                    .into_styled(PrimitiveStyle::with_stroke(s.color, 2))
                    .draw(&mut f);
            }
        } else {
            for &(x, y) in s.points {
                let _ = Circle::with_center(Point::new(px(x), py(y)), 6)
                    .into_styled(PrimitiveStyle::with_fill(s.color))
                    .draw(&mut f);
            }
        }
    }
    let _ = Text::with_alignment(title, Point::new(W as i32 / 2, 20), text, Alignment::Center).draw(&mut f);
    let _ = Text::with_alignment(x_label, Point::new(LEFT + pw as i32 / 2, H as i32 - 14), text, Alignment::Center)
        .draw(&mut f);
    let _ = Text::new(y_label, Point::new(6, TOP - 8), text).draw(&mut f);
    for (i, s) in series.iter().enumerate() {
        let y = TOP + 14 + 14 * i as i32;
        let _ = Circle::with_center(Point::new(LEFT + 14, y - 3), 6)
            .into_styled(PrimitiveStyle::with_fill(s.color))
            .draw(&mut f);
        let _ = Text::new(s.label, Point::new(LEFT + 24, y), MonoTextStyle::new(&FONT_6X10, s.color)).draw(&mut f);
    }
    save_png(&f, path)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scatter_writes_a_png_with_points_in_their_colours() {
        let tmp = tempfile::tempdir().unwrap();
        let path = tmp.path().join("plot.png");
        let pts = [(1.0, 1.1), (2.0, 1.9), (3.0, 3.2)];
        plot_png(
            &path,
            "t",
            "predicted ms",
            "measured ms",
            &[Series { label: "a", color: ORANGE, points: &pts, line: false }],
            true,
        )
        .unwrap();
        let img = image::open(&path).unwrap().into_rgb8();
        assert_eq!(img.dimensions(), (W, H));
        let orange = img.pixels().filter(|p| p.0 == [230, 120, 20]).count();
        assert!(orange > 3 * 20, "three dots drawn: {orange} pixels");
        assert!((tick_step(10.0) - 2.0).abs() < 1e-12 && (tick_step(0.7) - 0.2).abs() < 1e-12);
    }
}
