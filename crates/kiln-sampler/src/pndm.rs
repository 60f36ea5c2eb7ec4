use burn::tensor::{Tensor, backend::Backend};
use kiln_forward::Prediction;
use kiln_schedule::{NoiseSchedule, TimestepGrid};
use rand::Rng;

use crate::sampler::{
    CallOrder, Step, check_output_shape, clean_and_noise, final_alpha_cumprod, linear, timestep_at,
};
use crate::{Sampler, SamplerError};

/// Settings of [`Pndm`], with diffusers' `PNDMScheduler` defaults.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct PndmConfig {
    /// Start with plain linear multistep instead of the 12 Runge–Kutta calls (Stable
    /// Diffusion's setting).
    pub skip_prk_steps: bool,
    /// Whether the step after the last goes to ᾱ = 1 rather than to ᾱ_0.
    pub set_alpha_to_one: bool,
    /// The inference timesteps (`leading`, `steps_offset = 0` by default).
    pub grid: TimestepGrid,
}

/// What one model call of PNDM is for.
#[derive(Debug, Clone, Copy)]
enum Call {
    /// Stage `stage` (0–3) of a Runge–Kutta block from timestep `from`, transferring to `to`.
    RungeKutta {
        stage: usize,
        from: usize,
        to: usize,
    },
    /// A linear multistep step from `from` to `to` (None: the clean data). `repeat` marks the
    /// warm-up call that redoes the first step with two noise estimates.
    Multistep {
        from: usize,
        to: Option<usize>,
        repeat: bool,
    },
}

/// Pseudo numerical methods for diffusion models (Liu et al. 2022, "Pseudo Numerical Methods
/// for Diffusion Models on Manifolds", eq. 11–13), as diffusers' `PNDMScheduler`.
///
/// The transfer from t to t' with a noise estimate e is DDIM's, written as
///
/// ```text
/// φ(x, e, t, t') = √(ᾱ_{t'}/ᾱ_t) x − (ᾱ_{t'} − ᾱ_t) e / (ᾱ_t √(1 − ᾱ_{t'}) + √(ᾱ_t (1 − ᾱ_t) ᾱ_{t'}))
/// ```
///
/// The first three steps use a 4-stage Runge–Kutta scheme (PRK: model calls at t, at the
/// midpoint m twice and at t', combined with weights 1/6, 1/3, 1/3, 1/6, every stage transferring
/// from t); the rest use the 4th-order linear multistep combination
/// (55 e_0 − 59 e_1 + 37 e_2 − 9 e_3)/24 of the last four noise estimates (PLMS). With
/// `skip_prk_steps`, PLMS starts at once with lower orders and one repeated call for its
/// second step. Every step goes to the next timestep of the grid (see [`Ddim`](crate::Ddim)
/// on diffusers' t − ⌊T/N⌋). Calls must come in order; one at index 0 starts a new
/// trajectory.
#[derive(Debug, Clone)]
pub struct Pndm<B: Backend, const D: usize> {
    alphas_cumprod: Vec<f64>,
    final_alpha_cumprod: f64,
    timesteps: Vec<f64>,
    plan: Vec<Call>,
    calls: CallOrder,
    /// The noise estimates of past steps, newest last (at most four).
    ets: Vec<Tensor<B, D>>,
    /// The running Runge–Kutta combination within a block.
    combined: Option<Tensor<B, D>>,
    /// The sample a Runge–Kutta block (or the repeated warm-up call) starts from.
    block_start: Option<Tensor<B, D>>,
}

impl<B: Backend, const D: usize> Pndm<B, D> {
    /// PNDM over `schedule` in `steps` steps (9 more model calls than steps with the
    /// Runge–Kutta warm-up, which needs at least 4 steps; one more without).
    pub fn new(
        config: PndmConfig,
        schedule: &NoiseSchedule,
        steps: usize,
    ) -> Result<Self, SamplerError> {
        let grid = config
            .grid
            .discrete_timesteps(schedule.num_timesteps(), steps)?;
        if !config.skip_prk_steps && steps < 4 {
            return Err(SamplerError::OutOfRange {
                name: "num_inference_steps",
                value: steps as f64,
                expected: "at least 4 for PNDM's Runge-Kutta warm-up (or skip_prk_steps)",
            });
        }
        let multistep = |k: usize, repeat: bool| Call::Multistep {
            from: grid[k],
            to: grid.get(k + 1).copied(),
            repeat,
        };
        let plan: Vec<Call> = if config.skip_prk_steps {
            let warm_up = (steps > 1).then(|| multistep(0, true));
            std::iter::once(multistep(0, false))
                .chain(warm_up)
                .chain((1..steps).map(|k| multistep(k, false)))
                .collect()
        } else {
            // Three blocks over the first three steps, then multistep from the fourth point.
            let blocks = (0..3).flat_map(|k| {
                let (from, to) = (grid[k], grid[k + 1]);
                let midpoint = to + (from - to) / 2;
                [midpoint, midpoint, to, to]
                    .into_iter()
                    .enumerate()
                    .map(move |(stage, to)| Call::RungeKutta { stage, from, to })
            });
            blocks
                .chain((3..steps).map(|k| multistep(k, false)))
                .collect()
        };
        // The model is called where each call starts: a block's first stage at t, each later
        // stage where the one before it landed (m, m, t').
        let timesteps = plan
            .iter()
            .enumerate()
            .map(|(i, call)| match *call {
                Call::RungeKutta { stage: 0, from, .. } => from,
                Call::RungeKutta { .. } => match plan[i - 1] {
                    Call::RungeKutta { to, .. } => to,
                    Call::Multistep { from, .. } => from,
                },
                Call::Multistep {
                    from, to, repeat, ..
                } => {
                    if repeat {
                        to.unwrap_or(from)
                    } else {
                        from
                    }
                }
            } as f64)
            .collect();
        Ok(Self {
            final_alpha_cumprod: final_alpha_cumprod(config.set_alpha_to_one, schedule),
            alphas_cumprod: schedule.alphas_cumprod().to_vec(),
            timesteps,
            plan,
            calls: CallOrder::default(),
            ets: Vec::with_capacity(4),
            combined: None,
            block_start: None,
        })
    }

