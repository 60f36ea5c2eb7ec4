use burn::tensor::{Tensor, backend::Backend};
use kiln_forward::Prediction;
use kiln_schedule::{NoiseSchedule, TimestepGrid};
use rand::Rng;

use crate::{Denoiser, SamplerError};

/// The result of one sampler step.
#[derive(Debug, Clone)]
pub struct Step<B: Backend, const D: usize> {
    /// The sample after the step (diffusers' `prev_sample`).
    pub sample: Tensor<B, D>,
    /// The step's estimate of the clean data x̂_0 (`pred_original_sample`).
    pub denoised: Tensor<B, D>,
}

/// What a progress callback of [`sample`] sees after each step.
#[derive(Debug)]
pub struct StepEvent<'a, B: Backend, const D: usize> {
    /// The 0-based step index.
    pub index: usize,
    /// The number of steps.
    pub steps: usize,
    /// The timestep the model was called at.
    pub timestep: f64,
    /// The sample after the step.
    pub sample: &'a Tensor<B, D>,
    /// The step's estimate of x_0.
    pub denoised: &'a Tensor<B, D>,
}

/// A sampler laid out for a number of steps: one model call per entry of
/// [`Sampler::timesteps`], each followed by [`Sampler::step`].
///
/// This is diffusers' scheduler interface; [`sample`] drives it. A sampler keeps state between
/// steps (the history of a multistep solver), so a value samples one trajectory at a time,
/// taking steps in order; a step at index 0 starts a new trajectory, so the same value can
/// sample again.
pub trait Sampler<B: Backend, const D: usize> {
    /// The timestep of each model call, in order.
    fn timesteps(&self) -> &[f64];

    /// The standard deviation of the initial noise: N(0, I) noise is multiplied by it.
    fn init_noise_sigma(&self) -> f64 {
        1.0
    }

    /// The factor the running sample is multiplied by before the model call at step `index`
    /// (σ-space samplers keep x_0 + σε and the model expects √ᾱ-scaled input).
    fn model_input_scale(&self, index: usize) -> f64 {
        let _ = index;
        1.0
    }

    /// Starts a new trajectory at step `index`, forgetting the history of earlier steps: a
    /// run begins at 0; image-to-image begins later, and inpainting with resampling goes back.
    /// Multistep samplers take lower orders over their first steps after it. A sampler that
    /// cannot begin at `index` (mid-way through a Heun or Runge–Kutta step) says so.
    fn restart(&mut self, index: usize) -> Result<(), SamplerError> {
        timestep_at(self.timesteps(), index).map(|_| ())
    }

    /// Whether [`Sampler::step`] takes the model's output with its learned variance
    /// ([`Denoiser::denoise_with_variance`]: twice the sample's channels) rather than the
    /// prediction alone. Only DDPM with
    /// [`VarianceType::LearnedRange`](crate::VarianceType::LearnedRange) does.
    fn reads_learned_variance(&self) -> bool {
        false
    }

    /// Advances `sample` by one step given the model's `output` (of kind `prediction`) at
    /// step `index`. Stochastic samplers draw their noise from `rng`.
    fn step<R: Rng + ?Sized>(
        &mut self,
        index: usize,
        output: Tensor<B, D>,
        prediction: Prediction,
        sample: Tensor<B, D>,
        rng: &mut R,
    ) -> Result<Step<B, D>, SamplerError>;
}

