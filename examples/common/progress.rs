//! The examples' training display: the one-line progress and the Ctrl-C stop flag.

use std::io::Write;
use std::time::Instant;

use kiln::train::TrainEvent;

/// The one-line progress display: epoch, a bar, step, smoothed loss, images/s and ETA.
pub struct Progress {
    epochs: usize,
    smoothed_loss: Option<f64>,
    images_per_second: Option<f64>,
    started: Instant,
    first_step: u64,
}

impl Progress {
    /// A display for a run of `epochs` epochs.
    pub fn new(epochs: usize) -> Self {
        Self {
            epochs,
            smoothed_loss: None,
            images_per_second: None,
            started: Instant::now(),
            first_step: 0,
        }
    }

    /// Shows `event`.
    pub fn show(&mut self, event: &TrainEvent<'_>) {
        match *event {
            TrainEvent::Started {
                step,
                total_steps,
                resumed_from,
                ..
            } => {
                self.first_step = step;
                self.started = Instant::now();
                if let Some(path) = resumed_from {
                    eprintln!(
                        "resuming from {} (step {step} of {total_steps})",
                        path.display()
                    );
                }
            }
            TrainEvent::Step {
                step,
                log_point,
                total_steps,
                epoch,
                loss,
                images_per_second,
                ..
            } => {
                let smooth = |old: Option<f64>, new: f64, keep: f64| {
                    Some(old.map_or(new, |old| keep * old + (1.0 - keep) * new))
                };
                self.smoothed_loss = smooth(self.smoothed_loss, loss, 0.95);
                self.images_per_second = smooth(self.images_per_second, images_per_second, 0.9);
                // The steps between two log points arrive together at the second: time them
                // to it, or the first of them would look slow.
                let done = (log_point - self.first_step) as f64;
                let per_step = self.started.elapsed().as_secs_f64() / done.max(1.0);
                let eta = per_step * (total_steps - log_point) as f64;
                let width = 24;
                let filled = (width as u64 * step / total_steps.max(1)) as usize;
                eprint!(
                    "\repoch {}/{} [{}{}] step {step}/{total_steps} loss {:.4} {:.1} img/s ETA {}   ",
                    epoch + 1,
                    self.epochs,
                    "#".repeat(filled),
                    "-".repeat(width - filled),
                    self.smoothed_loss.unwrap_or(loss),
                    self.images_per_second.unwrap_or(images_per_second),
                    clock(eta),
                );
                let _ = std::io::stderr().flush();
            }
            TrainEvent::SkippedCheckpoint {
                path,
                damage,
                set_aside,
            } => {
                eprintln!(
                    "warning: checkpoint {} is damaged ({damage}); resuming from an older one. \
                     Moved it to {}",
                    path.display(),
                    set_aside.display()
                );
            }
            TrainEvent::Sampled { epoch, path } => {
                eprintln!("\nepoch {epoch}: samples in {}", path.display());
            }
            TrainEvent::Evaluated {
                epoch,
                quality,
                sampling_seconds,
                scoring_seconds,
            } => {
                let pr = quality.precision_recall;
                let memorised = quality.memorisation.map_or(String::new(), |m| {
                    format!(", memorised {:.1} %", m.rate * 100.0)
                });
                eprintln!(
                    "\nepoch {epoch}: FD {:.4}, KID {:.5}, precision {:.3}, recall {:.3}{memorised} \
                     (drawn in {sampling_seconds:.1} s, scored in {scoring_seconds:.1} s)",
                    quality.frechet, quality.kid.mean, pr.precision, pr.recall,
                );
            }
            TrainEvent::Saved { step, path } => {
                eprintln!("\nstep {step}: checkpoint {}", path.display());
            }
        }
    }
}

/// Seconds as `1h02m03s`, `2m03s` or `3s`.
fn clock(seconds: f64) -> String {
    let total = seconds.round() as u64;
    let (h, m, s) = (total / 3600, total / 60 % 60, total % 60);
    match (h, m) {
        (0, 0) => format!("{s}s"),
        (0, _) => format!("{m}m{s:02}s"),
        _ => format!("{h}h{m:02}m{s:02}s"),
    }
}

/// A stop flag that the first Ctrl-C sets (the run then saves a checkpoint after its step)
/// and a second one turns into an exit.
pub fn stop_on_ctrl_c() -> Result<std::sync::Arc<std::sync::atomic::AtomicBool>, ctrlc::Error> {
    use std::sync::atomic::{AtomicBool, Ordering};
    let stop = std::sync::Arc::new(AtomicBool::new(false));
    let handler_flag = std::sync::Arc::clone(&stop);
    ctrlc::set_handler(move || {
        if handler_flag.swap(true, Ordering::SeqCst) {
            std::process::exit(130);
        }
        eprintln!("\ninterrupted: saving a checkpoint after this step (Ctrl-C again to quit now)");
    })?;
    Ok(stop)
}
