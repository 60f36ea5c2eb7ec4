use burn::tensor::{Tensor, backend::Backend};
use kiln_forward::Prediction;
use kiln_schedule::{GridEnd, NoiseSchedule, TimestepGrid, TimestepSpacing};
use rand::Rng;

use crate::multistep::{History, check_order, integrated_output};
use crate::sampler::{Step, linear, timestep_at};
use crate::sigma_grid::{FinalSigmas, SigmaSpacing, alpha_sigma, discrete_sigma_grid, lambda};
use crate::{DynamicThresholding, SampleClipping, Sampler, SamplerError};

/// UniPC's choice of B(h) (diffusers' `solver_type`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum UniPcSolverType {
    /// `bh1`: B(h) = h (recommended for unconditional sampling with few steps).
    Bh1,
    /// `bh2`: B(h) = e^h − 1 (recommended for guided sampling).
    #[default]
    Bh2,
}

/// Settings of [`UniPc`], with diffusers' `UniPCMultistepScheduler` defaults.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct UniPcConfig {
    /// The order p of the predictor UniP-p, 1–3 (the corrector reaches p + 1).
    pub solver_order: usize,
    /// B(h).
    pub solver_type: UniPcSolverType,
    /// Lower the order over the last steps (order ≤ steps left).
    pub lower_order_final: bool,
    /// Where the last step lands.
    pub final_sigmas_type: FinalSigmas,
    /// The noise levels: σ at the grid's timesteps, or spaced between the schedule's smallest
    /// and largest σ with their timesteps rounded (diffusers' `use_karras_sigmas`,
    /// `use_exponential_sigmas`, `use_beta_sigmas`).
    pub sigma_spacing: SigmaSpacing,
    /// Dynamic thresholding of x̂_0 (over ε̂ too, recomputed from the thresholded x̂_0; diffusers
    /// thresholds only with `predict_x0`).
    pub thresholding: Option<DynamicThresholding>,
    /// Integrate x̂_0 (the data-prediction form, default) or, when false, ε̂ (diffusers'
    /// `predict_x0`); the ε̂ form cannot step to σ = 0, so it needs
    /// [`FinalSigmas::SigmaMin`].
    pub predict_x0: bool,
    /// The inference timesteps (`linspace` over N + 1 points without the last, by default).
    pub grid: TimestepGrid,
    /// Leave the results of the first this-many steps uncorrected (diffusers'
    /// `disable_corrector = [0, 1, …, k − 1]`; 0, the default, corrects every step). The
    /// corrector reuses the next step's model call, and with strong guidance that output can
    /// disagree with the predictor's; diffusers' docs advise turning it off over the first
    /// steps there.
    pub skip_corrector: usize,
}

impl Default for UniPcConfig {
    fn default() -> Self {
        Self {
            solver_order: 2,
            solver_type: UniPcSolverType::Bh2,
            lower_order_final: true,
            final_sigmas_type: FinalSigmas::Zero,
            sigma_spacing: SigmaSpacing::Timesteps,
            thresholding: None,
            predict_x0: true,
            grid: TimestepGrid::new(TimestepSpacing::Linspace, GridEnd::BeforeZero),
            skip_corrector: 0,
        }
    }
}

/// UniPC (Zhao et al. 2023, "UniPC: A Unified Predictor-Corrector Framework for Fast
/// Sampling of Diffusion Models", Algorithms 1–2, over x̂_0 or ε̂): a multistep
/// predictor UniP-p and, reusing the model call the next step makes anyway, a corrector UniC-p
/// of order p + 1.
///
/// With h = λ_t − λ_s (λ = log(α/s)), r_k = (λ_{s_k} − λ_s)/h for the earlier steps and
/// D_k = (x̂_0(s_k) − x̂_0(s))/r_k:
///
/// ```text
/// UniP:  x_t = (s_t/s_s) x_s − α_t (e^{−h} − 1) x̂_0(s) − α_t B(−h) Σ_k a_k D_k
/// UniC:  x_t^c = (s_t/s_s) x_s − α_t (e^{−h} − 1) x̂_0(s) − α_t B(−h) (Σ_k c_k D_k + c_t (x̂_0(t) − x̂_0(s)))
/// ```
///
/// where B(−h) is −h (`bh1`) or e^{−h} − 1 (`bh2`) and the weights solve R a = g with
/// R_{ik} = r_k^{i−1} and g_i = i!·φ_{i+1}(−h)/B(−h) (φ the exponential-integrator
/// functions); p = 2 uses a = ½ and p = 1 the corrector c = ½. Over ε̂ (`predict_x0 = false`)
/// the same updates read x_t = (α_t/α_s) x_s − s_t (e^h − 1) ε̂(s) − s_t B(h) Σ_k a_k D_k with
/// D_k from ε̂, and φ and B taken at +h. A step that stays at its σ (the last of a spaced grid
/// to σ_min) keeps its sample; its weights would be 0/0 (NaN in diffusers from order 2).
///
/// A step that does not follow the last one starts a new trajectory: a run from index 0, or
/// one that starts at a later index, as diffusers' image-to-image does.
#[derive(Debug, Clone)]
pub struct UniPc<B: Backend, const D: usize> {
    config: UniPcConfig,
    timesteps: Vec<f64>,
    /// σ at each step, then the final σ.
    sigmas: Vec<f64>,
    /// The integrated outputs (x̂_0, or ε̂ without `predict_x0`) of recent steps with their step
    /// index.
    history: History<(usize, Tensor<B, D>)>,
    /// The sample the last predictor started from, for the corrector.
    last_sample: Option<Tensor<B, D>>,
    /// The order of the last predictor, which the corrector matches.
    this_order: usize,
}

