/// What a denoising model predicts from x_t = √ᾱ_t x_0 + √(1 − ᾱ_t) ε: diffusers'
/// `prediction_type`.
///
/// Each kind is a fixed linear combination of the clean data x_0 and the noise ε, so any one
/// of them, with x_t, determines the others (except ε, which says nothing of x_0 where ᾱ_t = 0):
///
/// ```text
/// Epsilon:  ε                                   (Ho et al. 2020)
/// Sample:   x_0
/// V:        v = √ᾱ_t ε − √(1 − ᾱ_t) x_0         (Salimans & Ho 2022, "Progressive Distillation", §4)
/// Flow:     u = ε − x_0                           (Lipman et al. 2023; Liu et al. 2023)
/// ```
///
/// `Flow` is rectified flow's velocity: on the straight path x_σ = (1 − σ) x_0 + σ ε it is
/// dx_σ/dσ. Kiln's samplers feed the model the variance-preserving x_t, which is (a + s) x_σ
/// with a = √ᾱ_t, s = √(1 − ᾱ_t) and σ = s/(a + s); on [`BetaSchedule::RectifiedFlow`]
/// (kiln_schedule) σ_t is spread as rectified flow trains it, and deterministic DDIM steps
/// exactly as rectified flow's Euler sampler does. (diffusers' `flow_prediction` models take
/// x_σ itself: they are sampled with `kiln_sampler`'s flow samplers.)
///
/// [`BetaSchedule::RectifiedFlow`]: kiln_schedule::BetaSchedule::RectifiedFlow
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum Prediction {
    /// `epsilon`: the noise ε.
    #[default]
    Epsilon,
    /// `sample`: the clean data x_0.
    Sample,
    /// `v_prediction`: the velocity v.
    V,
    /// `flow_prediction`: rectified flow's velocity u = ε − x_0.
    Flow,
}

/// The coefficients `[c_a, c_b]` of a linear combination c_a·a + c_b·b.
type Pair = [f64; 2];

impl Prediction {
    /// Looks the kind up by its diffusers name (`epsilon`, `sample`, `v_prediction`,
    /// `flow_prediction`).
    pub fn from_name(name: &str) -> Option<Self> {
        match name {
            "epsilon" => Some(Self::Epsilon),
            "sample" => Some(Self::Sample),
            "v_prediction" => Some(Self::V),
            "flow_prediction" => Some(Self::Flow),
            _ => None,
        }
    }

    /// The diffusers name of the kind.
    pub fn name(self) -> &'static str {
        match self {
            Self::Epsilon => "epsilon",
            Self::Sample => "sample",
            Self::V => "v_prediction",
            Self::Flow => "flow_prediction",
        }
    }

    /// The coefficients `[c_x0, c_ε]` of this quantity in terms of x_0 and ε, where
    /// ᾱ = `alpha_cumprod`.
    pub fn target_coefficients(self, alpha_cumprod: f64) -> [f64; 2] {
        let (signal, noise) = signal_and_noise(alpha_cumprod);
        match self {
            Self::Epsilon => [0.0, 1.0],
            Self::Sample => [1.0, 0.0],
            Self::V => [-noise, signal],
            Self::Flow => [-1.0, 1.0],
        }
    }

    /// The coefficients `[c_x, c_out]` such that the `to` quantity equals
    /// c_x·x_t + c_out·output, where `output` is of this kind and ᾱ = `alpha_cumprod`.
    ///
    /// With a = √ᾱ and s = √(1 − ᾱ), each kind gives x_0 and ε as
    ///
    /// ```text
    /// Epsilon: x_0 = (x_t − s ε̂)/a,   ε = ε̂
    /// Sample:  x_0 = x̂_0,             ε = (x_t − a x̂_0)/s
    /// V:       x_0 = a x_t − s v̂,     ε = s x_t + a v̂
    /// Flow:    x_0 = (x_t − s û)/(a + s),   ε = (x_t + a û)/(a + s)
    /// ```
    ///
    /// and `to` is then combined from them. The coefficients are infinite where the conversion
    /// is undefined (from ε to any other kind at ᾱ = 0).
    pub fn conversion_coefficients(self, to: Prediction, alpha_cumprod: f64) -> [f64; 2] {
        if self == to {
            return [0.0, 1.0];
        }
        let (signal, noise) = signal_and_noise(alpha_cumprod);
        let (clean, eps): (Pair, Pair) = match self {
            Self::Epsilon => ([1.0 / signal, -noise / signal], [0.0, 1.0]),
            Self::Sample => ([0.0, 1.0], [1.0 / noise, -signal / noise]),
            Self::V => ([signal, -noise], [noise, signal]),
            Self::Flow => {
                let sum = signal + noise;
                ([1.0 / sum, -noise / sum], [1.0 / sum, signal / sum])
            }
        };
        let [on_clean, on_eps] = to.target_coefficients(alpha_cumprod);
        // Skip zero terms so that an unused infinite coefficient does not turn into NaN.
        let term = |weight: f64, value: f64| if weight == 0.0 { 0.0 } else { weight * value };
        let combine = |i: usize| term(on_clean, clean[i]) + term(on_eps, eps[i]);
        [combine(0), combine(1)]
    }
}

/// (√ᾱ, √(1 − ᾱ)): the signal and noise scales of x_t.
fn signal_and_noise(alpha_cumprod: f64) -> (f64, f64) {
    (alpha_cumprod.sqrt(), (1.0 - alpha_cumprod).sqrt())
}
