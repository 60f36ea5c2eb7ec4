//! Adaptive projected guidance (Sadat, Hilliges & Weber 2025, "Eliminating Oversaturation and
//! Artifacts of High Guidance Scales in Diffusion Models") as a [`Denoiser`] wrapper:
//! [`ProjectedGuided`].

use std::sync::{Mutex, PoisonError};

use burn::tensor::{Tensor, backend::Backend};
use kiln_forward::Prediction;
use kiln_schedule::NoiseSchedule;

use crate::error::check_range;
use crate::guidance::{GuidedOutputs, GuidedPair, rows};
use crate::sampler::{alpha_cumprod_at, linear};
use crate::{ClassConditional, Denoiser, Guided, SamplerError};

/// Adaptive projected guidance's settings ([`ProjectedGuided`]): how much of the guidance
/// update along the conditional prediction to keep, a cap on the update's norm, and momentum.
///
/// The default, η = 0 and β = −0.5 without a cap, was near the best of the settings measured
/// on the bundled people at each of w = 2, 3 and 4, where β = −0.75 was better at 2 and 3 and
/// overshot at 4 (docs/editing.md, "Adaptive projected guidance").
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct ProjectedGuidance {
    /// η, the weight of the update's component parallel to the conditional x̂_0: 1 keeps it
    /// (classifier-free guidance, without cap and momentum), 0 drops it (the paper's choice:
    /// that component is what oversaturates).
    pub parallel: f64,
    /// r, the largest norm the update may have per sample, in x̂_0's units (the norm over all
    /// of a sample's values); 0 leaves it uncapped.
    pub norm_threshold: f64,
    /// β in [−1, 1]: each call's update is the difference plus β times the previous call's
    /// update, before the norm cap (0: none; the paper's momentum is negative, pushing away
    /// from the direction already taken).
    pub momentum: f64,
}

impl Default for ProjectedGuidance {
    fn default() -> Self {
        Self {
            parallel: 0.0,
            norm_threshold: 0.0,
            momentum: -0.5,
        }
    }
}

impl ProjectedGuidance {
    fn validate(&self) -> Result<(), SamplerError> {
        check_range(
            "projected guidance eta",
            self.parallel,
            f64::MIN..=f64::MAX,
            "a finite weight",
        )?;
        check_range(
            "projected guidance norm threshold",
            self.norm_threshold,
            0.0..=f64::MAX,
            "a finite norm ≥ 0 (0: no cap)",
        )?;
        check_range(
            "projected guidance momentum",
            self.momentum,
            -1.0..=1.0,
            "β in [−1, 1]",
        )
    }
}

