use burn::tensor::{Tensor, TensorData, activation::softmax, backend::Backend};
use kiln_forward::Prediction;
use kiln_schedule::NoiseSchedule;
use rand::{Rng, RngExt};
use rand_distr::{Distribution, StandardNormal};

use crate::error::check_range;
use crate::{ClassConditional, Denoiser, SamplerError};

/// Data from a mixture of isotropic Gaussians, Σ_k π_k N(μ_k, v_k I) in d dimensions, and its
/// exact denoiser.
///
/// Noised to x_t = a x_0 + s ε (a = √ᾱ_t, s = √(1 − ᾱ_t)), component k is N(a μ_k, (a² v_k + s²) I),
/// so the ideal model's x_0 prediction is the posterior mean
///
/// ```text
/// E[x_0 | x_t] = Σ_k r_k(x_t) (μ_k + a v_k/(a² v_k + s²) · (x_t − a μ_k)),
/// r_k ∝ π_k N(x_t; a μ_k, (a² v_k + s²) I)
/// ```
///
/// A sampler driven by this denoiser solves the true probability-flow ODE / reverse SDE of the
/// mixture, so its samples can be compared with exact draws ([`GaussianMixture::sample_data`]).
/// As a [`Denoiser`] it works on `[batch, d]` tensors and answers with the configured
/// [`Prediction`] kind; fractional timesteps use σ interpolated as the Euler sampler does.
///
/// It is also the exact class-conditional model of its data with one class per component
/// ([`ClassConditional`]): given class k the data is N(μ_k, v_k I), whose posterior mean is the
/// k-th term above with r_k = 1; the null label gives the whole mixture.
#[derive(Debug, Clone)]
pub struct GaussianMixture {
    weights: Vec<f64>,
    means: Vec<Vec<f64>>,
    variances: Vec<f64>,
    schedule: NoiseSchedule,
    prediction: Prediction,
}

impl GaussianMixture {
    /// The mixture with component `weights` (normalised here), `means` (all of one dimension)
    /// and `variances`, denoising under `schedule` with ε-prediction.
    pub fn new(
        weights: Vec<f64>,
        means: Vec<Vec<f64>>,
        variances: Vec<f64>,
        schedule: NoiseSchedule,
    ) -> Result<Self, SamplerError> {
        let components = weights.len();
        let dims = means.first().map_or(0, Vec::len);
        if components == 0 || means.len() != components || variances.len() != components {
            return Err(SamplerError::OutOfRange {
                name: "components",
                value: components as f64,
                expected: "at least one, with one mean and one variance per weight",
            });
        }
        if dims == 0 || means.iter().any(|mean| mean.len() != dims) {
            return Err(SamplerError::OutOfRange {
                name: "dimensions",
                value: dims as f64,
                expected: "means of one common, positive dimension",
            });
        }
        for &weight in &weights {
            check_range("weight", weight, 0.0..=f64::MAX, "a non-negative weight")?;
        }
        for &variance in &variances {
            check_range(
                "variance",
                variance,
                0.0..=f64::MAX,
                "a non-negative variance",
            )?;
        }
        for value in means.iter().flatten() {
            check_range("mean", *value, f64::MIN..=f64::MAX, "a finite number")?;
        }
        let total: f64 = weights.iter().sum();
        check_range(
            "total weight",
            total,
            f64::MIN_POSITIVE..=f64::MAX,
            "a positive sum",
        )?;
        Ok(Self {
            weights: weights.iter().map(|w| w / total).collect(),
            means,
            variances,
            schedule,
            prediction: Prediction::Epsilon,
        })
    }

    /// The same mixture answering with `prediction` outputs.
    pub fn with_prediction(mut self, prediction: Prediction) -> Self {
        self.prediction = prediction;
        self
    }

    /// The dimension d of the data.
    pub fn dims(&self) -> usize {
        self.means[0].len()
    }

    /// The number of components (the classes of [`ClassConditional`]).
    pub fn components(&self) -> usize {
        self.weights.len()
    }