impl<B: Backend, const D: usize> UniPc<B, D> {
    /// Forgets the trajectory's history: the next step starts a new one.
    fn forget(&mut self) {
        self.history.clear();
        self.last_sample = None;
    }

    /// UniPC over `schedule` in `steps` steps.
    pub fn new(
        config: UniPcConfig,
        schedule: &NoiseSchedule,
        steps: usize,
    ) -> Result<Self, SamplerError> {
        check_order("UniPC", config.solver_order, 3, "1, 2 or 3")?;
        if !config.predict_x0 && config.final_sigmas_type == FinalSigmas::Zero {
            return Err(SamplerError::Incompatible {
                sampler: "UniPC",
                reason: "UniPC over ε̂ (predict_x0 false) cannot step to σ = 0; use \
                         final_sigmas_type sigma_min",
            });
        }
        SampleClipping::thresholding_only(config.thresholding).validate()?;
        let (timesteps, sigmas) = discrete_sigma_grid(
            config.grid,
            config.sigma_spacing,
            config.final_sigmas_type,
            f64::NEG_INFINITY,
            schedule,
            steps,
        )?;
        Ok(Self {
            config,
            timesteps,
            sigmas,
            history: History::new(config.solver_order),
            last_sample: None,
            this_order: 1,
        })
    }

    /// One UniP (`corrected_output` = None) or UniC update from step index `from` to `to`
    /// of order `order`, starting at `sample`; the newest history entry is the integrated
    /// output at `from`.
    fn update(
        &self,
        sample: &Tensor<B, D>,
        from: usize,
        to: usize,
        order: usize,
        corrected_output: Option<&Tensor<B, D>>,
    ) -> Tensor<B, D> {
        let (sigma_s, sigma_t) = (self.sigmas[from], self.sigmas[to]);
        let ((alpha_s, noise_s), (alpha_t, noise_t)) = (alpha_sigma(sigma_s), alpha_sigma(sigma_t));
        let h = lambda(sigma_t) - lambda(sigma_s);
        if h == 0.0 {
            return sample.clone();
        }
        let m0 = &self.history.back(0).1;
        // Earlier outputs as ratios r_k and scaled differences D_k, newest first.
        let (ratios, differences): (Vec<f64>, Vec<Tensor<B, D>>) = (1..order)
            .map(|k| {
                let (index, older) = self.history.back(k);
                let r = (lambda(self.sigmas[*index]) - lambda(sigma_s)) / h;
                (r, (older.clone() - m0.clone()).div_scalar(r))
            })
            .unzip();

        // x_t = kept · x_s − output_scale ((e^{hh} − 1) m_0 + B(hh) Σ …), in either form.
        let (hh, kept, output_scale) = match self.config.predict_x0 {
            true => (-h, noise_t / noise_s, alpha_t),
            false => (h, alpha_t / alpha_s, noise_t),
        };
        let h_phi_1 = hh.exp_m1();
        let b_h = match self.config.solver_type {
            UniPcSolverType::Bh1 => hh,
            UniPcSolverType::Bh2 => h_phi_1,
        };
        let mut x = linear(sample, kept, m0, -output_scale * h_phi_1);
        let weights = match corrected_output {
            None if order == 2 => vec![0.5],
            None if order > 2 => {
                let (matrix, rhs) = system(&ratios, hh, b_h, order);
                solve(&truncate(&matrix, order - 1), &rhs[..order - 1])
            }
            None => Vec::new(),
            Some(_) if order == 1 => vec![0.5],
            Some(_) => {
                let (matrix, rhs) = system(&ratios, hh, b_h, order);
                solve(&matrix, &rhs)
            }
        };
        let scale = -output_scale * b_h;
        for (difference, weight) in differences.iter().zip(&weights) {
            x = x + difference.clone().mul_scalar(scale * weight);
        }
        if let Some(model_t) = corrected_output {
            let last = weights[weights.len() - 1];
            x = x + (model_t.clone() - m0.clone()).mul_scalar(scale * last);
        }
        x
    }
}

