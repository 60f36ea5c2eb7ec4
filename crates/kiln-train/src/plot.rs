//! A run's curves as pictures, drawn without a plotting library: the loss of every step
//! ([`loss_curve`]) and a metric at a few points of the run ([`metric_curve`]).
//!
//! The y axis is log₁₀ of the value between the smallest and largest positive value, with a
//! faint horizontal line at every power of ten in between; the x axis is the step (or epoch).
//! The loss curve draws each step's loss as a grey dot and an exponential moving average of
//! log₁₀(loss) (weight 0.9 on the past) as a dark line, so the trend shows through the
//! per-batch scatter; a metric curve joins its points with a line and marks each with a square.

use std::path::{Path, PathBuf};

use image::{Rgb, RgbImage};

use crate::TrainError;

const BACKGROUND: Rgb<u8> = Rgb([255, 255, 255]);
const GRID: Rgb<u8> = Rgb([225, 225, 235]);
const RAW: Rgb<u8> = Rgb([150, 150, 150]);
const SMOOTH: Rgb<u8> = Rgb([20, 60, 160]);
const POINT: Rgb<u8> = Rgb([200, 70, 30]);

/// Draws `losses` (one per step; non-finite or non-positive values are skipped) on a
/// `width`×`height` canvas. `None` if there is nothing positive and finite to draw.
pub fn loss_curve(losses: &[f64], width: u32, height: u32) -> Option<RgbImage> {
    let points: Vec<(f64, f64)> = losses
        .iter()
        .enumerate()
        .map(|(step, &loss)| (step as f64, loss))
        .collect();
    let axes = LogAxes::fit(&points, width, height)?;
    let (mut canvas, valid) = (axes.canvas(), &axes.points);
    for &(x, log) in valid {
        canvas.put_pixel(axes.x_of(x), axes.y_of(log), RAW);
    }
    let mut average = valid[0].1;
    let mut previous: Option<(u32, u32)> = None;
    for &(x, log) in valid {
        average = 0.9 * average + 0.1 * log;
        let point = (axes.x_of(x), axes.y_of(average));
        draw_line(&mut canvas, previous.unwrap_or(point), point, SMOOTH);
        previous = Some(point);
    }
    Some(canvas)
}

/// Draws a metric measured at a few points of a run, `(x, value)` in increasing x (such as
/// the Fréchet distance after each evaluated epoch; non-finite or non-positive values are
/// skipped), on a `width`×`height` canvas. `None` if there is nothing to draw.
pub fn metric_curve(points: &[(f64, f64)], width: u32, height: u32) -> Option<RgbImage> {
    let axes = LogAxes::fit(points, width, height)?;
    let mut canvas = axes.canvas();
    let pixels: Vec<(u32, u32)> = axes
        .points
        .iter()
        .map(|&(x, log)| (axes.x_of(x), axes.y_of(log)))
        .collect();
    for pair in pixels.windows(2) {
        draw_line(&mut canvas, pair[0], pair[1], SMOOTH);
    }
    for &(x, y) in &pixels {
        for dx in -2..=2i64 {
            for dy in -2..=2i64 {
                let (px, py) = (x as i64 + dx, y as i64 + dy);
                if (0..width as i64).contains(&px) && (0..height as i64).contains(&py) {
                    canvas.put_pixel(px as u32, py as u32, POINT);
                }
            }
        }
    }
    Some(canvas)
}

/// Writes a plot, if there is one, to `path`.
pub(crate) fn save(
    image: Option<image::RgbImage>,
    path: &Path,
) -> Result<Option<PathBuf>, TrainError> {
    let Some(image) = image else {
        return Ok(None);
    };
    image
        .save(path)
        .map_err(|error| TrainError::io(path, error))?;
    Ok(Some(path.to_path_buf()))
}

/// The axes of a plot: x from the first to the last point's x, y = log₁₀(value) from the
/// largest (top row) to the smallest (bottom row); and the points that can be drawn.
struct LogAxes {
    /// The points with a finite x and a positive, finite value, as `(x, log₁₀ value)`.
    points: Vec<(f64, f64)>,
    first_x: f64,
    x_span: f64,
    low: f64,
    high: f64,
    width: u32,
    height: u32,
}

