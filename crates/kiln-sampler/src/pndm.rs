use burn::tensor::{Tensor, backend::Backend};
use kiln_forward::Prediction;
use kiln_schedule::NoiseSchedule;
use rand::Rng;

use crate::sampler::{Step, clean_and_noise, linear, timestep_at};
use crate::{Sampler, SamplerError};

/// Settings of [`Pndm`], with diffusers' `PNDMScheduler` defaults.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct PndmConfig {
    /// Start with plain linear multistep instead of the 12 Runge–Kutta calls (Stable
    /// Diffusion's setting).
    pub skip_prk_steps: bool,
    /// Whether the step after the last goes to ᾱ = 1 rather than to ᾱ_0.
    pub set_alpha_to_one: bool,
    /// Added to every timestep (PNDM always uses `leading` spacing).
    pub steps_offset: usize,
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
/// The first three steps use a 4-stage Runge–Kutta scheme (PRK: model calls at t, t − δ/2
/// twice and t − δ, combined with weights 1/6, 1/3, 1/3, 1/6); the rest use the 4th-order
/// linear multistep combination (55 e_0 − 59 e_1 + 37 e_2 − 9 e_3)/24 of the last four noise
/// estimates (PLMS). With `skip_prk_steps`, PLMS starts at once with lower orders and one
/// repeated call for its second step.
#[derive(Debug, Clone)]
pub struct Pndm<B: Backend, const D: usize> {
    alphas_cumprod: Vec<f64>,
    final_alpha_cumprod: f64,
    step_ratio: usize,
    prk_steps: usize,
    timesteps: Vec<f64>,
    counter: usize,
    /// The noise estimates of past PLMS-relevant steps, newest last.
    ets: Vec<Tensor<B, D>>,
    /// The running Runge–Kutta combination within a PRK block.
    combined: Option<Tensor<B, D>>,
    /// The sample a PRK block (or the repeated PLMS warm-up call) starts from.
    block_start: Option<Tensor<B, D>>,
}

impl<B: Backend, const D: usize> Pndm<B, D> {
    /// PNDM over `schedule` in `steps` steps (9 more model calls than steps with PRK warm-up,
    /// one more without). PRK warm-up needs at least 4 steps.
    pub fn new(
        config: PndmConfig,
        schedule: &NoiseSchedule,
        steps: usize,
    ) -> Result<Self, SamplerError> {
        let train_timesteps = schedule.num_timesteps();
        let grid = kiln_schedule::TimestepGrid {
            steps_offset: config.steps_offset,
            ..Default::default()
        };
        let base: Vec<usize> = grid.discrete_timesteps(train_timesteps, steps)?;
        if !config.skip_prk_steps && steps < 4 {
            return Err(SamplerError::OutOfRange {
                name: "num_inference_steps",
                value: steps as f64,
                expected: "at least 4 for PNDM's Runge-Kutta warm-up (or skip_prk_steps)",
            });
        }
        let step_ratio = train_timesteps / steps;
        // `base` runs from the largest timestep down.
        let timesteps: Vec<usize> = if config.skip_prk_steps {
            let mut plms = vec![base[0]];
            plms.extend(base.iter().skip(1).take(1));
            plms.extend(base.iter().skip(1));
            plms
        } else {
            let half = step_ratio / 2;
            // The first four timesteps d > c > b > a as three 4-stage blocks (d, c+h, c+h, c),
            // (c, b+h, b+h, b), (b, a+h, a+h, a); PLMS then continues from a.
            let prk = (0..3).flat_map(|block| {
                let (from, to) = (base[block], base[block + 1]);
                [from, to + half, to + half, to]
            });
            prk.chain(base.iter().skip(3).copied()).collect()
        };
        let alphas_cumprod = schedule.alphas_cumprod().to_vec();
        Ok(Self {
            final_alpha_cumprod: if config.set_alpha_to_one {
                1.0
            } else {
                alphas_cumprod[0]
            },
            alphas_cumprod,
            step_ratio,
            prk_steps: if config.skip_prk_steps { 0 } else { 12 },
            timesteps: timesteps.into_iter().map(|t| t as f64).collect(),
            counter: 0,
            ets: Vec::with_capacity(4),
            combined: None,
            block_start: None,
        })
    }

