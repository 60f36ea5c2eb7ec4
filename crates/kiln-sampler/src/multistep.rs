//! What diffusers' multistep solvers (DPM-Solver, DEIS, UniPC, SA-Solver) keep between steps,
//! the order each step may take, the model output each integrates, and the exponentially
//! weighted integral of a Lagrange polynomial that DEIS and SA-Solver take their weights from.

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

/// ∫_0^h ℓ_j(u) e^u du, where ℓ_j is the Lagrange basis polynomial of node j through `nodes`
/// (ℓ_j(nodes[k]) = [j = k]). For a polynomial q the antiderivative of q(u) e^u is
/// e^u (q − q' + q'' − …), so the integral is (e^h − 1) R(h) + R(h) − R(0) with
/// R = q − q' + q'' − …, which keeps e^h − 1 exact for small h; R(h) − R(0) still cancels
/// terms of the size of ℓ_j's coefficients (1/spacing^(p−1) of the nodes), harmless
/// in f64 on any grid a sampler lays out.
pub(crate) fn exp_lagrange_integral(nodes: &[f64], j: usize, h: f64) -> f64 {
    // ℓ_j's coefficients, lowest degree first.
    let mut basis = vec![1.0];
    for (k, &node) in nodes.iter().enumerate().filter(|&(k, _)| k != j) {
        let scale = 1.0 / (nodes[j] - nodes[k]);
        let mut product = vec![0.0; basis.len() + 1];
        for (degree, &a) in basis.iter().enumerate() {
            product[degree + 1] += a * scale;
            product[degree] -= a * node * scale;
        }
        basis = product;
    }
    // R's coefficient of u^i: Σ_m (−1)^m a_{i+m} (i+m)!/i!.
    let alternating: Vec<f64> = (0..basis.len())
        .map(|i| {
            let mut falling = 1.0;
            let mut sum = 0.0;
            for (m, &a) in basis[i..].iter().enumerate() {
                if m > 0 {
                    falling *= -((i + m) as f64);
                }
                sum += falling * a;
            }
            sum
        })
        .collect();
    let at = |u: f64| alternating.iter().rev().fold(0.0, |acc, &c| acc * u + c);
    let end = at(h);
    h.exp_m1() * end + (end - at(0.0))
}

#[cfg(test)]
mod tests {
    use super::exp_lagrange_integral;

    /// Against diffusers' closed forms (`ind_fn`) for two and three nodes, and the plain
    /// integral e^h − 1 for one.
    #[test]
    fn exp_lagrange_integrals_match_the_closed_forms() {
        let (h, b, c) = (-0.7_f64, 0.0_f64, 0.45_f64);
        assert!((exp_lagrange_integral(&[b], 0, h) - h.exp_m1()).abs() < 1e-15);
        // ∫ (u − c)/(b − c) e^u du = e^u (u − c − 1)/(b − c)
        let antiderivative = |u: f64| u.exp() * (u - c - 1.0) / (b - c);
        let want = antiderivative(h) - antiderivative(0.0);
        assert!((exp_lagrange_integral(&[b, c], 0, h) - want).abs() < 1e-14);
        // Three nodes: the weights integrate 1, u and u² exactly, ∫_0^h u^k e^u du.
        let nodes = [0.0, 0.3, 0.8];
        let weights: Vec<f64> = (0..3)
            .map(|j| exp_lagrange_integral(&nodes, j, h))
            .collect();
        let moment = |f: &dyn Fn(f64) -> f64| -> f64 {
            weights.iter().zip(nodes).map(|(w, u)| w * f(u)).sum()
        };
        let e = h.exp();
        assert!((moment(&|_| 1.0) - (e - 1.0)).abs() < 1e-14);
        assert!((moment(&|u| u) - (e * (h - 1.0) + 1.0)).abs() < 1e-14);
        assert!((moment(&|u| u * u) - (e * (h * h - 2.0 * h + 2.0) - 2.0)).abs() < 1e-14);
    }

    /// Four nodes (SA-Solver's order 4), over intervals on both sides of 0: the weights
    /// integrate u^k e^u exactly for k ≤ 3,
    /// ∫_0^h u^k e^u du = [e^u Σ_j (−1)^j k!/(k−j)! u^{k−j}]_0^h.
    #[test]
    fn four_node_weights_integrate_cubics() {
        let nodes = [0.0, -0.3, -0.7, -1.2];
        let antiderivative = |k: i32, u: f64| -> f64 {
            let mut falling = 1.0;
            let mut sum = 0.0;
            for j in 0..=k {
                sum += falling * u.powi(k - j);
                falling *= -f64::from(k - j);
            }
            u.exp() * sum
        };
        for h in [1.3, -1.3, 0.05] {
            let weights: Vec<f64> = (0..4)
                .map(|j| exp_lagrange_integral(&nodes, j, h))
                .collect();
            for k in 0..4 {
                let got: f64 = weights.iter().zip(nodes).map(|(w, u)| w * u.powi(k)).sum();
                let want = antiderivative(k, h) - antiderivative(k, 0.0);
                assert!(
                    (got - want).abs() < 1e-13 * want.abs().max(1.0),
                    "h {h}, k {k}"
                );
            }
        }
    }
}