    /// φ: moves `sample` from timestep `from` to `to` with the model `output` (of kind
    /// `prediction`, turned into a noise estimate at `from`). Returns the new sample and the
    /// implied x̂_0. From ᾱ = 0 (a zero-terminal-SNR schedule's last timestep), where
    /// √(ᾱ'/ᾱ) is infinite, it takes the same step in DDIM's form √ᾱ' x̂_0 + √(1 − ᾱ') ε̂,
    /// which a v prediction keeps finite.
    fn transfer(
        &self,
        sample: Tensor<B, D>,
        from: usize,
        to: Option<usize>,
        output: Tensor<B, D>,
        prediction: Prediction,
    ) -> Result<Step<B, D>, SamplerError> {
        let alpha = self.alphas_cumprod[from];
        let alpha_prev = to.map_or(self.final_alpha_cumprod, |t| self.alphas_cumprod[t]);
        let (x0, eps) = clean_and_noise(
            "PNDM",
            output,
            prediction,
            sample.clone(),
            alpha,
            from as f64,
        )?;
        let next = if alpha == 0.0 {
            linear(&x0, alpha_prev.sqrt(), &eps, (1.0 - alpha_prev).sqrt())
        } else {
            let denominator =
                alpha * (1.0 - alpha_prev).sqrt() + (alpha * (1.0 - alpha) * alpha_prev).sqrt();
            linear(
                &sample,
                (alpha_prev / alpha).sqrt(),
                &eps,
                -(alpha_prev - alpha) / denominator,
            )
        };
        Ok(Step {
            sample: next,
            denoised: x0,
        })
    }

    /// Keeps the newest four noise estimates.
    fn remember(&mut self, output: &Tensor<B, D>) {
        if self.ets.len() == 4 {
            self.ets.remove(0);
        }
        self.ets.push(output.clone());
    }
}

impl<B: Backend, const D: usize> Sampler<B, D> for Pndm<B, D> {
    fn timesteps(&self) -> &[f64] {
        &self.timesteps
    }

    /// A trajectory starts where a Runge–Kutta block or a plain multistep call begins; its
    /// first multistep calls then have fewer noise estimates to combine (lower order).
    fn restart(&mut self, index: usize) -> Result<(), SamplerError> {
        timestep_at(&self.timesteps, index)?;
        let begins = match self.plan[index] {
            Call::RungeKutta { stage, .. } => stage == 0,
            Call::Multistep { repeat, .. } => !repeat,
        };
        if !begins {
            return Err(SamplerError::CannotStartAt {
                sampler: "PNDM",
                index,
            });
        }
        self.ets.clear();
        self.combined = None;
        self.block_start = None;
        self.calls.restart_at(index);
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
        timestep_at(&self.timesteps, index)?;
        // PNDM combines outputs before converting them: check the shape first.
        check_output_shape(&output, &sample)?;
        if index == 0 {
            Sampler::<B, D>::restart(self, 0)?;
        }
        self.calls.advance("PNDM", index)?;
        match self.plan[index] {
            Call::RungeKutta { stage, from, to } => {
                let weighted = |weight: f64| output.clone().mul_scalar(weight);
                let so_far = self.combined.take();
                let effective = match (stage, so_far) {
                    (0, _) => {
                        self.remember(&output);
                        self.block_start = Some(sample.clone());
                        self.combined = Some(weighted(1.0 / 6.0));
                        output
                    }
                    (3, Some(so_far)) => so_far + weighted(1.0 / 6.0),
                    (_, so_far) => {
                        let term = weighted(1.0 / 3.0);
                        self.combined = Some(so_far.map_or(term.clone(), |s| s + term));
                        output
                    }
                };
                let start = self.block_start.clone().unwrap_or(sample);
                self.transfer(start, from, Some(to), effective, prediction)
            }
            Call::Multistep { from, to, repeat } => {
                let mut start = sample;
                let combined = if repeat {
                    // Redo the first step with the mean of its two noise estimates.
                    start = self.block_start.take().unwrap_or(start);
                    (output + self.ets[0].clone()).mul_scalar(0.5)
                } else {
                    self.remember(&output);
                    let e = &self.ets;
                    match e.len() {
                        1 => {
                            self.block_start = Some(start.clone());
                            output
                        }
                        2 => (e[1].clone().mul_scalar(3.0) - e[0].clone()).mul_scalar(0.5),
                        3 => (e[2].clone().mul_scalar(23.0) - e[1].clone().mul_scalar(16.0)
                            + e[0].clone().mul_scalar(5.0))
                        .mul_scalar(1.0 / 12.0),
                        _ => (e[3].clone().mul_scalar(55.0) - e[2].clone().mul_scalar(59.0)
                            + e[1].clone().mul_scalar(37.0)
                            - e[0].clone().mul_scalar(9.0))
                        .mul_scalar(1.0 / 24.0),
                    }
                };
                self.transfer(start, from, to, combined, prediction)
            }
        }
    }
}
