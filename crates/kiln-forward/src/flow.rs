//! Rectified flow's forward process and what its training needs: the noised sample, the
//! velocity target, the density of training noise levels and the loss weights of SD3.

use std::f64::consts::PI;

use burn::tensor::{Tensor, backend::Backend};
use rand::{Rng, RngExt};
use rand_distr::{Distribution, StandardNormal};

use crate::ForwardError;
use crate::process::{check_same_shape, per_batch_element, weights_tensor};

/// The forward process of rectified flow (Liu et al. 2023, "Flow Straight and Fast"; Lipman
/// et al. 2023, "Flow Matching for Generative Modeling"): clean data and noise joined by a
/// straight line,
///
/// ```text
/// x_σ = (1 − σ) x_0 + σ ε,   σ ∈ [0, 1],   ε ~ N(0, I)
/// ```
///
/// whose velocity dx_σ/dσ = ε − x_0 is the model's training target (conditional flow
/// matching). A model is called at timestep σ·T (diffusers' convention, T = 1,000), with σ
/// drawn from a [`FlowTimeDensity`] and shifted by the schedule
/// ([`FlowSchedule::shift`](kiln_schedule::FlowSchedule::shift)).
///
/// Every method takes one σ per batch element (the first tensor dimension), looked up on the
/// host and uploaded as one small `[batch, 1, …, 1]` tensor: no device-to-host read.
///
/// ```
/// use burn::backend::Flex;
/// use burn::tensor::Tensor;
/// use kiln_forward::{FlowProcess, standard_normal};
/// use rand::{SeedableRng, rngs::StdRng};
///
/// let device = Default::default();
/// let x0 = Tensor::<Flex, 4>::ones([2, 3, 8, 8], &device);
/// let noise = standard_normal::<Flex, 4>([2, 3, 8, 8], &mut StdRng::seed_from_u64(0), &device);
/// let x = FlowProcess::q_sample(x0.clone(), &[0.0, 1.0], noise.clone())?;
/// let target = FlowProcess::velocity(x0, noise)?;
/// assert_eq!((x.dims(), target.dims()), ([2, 3, 8, 8], [2, 3, 8, 8]));
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Debug, Clone, Copy)]
pub struct FlowProcess;

impl FlowProcess {
    /// x_σ = (1 − σ) x_0 + σ ε for each batch element's σ ∈ [0, 1].
    pub fn q_sample<B: Backend, const D: usize>(
        x0: Tensor<B, D>,
        sigmas: &[f64],
        noise: Tensor<B, D>,
    ) -> Result<Tensor<B, D>, ForwardError> {
        check_same_shape("noise", &x0, &noise)?;
        check_sigmas(sigmas, &x0)?;
        let signal = per_batch_element(sigmas.iter().map(|sigma| 1.0 - sigma), &x0);
        let scale = per_batch_element(sigmas.iter().copied(), &x0);
        Ok(x0 * signal + noise * scale)
    }

    /// The training target: the velocity u = ε − x_0 of the straight path.
    pub fn velocity<B: Backend, const D: usize>(
        x0: Tensor<B, D>,
        noise: Tensor<B, D>,
    ) -> Result<Tensor<B, D>, ForwardError> {
        check_same_shape("noise", &x0, &noise)?;
        Ok(noise - x0)
    }

    /// The loss weight of each batch element, shape `[batch]` (see [`FlowWeighting`]).
    pub fn loss_weights<B: Backend>(
        weighting: FlowWeighting,
        sigmas: &[f64],
        device: &B::Device,
    ) -> Result<Tensor<B, 1>, ForwardError> {
        let weights = sigmas
            .iter()
            .map(|&sigma| weighting.weight(sigma))
            .collect::<Result<Vec<f64>, _>>()?;
        Ok(weights_tensor(&weights, device))
    }
}

/// The distribution of the training noise levels t ∈ [0, 1] before the schedule's shift, as
/// Esser et al. 2024 write them ("Scaling Rectified Flow Transformers for High-Resolution Image
/// Synthesis", §3.1): t = 1 is pure noise. (diffusers' `compute_density_for_timestep_sampling`
/// has the first three; its SD3 and Flux scripts use the draw as an index into the σ table
/// from the noisiest down, so a positive `logit_mean` there moves toward the data.)
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub enum FlowTimeDensity {
    /// t ~ U[0, 1): rectified flow as Liu et al. 2023 train it.
    #[default]
    Uniform,
    /// t = sigmoid(n), n ~ N(`mean`, `std`²) (eq. 19): more weight on the middle; SD3 uses
    /// mean 0, std 1.
    LogitNormal {
        /// The mean of n; positive moves t toward noise.
        mean: f64,
        /// The standard deviation of n, > 0.
        std: f64,
    },
    /// Mode sampling with heavy tails (eq. 20): t = 1 − u − s·(cos²(πu/2) − 1 + u), u ~ U(0, 1).
    /// `scale` = s ∈ [−1, 2/(π − 2)] keeps t monotone in u; s = 0 is uniform.
    Mode {
        /// s: how strongly the middle is favoured (negative: the ends).
        scale: f64,
    },
    /// The density of the cosine schedule (eq. 21): t = 1 − 1/(tan(πu/2) + 1), u ~ U(0, 1).
    CosMap,
}

