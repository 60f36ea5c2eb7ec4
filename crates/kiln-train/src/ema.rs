//! An exponential moving average of a model's weights, the copy that samples best (Ho et al.
//! 2020, Appendix B, use decay 0.9999; diffusers' `EMAModel`).
//!
//! After optimizer step k (counting from 0) every parameter is updated as
//!
//! ```text
//! θ_ema ← d_k θ_ema + (1 − d_k) θ,      d_k = min(decay, (1 + k) / (10 + k))
//! ```
//!
//! The warm-up term (diffusers' default when `use_ema_warmup` is off) keeps the average from
//! being dominated by the random initial weights early in training.

use std::collections::HashMap;

use burn::module::{AutodiffModule, Module, ModuleMapper, ModuleVisitor, Param, ParamId};
use burn::tensor::Tensor;
use burn::tensor::backend::{AutodiffBackend, Backend};

use crate::TrainError;

/// The averaged copy of a model `M` trained on backend `B`, kept on `B`'s inner backend (it
/// never needs gradients).
#[derive(Debug, Clone)]
pub struct Ema<B: AutodiffBackend, M: AutodiffModule<B>> {
    average: M::InnerModule,
    decay: f64,
}

impl<B: AutodiffBackend, M: AutodiffModule<B>> Ema<B, M> {
    /// Starts the average at `model`'s current weights. The parameters keep `model`'s ids,
    /// which is how [`Ema::update`] pairs them. Fails unless `decay` ∈ [0, 1).
    pub fn new(model: &M, decay: f64) -> Result<Self, TrainError> {
        Self::from_average(model.valid(), decay)
    }

    /// Continues from a saved `average` (whose parameter ids must be those of the model).
    /// Fails unless `decay` ∈ [0, 1).
    pub fn from_average(average: M::InnerModule, decay: f64) -> Result<Self, TrainError> {
        check_decay(decay)?;
        Ok(Self { average, decay })
    }

    /// The decay d_k used after optimizer step `step` (0-based).
    pub fn decay_at(&self, step: u64) -> f64 {
        self.decay.min((1.0 + step as f64) / (10.0 + step as f64))
    }

    /// Moves the average towards `model` after optimizer step `step` (0-based).
    pub fn update(&mut self, model: &M, step: u64) {
        let decay = self.decay_at(step);
        let mut current = Collect {
            tensors: HashMap::new(),
        };
        model.valid().visit(&mut current);
        let mut blend = Blend {
            current: current.tensors,
            decay,
        };
        self.average = self.average.clone().map(&mut blend);
    }

    /// The averaged model.
    pub fn model(&self) -> &M::InnerModule {
        &self.average
    }
}

/// Refuses a decay cap outside [0, 1) (NaN included): at 1 or above the warm-up term alone
/// would steer the average, below 0 it would extrapolate away from the model.
pub(crate) fn check_decay(decay: f64) -> Result<(), TrainError> {
    if (0.0..1.0).contains(&decay) {
        return Ok(());
    }
    Err(TrainError::Config {
        field: "ema_decay".into(),
        problem: format!("{decay}; must be in [0, 1)"),
    })
}

/// Every float parameter of a module, flattened, by id.
struct Collect<B: Backend> {
    tensors: HashMap<ParamId, Tensor<B, 1>>,
}

impl<B: Backend> ModuleVisitor<B> for Collect<B> {
    fn visit_float<const D: usize>(&mut self, param: &Param<Tensor<B, D>>) {
        let value = param.val();
        let count = value.shape().num_elements();
        self.tensors.insert(param.id, value.reshape([count]));
    }
}

/// θ_ema ← d θ_ema + (1 − d) θ for every parameter found in `current`.
struct Blend<B: Backend> {
    current: HashMap<ParamId, Tensor<B, 1>>,
    decay: f64,
}

impl<B: Backend> ModuleMapper<B> for Blend<B> {
    fn map_float<const D: usize>(&mut self, param: Param<Tensor<B, D>>) -> Param<Tensor<B, D>> {
        let (id, average, mapper) = param.consume();
        let blended = match self.current.remove(&id) {
            Some(current) => {
                average.clone().mul_scalar(self.decay)
                    + current
                        .reshape(average.shape())
                        .mul_scalar(1.0 - self.decay)
            }
            None => average,
        };
        Param::from_mapped_value(id, blended, mapper)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use burn::backend::{Autodiff, Flex};
    use burn::nn::{Linear, LinearConfig};

    type B = Autodiff<Flex>;

    fn weights(linear: &Linear<Flex>) -> Vec<f32> {
        linear.weight.val().into_data().to_vec().unwrap()
    }

    #[test]
    fn the_average_follows_the_formula() {
        let device = Default::default();
        let model: Linear<B> = LinearConfig::new(2, 3).init(&device);
        let mut ema = Ema::<B, Linear<B>>::new(&model, 0.9).unwrap();
        let start = weights(ema.model());
        let moved = model.clone().map(&mut Shift(1.0));
        ema.update(&moved, 100);
        // d = min(0.9, 101/110) = 0.9: θ_ema = 0.9 θ + 0.1 (θ + 1) = θ + 0.1.
        for (before, after) in start.iter().zip(weights(ema.model())) {
            assert!((after - before - 0.1).abs() < 1e-6, "{before} -> {after}");
        }
        assert!((ema.decay_at(0) - 0.1).abs() < 1e-12);
        assert_eq!(ema.decay_at(10_000), 0.9);
    }

    #[test]
    fn a_decay_outside_zero_to_one_is_refused() {
        let model: Linear<B> = LinearConfig::new(2, 3).init(&Default::default());
        for decay in [-0.5, 1.0, 1.5, f64::NAN, f64::INFINITY] {
            let error = Ema::<B, Linear<B>>::new(&model, decay).unwrap_err();
            assert!(error.to_string().starts_with("ema_decay: "), "{error}");
        }
        Ema::<B, Linear<B>>::new(&model, 0.0).unwrap();
    }

    /// Adds a constant to every float parameter.
    struct Shift(f64);

    impl<B: Backend> ModuleMapper<B> for Shift {
        fn map_float<const D: usize>(&mut self, param: Param<Tensor<B, D>>) -> Param<Tensor<B, D>> {
            let shift = self.0;
            param.map(|tensor| tensor.add_scalar(shift))
        }
    }
}