/// The order × order system R, g of UniPC's weights: R_{ik} = r_k^i (with r = 1 appended for
/// the corrector's own term) and g_i = i!·h_φ_{i+1}/B(h), where h_φ_1 = e^{hh} − 1 and
/// h_φ_{k+1} = h_φ_k/hh − 1/k!.
fn system(ratios: &[f64], hh: f64, b_h: f64, order: usize) -> (Vec<Vec<f64>>, Vec<f64>) {
    let mut rks = ratios.to_vec();
    rks.push(1.0);
    let mut h_phi_k = hh.exp_m1() / hh - 1.0;
    let mut factorial = 1.0;
    let mut matrix = Vec::with_capacity(order);
    let mut rhs = Vec::with_capacity(order);
    for i in 1..=order {
        matrix.push(rks.iter().map(|r| r.powi(i as i32 - 1)).collect());
        rhs.push(h_phi_k * factorial / b_h);
        factorial *= (i + 1) as f64;
        h_phi_k = h_phi_k / hh - 1.0 / factorial;
    }
    (matrix, rhs)
}

/// The leading `size` × `size` block of a matrix.
fn truncate(matrix: &[Vec<f64>], size: usize) -> Vec<Vec<f64>> {
    matrix
        .iter()
        .take(size)
        .map(|row| row[..size].to_vec())
        .collect()
}

/// Solves a small dense system by Gaussian elimination with partial pivoting.
fn solve(matrix: &[Vec<f64>], rhs: &[f64]) -> Vec<f64> {
    let n = rhs.len();
    let mut a: Vec<Vec<f64>> = matrix.iter().map(|row| row[..n].to_vec()).collect();
    let mut b = rhs.to_vec();
    for column in 0..n {
        let pivot = (column..n)
            .max_by(|&i, &j| a[i][column].abs().total_cmp(&a[j][column].abs()))
            .unwrap_or(column);
        a.swap(column, pivot);
        b.swap(column, pivot);
        let pivot_row = a[column].clone();
        for row in column + 1..n {
            let factor = a[row][column] / pivot_row[column];
            for (value, above) in a[row][column..].iter_mut().zip(&pivot_row[column..]) {
                *value -= factor * above;
            }
            b[row] -= factor * b[column];
        }
    }
    let mut x = vec![0.0; n];
    for row in (0..n).rev() {
        let tail: f64 = (row + 1..n).map(|k| a[row][k] * x[k]).sum();
        x[row] = (b[row] - tail) / a[row][row];
    }
    x
}

impl<B: Backend, const D: usize> Sampler<B, D> for UniPc<B, D> {
    fn timesteps(&self) -> &[f64] {
        &self.timesteps
    }

    fn restart(&mut self, index: usize) -> Result<(), SamplerError> {
        timestep_at(&self.timesteps, index)?;
        self.forget();
        Ok(())
    }

    fn step<R: Rng + ?Sized>(
        &mut self,
        index: usize,
        output: Tensor<B, D>,
        prediction: Prediction,
        sample: Tensor<B, D>,
        _rng: &mut R,
    ) -> Result<Step<B, D>, SamplerError> {
        let timestep = timestep_at(&self.timesteps, index)?;
        let (x0, integrated) = integrated_output(
            "UniPC",
            output,
            prediction,
            &sample,
            (self.sigmas[index], timestep),
            self.config.thresholding,
            self.config.predict_x0,
        )?;

        if !self.history.continues(index) {
            self.forget();
        }
        let mut sample = sample;
        // The corrector of step index − 1's result, unless that step is one of the first
        // `skip_corrector`.
        if let Some(last) = self
            .last_sample
            .as_ref()
            .filter(|_| index > self.config.skip_corrector)
        {
            sample = self.update(last, index - 1, index, self.this_order, Some(&integrated));
        }
        let before = self.history.record(index, (index, integrated));

        let steps = self.timesteps.len();
        let mut order = self.config.solver_order;
        if self.config.lower_order_final {
            order = order.min(steps - index);
        }
        // A step to σ = 0 has h = ∞, where only the first-order update is finite.
        if self.sigmas[index + 1] == 0.0 {
            order = 1;
        }
        self.this_order = order.min(before + 1);
        let next = self.update(&sample, index, index + 1, self.this_order, None);
        self.last_sample = Some(sample);
        Ok(Step {
            sample: next,
            denoised: x0,
        })
    }
}
