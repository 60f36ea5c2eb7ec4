use burn::tensor::{Tensor, TensorData, backend::Backend};
use kiln_schedule::NoiseSchedule;

use crate::{ForwardError, LossWeighting, Prediction};

/// The forward process of a [`NoiseSchedule`] on the tensors of one device.
///
/// Every method takes one 0-based timestep per batch element (the first tensor dimension);
/// tensors may have any rank ≥ 1.
#[derive(Debug, Clone)]
pub struct ForwardProcess<B: Backend> {
    schedule: NoiseSchedule,
    device: B::Device,
}

/// The Gaussian posterior q(x_{t−1} | x_t, x_0) = N(`mean`, `variance`·I) (Ho et al. 2020,
/// eq. 6–7).
#[derive(Debug, Clone)]
pub struct Posterior<B: Backend, const D: usize> {
    /// μ̃_t = c1_t x_0 + c2_t x_t, with the shape of x_t.
    pub mean: Tensor<B, D>,
    /// β̃_t per batch element, shaped `[batch, 1, …, 1]` to broadcast against `mean`.
    pub variance: Tensor<B, D>,
    /// log β̃_t with the t = 0 entry clipped (see
    /// [`NoiseSchedule::posterior_log_variance_clipped`]), shaped like `variance`.
    pub log_variance_clipped: Tensor<B, D>,
}

impl<B: Backend> ForwardProcess<B> {
    /// The forward process of `schedule`, producing tensors on `device`.
    pub fn new(schedule: NoiseSchedule, device: &B::Device) -> Self {
        Self {
            schedule,
            device: device.clone(),
        }
    }

    /// The schedule this process noises with.
    pub fn schedule(&self) -> &NoiseSchedule {
        &self.schedule
    }

    /// Jumps straight from clean data to timestep t (Ho et al. 2020, eq. 4):
    /// x_t = √ᾱ_t x_0 + √(1 − ᾱ_t) ε, with `noise` = ε ~ N(0, I).
    pub fn q_sample<const D: usize>(
        &self,
        x0: Tensor<B, D>,
        timesteps: &[usize],
        noise: Tensor<B, D>,
    ) -> Result<Tensor<B, D>, ForwardError> {
        check_same_shape("noise", &x0, &noise)?;
        let signal = self.per_sample(timesteps, self.schedule.sqrt_alphas_cumprod(), &x0)?;
        let scale = self.per_sample(
            timesteps,
            self.schedule.sqrt_one_minus_alphas_cumprod(),
            &x0,
        )?;
        Ok(x0 * signal + noise * scale)
    }

    /// One Markov step of the forward process (Ho et al. 2020, eq. 2): from x_{t−1} to
    /// x_t = √α_t x_{t−1} + √β_t ε. At t = 0, `x_prev` is the clean data, so t + 1 steps from
    /// x_0 reach the same distribution as [`ForwardProcess::q_sample`] at t.
    pub fn q_step<const D: usize>(
        &self,
        x_prev: Tensor<B, D>,
        timesteps: &[usize],
        noise: Tensor<B, D>,
    ) -> Result<Tensor<B, D>, ForwardError> {
        check_same_shape("noise", &x_prev, &noise)?;
        let alphas = self.schedule.alphas();
        let betas = self.schedule.betas();
        let keep = self.per_sample_with(timesteps, &x_prev, |t| alphas[t].sqrt())?;
        let add = self.per_sample_with(timesteps, &x_prev, |t| betas[t].sqrt())?;
        Ok(x_prev * keep + noise * add)
    }

    /// The posterior q(x_{t−1} | x_t, x_0) (Ho et al. 2020, eq. 6–7): mean
    /// μ̃_t = β_t √ᾱ_{t−1}/(1 − ᾱ_t) · x_0 + (1 − ᾱ_{t−1}) √α_t/(1 − ᾱ_t) · x_t and variance
    /// β̃_t = (1 − ᾱ_{t−1})/(1 − ᾱ_t) · β_t, with ᾱ_{−1} = 1 (so at t = 0 the mean is x_0 and
    /// the variance 0).
    pub fn q_posterior<const D: usize>(
        &self,
        x0: Tensor<B, D>,
        x_t: Tensor<B, D>,
        timesteps: &[usize],
    ) -> Result<Posterior<B, D>, ForwardError> {
        check_same_shape("x_t", &x0, &x_t)?;
        let s = &self.schedule;
        let coef_clean = self.per_sample(timesteps, s.posterior_mean_coef1(), &x0)?;
        let coef_noisy = self.per_sample(timesteps, s.posterior_mean_coef2(), &x0)?;
        let variance = self.per_sample(timesteps, s.posterior_variance(), &x0)?;
        let log_variance_clipped =
            self.per_sample(timesteps, s.posterior_log_variance_clipped(), &x0)?;
        Ok(Posterior {
            mean: x0 * coef_clean + x_t * coef_noisy,
            variance,
            log_variance_clipped,
        })
    }

    /// The training target of a model that predicts `prediction`, for x_t built from `x0` and
    /// `noise` at `timesteps`: ε, x_0, v = √ᾱ_t ε − √(1 − ᾱ_t) x_0 or u = ε − x_0.
    pub fn target<const D: usize>(
        &self,
        prediction: Prediction,
        x0: Tensor<B, D>,
        noise: Tensor<B, D>,
        timesteps: &[usize],
    ) -> Result<Tensor<B, D>, ForwardError> {
        check_same_shape("noise", &x0, &noise)?;
        self.check_timesteps(timesteps, &x0)?;
        match prediction {
            Prediction::Epsilon => Ok(noise),
            Prediction::Sample => Ok(x0),
            Prediction::V | Prediction::Flow => {
                let abar = self.schedule.alphas_cumprod();
                let coefficients = |t: usize| prediction.target_coefficients(abar[t]);
                let on_clean = self.per_sample_with(timesteps, &x0, |t| coefficients(t)[0])?;
                let on_noise = self.per_sample_with(timesteps, &x0, |t| coefficients(t)[1])?;
                Ok(x0 * on_clean + noise * on_noise)
            }
        }
    }

