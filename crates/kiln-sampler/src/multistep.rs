//! What diffusers' multistep solvers (DPM-Solver, DEIS, UniPC) keep between steps, the order
//! each step may take, and the model output each integrates.

use burn::tensor::{Tensor, backend::Backend};
use kiln_forward::Prediction;

use crate::sampler::{clean_and_noise, linear};
use crate::sigma_grid::alpha_sigma;
use crate::{DynamicThresholding, SampleClipping, SamplerError};

/// x̂_0 and ε̂ from a model output at the VP sample x with noise level σ (α = 1/√(σ² + 1),
/// s = σα), as diffusers' `convert_model_output`: x̂_0 dynamically thresholded when
/// `thresholding` is set, and ε̂ then recomputed from it, (x − α x̂_0)/s.
pub(crate) fn clean_and_noise_thresholded<B: Backend, const D: usize>(
    sampler: &'static str,
    output: Tensor<B, D>,
    prediction: Prediction,
    sample: &Tensor<B, D>,
    (sigma, timestep): (f64, f64),
    thresholding: Option<DynamicThresholding>,
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
    Ok(match thresholding {
        None => (x0, epsilon),
        Some(_) => {
            let x0 = SampleClipping::thresholding_only(thresholding).apply(x0);
            let epsilon = linear(sample, 1.0 / noise, &x0, -alpha / noise);
            (x0, epsilon)
        }
    })
}

/// The latest model outputs of a multistep solver, newest last (diffusers' `model_outputs`),
/// with how many steps of the trajectory each new one follows (`lower_order_nums`).
#[derive(Debug, Clone)]
pub(crate) struct History<T> {
    entries: Vec<T>,
    /// The solver's order: how many entries are kept.
    order: usize,
    /// Steps of the trajectory recorded so far, up to `order`.
    recorded: usize,
}

impl<T> History<T> {
    /// An empty history for a solver of order `order`.
    pub fn new(order: usize) -> Self {
        Self {
            entries: Vec::with_capacity(order),
            order,
            recorded: 0,
        }
    }

    /// Forgets the trajectory: the next entry starts a new one.
    pub fn clear(&mut self) {
        self.entries.clear();
        self.recorded = 0;
    }

    /// Records the output of step `index` as [`History::push`] does; one at index 0 starts a
    /// new trajectory.
    pub fn record(&mut self, index: usize, entry: T) -> usize {
        if index == 0 {
            self.clear();
        }
        self.push(entry)
    }

    /// Records a step's output, dropping the oldest beyond the order, and returns how many
    /// steps of the trajectory came before it, at most the order (diffusers'
    /// `lower_order_nums` during that step).
    pub fn push(&mut self, entry: T) -> usize {
        if self.entries.len() == self.order {
            self.entries.remove(0);
        }
        self.entries.push(entry);
        let before = self.recorded;
        self.recorded = (self.recorded + 1).min(self.order);
        before
    }

    /// How many outputs are kept.
    pub fn len(&self) -> usize {
        self.entries.len()
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
/// solver's `order`, lowered to what the `before` earlier steps of the trajectory (and the
/// `kept` outputs) allow, and with `lower_order_final` on fewer than 15 steps to 1 and 2 for
/// the last two steps; `last_first_order` makes the last step first order anyway (a step to
/// σ = 0, where only that update is finite).
pub(crate) fn multistep_order(
    order: usize,
    before: usize,
    kept: usize,
    (index, steps): (usize, usize),
    lower_order_final: bool,
    last_first_order: bool,
) -> usize {
    let short = lower_order_final && steps < 15;
    let final_first_order = index + 1 == steps && (short || last_first_order);
    let final_second_order = index + 2 == steps && short;
    let order = if order == 1 || before < 1 || final_first_order {
        1
    } else if order == 2 || before < 2 || final_second_order {
        2
    } else {
        3
    };
    // Never reach back past the start of the trajectory.
    order.min(kept).min(index + 1)
}