/// Classifier-free guidance with adaptive projected guidance's update (Sadat, Hilliges &
/// Weber 2025, Algorithm 1): a [`Denoiser`] that any sampler drives.
///
/// Classifier-free guidance moves the conditional prediction of x_0 by (w − 1) Δ with
/// Δ = D_c − D_∅, where D_c and D_∅ are the conditional and unconditional x̂_0. Sadat et al.
/// find that Δ's component along D_c is what oversaturates images at high w and its
/// orthogonal component what improves them, and guide with
///
/// ```text
/// Δ ← Δ + β Δ_prev                    momentum (Δ_prev: this line's result at the last call)
/// Δ ← Δ · min(1, r / ‖Δ‖)             norm threshold, per sample
/// Δ_∥ = (⟨Δ, D_c⟩ / ‖D_c‖²) D_c,   Δ_⊥ = Δ − Δ_∥
/// D̂ = D_c + (w − 1) (Δ_⊥ + η Δ_∥)
/// ```
///
/// with the inner products and norms over each sample's values. So η = 1 without cap or
/// momentum is classifier-free guidance. The update is made in x̂_0, as the paper does: a
/// model that predicts ε, v or a flow velocity f has x̂_0 = c_x x_t + c_f f at ᾱ_t
/// ([`Prediction::conversion_coefficients`]), so Δ = c_f (f_c − f_∅), D_c = c_x x_t + c_f
/// f_c, and the guided output is f̂ = f_c + (w − 1) (Δ_⊥ + η Δ_∥)/c_f. ᾱ_t is 1/(1 + σ(t)²)
/// with σ interpolated between timesteps, as [`crate::EpsilonScaled`] takes it; where x̂_0 is
/// not defined (a noise prediction at ᾱ_t = 0, the top of a zero-terminal-SNR schedule) that
/// call's update is made in the model's own output instead (r then in its units), without
/// momentum.
///
/// The momentum carries from one model call to the next (two calls per step for Heun's
/// method, and on through RePaint's jumps back). It starts afresh at the first call, at a call
/// at a later timestep than the one it started at (a run from the top again, or inversion,
/// which climbs), at a batch of another shape, and after [`ProjectedGuided::reset`], which a
/// second run from the same timestep needs ([`crate::invert`]'s exact fixed-point iterations
/// at one timestep carry it from one iteration to the next).
///
/// Everything else is [`Guided`]'s: the weight, the interval outside which the model is
/// called once conditionally, w = 0 and w = 1 as one unconditional and one conditional call,
/// guidance rescale (applied after the update, as diffusers' `AdaptiveProjectedGuidance`
/// does), and a learned variance taken from the conditional call. Kiln follows the paper
/// where diffusers' guider does not: that guider updates the model's raw output rather than
/// x̂_0 (so its norm thresholds are in other units) and adds w times the update to f_∅
/// (`normalized_guidance`), which differs from D_c + (w − 1)(…) wherever the update is not Δ
/// itself (η ≠ 1, a cap or momentum).
#[derive(Debug)]
pub struct ProjectedGuided<'s, B: Backend, const D: usize, M> {
    guided: Guided<M>,
    schedule: &'s NoiseSchedule,
    projection: ProjectedGuidance,
    momentum: Mutex<Option<Momentum<B, D>>>,
}

/// The update of the last guided call, and the timestep the momentum started at.
#[derive(Debug)]
struct Momentum<B: Backend, const D: usize> {
    start: f64,
    update: Tensor<B, D>,
}

impl<'s, B: Backend, const D: usize, M> ProjectedGuided<'s, B, D, M> {
    /// `guided`, a model whose x_t are those of `schedule` with its labels and guidance, with
    /// the update of `projection`. A setting out of range is a [`SamplerError::OutOfRange`].
    pub fn new(
        guided: Guided<M>,
        schedule: &'s NoiseSchedule,
        projection: ProjectedGuidance,
    ) -> Result<Self, SamplerError> {
        projection.validate()?;
        Ok(Self {
            guided,
            schedule,
            projection,
            momentum: Mutex::new(None),
        })
    }

    /// Forgets the momentum, so the next call starts afresh.
    pub fn reset(&self) {
        *self.lock_momentum() = None;
    }

    fn lock_momentum(&self) -> std::sync::MutexGuard<'_, Option<Momentum<B, D>>> {
        self.momentum.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Δ + β Δ_prev, remembered for the next call; Δ itself where there is no momentum or it
    /// starts afresh at `timestep`.
    fn with_momentum(&self, difference: Tensor<B, D>, timestep: f64) -> Tensor<B, D> {
        let beta = self.projection.momentum;
        if beta == 0.0 {
            return difference;
        }
        let mut momentum = self.lock_momentum();
        let (start, update) = match momentum.take() {
            Some(last) if timestep <= last.start && last.update.dims() == difference.dims() => {
                (last.start, difference + last.update.mul_scalar(beta))
            }
            _ => (timestep, difference),
        };
        *momentum = Some(Momentum {
            start,
            update: update.clone(),
        });
        update
    }

