//! Sampling rectified-flow models: the model gives the velocity of the path from data to
//! noise, and a sampler integrates it from σ = 1 down to 0.

use burn::tensor::{Tensor, backend::Backend};
use rand::Rng;

use crate::SamplerError;
use crate::sampler::{Step, StepEvent, run_calls, timestep_at};

/// A rectified-flow model: maps x_σ = (1 − σ) x_0 + σ ε, called at timestep σ·T, to its
/// velocity u = dx_σ/dσ = ε − x_0 (Lipman et al. 2023; Liu et al. 2023; diffusers'
/// `FlowMatch*` schedulers and SD3, Flux). Unlike a [`Denoiser`](crate::Denoiser), whose
/// input is √ᾱ x_0 + √(1 − ᾱ) ε, it takes the sample as the flow samplers keep it.
///
/// The same timestep applies to the whole batch; the output has the sample's shape (the
/// samplers refuse another with [`SamplerError::ShapeMismatch`]). A model may refuse an input
/// with [`SamplerError::Model`].
pub trait VelocityModel<B: Backend, const D: usize> {
    /// The velocity at `sample` = x_σ, `timestep` = σ·T.
    fn velocity(&self, sample: Tensor<B, D>, timestep: f64) -> Result<Tensor<B, D>, SamplerError>;
}

/// A [`VelocityModel`] made from a closure that cannot fail.
///
/// ```
/// use burn::backend::Flex;
/// use burn::tensor::Tensor;
/// use kiln_sampler::{FnVelocity, VelocityModel};
///
/// // The exact velocity of data that is always 0: x_σ = σ ε, so u = ε = x_σ / σ.
/// let to_zero = FnVelocity(|x: Tensor<Flex, 2>, t: f64| x.div_scalar(t / 1000.0));
/// let u = to_zero.velocity(Tensor::ones([1, 2], &Default::default()), 500.0)?;
/// assert_eq!(u.into_data().to_vec::<f32>()?, [2.0, 2.0]);
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Debug, Clone, Copy)]
pub struct FnVelocity<F>(pub F);

impl<B, const D: usize, F> VelocityModel<B, D> for FnVelocity<F>
where
    B: Backend,
    F: Fn(Tensor<B, D>, f64) -> Tensor<B, D>,
{
    fn velocity(&self, sample: Tensor<B, D>, timestep: f64) -> Result<Tensor<B, D>, SamplerError> {
        Ok((self.0)(sample, timestep))
    }
}

/// A sampler of rectified flow laid out for a number of steps: one model call per entry of
/// [`FlowSampler::timesteps`], each followed by [`FlowSampler::step`]. [`sample_flow`] drives
/// it from noise (x at σ = 1 is ε) to the data.
pub trait FlowSampler<B: Backend, const D: usize> {
    /// The timestep σ·T of each model call, in order.
    fn timesteps(&self) -> &[f64];

    /// Starts a new trajectory at call `index`, forgetting earlier calls; a sampler that
    /// cannot begin there (mid-way through a Heun step) says so.
    fn restart(&mut self, index: usize) -> Result<(), SamplerError> {
        timestep_at(self.timesteps(), index).map(|_| ())
    }

    /// Advances `sample` by one call given the model's `velocity` there. Stochastic samplers
    /// draw their noise from `rng`. [`Step::denoised`] is x̂_0 = x_σ − σ u.
    fn step<R: Rng + ?Sized>(
        &mut self,
        index: usize,
        velocity: Tensor<B, D>,
        sample: Tensor<B, D>,
        rng: &mut R,
    ) -> Result<Step<B, D>, SamplerError>;
}

/// Runs `sampler` over `model` from `noise` (standard normal: x at σ = 1) to the data,
/// calling `on_step` after each model call.
///
/// ```
/// use burn::backend::Flex;
/// use burn::tensor::Tensor;
/// use kiln_sampler::{FlowEuler, FlowEulerConfig, FnVelocity, sample_flow};
/// use kiln_schedule::FlowSchedule;
/// use rand::{SeedableRng, rngs::StdRng};
///
/// // Data that is always 0: every Euler step lands on the straight path, so x_0 = 0.
/// let model = FnVelocity(|x: Tensor<Flex, 2>, t: f64| x.div_scalar(t / 1000.0));
/// let mut euler = FlowEuler::new(FlowEulerConfig::default(), &FlowSchedule::default(), 4)?;
/// let noise = Tensor::<Flex, 2>::ones([3, 2], &Default::default());
/// let x0 = sample_flow(&mut euler, &model, noise, &mut StdRng::seed_from_u64(0), |_| {})?;
/// assert!(x0.abs().max().into_scalar() < 1e-6);
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
pub fn sample_flow<B, const D: usize, S, M, R>(
    sampler: &mut S,
    model: &M,
    noise: Tensor<B, D>,
    rng: &mut R,
    on_step: impl FnMut(StepEvent<'_, B, D>),
) -> Result<Tensor<B, D>, SamplerError>
where
    B: Backend,
    S: FlowSampler<B, D>,
    M: VelocityModel<B, D>,
    R: Rng + ?Sized,
{
    sampler.restart(0)?;
    let steps = sampler.timesteps().len();
    let call = |index: usize, x: Tensor<B, D>| {
        let timestep = timestep_at(sampler.timesteps(), index)?;
        let velocity = model.velocity(x.clone(), timestep)?;
        Ok((timestep, sampler.step(index, velocity, x, rng)?))
    };
    run_calls(0..steps, noise, call, on_step)
}