    /// For each point of `points` (d values each), its most likely component:
    /// argmax_k π_k N(x; μ_k, v_k I).
    pub fn components_of(&self, points: &[f32]) -> Vec<usize> {
        points
            .chunks(self.dims())
            .map(|point| {
                let log_density = |k: usize| {
                    let variance = self.variances[k];
                    let distance: f64 = point
                        .iter()
                        .zip(&self.means[k])
                        .map(|(&x, m)| (x as f64 - m).powi(2))
                        .sum();
                    self.weights[k].ln()
                        - 0.5 * distance / variance
                        - 0.5 * self.dims() as f64 * variance.ln()
                };
                (0..self.components())
                    .map(|k| (k, log_density(k)))
                    .max_by(|a, b| a.1.total_cmp(&b.1))
                    .map(|(k, _)| k)
                    .expect("at least one component")
            })
            .collect()
    }

    /// The schedule the denoiser assumes.
    pub fn schedule(&self) -> &NoiseSchedule {
        &self.schedule
    }

    /// `count` exact draws from the mixture, as a `[count, d]` tensor.
    pub fn sample_data<B: Backend>(
        &self,
        count: usize,
        rng: &mut (impl Rng + ?Sized),
        device: &B::Device,
    ) -> Tensor<B, 2> {
        let dims = self.dims();
        let mut values = Vec::with_capacity(count * dims);
        for _ in 0..count {
            let component = self.pick(rng.random::<f64>());
            let std = self.variances[component].sqrt();
            for &mean in &self.means[component] {
                let z: f64 = StandardNormal.sample(&mut *rng);
                values.push((mean + std * z) as f32);
            }
        }
        Tensor::from_data(TensorData::new(values, [count, dims]), device)
    }

    /// The component whose cumulative weight first exceeds `u` ∈ [0, 1).
    fn pick(&self, u: f64) -> usize {
        let mut cumulative = 0.0;
        for (k, weight) in self.weights.iter().enumerate() {
            cumulative += weight;
            if u < cumulative {
                return k;
            }
        }
        self.weights.len() - 1
    }

    /// E[x_0 | x_t] for x_t = `sample` (`[n, dims]`) with signal fraction ᾱ = `alpha_cumprod`;
    /// a sample of another width is [`SamplerError::ShapeMismatch`].
    pub fn posterior_mean<B: Backend>(
        &self,
        sample: Tensor<B, 2>,
        alpha_cumprod: f64,
    ) -> Result<Tensor<B, 2>, SamplerError> {
        self.posterior_mean_given(sample, alpha_cumprod, None)
    }

    /// E[x_0 | x_t, k] for rows labelled `Some(k)`, E[x_0 | x_t] for the others (and for every
    /// row without `labels`). Fails on a sample of another width than the mixture's, labels
    /// not one per row, or a label that is not a component.
    fn posterior_mean_given<B: Backend>(
        &self,
        sample: Tensor<B, 2>,
        alpha_cumprod: f64,
        labels: Option<&[Option<usize>]>,
    ) -> Result<Tensor<B, 2>, SamplerError> {
        let device = sample.device();
        let dims = self.dims();
        let [batch, width] = sample.dims();
        if width != dims {
            return Err(SamplerError::ShapeMismatch {
                what: "sample",
                expected: vec![batch, dims],
                found: vec![batch, width],
            });
        }
        if let Some(labels) = labels {
            if labels.len() != batch {
                return Err(SamplerError::LabelCount {
                    labels: labels.len(),
                    batch,
                });
            }
            let classes = self.components();
            if let Some(class) = labels.iter().flatten().copied().find(|&k| k >= classes) {
                return Err(SamplerError::ClassOutOfRange { class, classes });
            }
        }
        let (a, s2) = (alpha_cumprod.sqrt(), 1.0 - alpha_cumprod);
        let row = |values: Vec<f64>| {
            let values: Vec<f32> = values.into_iter().map(|v| v as f32).collect();
            Tensor::<B, 2>::from_data(TensorData::new(values, [1, dims]), &device)
        };
        let mut logits = Vec::with_capacity(self.weights.len());
        let mut estimates = Vec::with_capacity(self.weights.len());
        for (k, mean) in self.means.iter().enumerate() {
            let variance = a * a * self.variances[k] + s2;
            let centred = sample.clone() - row(mean.iter().map(|m| a * m).collect());
            let log_density = centred
                .clone()
                .powi_scalar(2)
                .sum_dim(1)
                .mul_scalar(-0.5 / variance)
                .add_scalar(self.weights[k].ln() - 0.5 * dims as f64 * variance.ln());
            logits.push(log_density);
            let gain = a * self.variances[k] / variance;
            estimates.push(centred.mul_scalar(gain) + row(mean.clone()));
        }
        let mut responsibilities = softmax(Tensor::cat(logits, 1), 1);
        if let Some(labels) = labels {
            // Labelled rows: responsibility 1 for their class, 0 for the others.
            let components = self.weights.len();
            let keep: Vec<f32> = labels
                .iter()
                .map(|l| f32::from(l.is_none() as u8))
                .collect();
            let chosen: Vec<f32> = labels
                .iter()
                .flat_map(|l| (0..components).map(move |k| f32::from((*l == Some(k)) as u8)))
                .collect();
            let batch = labels.len();
            responsibilities = responsibilities
                * Tensor::from_data(TensorData::new(keep, [batch, 1]), &device)
                + Tensor::from_data(TensorData::new(chosen, [batch, components]), &device);
        }
        Ok(estimates
            .into_iter()
            .enumerate()
            .map(|(k, estimate)| estimate * responsibilities.clone().narrow(1, k, 1))
            .reduce(|sum, term| sum + term)
            .expect("a mixture has at least one component"))
    }
}

