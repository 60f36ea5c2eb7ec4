use burn::tensor::{Tensor, backend::Backend};
use kiln_forward::Prediction;
use kiln_sampler::{
    ConsistencyScalings, Denoiser, LcmConfig, ModelError, SampleClipping, SamplerError,
};
use kiln_schedule::NoiseSchedule;

use crate::batch::{check_batch, check_shapes, combine, per_sample};
use crate::ddim::{clean_estimate, ddim_step, forward_jump};
use crate::{DistillError, Teacher};

/// Consistency distillation (Song et al. 2023, "Consistency Models", Algorithm 2) in the
/// discrete-time form of latent consistency models (Luo et al. 2023, "Latent Consistency
/// Models", §4.2): a student whose consistency function maps any point of the teacher's
/// probability-flow ODE trajectory to its end, so that one evaluation is a sampler.
///
/// The teacher solves the ODE with DDIM (η = 0, no clipping) on a grid of M timesteps
/// t_M > … > t_1, k·⌊T/M⌋ − 1 for k = M, …, 1 ([`LcmConfig::original_timesteps`], the grid
/// [`kiln_sampler::Lcm`] samples on), with t_0 = 0 below it. The student's consistency
/// function wraps its clean estimate x̂_θ in the boundary scalings of
/// [`ConsistencyScalings`]:
///
/// ```text
/// f_θ(x, t) = c_skip(t) x + c_out(t) x̂_θ(x, t),        f_θ(x, 0) = x.
/// ```
///
/// For an image x_0 noised to a grid point, z = a_{n+1} x_0 + s_{n+1} ε (a = √ᾱ,
/// s = √(1 − ᾱ)), the teacher takes one DDIM step to the grid point below,
/// x̂_{t_n} = (s_n/s_{n+1}) z + (a_n − s_n a_{n+1}/s_{n+1}) x̂_teacher(z, t_{n+1}), and the
/// student learns to answer at z what it answers there: the loss is the weighted mean squared
/// error
///
/// ```text
/// λ_n ‖f_θ(z, t_{n+1}) − f_θ⁻(x̂_{t_n}, t_n)‖² / dim,     λ_n ∝ 1/(σ_{t_{n+1}} − σ_{t_n}),
/// ```
///
/// σ = √((1 − ᾱ)/ᾱ), with the target network θ⁻ the student's own weights without gradient
/// (Song & Dhariwal 2023, "Improved Techniques for Training Consistency Models": §3.2, the
/// exponential moving average of the original paper's target network makes the update
/// something other than the objective's gradient; §3.4, λ_n). The squared error is the
/// latent consistency models' default `l2` distance: the improved techniques' pseudo-Huber
/// distance √(‖x − y‖² + c²) − c learnt the mixture oracle's map markedly slower in
/// `tests/consistency.rs` (RMS 0.46 against 0.14 after the same 3,000 steps). The fixed point
/// is the teacher's DDIM map: from t_n, n DDIM steps down the grid and the last to t = 0
/// ([`IdealConsistency`]). Few grid steps train faster: the answers at neighbouring
/// timesteps must agree, and at high noise, where a DDIM step barely moves z, an answer of
/// noise agrees as well as a face does; the boundary's pull reaches there through every
/// grid step below (Song & Dhariwal's curriculum starts at 10).
///
/// Trajectory consistency distillation (Zheng et al. 2024, "Trajectory Consistency
/// Distillation") trains the same pairs towards a point s of the trajectory drawn for each
/// sample among t_n, the grid points below it and 0 ([`Self::landings_below`]), instead of
/// always towards t = 0. Its consistency function is the DDIM jump from t to s with the
/// model's clean estimate ([`Self::trajectory`], the paper's first-order semi-linear
/// parametrization), which answers x itself at s = t and so needs no boundary scalings:
///
/// ```text
/// ‖f_θ(z, t_{n+1}, s) − f_θ⁻(x̂_{t_n}, t_n, s)‖² / dim,      s ∈ {t_n, t_{n−1}, …, t_1, 0}
/// ```
///
/// (unweighted: [`Self::trajectory_loss`]). At s = t_n the target is the teacher's step
/// itself; at s = 0 it is the plain distillation's. A multistep sampler that lands on the trajectory between its steps
/// ([`kiln_sampler::Tcd`]) then asks the student for the jumps it was trained on. No one x̂
/// makes the jumps to every s equal the teacher's map down the grid, so the loss has no zero
/// here: the student learns the jump that is closest over the landings.
#[derive(Debug, Clone, PartialEq)]
pub struct ConsistencyDistillation {
    scalings: ConsistencyScalings,
    /// The grid's M timesteps, noisiest first, then t_0 = 0.
    timesteps_to_zero: Vec<f64>,
    /// ᾱ at every timestep of the schedule.
    alphas_cumprod: Vec<f64>,
}