    /// Converts a model `output` of kind `from`, made at x_t = `sample`, into the `to` kind
    /// (see [`Prediction::conversion_coefficients`]). Fails with
    /// [`ForwardError::Undetermined`] where the conversion is singular.
    pub fn convert<const D: usize>(
        &self,
        output: Tensor<B, D>,
        sample: Tensor<B, D>,
        timesteps: &[usize],
        from: Prediction,
        to: Prediction,
    ) -> Result<Tensor<B, D>, ForwardError> {
        check_same_shape("sample", &output, &sample)?;
        self.check_timesteps(timesteps, &output)?;
        if from == to {
            return Ok(output);
        }
        let abar = self.schedule.alphas_cumprod();
        let coefficients: Vec<[f64; 2]> = timesteps
            .iter()
            .map(|&t| from.conversion_coefficients(to, abar[t]))
            .collect();
        if let Some(index) = coefficients
            .iter()
            .position(|pair| !pair.iter().all(|c| c.is_finite()))
        {
            return Err(ForwardError::Undetermined {
                timestep: timesteps[index],
                from,
                to,
            });
        }
        let column = |i: usize| coefficients.iter().map(move |pair| pair[i]);
        let on_sample = per_batch_element(column(0), &output);
        let on_output = per_batch_element(column(1), &output);
        Ok(sample * on_sample + output * on_output)
    }

    /// The loss weight of each batch element, shape `[batch]`, for a model trained on
    /// `target` (see [`LossWeighting`]).
    pub fn loss_weights(
        &self,
        weighting: LossWeighting,
        target: Prediction,
        timesteps: &[usize],
    ) -> Result<Tensor<B, 1>, ForwardError> {
        let weights = timesteps
            .iter()
            .map(|&t| {
                let snr = self.checked(t, self.schedule.snr())?;
                weighting.weight(snr, target)
            })
            .collect::<Result<Vec<f64>, _>>()?;
        Ok(weights_tensor(&weights, &self.device))
    }

    /// `table[t]` for each batch element, as a `[batch, 1, …, 1]` tensor.
    fn per_sample<const D: usize>(
        &self,
        timesteps: &[usize],
        table: &[f64],
        like: &Tensor<B, D>,
    ) -> Result<Tensor<B, D>, ForwardError> {
        self.per_sample_with(timesteps, like, |t| table[t])
    }

    /// `value(t)` for each batch element, as a `[batch, 1, …, 1]` tensor, after checking that
    /// there is one valid timestep per element of `like`'s batch.
    pub(crate) fn per_sample_with<const D: usize>(
        &self,
        timesteps: &[usize],
        like: &Tensor<B, D>,
        value: impl Fn(usize) -> f64,
    ) -> Result<Tensor<B, D>, ForwardError> {
        self.check_timesteps(timesteps, like)?;
        Ok(per_batch_element(timesteps.iter().map(|&t| value(t)), like))
    }

    fn check_timesteps<const D: usize>(
        &self,
        timesteps: &[usize],
        like: &Tensor<B, D>,
    ) -> Result<(), ForwardError> {
        let batch = like.dims()[0];
        if timesteps.len() != batch {
            return Err(ForwardError::BatchMismatch {
                timesteps: timesteps.len(),
                batch,
            });
        }
        for &t in timesteps {
            self.checked(t, self.schedule.betas())?;
        }
        Ok(())
    }

    /// `table[t]`, or an error naming `t` if it is past the schedule's end.
    fn checked(&self, t: usize, table: &[f64]) -> Result<f64, ForwardError> {
        table
            .get(t)
            .copied()
            .ok_or(ForwardError::TimestepOutOfRange {
                timestep: t,
                num_timesteps: self.schedule.num_timesteps(),
            })
    }
}

/// Loss weights, one per batch element, as a `[batch]` tensor on `device`.
pub(crate) fn weights_tensor<B: Backend>(weights: &[f64], device: &B::Device) -> Tensor<B, 1> {
    let values: Vec<f32> = weights.iter().map(|&w| w as f32).collect();
    Tensor::from_data(TensorData::new(values, [weights.len()]), device)
}

/// One value per batch element of `like`, uploaded to its device as a `[batch, 1, …, 1]`
/// tensor.
pub(crate) fn per_batch_element<B: Backend, const D: usize>(
    values: impl Iterator<Item = f64>,
    like: &Tensor<B, D>,
) -> Tensor<B, D> {
    let values: Vec<f32> = values.map(|v| v as f32).collect();
    let mut shape = [1; D];
    shape[0] = like.dims()[0];
    Tensor::from_data(TensorData::new(values, shape), &like.device())
}

pub(crate) fn check_same_shape<B: Backend, const D: usize>(
    name: &'static str,
    reference: &Tensor<B, D>,
    other: &Tensor<B, D>,
) -> Result<(), ForwardError> {
    let (expected, actual) = (reference.dims(), other.dims());
    if expected == actual {
        Ok(())
    } else {
        Err(ForwardError::ShapeMismatch {
            name,
            expected: expected.to_vec(),
            actual: actual.to_vec(),
        })
    }
}
