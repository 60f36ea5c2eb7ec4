//! Epsilon scaling (Ning et al. 2024, "Elucidating the Exposure Bias in Diffusion Models")
//! as a [`Denoiser`] wrapper, so every sampler gets it: [`EpsilonScaled`].

use burn::tensor::{Tensor, backend::Backend};
use kiln_forward::Prediction;
use kiln_schedule::NoiseSchedule;

use crate::error::check_range;
use crate::sampler::{alpha_cumprod_at, join_output, linear, split_output};
use crate::{Denoiser, SamplerError};

/// A [`Denoiser`] whose noise prediction is divided by λ at every call: epsilon scaling
/// (Ning et al. 2024, "Elucidating the Exposure Bias in Diffusion Models").
///
/// A model is trained on x_t drawn from the forward process but sampled on the x_t its own
/// earlier steps made, whose errors add up (exposure bias); Ning et al. find the predicted
/// noise's norm larger at sampling than in training and shrink it at every step,
///
/// ```text
/// ε̂'(x_t, t) = ε̂(x_t, t) / λ,   λ ≥ 1
/// ```
///
/// (their uniform schedule, λ_t = b; ComfyUI's `EpsilonScaling` node defaults to 1.005). The
/// sampler then steps with ε̂' in place of ε̂, for its x̂_0 as for its direction. A model that
/// predicts x_0, v or a flow velocity has its output f replaced by the same kind computed
/// from x_t and ε̂': with f = d_x x_t + d_ε ε̂ (the kind in terms of x_t and the noise at ᾱ_t,
/// [`Prediction::conversion_coefficients`]),
///
/// ```text
/// f' = d_x x_t + d_ε ε̂/λ = f/λ + (1 − 1/λ) d_x x_t
/// ```
///
/// so x̂_0' = x̂_0/λ + (1 − 1/λ) x_σ with x_σ = x_t/√ᾱ_t, the form ComfyUI applies to its
/// denoised output, and v' = v/λ − (1 − 1/λ) σ x_t. ᾱ_t is 1/(1 + σ(t)²) with σ interpolated
/// linearly between timesteps ([`NoiseSchedule::sigma_at`]); a sampler that calls the model
/// at a σ of its own between two timesteps (spaced σ, midpoints) converts with that σ, which
/// differs from the interpolated one by a fraction of a percent (a few percent where a
/// multistep solver rounds a spaced σ's timestep), an error of (1 − 1/λ) times that in the
/// x_t term; a noise prediction (d_x = 0) has none. Where ᾱ_t = 0 (past the last timestep
/// but one of a zero-terminal-SNR schedule) the noise is x_t itself and the output is left as
/// it is.
///
/// Wrapped around guidance ([`crate::Guided`]) it scales the guided prediction; a learned
/// variance ([`Denoiser::denoise_with_variance`]) is passed on as the model gave it.
///
/// ```
/// use burn::backend::Flex;
/// use burn::tensor::Tensor;
/// use kiln_sampler::{Denoiser, EpsilonScaled, FnDenoiser, Prediction};
/// use kiln_schedule::{BetaSchedule, NoiseSchedule};
///
/// let schedule = NoiseSchedule::new(&BetaSchedule::linear(), 1000)?;
/// let model = FnDenoiser::new(Prediction::Epsilon, |x: Tensor<Flex, 2>, _| x);
/// let scaled = EpsilonScaled::new(model, &schedule, 1.25)?;
/// let x = Tensor::<Flex, 2>::ones([1, 2], &Default::default());
/// let eps = scaled.denoise(x, 500.0)?;
/// assert_eq!(eps.into_data().to_vec::<f32>()?, [0.8, 0.8]);
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Debug, Clone)]
pub struct EpsilonScaled<'s, M> {
    model: M,
    schedule: &'s NoiseSchedule,
    lambda: f64,
}

impl<'s, M> EpsilonScaled<'s, M> {
    /// `model`, whose x_t are those of `schedule`, with its noise prediction divided by
    /// `lambda` (λ = 1 leaves it unchanged). λ must be finite and positive
    /// ([`SamplerError::OutOfRange`] otherwise); Ning et al. use λ slightly above 1.
    pub fn new(model: M, schedule: &'s NoiseSchedule, lambda: f64) -> Result<Self, SamplerError> {
        check_range(
            "epsilon scaling",
            lambda,
            f64::MIN_POSITIVE..=f64::MAX,
            "a finite λ > 0",
        )?;
        Ok(Self {
            model,
            schedule,
            lambda,
        })
    }

    /// The factor λ.
    pub fn lambda(&self) -> f64 {
        self.lambda
    }