impl ConsistencyDistillation {
    /// The distillation over `schedule` on the grid of `teacher_steps` = M, with the boundary
    /// `scalings`.
    ///
    /// Fails when M is 0 or exceeds the schedule's timesteps, or the scalings are not valid
    /// ([`ConsistencyScalings::validate`]).
    pub fn new(
        schedule: &NoiseSchedule,
        teacher_steps: usize,
        scalings: ConsistencyScalings,
    ) -> Result<Self, DistillError> {
        scalings.validate()?;
        let config = LcmConfig {
            original_inference_steps: teacher_steps,
            scalings,
            clipping: SampleClipping::thresholding_only(None),
        };
        let mut timesteps_to_zero = config.original_timesteps(schedule)?;
        timesteps_to_zero.push(0.0);
        Ok(Self {
            scalings,
            timesteps_to_zero,
            alphas_cumprod: schedule.alphas_cumprod().to_vec(),
        })
    }

    /// The settings of [`kiln_sampler::Lcm`], the student's sampler: this grid and these
    /// scalings, x̂ unclipped.
    pub fn sampler_config(&self) -> LcmConfig {
        LcmConfig {
            original_inference_steps: self.teacher_steps(),
            scalings: self.scalings,
            clipping: SampleClipping::thresholding_only(None),
        }
    }

    /// M, the teacher's steps.
    pub fn teacher_steps(&self) -> usize {
        self.timesteps_to_zero.len() - 1
    }

    /// The grid's M timesteps t_M > … > t_1, where the student is trained.
    pub fn timesteps(&self) -> &[f64] {
        &self.timesteps_to_zero[..self.teacher_steps()]
    }

    /// The index in [`Self::timesteps`] of `timestep`.
    pub fn index_of(&self, timestep: f64) -> Result<usize, DistillError> {
        self.timesteps()
            .iter()
            .position(|&t| t == timestep)
            .ok_or(DistillError::OffGrid { timestep })
    }

    /// The grid timestep of each index in `indices`.
    pub fn timesteps_of(&self, indices: &[usize]) -> Result<Vec<f64>, DistillError> {
        indices
            .iter()
            .map(|&index| Ok(self.timesteps()[self.checked(index)?]))
            .collect()
    }

    /// The timestep one teacher step below each index in `indices`: the next grid point,
    /// 0 below the last.
    pub fn previous_timesteps_of(&self, indices: &[usize]) -> Result<Vec<f64>, DistillError> {
        indices
            .iter()
            .map(|&index| Ok(self.landings_below(index)?[0]))
            .collect()
    }

    /// Where trajectory consistency distillation may land from grid index `index`: the
    /// timesteps below it, t_n > … > t_1 and 0 (M − `index` of them, the first one teacher
    /// step down), each to be drawn with equal probability.
    pub fn landings_below(&self, index: usize) -> Result<&[f64], DistillError> {
        Ok(&self.timesteps_to_zero[self.checked(index)? + 1..])
    }

    /// `index` if it is one of the grid's.
    fn checked(&self, index: usize) -> Result<usize, DistillError> {
        if index < self.teacher_steps() {
            Ok(index)
        } else {
            Err(DistillError::StepOutOfRange {
                index,
                steps: self.teacher_steps(),
            })
        }
    }

    /// z = a x_0 + s ε at each sample's grid point (Ho et al. 2020, eq. 4).
    pub fn noisy<B: Backend, const D: usize>(
        &self,
        clean: Tensor<B, D>,
        noise: Tensor<B, D>,
        indices: &[usize],
    ) -> Result<Tensor<B, D>, DistillError> {
        check_batch(&clean, indices)?;
        let alphas = self.alphas(&self.timesteps_of(indices)?);
        forward_jump(&clean, &noise, &alphas)
    }

