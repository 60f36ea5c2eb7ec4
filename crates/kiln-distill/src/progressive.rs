use burn::tensor::{Tensor, TensorData, backend::Backend};
use kiln_forward::Prediction;
use kiln_sampler::{DdimConfig, Denoiser, ModelError, SampleClipping, SamplerError};
use kiln_schedule::{GridEnd, NoiseSchedule, ScheduleError, TimestepGrid, TimestepSpacing};

use crate::batch::{check_batch, check_input_shape, check_shapes, combine};
use crate::ddim::{clean_estimate, conversion, ddim_step, forward_jump};
use crate::{DistillError, Teacher};

/// One round of progressive distillation (Salimans & Ho 2022, "Progressive Distillation for
/// Fast Sampling of Diffusion Models", Algorithm 2): a student that takes one DDIM step where
/// its teacher takes two, so that N student steps do the work of 2N teacher steps.
///
/// The teacher samples on the `trailing` grid of 2N whole timesteps t_0 > t_1 > … > t_{2N−1},
/// then steps to the clean data (ᾱ = 1); the student on the same grid's even points
/// t_0, t_2, …, t_{2N−2} — the `trailing` grid of N (the grids nest). Student step j goes from
/// t = t_{2j} to t'' = t_{2j+2} (the clean data after the last); with a_t = √ᾱ_t,
/// s_t = √(1 − ᾱ_t) and the teacher's DDIM step z_u = a_u x̂ + s_u (z_t − a_t x̂)/s_t
/// (η = 0, no clipping), the teacher goes t → t' = t_{2j+1} → t'' and the student's target is
/// the x̃ that lands one DDIM step from t on the teacher's z_{t''}:
///
/// ```text
/// x̃ = (z_{t''} − (s_{t''}/s_t) z_t) / (a_{t''} − (s_{t''}/s_t) a_t)
/// ```
///
/// The loss weights the student's x̂ error by the truncated SNR, max(ᾱ_t/(1 − ᾱ_t), 1) (the
/// paper's §4): the x̂ error where noise dominates, the ε error where signal does. The paper
/// gives the student a v output (or x̂ and ε), never ε alone, whose x̂ = (z − s ε̂)/a blows up
/// at high noise. A round ends when the student matches its teacher; the next round distils it
/// into a student of N/2 steps.
#[derive(Debug, Clone, PartialEq)]
pub struct ProgressiveDistillation {
    /// The teacher's 2N timesteps, noisiest first.
    teacher_timesteps: Vec<f64>,
    /// ᾱ at each teacher timestep, then 1: the clean data after the last step.
    alphas_cumprod: Vec<f64>,
}

impl ProgressiveDistillation {
    /// The round that distils a teacher of 2·`student_steps` steps over `schedule` into a
    /// student of `student_steps`.
    pub fn new(schedule: &NoiseSchedule, student_steps: usize) -> Result<Self, DistillError> {
        if student_steps == 0 {
            return Err(ScheduleError::ZeroSteps.into());
        }
        let teacher_timesteps: Vec<f64> = Self::grid()
            .discrete_timesteps(schedule.num_timesteps(), 2 * student_steps)?
            .into_iter()
            .map(|t| t as f64)
            .collect();
        let table = schedule.alphas_cumprod();
        let alphas_cumprod = teacher_timesteps
            .iter()
            .map(|&t| table[t as usize])
            .chain([1.0])
            .collect();
        Ok(Self {
            teacher_timesteps,
            alphas_cumprod,
        })
    }

    /// The grid both sample on: `trailing`, every step to the next grid point.
    pub fn grid() -> TimestepGrid {
        TimestepGrid::new(TimestepSpacing::Trailing, GridEnd::AtLastStep)
    }

    /// DDIM as both sample and the target assumes: η = 0, x̂ unclipped, the last step to
    /// ᾱ = 1, on [`Self::grid`]. `Ddim::new(config, schedule, N)` is the student's sampler,
    /// with 2N the teacher's.
    pub fn sampler_config() -> DdimConfig {
        DdimConfig {
            eta: 0.0,
            clipping: SampleClipping::thresholding_only(None),
            set_alpha_to_one: true,
            grid: Self::grid(),
        }
    }

    /// N, the student's number of steps.
    pub fn student_steps(&self) -> usize {
        self.teacher_timesteps.len() / 2
    }

    /// The teacher's 2N timesteps, noisiest first.
    pub fn teacher_timesteps(&self) -> &[f64] {
        &self.teacher_timesteps
    }

    /// The student's N timesteps, noisiest first: the teacher's even ones.
    pub fn student_timesteps(&self) -> Vec<f64> {
        self.teacher_timesteps.iter().copied().step_by(2).collect()
    }

    /// The student step whose timestep is `timestep`.
    pub fn student_index(&self, timestep: f64) -> Result<usize, DistillError> {
        self.student_timesteps()
            .iter()
            .position(|&t| t == timestep)
            .ok_or(DistillError::OffGrid { timestep })
    }

    /// The student's timestep of each step index in `indices`.
    pub fn timesteps_of(&self, indices: &[usize]) -> Result<Vec<f64>, DistillError> {
        indices
            .iter()
            .map(|&index| {
                self.teacher_timesteps
                    .get(2 * index)
                    .copied()
                    .ok_or(DistillError::StepOutOfRange {
                        index,
                        steps: self.student_steps(),
                    })
            })
            .collect()
    }

    /// ᾱ at teacher grid point `point` of each student step in `indices` (0: the step's
    /// start t, 1: the teacher's midpoint t', 2: its end t'').
    fn alphas_at(&self, indices: &[usize], point: usize) -> Result<Vec<f64>, DistillError> {
        self.timesteps_of(indices)?;
        Ok(indices
            .iter()
            .map(|&index| self.alphas_cumprod[2 * index + point])
            .collect())
    }