impl FlowTimeDensity {
    /// `count` independent draws of t, from `rng` on the host.
    pub fn sample(
        self,
        count: usize,
        rng: &mut (impl Rng + ?Sized),
    ) -> Result<Vec<f64>, ForwardError> {
        self.validate()?;
        Ok((0..count)
            .map(|_| match self {
                Self::Uniform => rng.random::<f64>(),
                Self::LogitNormal { mean, std } => {
                    let n: f64 = StandardNormal.sample(rng);
                    1.0 / (1.0 + (-(mean + std * n)).exp())
                }
                Self::Mode { scale } => {
                    let u: f64 = rng.random();
                    1.0 - u - scale * ((PI * u / 2.0).cos().powi(2) - 1.0 + u)
                }
                Self::CosMap => {
                    let u: f64 = rng.random();
                    1.0 - 1.0 / ((PI * u / 2.0).tan() + 1.0)
                }
            })
            .collect())
    }

    /// Checks the parameters: a finite logit-normal mean and a positive, finite standard
    /// deviation; a mode scale in [−1, 2/(π − 2)].
    pub fn validate(self) -> Result<(), ForwardError> {
        match self {
            Self::LogitNormal { mean, std } => {
                check_setting("mean", mean, mean.is_finite(), "a finite number")?;
                check_setting(
                    "std",
                    std,
                    std > 0.0 && std.is_finite(),
                    "a positive number",
                )
            }
            Self::Mode { scale } => check_setting(
                "mode_scale",
                scale,
                (-1.0..=2.0 / (PI - 2.0)).contains(&scale),
                "in [-1, 2/(π - 2)], where t stays monotone in u",
            ),
            Self::Uniform | Self::CosMap => Ok(()),
        }
    }
}

/// How the loss at σ is weighted (Esser et al. 2024, §3.1; diffusers'
/// `compute_loss_weighting_for_sd3`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum FlowWeighting {
    /// Every σ weighs 1: conditional flow matching (SD3's choice with logit-normal σ).
    #[default]
    Uniform,
    /// 1/σ² (diffusers' `sigma_sqrt`, named for σ^−2): the weight diffusers' SD3 scripts
    /// give the x_0 loss of a velocity model, whose x_0 error is σ times its velocity error.
    SigmaSqrt,
    /// 2 / (π (1 − 2σ + 2σ²)), the weighting of the cosine schedule (`cosmap`).
    CosMap,
}

impl FlowWeighting {
    /// The weight of the loss at noise level `sigma` ∈ [0, 1]. 1/σ² is refused where it is
    /// not a finite f32 (σ = 0, or below about 1e-19).
    pub fn weight(self, sigma: f64) -> Result<f64, ForwardError> {
        check_sigma(sigma)?;
        Ok(match self {
            Self::Uniform => 1.0,
            Self::SigmaSqrt => {
                let weight = sigma.powi(-2);
                let finite = (weight as f32).is_finite();
                check_setting("sigma", sigma, finite, "above 1e-19 for 1/sigma^2")?;
                weight
            }
            Self::CosMap => 2.0 / (PI * (1.0 - 2.0 * sigma + 2.0 * sigma * sigma)),
        })
    }
}

/// One σ ∈ [0, 1] per batch element of `like`.
fn check_sigmas<B: Backend, const D: usize>(
    sigmas: &[f64],
    like: &Tensor<B, D>,
) -> Result<(), ForwardError> {
    let batch = like.dims()[0];
    if sigmas.len() != batch {
        return Err(ForwardError::BatchMismatch {
            timesteps: sigmas.len(),
            batch,
        });
    }
    sigmas.iter().try_for_each(|&sigma| check_sigma(sigma))
}

fn check_sigma(sigma: f64) -> Result<(), ForwardError> {
    check_setting("sigma", sigma, (0.0..=1.0).contains(&sigma), "in [0, 1]")
}

fn check_setting(
    name: &'static str,
    value: f64,
    valid: bool,
    expected: &'static str,
) -> Result<(), ForwardError> {
    if valid {
        Ok(())
    } else {
        Err(ForwardError::OutOfRange {
            name,
            value,
            expected,
        })
    }
}