    /// x̂_{t_n}: one DDIM step of `teacher` from `noisy` at each sample's grid point t_{n+1}
    /// to the timestep below it.
    pub fn teacher_step<B: Backend, const D: usize, T: Teacher<B, D>>(
        &self,
        teacher: &T,
        noisy: Tensor<B, D>,
        indices: &[usize],
    ) -> Result<Tensor<B, D>, DistillError> {
        check_batch(&noisy, indices)?;
        let timesteps = self.timesteps_of(indices)?;
        let from = self.alphas(&timesteps);
        let to = self.alphas(&self.previous_timesteps_of(indices)?);
        let clean = clean_estimate("the teacher", teacher, noisy.clone(), &timesteps, &from)?;
        Ok(ddim_step(&noisy, &clean, &from, &to))
    }

    /// f(x, t) = c_skip(t) x + c_out(t) x̂(x, t) of `model` at `sample`, each sample at its
    /// timestep in `timesteps` (whole timesteps of the schedule; `name` says which model in
    /// an error).
    pub fn consistency<B: Backend, const D: usize, M: Teacher<B, D> + ?Sized>(
        &self,
        name: &'static str,
        model: &M,
        sample: Tensor<B, D>,
        timesteps: &[f64],
    ) -> Result<Tensor<B, D>, DistillError> {
        self.check_timesteps(&sample, timesteps)?;
        let clean = clean_estimate(
            name,
            model,
            sample.clone(),
            timesteps,
            &self.alphas(timesteps),
        )?;
        let (on_sample, on_clean): (Vec<f64>, Vec<f64>) =
            timesteps.iter().map(|&t| self.scalings.at(t)).unzip();
        Ok(combine(&sample, &on_sample, &clean, &on_clean))
    }

    /// f(x, t, s) of `model` at `sample`, the trajectory consistency function (Zheng et al.
    /// 2024): the DDIM jump from each sample's timestep t in `timesteps` to its `landings`
    /// s ≤ t with the model's clean estimate x̂(x, t), with a = √ᾱ and b = √(1 − ᾱ),
    ///
    /// ```text
    /// f(x, t, s) = (b_s/b_t) x + (a_s − b_s a_t/b_t) x̂(x, t)  =  a_s x̂ + b_s ε̂,
    /// ```
    ///
    /// x itself at s = t, and at s = 0 the last step of [`kiln_sampler::Tcd`] (whole
    /// timesteps of the schedule; `name` says which model in an error).
    pub fn trajectory<B: Backend, const D: usize, M: Teacher<B, D> + ?Sized>(
        &self,
        name: &'static str,
        model: &M,
        sample: Tensor<B, D>,
        timesteps: &[f64],
        landings: &[f64],
    ) -> Result<Tensor<B, D>, DistillError> {
        self.check_timesteps(&sample, timesteps)?;
        self.check_timesteps(&sample, landings)?;
        if let Some((&timestep, &landing)) = timesteps.iter().zip(landings).find(|(t, s)| s > t) {
            return Err(DistillError::LandingAbove { timestep, landing });
        }
        let from = self.alphas(timesteps);
        let clean = clean_estimate(name, model, sample.clone(), timesteps, &from)?;
        Ok(ddim_step(&sample, &clean, &from, &self.alphas(landings)))
    }

    /// One whole timestep of the schedule per sample of `sample`.
    fn check_timesteps<B: Backend, const D: usize>(
        &self,
        sample: &Tensor<B, D>,
        timesteps: &[f64],
    ) -> Result<(), DistillError> {
        if timesteps.len() != sample.dims()[0] || timesteps.is_empty() {
            return Err(DistillError::IndexCount {
                indices: timesteps.len(),
                batch: sample.dims()[0],
            });
        }
        match timesteps
            .iter()
            .find(|&&t| t.fract() != 0.0 || !(0.0..self.alphas_cumprod.len() as f64).contains(&t))
        {
            Some(&timestep) => Err(DistillError::OffGrid { timestep }),
            None => Ok(()),
        }
    }

    /// The distillation's loss: the mean squared difference between the student's answers
    /// f_θ(z, t_{n+1}) and the target's f_θ⁻(x̂_{t_n}, t_n) (or, trajectory consistency's,
    /// f_θ(z, t_{n+1}, s) and f_θ⁻(x̂_{t_n}, t_n, s)), each sample weighted by λ_n.
    pub fn loss<B: Backend, const D: usize>(
        &self,
        student: Tensor<B, D>,
        target: Tensor<B, D>,
        indices: &[usize],
    ) -> Result<Tensor<B, 1>, DistillError> {
        check_shapes(&student, &target)?;
        check_batch(&student, indices)?;
        let weights = self.loss_weights(indices)?;
        let weights = per_sample(&weights, &student.device());
        Ok(((student - target).powi_scalar(2) * weights).mean())
    }