    /// The guided output from the pair's predictions at `sample` = x_t.
    fn combine(
        &self,
        kind: Prediction,
        pair: &GuidedPair<B, D>,
        sample: &Tensor<B, D>,
        timestep: f64,
    ) -> Tensor<B, D> {
        let alpha_cumprod = alpha_cumprod_at(self.schedule, timestep);
        let difference = pair.conditional.clone() - pair.unconditional.clone();
        let (denoised, difference, on_output) =
            match kind.conversion_coefficients(Prediction::Sample, alpha_cumprod) {
                [on_sample, on_output]
                    if on_sample.is_finite() && on_output.is_finite() && on_output != 0.0 =>
                {
                    let difference = self.with_momentum(difference.mul_scalar(on_output), timestep);
                    let denoised = linear(sample, on_sample, &pair.conditional, on_output);
                    (denoised, difference, on_output)
                }
                _ => (pair.conditional.clone(), difference, 1.0),
            };
        let difference = cap_norm(difference, self.projection.norm_threshold);
        let update = drop_parallel(difference, denoised, 1.0 - self.projection.parallel);
        pair.conditional.clone() + update.mul_scalar((pair.scale - 1.0) / on_output)
    }
}

impl<B, const D: usize, M> ProjectedGuided<'_, B, D, M>
where
    B: Backend,
    M: ClassConditional<B, D>,
{
    fn guide(
        &self,
        sample: Tensor<B, D>,
        timestep: f64,
        with_variance: bool,
    ) -> Result<Tensor<B, D>, SamplerError> {
        Ok(
            match self
                .guided
                .outputs(sample.clone(), timestep, with_variance)?
            {
                GuidedOutputs::Single(output) => output,
                GuidedOutputs::Pair(pair) => {
                    let kind = Denoiser::<B, D>::prediction(&self.guided);
                    let guided = self.combine(kind, &pair, &sample, timestep);
                    pair.finish(guided, self.guided.config().rescale)
                }
            },
        )
    }
}

impl<B, const D: usize, M> Denoiser<B, D> for ProjectedGuided<'_, B, D, M>
where
    B: Backend,
    M: ClassConditional<B, D>,
{
    fn prediction(&self) -> Prediction {
        Denoiser::<B, D>::prediction(&self.guided)
    }

    /// A batch not as long as the labels is a [`SamplerError::LabelCount`].
    fn denoise(&self, sample: Tensor<B, D>, timestep: f64) -> Result<Tensor<B, D>, SamplerError> {
        self.guide(sample, timestep, false)
    }

    fn learns_variance(&self) -> bool {
        Denoiser::<B, D>::learns_variance(&self.guided)
    }

    /// The guided prediction, and beside it the variance the model learns for the classes
    /// (the conditional call's).
    fn denoise_with_variance(
        &self,
        sample: Tensor<B, D>,
        timestep: f64,
    ) -> Result<Tensor<B, D>, SamplerError> {
        self.guide(sample, timestep, true)
    }
}

/// Each sample of `x` scaled by min(1, r/‖x‖) (`norm_threshold` = r; none at 0).
fn cap_norm<B: Backend, const D: usize>(x: Tensor<B, D>, norm_threshold: f64) -> Tensor<B, D> {
    if norm_threshold == 0.0 {
        return x;
    }
    let dims = x.dims();
    let rows = rows(x);
    // r/0 = ∞ caps to 1: a zero update stays zero.
    let factor = rows
        .clone()
        .powi_scalar(2)
        .sum_dim(1)
        .sqrt()
        .recip()
        .mul_scalar(norm_threshold)
        .clamp_max(1.0);
    (rows * factor).reshape(dims)
}

/// `x` less `weight` times its component along `onto`, per sample: x − weight ⟨x, o⟩/‖o‖² o
/// (a zero `onto` has no component).
fn drop_parallel<B: Backend, const D: usize>(
    x: Tensor<B, D>,
    onto: Tensor<B, D>,
    weight: f64,
) -> Tensor<B, D> {
    if weight == 0.0 {
        return x;
    }
    let dims = x.dims();
    let (x, onto) = (rows(x), rows(onto));
    let length = (x.clone() * onto.clone()).sum_dim(1);
    // Where `onto` is zero so is `length`: dividing by 1 leaves no component, in any precision.
    let squared_norm = onto.clone().powi_scalar(2).sum_dim(1);
    let squared_norm = squared_norm
        .clone()
        .mask_fill(squared_norm.equal_elem(0.0), 1.0);
    (x - onto * (length / squared_norm).mul_scalar(weight)).reshape(dims)
}