    /// φ: moves `sample` from `timestep` to `prev_timestep` with the model `output` (of kind
    /// `prediction`, turned into a noise estimate at `timestep`). Returns the new sample and
    /// the implied x̂_0.
    fn transfer(
        &self,
        sample: Tensor<B, D>,
        timestep: usize,
        prev_timestep: Option<usize>,
        output: Tensor<B, D>,
        prediction: Prediction,
    ) -> Result<(Tensor<B, D>, Tensor<B, D>), SamplerError> {
        let alpha = self.alphas_cumprod[timestep];
        let alpha_prev = prev_timestep.map_or(self.final_alpha_cumprod, |t| self.alphas_cumprod[t]);
        let (x0, eps) = clean_and_noise(
            "PNDM",
            output,
            prediction,
            sample.clone(),
            alpha,
            timestep as f64,
        )?;
        let denominator =
            alpha * (1.0 - alpha_prev).sqrt() + (alpha * (1.0 - alpha) * alpha_prev).sqrt();
        let next = linear(
            &sample,
            (alpha_prev / alpha).sqrt(),
            &eps,
            -(alpha_prev - alpha) / denominator,
        );
        Ok((next, x0))
    }
}

impl<B: Backend, const D: usize> Sampler<B, D> for Pndm<B, D> {
    fn timesteps(&self) -> &[f64] {
        &self.timesteps
    }

    fn step<R: Rng + ?Sized>(
        &mut self,
        index: usize,
        output: Tensor<B, D>,
        prediction: Prediction,
        sample: Tensor<B, D>,
        _rng: &mut R,
    ) -> Result<Step<B, D>, SamplerError> {
        let timestep = timestep_at(&self.timesteps, index)? as usize;
        if index != self.counter {
            return Err(SamplerError::OutOfOrder {
                sampler: "PNDM",
                index,
                expected: self.counter,
            });
        }
        let counter = self.counter;
        self.counter += 1;
        let before = |t: usize, by: usize| t.checked_sub(by);

        if counter < self.prk_steps {
            // Stage s of a Runge–Kutta block that starts at the block's first timestep.
            let stage = counter % 4;
            let block_timestep = self.timesteps[counter / 4 * 4] as usize;
            let prev = before(
                timestep,
                if counter % 2 == 1 {
                    0
                } else {
                    self.step_ratio / 2
                },
            );
            let weighted = |weight: f64| output.clone().mul_scalar(weight);
            let effective = match stage {
                0 => {
                    self.ets.push(output.clone());
                    self.block_start = Some(sample.clone());
                    self.combined = Some(weighted(1.0 / 6.0));
                    output
                }
                1 | 2 => {
                    let so_far = self.combined.take().unwrap_or_else(|| weighted(0.0));
                    self.combined = Some(so_far + weighted(1.0 / 3.0));
                    output
                }
                _ => {
                    let so_far = self.combined.take().unwrap_or_else(|| weighted(0.0));
                    so_far + weighted(1.0 / 6.0)
                }
            };
            let start = self.block_start.clone().unwrap_or(sample);
            let (next, x0) = self.transfer(start, block_timestep, prev, effective, prediction)?;
            return Ok(Step {
                sample: next,
                denoised: x0,
            });
        }

        // PLMS. The second call of a run without PRK repeats the first step with the average of
        // two noise estimates (a Heun-like warm-up).
        let (mut from, mut to) = (timestep, before(timestep, self.step_ratio));
        if counter != 1 {
            if self.ets.len() == 4 {
                self.ets.remove(0);
            }
            self.ets.push(output.clone());
        } else {
            to = Some(timestep);
            from = timestep + self.step_ratio;
        }
        let e = &self.ets;
        let mut start = sample;
        let combined = match (e.len(), counter) {
            (1, 0) => {
                self.block_start = Some(start.clone());
                output
            }
            (1, 1) => {
                start = self.block_start.take().unwrap_or(start);
                (output + e[0].clone()).mul_scalar(0.5)
            }
            (2, _) => (e[1].clone().mul_scalar(3.0) - e[0].clone()).mul_scalar(0.5),
            (3, _) => (e[2].clone().mul_scalar(23.0) - e[1].clone().mul_scalar(16.0)
                + e[0].clone().mul_scalar(5.0))
            .mul_scalar(1.0 / 12.0),
            _ => (e[3].clone().mul_scalar(55.0) - e[2].clone().mul_scalar(59.0)
                + e[1].clone().mul_scalar(37.0)
                - e[0].clone().mul_scalar(9.0))
            .mul_scalar(1.0 / 24.0),
        };
        let (next, x0) = self.transfer(start, from, to, combined, prediction)?;
        Ok(Step {
            sample: next,
            denoised: x0,
        })
    }
}
