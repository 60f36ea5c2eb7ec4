//! What the oracle tests share: the schedule, the Gaussian mixture (its exact denoiser is the
//! teacher), DDIM runs, a small student network and the distance between sample sets.

#![allow(dead_code)]

use burn::backend::{Autodiff, Flex};
use burn::module::Module;
use burn::nn::{Linear, LinearConfig};
use burn::tensor::activation::silu;
use burn::tensor::backend::Backend;
use burn::tensor::{Tensor, TensorData};
use kiln_distill::Teacher;
use kiln_forward::Prediction;
use kiln_sampler::{Ddim, DdimConfig, Denoiser, GaussianMixture, SamplerError, sample};
use kiln_schedule::{BetaSchedule, NoiseSchedule};
use rand::{SeedableRng, rngs::StdRng};

pub type B = Flex;
pub type A = Autodiff<Flex>;

pub fn schedule() -> NoiseSchedule {
    NoiseSchedule::new(&BetaSchedule::linear(), 1000).unwrap()
}

/// Rectified flow's path on the variance-preserving scale: ᾱ = 0, pure noise, at t = T − 1.
pub fn flow_schedule() -> NoiseSchedule {
    NoiseSchedule::new(&BetaSchedule::rectified_flow(), 1000).unwrap()
}

/// Two well separated 2-D Gaussians: the data whose exact denoiser teaches.
pub fn mixture() -> GaussianMixture {
    mixture_on(schedule())
}

/// The same data denoised under `schedule`, with ε-prediction.
pub fn mixture_on(schedule: NoiseSchedule) -> GaussianMixture {
    GaussianMixture::new(
        vec![0.3, 0.7],
        vec![vec![-1.0, 0.5], vec![0.8, -0.4]],
        vec![0.04, 0.09],
        schedule,
    )
    .unwrap()
}

/// The mixture as a rectified-flow teacher: [`flow_schedule`], answering with the velocity
/// ε − x_0.
pub fn flow_mixture() -> GaussianMixture {
    mixture_on(flow_schedule()).with_prediction(Prediction::Flow)
}

/// `steps` deterministic DDIM steps of `model` from `noise` with `config`.
pub fn ddim_with<Bk: Backend>(
    config: DdimConfig,
    model: &impl Denoiser<Bk, 2>,
    steps: usize,
    noise: Tensor<Bk, 2>,
) -> Vec<f32> {
    ddim_on(&schedule(), config, model, steps, noise)
}

/// The same on `schedule`.
pub fn ddim_on<Bk: Backend>(
    schedule: &NoiseSchedule,
    config: DdimConfig,
    model: &impl Denoiser<Bk, 2>,
    steps: usize,
    noise: Tensor<Bk, 2>,
) -> Vec<f32> {
    let mut sampler = Ddim::new(config, schedule, steps).unwrap();
    let mut rng = StdRng::seed_from_u64(0);
    host(sample(&mut sampler, model, noise, &mut rng, |_| {}).unwrap())
}

/// A tensor's values.
pub fn host<Bk: Backend>(tensor: Tensor<Bk, 2>) -> Vec<f32> {
    tensor.into_data().to_vec().unwrap()
}

/// The root mean square distance between two sets of 2-D points, point for point.
pub fn rms(a: &[f32], b: &[f32]) -> f64 {
    let sum: f64 = a.iter().zip(b).map(|(x, y)| f64::from(x - y).powi(2)).sum();
    (sum / (a.len() / 2) as f64).sqrt()
}

/// A two-layer network of the sample and the timestep, predicting v.
#[derive(Module, Debug)]
pub struct Student<B: Backend> {
    input: Linear<B>,
    hidden: Linear<B>,
    output: Linear<B>,
}

impl<B: Backend> Student<B> {
    pub fn new(device: &B::Device) -> Self {
        Self {
            input: LinearConfig::new(10, 128).init(device),
            hidden: LinearConfig::new(128, 128).init(device),
            output: LinearConfig::new(128, 2).init(device),
        }
    }

    /// v for points `x` [n, 2] at their timesteps, with the timestep as sin/cos features.
    pub fn forward(&self, x: Tensor<B, 2>, timesteps: &[f64]) -> Tensor<B, 2> {
        let features: Vec<f32> = timesteps
            .iter()
            .flat_map(|&t| {
                (1..=4).flat_map(move |k| {
                    let angle = k as f64 * std::f64::consts::PI * t / 1000.0;
                    [angle.sin() as f32, angle.cos() as f32]
                })
            })
            .collect();
        let time = Tensor::from_data(TensorData::new(features, [timesteps.len(), 8]), &x.device());
        let h = silu(self.input.forward(Tensor::cat(vec![x, time], 1)));
        let h = silu(self.hidden.forward(h));
        self.output.forward(h)
    }
}

/// The network as a model of the distillations, predicting v.
impl<B: Backend> Teacher<B, 2> for Student<B> {
    fn prediction(&self) -> Prediction {
        Prediction::V
    }

    fn predict(
        &self,
        sample: Tensor<B, 2>,
        timesteps: &[f64],
    ) -> Result<Tensor<B, 2>, SamplerError> {
        Ok(self.forward(sample, timesteps))
    }
}