    /// Trajectory consistency distillation's loss: the plain mean squared difference between
    /// the student's answers f_θ(z, t_{n+1}, s) and the target's f_θ⁻(x̂_{t_n}, t_n, s), as
    /// the paper's training scripts have it. The weights λ_n of [`Self::loss`] are made for
    /// answers at t = 0; on the mixture oracle of `tests/consistency.rs` they left the
    /// trajectory student's 2-step samples further from the teacher's map (RMS 0.200 against
    /// 0.175 without).
    pub fn trajectory_loss<B: Backend, const D: usize>(
        &self,
        student: Tensor<B, D>,
        target: Tensor<B, D>,
    ) -> Result<Tensor<B, 1>, DistillError> {
        check_shapes(&student, &target)?;
        Ok((student - target).powi_scalar(2).mean())
    }

    /// λ_n = 1/(σ_{n+1} − σ_n) of each index's pair (σ = √((1 − ᾱ)/ᾱ)), scaled to a mean of 1
    /// over the grid (Song & Dhariwal 2023, §3.4): the pairs at low noise, whose targets
    /// anchor the rest, weigh more than those at high noise.
    pub fn loss_weights(&self, indices: &[usize]) -> Result<Vec<f64>, DistillError> {
        let sigma = |t: f64| {
            let alpha = self.alphas_cumprod[t as usize];
            ((1.0 - alpha) / alpha).sqrt()
        };
        let all: Vec<usize> = (0..self.teacher_steps()).collect();
        let raw = |indices: &[usize]| -> Result<Vec<f64>, DistillError> {
            let at = self.timesteps_of(indices)?;
            let below = self.previous_timesteps_of(indices)?;
            Ok(at
                .iter()
                .zip(&below)
                .map(|(&t, &b)| 1.0 / (sigma(t) - sigma(b)).max(f64::EPSILON))
                .collect())
        };
        let mean = raw(&all)?.iter().sum::<f64>() / all.len() as f64;
        Ok(raw(indices)?.iter().map(|w| w / mean).collect())
    }

    /// ᾱ at each of `timesteps`.
    fn alphas(&self, timesteps: &[f64]) -> Vec<f64> {
        timesteps
            .iter()
            .map(|&t| self.alphas_cumprod[t as usize])
            .collect()
    }
}

/// The consistency model a perfect distillation would train: at grid point t_n its
/// consistency function is the teacher's DDIM map down the grid to t = 0 (n steps), so its
/// distillation loss is zero and one [`kiln_sampler::Lcm`] step from t_M is M teacher DDIM
/// steps. As a [`Denoiser`] it answers the x̂ that the boundary scalings turn into that map
/// (a [`Prediction::Sample`]), which is how `tests/consistency.rs` checks the distillation's
/// algebra against the sampler.
#[derive(Debug, Clone)]
pub struct IdealConsistency<T> {
    distillation: ConsistencyDistillation,
    teacher: T,
}

impl<T> IdealConsistency<T> {
    /// The perfect student of `distillation` for `teacher`.
    pub fn new(distillation: ConsistencyDistillation, teacher: T) -> Self {
        Self {
            distillation,
            teacher,
        }
    }
}

impl<B: Backend, const D: usize, T: Teacher<B, D>> Denoiser<B, D> for IdealConsistency<T> {
    fn prediction(&self) -> Prediction {
        Prediction::Sample
    }

    fn denoise(&self, sample: Tensor<B, D>, timestep: f64) -> Result<Tensor<B, D>, SamplerError> {
        let model_error = |error: DistillError| SamplerError::Model(ModelError::new(error));
        let distillation = &self.distillation;
        let (c_skip, c_out) = distillation.scalings.at(timestep);
        if c_out == 0.0 {
            // t = 0: f(x, 0) = x whatever x̂ is.
            return Ok(sample);
        }
        let start = distillation.index_of(timestep).map_err(model_error)?;
        let batch = sample.dims()[0];
        let mut end = sample.clone();
        for index in start..distillation.teacher_steps() {
            end = distillation
                .teacher_step(&self.teacher, end, &vec![index; batch])
                .map_err(model_error)?;
        }
        Ok((end - sample.mul_scalar(c_skip)).div_scalar(c_out))
    }
}