    /// z_t = a_t x_0 + s_t ε at each sample's student step (the forward process's O(1) jump,
    /// Ho et al. 2020, eq. 4).
    pub fn noisy<B: Backend, const D: usize>(
        &self,
        clean: Tensor<B, D>,
        noise: Tensor<B, D>,
        indices: &[usize],
    ) -> Result<Tensor<B, D>, DistillError> {
        check_batch(&clean, indices)?;
        let alphas = self.alphas_at(indices, 0)?;
        forward_jump(&clean, &noise, &alphas)
    }

    /// The student's target x̃ for `noisy` = z_t at each sample's student step: two DDIM
    /// steps of `teacher`, and the x̃ one step lands on their end with.
    pub fn target<B: Backend, const D: usize, T: Teacher<B, D>>(
        &self,
        teacher: &T,
        noisy: Tensor<B, D>,
        indices: &[usize],
    ) -> Result<Tensor<B, D>, DistillError> {
        check_batch(&noisy, indices)?;
        let start = self.alphas_at(indices, 0)?;
        let middle = self.alphas_at(indices, 1)?;
        let end = self.alphas_at(indices, 2)?;
        let timesteps = |offset: usize| -> Vec<f64> {
            indices
                .iter()
                .map(|&index| self.teacher_timesteps[2 * index + offset])
                .collect()
        };
        let clean = clean_estimate("the teacher", teacher, noisy.clone(), &timesteps(0), &start)?;
        let halfway = ddim_step(&noisy, &clean, &start, &middle);
        let clean = clean_estimate(
            "the teacher",
            teacher,
            halfway.clone(),
            &timesteps(1),
            &middle,
        )?;
        let landed = ddim_step(&halfway, &clean, &middle, &end);
        // x̃ = (z'' − k z)/(a'' − k a), k = s''/s.
        let ratios: Vec<f64> = start
            .iter()
            .zip(&end)
            .map(|(&from, &to)| ((1.0 - to) / (1.0 - from)).sqrt())
            .collect();
        let on_landed: Vec<f64> = start
            .iter()
            .zip(&end)
            .zip(&ratios)
            .map(|((&from, &to), &k)| 1.0 / (to.sqrt() - k * from.sqrt()))
            .collect();
        let on_noisy: Vec<f64> = ratios
            .iter()
            .zip(&on_landed)
            .map(|(&k, &c)| -k * c)
            .collect();
        Ok(combine(&landed, &on_landed, &noisy, &on_noisy))
    }

    /// The truncated-SNR weight max(ᾱ_t/(1 − ᾱ_t), 1) of each sample's student step.
    pub fn loss_weights(&self, indices: &[usize]) -> Result<Vec<f64>, DistillError> {
        Ok(self
            .alphas_at(indices, 0)?
            .iter()
            .map(|&a| (a / (1.0 - a)).max(1.0))
            .collect())
    }

    /// The round's loss: the batch mean of max(SNR_t, 1) · mean((x̂ − x̃)²), x̂ the clean
    /// estimate of the student's `output` (of kind `prediction`) at `noisy` = z_t.
    pub fn loss<B: Backend, const D: usize>(
        &self,
        output: Tensor<B, D>,
        prediction: Prediction,
        noisy: Tensor<B, D>,
        target: Tensor<B, D>,
        indices: &[usize],
    ) -> Result<Tensor<B, 1>, DistillError> {
        check_batch(&output, indices)?;
        check_shapes(&output, &target)?;
        check_input_shape("noisy batch", &output, &noisy)?;
        let alphas = self.alphas_at(indices, 0)?;
        let [on_noisy, on_output] = conversion(
            "the student",
            prediction,
            &self.timesteps_of(indices)?,
            &alphas,
        )?;
        let clean = combine(&noisy, &on_noisy, &output, &on_output);
        let batch = indices.len();
        let weights = Tensor::<B, 1>::from_data(
            TensorData::new(
                self.loss_weights(indices)?
                    .iter()
                    .map(|&w| w as f32)
                    .collect(),
                [batch],
            ),
            &clean.device(),
        );
        let per_sample = (clean - target)
            .powi_scalar(2)
            .reshape([batch as i32, -1])
            .mean_dim(1)
            .reshape([batch]);
        Ok((per_sample * weights).mean())
    }
}

/// The student a perfect round would train: at student timestep t it answers the round's
/// target x̃ (a [`Prediction::Sample`]), computed from the teacher. N DDIM steps of it are
/// exactly 2N of the teacher's; as the teacher of the next round it makes the perfect
/// students of every round, which is how `tests/progressive.rs` checks the rounds' bookkeeping.
#[derive(Debug, Clone)]
pub struct IdealStudent<T> {
    round: ProgressiveDistillation,
    teacher: T,
}

impl<T> IdealStudent<T> {
    /// The perfect student of `round` for `teacher`.
    pub fn new(round: ProgressiveDistillation, teacher: T) -> Self {
        Self { round, teacher }
    }
}

impl<B: Backend, const D: usize, T: Teacher<B, D>> Denoiser<B, D> for IdealStudent<T> {
    fn prediction(&self) -> Prediction {
        Prediction::Sample
    }

    fn denoise(&self, sample: Tensor<B, D>, timestep: f64) -> Result<Tensor<B, D>, SamplerError> {
        let model_error = |error: DistillError| SamplerError::Model(ModelError::new(error));
        let index = self.round.student_index(timestep).map_err(model_error)?;
        let batch = sample.dims()[0];
        self.round
            .target(&self.teacher, sample, &vec![index; batch])
            .map_err(model_error)
    }
}