    /// The model's `output` at x_t = `sample` (followed by its learned variance where
    /// `with_variance`, which stays as it is) with the prediction scaled ([`Self::scale`]).
    fn scaled<B: Backend, const D: usize>(
        &self,
        sample: &Tensor<B, D>,
        output: Tensor<B, D>,
        timestep: f64,
        with_variance: bool,
    ) -> Result<Tensor<B, D>, SamplerError>
    where
        M: Denoiser<B, D>,
    {
        if self.lambda == 1.0 {
            return Ok(output);
        }
        let (output, variance) = split_output("epsilon scaling", output, sample, with_variance)?;
        let scaled = self.scale(self.model.prediction(), sample, output, timestep);
        Ok(join_output(scaled, variance))
    }

    /// `output`, a prediction of kind `prediction` at x_t = `sample`, recomputed from its
    /// noise prediction divided by λ: f/λ + (1 − 1/λ) d_x x_t.
    fn scale<B: Backend, const D: usize>(
        &self,
        prediction: Prediction,
        sample: &Tensor<B, D>,
        output: Tensor<B, D>,
        timestep: f64,
    ) -> Tensor<B, D> {
        let alpha_cumprod = alpha_cumprod_at(self.schedule, timestep);
        if alpha_cumprod == 0.0 {
            return output;
        }
        let [on_sample, _] = Prediction::Epsilon.conversion_coefficients(prediction, alpha_cumprod);
        let shrink = 1.0 - 1.0 / self.lambda;
        linear(&output, 1.0 / self.lambda, sample, shrink * on_sample)
    }
}

impl<B, const D: usize, M> Denoiser<B, D> for EpsilonScaled<'_, M>
where
    B: Backend,
    M: Denoiser<B, D>,
{
    fn prediction(&self) -> Prediction {
        self.model.prediction()
    }

    fn denoise(&self, sample: Tensor<B, D>, timestep: f64) -> Result<Tensor<B, D>, SamplerError> {
        let output = self.model.denoise(sample.clone(), timestep)?;
        self.scaled(&sample, output, timestep, false)
    }

    fn learns_variance(&self) -> bool {
        self.model.learns_variance()
    }

    /// The scaled prediction, and beside it the model's learned variance as it is.
    fn denoise_with_variance(
        &self,
        sample: Tensor<B, D>,
        timestep: f64,
    ) -> Result<Tensor<B, D>, SamplerError> {
        let output = self.model.denoise_with_variance(sample.clone(), timestep)?;
        self.scaled(&sample, output, timestep, true)
    }
}

#[cfg(test)]
mod tests {
    use burn::backend::Flex;
    use burn::tensor::{Tensor, TensorData, Tolerance};
    use kiln_forward::Prediction;
    use kiln_schedule::{BetaSchedule, NoiseSchedule};

    use super::EpsilonScaled;
    use crate::{Denoiser, FnDenoiser, SamplerError};

    type B = Flex;

    fn schedule() -> NoiseSchedule {
        NoiseSchedule::new(&BetaSchedule::linear(), 1000).unwrap()
    }

    fn tensor(values: Vec<f32>) -> Tensor<B, 2> {
        let len = values.len();
        Tensor::from_data(TensorData::new(values, [1, len]), &Default::default())
    }

    /// A model of kind `prediction` whose output is a fixed function of x_t and t.
    fn model(prediction: Prediction) -> FnDenoiser<impl Fn(Tensor<B, 2>, f64) -> Tensor<B, 2>> {
        FnDenoiser::new(prediction, |x: Tensor<B, 2>, t: f64| {
            x.mul_scalar(0.3).add_scalar(t / 1000.0)
        })
    }

    fn sample() -> Tensor<B, 2> {
        tensor(vec![-1.5, 0.25, 2.0])
    }

    #[test]
    fn divides_a_noise_prediction_by_lambda() {
        let schedule = schedule();
        let plain = model(Prediction::Epsilon).denoise(sample(), 400.0).unwrap();
        let scaled = EpsilonScaled::new(model(Prediction::Epsilon), &schedule, 1.25).unwrap();
        let output = scaled.denoise(sample(), 400.0).unwrap();
        output
            .into_data()
            .assert_approx_eq::<f32>(&(plain / 1.25).into_data(), Tolerance::absolute(1e-6));
    }