impl GaussianMixture {
    /// The model output of kind `self.prediction` at `timestep`, given `labels` (see
    /// [`Self::posterior_mean_given`]).
    fn output<B: Backend>(
        &self,
        sample: Tensor<B, 2>,
        timestep: f64,
        labels: Option<&[Option<usize>]>,
    ) -> Result<Tensor<B, 2>, SamplerError> {
        let sigma = self.schedule.sigma_at(timestep);
        let alpha_cumprod = 1.0 / (1.0 + sigma * sigma);
        let x0 = self.posterior_mean_given(sample.clone(), alpha_cumprod, labels)?;
        let [on_sample, on_x0] =
            Prediction::Sample.conversion_coefficients(self.prediction, alpha_cumprod);
        Ok(crate::sampler::linear(&sample, on_sample, &x0, on_x0))
    }
}

impl<B: Backend> Denoiser<B, 2> for GaussianMixture {
    fn prediction(&self) -> Prediction {
        self.prediction
    }

    fn denoise(&self, sample: Tensor<B, 2>, timestep: f64) -> Result<Tensor<B, 2>, SamplerError> {
        self.output(sample, timestep, None)
    }
}

impl<B: Backend> ClassConditional<B, 2> for GaussianMixture {
    fn prediction(&self) -> Prediction {
        self.prediction
    }

    fn classes(&self) -> usize {
        self.components()
    }

    fn denoise_labelled(
        &self,
        sample: Tensor<B, 2>,
        timestep: f64,
        labels: &[Option<usize>],
    ) -> Result<Tensor<B, 2>, SamplerError> {
        self.output(sample, timestep, Some(labels))
    }
}

/// The sliced Wasserstein-2 distance between two equal-size point sets in d dimensions
/// (Rabin et al. 2011): the root mean, over `directions` random unit vectors θ drawn from
/// `rng`, of the squared W2 distance between the projections ⟨x, θ⟩ of the two sets, which in
/// one dimension pairs the sorted values.
///
/// `a` and `b` hold the points row by row (`dims` values each). Returns `None` when the sets
/// differ in size, are empty, or `dims` does not divide their length.
pub fn sliced_wasserstein_2(
    a: &[f32],
    b: &[f32],
    dims: usize,
    directions: usize,
    rng: &mut (impl Rng + ?Sized),
) -> Option<f64> {
    if dims == 0
        || a.len() != b.len()
        || a.is_empty()
        || !a.len().is_multiple_of(dims)
        || directions == 0
    {
        return None;
    }
    let count = a.len() / dims;
    let mut total = 0.0;
    for _ in 0..directions {
        let raw: Vec<f64> = (0..dims)
            .map(|_| StandardNormal.sample(&mut *rng))
            .collect();
        let norm = raw.iter().map(|v| v * v).sum::<f64>().sqrt();
        let project = |points: &[f32]| {
            let mut values: Vec<f64> = points
                .chunks(dims)
                .map(|p| p.iter().zip(&raw).map(|(x, t)| *x as f64 * t).sum::<f64>() / norm)
                .collect();
            values.sort_by(f64::total_cmp);
            values
        };
        let (pa, pb) = (project(a), project(b));
        total += pa
            .iter()
            .zip(&pb)
            .map(|(x, y)| (x - y).powi(2))
            .sum::<f64>()
            / count as f64;
    }
    Some((total / directions as f64).sqrt())
}
