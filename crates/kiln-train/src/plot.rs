//! The loss curve of a run as a picture, drawn without a plotting library.
//!
//! The y axis is log₁₀(loss) between the smallest and largest positive loss, with a faint
//! horizontal line at every power of ten in between; the x axis is the step. Each step's loss
//! is a grey dot and an exponential moving average of log₁₀(loss) (weight 0.9 on the past) a dark
//! line, so the trend shows through the per-batch scatter.

use image::{Rgb, RgbImage};

const BACKGROUND: Rgb<u8> = Rgb([255, 255, 255]);
const GRID: Rgb<u8> = Rgb([225, 225, 235]);
const RAW: Rgb<u8> = Rgb([150, 150, 150]);
const SMOOTH: Rgb<u8> = Rgb([20, 60, 160]);

/// Draws `losses` (one per step; non-finite or non-positive values are skipped) on a
/// `width`×`height` canvas. `None` if there is nothing positive and finite to draw.
pub fn loss_curve(losses: &[f64], width: u32, height: u32) -> Option<RgbImage> {
    let valid: Vec<(usize, f64)> = losses
        .iter()
        .copied()
        .enumerate()
        .filter(|(_, loss)| loss.is_finite() && *loss > 0.0)
        .collect();
    if valid.is_empty() || width < 2 || height < 2 {
        return None;
    }
    let logs: Vec<f64> = valid.iter().map(|(_, loss)| loss.log10()).collect();
    let low = logs.iter().copied().fold(f64::INFINITY, f64::min);
    let high = logs.iter().copied().fold(f64::NEG_INFINITY, f64::max);
    let span = (high - low).max(1e-9);
    let last_step = valid.last().map_or(1, |(step, _)| *step).max(1) as f64;
    let x_of = |step: usize| (step as f64 / last_step * (width - 1) as f64).round() as u32;
    let y_of = |log: f64| ((high - log) / span * (height - 1) as f64).round() as u32;

    let mut canvas = RgbImage::from_pixel(width, height, BACKGROUND);
    for decade in (low.ceil() as i32)..=(high.floor() as i32) {
        let y = y_of(decade as f64);
        for x in 0..width {
            canvas.put_pixel(x, y, GRID);
        }
    }
    for (&(step, _), &log) in valid.iter().zip(&logs) {
        canvas.put_pixel(x_of(step), y_of(log), RAW);
    }
    let mut average = logs[0];
    let mut previous: Option<(u32, u32)> = None;
    for (&(step, _), &log) in valid.iter().zip(&logs) {
        average = 0.9 * average + 0.1 * log;
        let point = (x_of(step), y_of(average));
        draw_line(&mut canvas, previous.unwrap_or(point), point, SMOOTH);
        previous = Some(point);
    }
    Some(canvas)
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
    fn nothing_to_draw_is_none() {
        assert!(loss_curve(&[], 10, 10).is_none());
        assert!(loss_curve(&[f64::NAN, 0.0, -1.0], 10, 10).is_none());
        assert!(loss_curve(&[0.5], 10, 10).is_some());
    }
}
