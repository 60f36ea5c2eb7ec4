//! What diffusers' multistep solvers (DPM-Solver, DEIS, UniPC) keep between steps, the order
//! each step may take, and the model output each integrates.

use burn::tensor::{Tensor, backend::Backend};
use kiln_forward::Prediction;

use crate::sampler::{clean_and_noise, linear};
use crate::sigma_grid::alpha_sigma;
use crate::{DynamicThresholding, SampleClipping, SamplerError};

/// What a multistep solver integrates, from a model output at the VP sample x with noise
/// level σ (α = 1/√(σ² + 1), s = σα), as diffusers' `convert_model_output`: x̂_0, dynamically
/// thresholded when `thresholding` is set, and then x̂_0 itself when `data` is set, else ε̂
/// (recomputed from the thresholded x̂_0 as (x − α x̂_0)/s). Returns (x̂_0, the output).
pub(crate) fn integrated_output<B: Backend, const D: usize>(
    sampler: &'static str,
    output: Tensor<B, D>,
    prediction: Prediction,
    sample: &Tensor<B, D>,
    (sigma, timestep): (f64, f64),
    thresholding: Option<DynamicThresholding>,
    data: bool,
) -> Result<(Tensor<B, D>, Tensor<B, D>), SamplerError> {
    let (alpha, noise) = alpha_sigma(sigma);
    let (x0, epsilon) = clean_and_noise(
        sampler,
        output,
        prediction,
        sample.clone(),
        alpha * alpha,
        timestep,
    )?;
    Ok(match (thresholding, data) {
        (None, true) => (x0.clone(), x0),
        (None, false) => (x0, epsilon),
        (Some(_), data) => {
            let x0 = SampleClipping::thresholding_only(thresholding).apply(x0);
            let integrated = match data {
                true => x0.clone(),
                false => linear(sample, 1.0 / noise, &x0, -alpha / noise),
            };
            (x0, integrated)
        }
    })
}

/// The latest model outputs of a multistep solver, newest last (diffusers' `model_outputs`),
/// and the step its trajectory continues with.
#[derive(Debug, Clone)]
pub(crate) struct History<T> {
    entries: Vec<T>,
    /// The solver's order: how many entries are kept.
    order: usize,
    /// The index of the step after the last one recorded.
    next: Option<usize>,
}

impl<T> History<T> {
    /// An empty history for a solver of order `order`.
    pub fn new(order: usize) -> Self {
        Self {
            entries: Vec::with_capacity(order),
            order,
            next: None,
        }
    }

    /// Forgets the trajectory: the next entry starts a new one.
    pub fn clear(&mut self) {
        self.entries.clear();
        self.next = None;
    }

    /// Whether step `index` continues the recorded trajectory (comes right after its last
    /// step). A step that does not starts a new one: a run from index 0 again, or one that
    /// starts part-way (image-to-image).
    pub fn continues(&self, index: usize) -> bool {
        self.next == Some(index)
    }

    /// Records the output of step `index`, dropping the oldest beyond the order, after
    /// forgetting the trajectory unless `index` continues it. Returns how many earlier steps
    /// of the trajectory are kept, at most the order (diffusers' `lower_order_nums` during
    /// that step).
    pub fn record(&mut self, index: usize, entry: T) -> usize {
        if !self.continues(index) {
            self.clear();
        }
        let before = self.entries.len();
        if before == self.order {
            self.entries.remove(0);
        }
        self.entries.push(entry);
        self.next = Some(index + 1);
        before
    }

    /// The output `back` steps before the newest (0: the newest).
    pub fn back(&self, back: usize) -> &T {
        &self.entries[self.entries.len() - 1 - back]
    }
}

/// Fails unless a multistep solver's `order` is 1 to `max` (`expected` says so in words).
pub(crate) fn check_order(
    sampler: &'static str,
    order: usize,
    max: usize,
    expected: &'static str,
) -> Result<(), SamplerError> {
    if (1..=max).contains(&order) {
        Ok(())
    } else {
        Err(SamplerError::UnsupportedOrder {
            sampler,
            order,
            expected,
        })
    }
}

/// The order of step `index` of `steps` in diffusers' multistep DPM-Solver and DEIS: the
/// solver's `order`, lowered to what the `before` kept earlier steps of the trajectory allow
/// (at most `before` + 1), and with `lower_order_final` on fewer than 15 steps to 1 and 2 for
/// the last two steps; `last_first_order` makes the last step first order anyway (a step to
/// σ = 0, where only that update is finite).
pub(crate) fn multistep_order(
    order: usize,
    before: usize,
    (index, steps): (usize, usize),
    lower_order_final: bool,
    last_first_order: bool,
) -> usize {
    let short = lower_order_final && steps < 15;
    let final_first_order = index + 1 == steps && (short || last_first_order);
    let final_second_order = index + 2 == steps && short;
    if order == 1 || before < 1 || final_first_order {
        1
    } else if order == 2 || before < 2 || final_second_order {
        2
    } else {
        3
    }
}