impl LogAxes {
    /// The axes that fit `points` (`(x, value)`) on a `width`×`height` canvas; `None` if none
    /// can be drawn or the canvas is too small.
    fn fit(points: &[(f64, f64)], width: u32, height: u32) -> Option<Self> {
        let valid: Vec<(f64, f64)> = points
            .iter()
            .filter(|(x, value)| x.is_finite() && value.is_finite() && *value > 0.0)
            .map(|&(x, value)| (x, value.log10()))
            .collect();
        if valid.is_empty() || width < 2 || height < 2 {
            return None;
        }
        let low = valid.iter().map(|p| p.1).fold(f64::INFINITY, f64::min);
        let high = valid.iter().map(|p| p.1).fold(f64::NEG_INFINITY, f64::max);
        // The x range of all points, not the first and last: x need not increase.
        let first_x = valid.iter().map(|p| p.0).fold(f64::INFINITY, f64::min);
        let last_x = valid.iter().map(|p| p.0).fold(f64::NEG_INFINITY, f64::max);
        Some(Self {
            first_x,
            x_span: (last_x - first_x).max(1.0),
            points: valid,
            low,
            high,
            width,
            height,
        })
    }

    /// A blank canvas with a line at every power of ten.
    fn canvas(&self) -> RgbImage {
        let mut canvas = RgbImage::from_pixel(self.width, self.height, BACKGROUND);
        for decade in (self.low.ceil() as i32)..=(self.high.floor() as i32) {
            let y = self.y_of(decade as f64);
            for x in 0..self.width {
                canvas.put_pixel(x, y, GRID);
            }
        }
        canvas
    }

    fn x_of(&self, x: f64) -> u32 {
        ((x - self.first_x) / self.x_span * (self.width - 1) as f64).round() as u32
    }

    fn y_of(&self, log: f64) -> u32 {
        let span = (self.high - self.low).max(1e-9);
        ((self.high - log) / span * (self.height - 1) as f64).round() as u32
    }
}

/// A straight segment from `a` to `b`, one pixel per step along the longer axis.
fn draw_line(canvas: &mut RgbImage, a: (u32, u32), b: (u32, u32), colour: Rgb<u8>) {
    let (dx, dy) = (b.0 as f64 - a.0 as f64, b.1 as f64 - a.1 as f64);
    let steps = dx.abs().max(dy.abs()).max(1.0) as u32;
    for i in 0..=steps {
        let t = i as f64 / steps as f64;
        let x = (a.0 as f64 + t * dx).round() as u32;
        let y = (a.1 as f64 + t * dy).round() as u32;
        canvas.put_pixel(x, y, colour);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn points_out_of_order_stay_on_the_canvas() {
        let points = [(0.0, 1.0), (10.0, 2.0), (5.0, 4.0), (-3.0, 0.5)];
        let axes = LogAxes::fit(&points, 40, 20).unwrap();
        for &(x, value) in &axes.points {
            assert!(axes.x_of(x) < 40 && axes.y_of(value) < 20, "{x}, {value}");
        }
    }

    #[test]
    fn a_falling_loss_starts_high_and_ends_low() {
        let losses: Vec<f64> = (0..200).map(|k| 1.0 / (1.0 + k as f64)).collect();
        let image = loss_curve(&losses, 100, 50).unwrap();
        // The curve starts at the top left and ends at the bottom right (where the average,
        // lagging the falling loss, may cover the last raw point).
        assert_eq!(*image.get_pixel(0, 0), SMOOTH);
        assert_ne!(*image.get_pixel(99, 49), BACKGROUND);
        assert!((0..49).all(|y| *image.get_pixel(99, y) != RAW));
        // log10 spans 0 … −2.3 over rows 0 … 49: grid lines at 10⁰, 10⁻¹ and 10⁻² (rows 0,
        // 21 and 43), each crossed by the curve in a minority of columns.
        let grid_share = |y: u32| (0..100).filter(|&x| *image.get_pixel(x, y) == GRID).count();
        for y in [0, 21, 43] {
            assert!(grid_share(y) > 80, "row {y}: {}", grid_share(y));
        }
        assert_eq!(grid_share(30), 0);
    }

    #[test]
    fn a_metric_is_a_line_through_marked_points() {
        let image = metric_curve(&[(10.0, 100.0), (20.0, 10.0), (30.0, 1.0)], 101, 51).unwrap();
        // log₁₀ 100 … 1 over rows 0 … 50: the points at (0, 0), (50, 25) and (100, 50).
        for (x, y) in [(0, 0), (50, 25), (100, 50)] {
            assert_eq!(*image.get_pixel(x, y), POINT);
        }
        assert_eq!(*image.get_pixel(24, 12), SMOOTH);
        assert_eq!(*image.get_pixel(25, 40), BACKGROUND);
        assert!(metric_curve(&[(1.0, f64::NAN)], 10, 10).is_none());
        assert!(metric_curve(&[(1.0, 3.0)], 10, 10).is_some());
    }

    #[test]
    fn nothing_to_draw_is_none() {
        assert!(loss_curve(&[], 10, 10).is_none());
        assert!(loss_curve(&[f64::NAN, 0.0, -1.0], 10, 10).is_none());
        assert!(loss_curve(&[0.5], 10, 10).is_some());
    }
}