    /// ComfyUI's form on a model of x_0: x̂_0' = x_σ − (x_σ − x̂_0)/λ with x_σ = x_t/√ᾱ_t,
    /// at a whole and at a fractional timestep (σ interpolated linearly between timesteps).
    #[test]
    fn shrinks_the_step_from_x_sigma_to_a_predicted_x0() {
        let schedule = schedule();
        let lambda = 1.1;
        for timestep in [250.0, 617.5] {
            let x0 = model(Prediction::Sample)
                .denoise(sample(), timestep)
                .unwrap();
            let sigma = schedule.sigma_at(timestep);
            let x_sigma = sample().mul_scalar((1.0 + sigma * sigma).sqrt());
            let expected = x_sigma.clone() - (x_sigma - x0) / lambda;
            let scaled = EpsilonScaled::new(model(Prediction::Sample), &schedule, lambda).unwrap();
            scaled
                .denoise(sample(), timestep)
                .unwrap()
                .into_data()
                .assert_approx_eq::<f32>(&expected.into_data(), Tolerance::absolute(1e-5));
        }
    }

    /// Every kind gives the same scaled noise: ε̂' = ε̂/λ recovered from the output.
    #[test]
    fn every_kind_scales_the_noise_it_implies() {
        let schedule = schedule();
        let (timestep, lambda) = (700.0, 1.05);
        let alpha_cumprod = schedule.alphas_cumprod()[700];
        for prediction in [Prediction::V, Prediction::Flow, Prediction::Sample] {
            let noise_of = |output: Tensor<B, 2>| {
                let [on_x, on_output] =
                    prediction.conversion_coefficients(Prediction::Epsilon, alpha_cumprod);
                sample().mul_scalar(on_x) + output.mul_scalar(on_output)
            };
            let plain = noise_of(model(prediction).denoise(sample(), timestep).unwrap());
            let scaled = EpsilonScaled::new(model(prediction), &schedule, lambda).unwrap();
            let noise = noise_of(scaled.denoise(sample(), timestep).unwrap());
            noise
                .into_data()
                .assert_approx_eq::<f32>(&(plain / lambda).into_data(), Tolerance::absolute(1e-5));
        }
    }

    /// Where ᾱ_t = 0 the noise is x_t itself: nothing to scale.
    #[test]
    fn leaves_the_pure_noise_timestep_alone() {
        let schedule = schedule().rescale_zero_terminal_snr().unwrap();
        for prediction in [Prediction::Epsilon, Prediction::V] {
            let plain = model(prediction).denoise(sample(), 999.0).unwrap();
            let scaled = EpsilonScaled::new(model(prediction), &schedule, 1.5).unwrap();
            let output = scaled.denoise(sample(), 999.0).unwrap();
            assert_eq!(output.into_data(), plain.into_data());
        }
    }

    /// A model that learns its variance keeps it; its prediction is scaled.
    #[test]
    fn keeps_a_learned_variance() {
        struct Learned;
        impl Denoiser<B, 2> for Learned {
            fn prediction(&self) -> Prediction {
                Prediction::Epsilon
            }
            fn denoise(&self, x: Tensor<B, 2>, _: f64) -> Result<Tensor<B, 2>, SamplerError> {
                Ok(x)
            }
            fn learns_variance(&self) -> bool {
                true
            }
            fn denoise_with_variance(
                &self,
                x: Tensor<B, 2>,
                _: f64,
            ) -> Result<Tensor<B, 2>, SamplerError> {
                Ok(Tensor::cat(vec![x.clone(), x.neg()], 1))
            }
        }
        let schedule = schedule();
        let scaled = EpsilonScaled::new(Learned, &schedule, 2.0).unwrap();
        assert!(Denoiser::<B, 2>::learns_variance(&scaled));
        let output = scaled.denoise_with_variance(sample(), 10.0).unwrap();
        let expected = tensor(vec![-0.75, 0.125, 1.0, 1.5, -0.25, -2.0]);
        output
            .into_data()
            .assert_approx_eq::<f32>(&expected.into_data(), Tolerance::absolute(1e-6));
    }

    /// An output of another shape is refused before it is combined with x_t (where it would
    /// broadcast).
    #[test]
    fn refuses_an_output_of_another_shape() {
        let schedule = schedule();
        let one = FnDenoiser::new(Prediction::Sample, |x: Tensor<B, 2>, _| x.narrow(1, 0, 1));
        let scaled = EpsilonScaled::new(one, &schedule, 1.1).unwrap();
        assert!(matches!(
            scaled.denoise(sample(), 300.0),
            Err(SamplerError::ShapeMismatch { .. })
        ));
    }

    #[test]
    fn refuses_a_factor_that_is_not_finite_and_positive() {
        let schedule = schedule();
        for lambda in [0.0, -1.0, f64::NAN, f64::INFINITY] {
            let error = EpsilonScaled::new(model(Prediction::Epsilon), &schedule, lambda);
            assert!(
                matches!(
                    error,
                    Err(SamplerError::OutOfRange {
                        name: "epsilon scaling",
                        ..
                    })
                ),
                "λ = {lambda}"
            );
        }
    }
}