/// Runs `sampler` over `denoiser` from `noise` (standard normal; scaled by
/// [`Sampler::init_noise_sigma`] here) to the final sample, calling `on_step` after each step.
///
/// ```
/// use burn::backend::Flex;
/// use burn::tensor::Tensor;
/// use kiln_sampler::{Ddim, DdimConfig, FnDenoiser, Prediction, sample};
/// use kiln_schedule::{BetaSchedule, NoiseSchedule};
/// use rand::{SeedableRng, rngs::StdRng};
///
/// let schedule = NoiseSchedule::new(&BetaSchedule::linear(), 1000)?;
/// let mut ddim = Ddim::new(DdimConfig::default(), &schedule, 10)?;
/// let model = FnDenoiser::new(Prediction::Epsilon, |x: Tensor<Flex, 2>, _t| x.mul_scalar(0.5));
/// let noise = Tensor::<Flex, 2>::ones([4, 2], &Default::default());
/// let x0 = sample(&mut ddim, &model, noise, &mut StdRng::seed_from_u64(0), |event| {
///     assert!(event.index < event.steps);
/// })?;
/// assert_eq!(x0.dims(), [4, 2]);
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
pub fn sample<B, const D: usize, S, M, R>(
    sampler: &mut S,
    denoiser: &M,
    noise: Tensor<B, D>,
    rng: &mut R,
    on_step: impl FnMut(StepEvent<'_, B, D>),
) -> Result<Tensor<B, D>, SamplerError>
where
    B: Backend,
    S: Sampler<B, D>,
    M: Denoiser<B, D>,
    R: Rng + ?Sized,
{
    let state = noise.mul_scalar(sampler.init_noise_sigma());
    sample_from(sampler, denoiser, state, 0, rng, on_step)
}

/// Runs `sampler` over `denoiser` from step `start` to the end, `state` being the sampler's
/// sample before that step (x_t at `timesteps()[start]`, divided by
/// [`Sampler::model_input_scale`]), calling `on_step` after each step.
pub fn sample_from<B, const D: usize, S, M, R>(
    sampler: &mut S,
    denoiser: &M,
    state: Tensor<B, D>,
    start: usize,
    rng: &mut R,
    on_step: impl FnMut(StepEvent<'_, B, D>),
) -> Result<Tensor<B, D>, SamplerError>
where
    B: Backend,
    S: Sampler<B, D>,
    M: Denoiser<B, D>,
    R: Rng + ?Sized,
{
    sampler.restart(start)?;
    let steps = sampler.timesteps().len();
    run_calls(
        start..steps,
        state,
        |index, x| step_once(sampler, denoiser, x, index, rng),
        on_step,
    )
}

/// The loop every sampling run shares: `call` takes the running sample through model call
/// `index` (returning the call's timestep and step), for each index of `calls` (which end at
/// the run's last call), and `on_step` sees each step.
pub(crate) fn run_calls<B: Backend, const D: usize>(
    calls: std::ops::Range<usize>,
    state: Tensor<B, D>,
    mut call: impl FnMut(usize, Tensor<B, D>) -> Result<(f64, Step<B, D>), SamplerError>,
    mut on_step: impl FnMut(StepEvent<'_, B, D>),
) -> Result<Tensor<B, D>, SamplerError> {
    let steps = calls.end;
    let mut x = state;
    for index in calls {
        let (timestep, step) = call(index, x)?;
        on_step(StepEvent {
            index,
            steps,
            timestep,
            sample: &step.sample,
            denoised: &step.denoised,
        });
        x = step.sample;
    }
    Ok(x)
}

/// One model call and sampler step at `index`; returns the step's timestep too.
pub(crate) fn step_once<B, const D: usize, S, M, R>(
    sampler: &mut S,
    denoiser: &M,
    x: Tensor<B, D>,
    index: usize,
    rng: &mut R,
) -> Result<(f64, Step<B, D>), SamplerError>
where
    B: Backend,
    S: Sampler<B, D>,
    M: Denoiser<B, D>,
    R: Rng + ?Sized,
{
    let timestep = timestep_at(sampler.timesteps(), index)?;
    let input = x.clone().mul_scalar(sampler.model_input_scale(index));
    let output = if sampler.reads_learned_variance() {
        if !denoiser.learns_variance() {
            return Err(SamplerError::NoLearnedVariance);
        }
        denoiser.denoise_with_variance(input, timestep)?
    } else {
        denoiser.denoise(input, timestep)?
    };
    let step = sampler.step(index, output, denoiser.prediction(), x, rng)?;
    Ok((timestep, step))
}

/// x̂_0 and ε̂ from a model output at a VP sample with signal fraction ᾱ: each is a
/// combination c_x·x + c_out·output with host coefficients
/// ([`Prediction::conversion_coefficients`]).
pub(crate) fn clean_and_noise<B: Backend, const D: usize>(
    sampler: &'static str,
    output: Tensor<B, D>,
    prediction: Prediction,
    sample: Tensor<B, D>,
    alpha_cumprod: f64,
    timestep: f64,
) -> Result<(Tensor<B, D>, Tensor<B, D>), SamplerError> {
    check_output_shape(&output, &sample)?;
    let combine = |to: Prediction| -> Result<Tensor<B, D>, SamplerError> {
        let [on_sample, on_output] = prediction.conversion_coefficients(to, alpha_cumprod);
        if !(on_sample.is_finite() && on_output.is_finite()) {
            return Err(SamplerError::UnsupportedPrediction {
                sampler,
                prediction,
                timestep,
            });
        }
        Ok(linear(&sample, on_sample, &output, on_output))
    };
    Ok((combine(Prediction::Sample)?, combine(Prediction::Epsilon)?))
}

/// Fails unless the model's `output` has the `sample`'s shape: one of another shape (a model
/// that returns its learned variance beside its prediction from `denoise`) would otherwise
/// reach burn's arithmetic, which panics or broadcasts.
pub(crate) fn check_output_shape<B: Backend, const D: usize>(
    output: &Tensor<B, D>,
    sample: &Tensor<B, D>,
) -> Result<(), SamplerError> {
    if output.dims() == sample.dims() {
        return Ok(());
    }
    Err(SamplerError::ShapeMismatch {
        what: "model output",
        expected: sample.dims().to_vec(),
        found: output.dims().to_vec(),
    })
}

/// The prediction and the learned variance v of a model `output` that holds both along
/// dimension 1 ([`Denoiser::denoise_with_variance`]), each of the `sample`'s shape; an output
/// of another shape fails, as does a sample of rank 1 (`user` names who asked).
pub(crate) fn split_learned_variance<B: Backend, const D: usize>(
    user: &'static str,
    output: Tensor<B, D>,
    sample: &Tensor<B, D>,
) -> Result<(Tensor<B, D>, Tensor<B, D>), SamplerError> {
    if D < 2 {
        return Err(SamplerError::Incompatible {
            sampler: user,
            reason: "a learned variance comes beside the prediction along dimension 1, which a \
                     sample of rank 1 does not have",
        });
    }
    let mut expected = sample.dims();
    let channels = expected[1];
    expected[1] *= 2;
    if output.dims() != expected {
        return Err(SamplerError::ShapeMismatch {
            what: "model output with its learned variance",
            expected: expected.to_vec(),
            found: output.dims().to_vec(),
        });
    }
    let variance = output.clone().narrow(1, channels, channels);
    Ok((output.narrow(1, 0, channels), variance))
}

/// The prediction of a model `output` and, where `with_variance`, the learned variance that
/// follows it along dimension 1 ([`split_learned_variance`]); without, an output not of the
/// `sample`'s shape fails. [`join_output`] puts the two back together.
pub(crate) fn split_output<B: Backend, const D: usize>(
    user: &'static str,
    output: Tensor<B, D>,
    sample: &Tensor<B, D>,
    with_variance: bool,
) -> Result<(Tensor<B, D>, Option<Tensor<B, D>>), SamplerError> {
    if with_variance {
        let (prediction, variance) = split_learned_variance(user, output, sample)?;
        Ok((prediction, Some(variance)))
    } else {
        check_output_shape(&output, sample)?;
        Ok((output, None))
    }
}

/// `prediction` followed along dimension 1 by the learned `variance` where there is one: a
/// model output as [`split_output`] found it.
pub(crate) fn join_output<B: Backend, const D: usize>(
    prediction: Tensor<B, D>,
    variance: Option<Tensor<B, D>>,
) -> Tensor<B, D> {
    match variance {
        Some(variance) => Tensor::cat(vec![prediction, variance], 1),
        None => prediction,
    }
}

/// a·x + b·y, skipping zero terms.
pub(crate) fn linear<B: Backend, const D: usize>(
    x: &Tensor<B, D>,
    a: f64,
    y: &Tensor<B, D>,
    b: f64,
) -> Tensor<B, D> {
    match (a == 0.0, b == 0.0) {
        (true, _) => y.clone().mul_scalar(b),
        (_, true) => x.clone().mul_scalar(a),
        _ => x.clone().mul_scalar(a) + y.clone().mul_scalar(b),
    }
}

/// Where a sampler whose steps span several model calls (Heun, DPM2, PNDM) stands: its calls
/// must come in order.
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct CallOrder {
    next: usize,
}

impl CallOrder {
    /// Makes call `index` the next one: a trajectory starts there.
    pub(crate) fn restart_at(&mut self, index: usize) {
        self.next = index;
    }

    /// Takes call `index` of `sampler` if it is the next one.
    pub(crate) fn advance(
        &mut self,
        sampler: &'static str,
        index: usize,
    ) -> Result<(), SamplerError> {
        if index != self.next {
            return Err(SamplerError::OutOfOrder {
                sampler,
                index,
                expected: self.next,
            });
        }
        self.next += 1;
        Ok(())
    }
}

/// Whether a trajectory of `sampler`, whose steps take two model calls each (a predictor, then
/// a corrector), may start at call `index`: one of `timesteps`' and a predictor's (even).
pub(crate) fn check_two_call_start(
    sampler: &'static str,
    timesteps: &[f64],
    index: usize,
) -> Result<(), SamplerError> {
    timestep_at(timesteps, index)?;
    if index % 2 == 1 {
        return Err(SamplerError::CannotStartAt { sampler, index });
    }
    Ok(())
}

/// The step's timestep, or an error if `index` is past the end.
pub(crate) fn timestep_at(timesteps: &[f64], index: usize) -> Result<f64, SamplerError> {
    timesteps
        .get(index)
        .copied()
        .ok_or(SamplerError::StepOutOfRange {
            index,
            steps: timesteps.len(),
        })
}

/// The grid's whole training timesteps for `steps` steps over `train_timesteps`, as `f64`.
pub(crate) fn whole_timesteps(
    grid: TimestepGrid,
    train_timesteps: usize,
    steps: usize,
) -> Result<Vec<f64>, SamplerError> {
    Ok(grid
        .discrete_timesteps(train_timesteps, steps)?
        .into_iter()
        .map(|t| t as f64)
        .collect())
}

/// ᾱ at a (fractional) timestep: 1/(1 + σ(t)²), with σ interpolated as
/// [`NoiseSchedule::sigma_at`] does.
pub(crate) fn alpha_cumprod_at(schedule: &NoiseSchedule, timestep: f64) -> f64 {
    let sigma = schedule.sigma_at(timestep);
    1.0 / (1.0 + sigma * sigma)
}

/// ᾱ after the last step: 1 (the clean data) with `set_alpha_to_one`, else ᾱ_0.
pub(crate) fn final_alpha_cumprod(set_alpha_to_one: bool, schedule: &NoiseSchedule) -> f64 {
    if set_alpha_to_one {
        1.0
    } else {
        schedule.alphas_cumprod()[0]
    }
}
