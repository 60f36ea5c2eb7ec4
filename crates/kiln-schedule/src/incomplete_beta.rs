//! The Beta(a, b) distribution's quantile function, for [`crate::beta_sigmas`]: the inverse
//! of the regularized incomplete beta function
//!
//! ```text
//! I_x(a, b) = ∫_0^x u^{a−1} (1 − u)^{b−1} du / B(a, b),   B(a, b) = Γ(a) Γ(b) / Γ(a + b)
//! ```
//!
//! I_x by its continued fraction (DLMF 8.17.22, evaluated with Lentz's method), and the
//! quantile by Newton's method on I_x − p kept inside a shrinking bracket (bisection when a
//! Newton step leaves it). All in f64, to about 1e-15.

/// The x in [0, 1] with I_x(a, b) = p, for p in [0, 1] and a, b > 0 (the caller checks).
pub(crate) fn beta_quantile(p: f64, a: f64, b: f64) -> f64 {
    if p <= 0.0 {
        return 0.0;
    }
    if p >= 1.0 {
        return 1.0;
    }
    let ln_beta = ln_beta(a, b);
    let (mut low, mut high, mut x) = (0.0f64, 1.0f64, p);
    for _ in 0..MAX_ITERATIONS {
        let excess = regularized_incomplete_beta(x, a, b, ln_beta) - p;
        if excess == 0.0 {
            return x;
        }
        if excess < 0.0 {
            low = x;
        } else {
            high = x;
        }
        let density = ((a - 1.0) * x.ln() + (b - 1.0) * (1.0 - x).ln() - ln_beta).exp();
        let step = excess / density;
        // Converged: a Newton step this small rounds back onto x, which is now a bracket end,
        // and would otherwise be taken for a step outside the bracket.
        if step.abs() <= 2.0 * f64::EPSILON * x {
            return (x - step).clamp(low, high);
        }
        let newton = x - step;
        let next = if newton > low && newton < high {
            newton
        } else {
            0.5 * (low + high)
        };
        if (next - x).abs() <= f64::EPSILON * next.max(f64::MIN_POSITIVE) || high - low == 0.0 {
            return next;
        }
        x = next;
    }
    x
}

/// Enough for the bisection alone to reach f64's resolution from [0, 1]; Newton's steps take
/// 10–20 for the shapes of noise levels.
const MAX_ITERATIONS: usize = 1100;

/// I_x(a, b) for x in (0, 1), given ln B(a, b): the continued fraction converges fast for
/// x < (a + 1)/(a + b + 2); above, the symmetry I_x(a, b) = 1 − I_{1−x}(b, a) moves x there.
fn regularized_incomplete_beta(x: f64, a: f64, b: f64, ln_beta: f64) -> f64 {
    let front = (a * x.ln() + b * (1.0 - x).ln() - ln_beta).exp();
    if x < (a + 1.0) / (a + b + 2.0) {
        front * continued_fraction(x, a, b) / a
    } else {
        1.0 - front * continued_fraction(1.0 - x, b, a) / b
    }
}

/// The continued fraction 1/(1 + d_1/(1 + d_2/(1 + …))) of I_x(a, b) (DLMF 8.17.22), with
/// d_{2m+1} = −(a + m)(a + b + m) x / ((a + 2m)(a + 2m + 1)) and
/// d_{2m} = m (b − m) x / ((a + 2m − 1)(a + 2m)), by the modified Lentz method.
fn continued_fraction(x: f64, a: f64, b: f64) -> f64 {
    const TINY: f64 = 1e-300;
    let nonzero = |value: f64| if value.abs() < TINY { TINY } else { value };
    let mut c = 1.0;
    let mut d = 1.0 / nonzero(1.0 - (a + b) * x / (a + 1.0));
    let mut fraction = d;
    for m in 1..=MAX_ITERATIONS {
        let m = m as f64;
        let even = m * (b - m) * x / ((a + 2.0 * m - 1.0) * (a + 2.0 * m));
        d = 1.0 / nonzero(1.0 + even * d);
        c = nonzero(1.0 + even / c);
        fraction *= d * c;
        let odd = -(a + m) * (a + b + m) * x / ((a + 2.0 * m) * (a + 2.0 * m + 1.0));
        d = 1.0 / nonzero(1.0 + odd * d);
        c = nonzero(1.0 + odd / c);
        let delta = d * c;
        fraction *= delta;
        if (delta - 1.0).abs() < f64::EPSILON {
            break;
        }
    }
    fraction
}

/// ln B(a, b) = ln Γ(a) + ln Γ(b) − ln Γ(a + b).
fn ln_beta(a: f64, b: f64) -> f64 {
    ln_gamma(a) + ln_gamma(b) - ln_gamma(a + b)
}

/// ln Γ(x) for x > 0 by Lanczos's approximation (g = 7, nine terms; relative error ~1e-15),
/// with Γ(x) = Γ(x + 1)/x below 1/2.
fn ln_gamma(x: f64) -> f64 {
    const G: f64 = 7.0;
    const COEFFICIENTS: [f64; 9] = [
        0.999_999_999_999_809_9,
        676.520_368_121_885_1,
        -1_259.139_216_722_402_8,
        771.323_428_777_653_1,
        -176.615_029_162_140_6,
        12.507_343_278_686_905,
        -0.138_571_095_265_720_12,
        9.984_369_578_019_572e-6,
        1.505_632_735_149_311_6e-7,
    ];
    if x < 0.5 {
        return ln_gamma(x + 1.0) - x.ln();
    }
    let x = x - 1.0;
    let series = COEFFICIENTS[1..]
        .iter()
        .enumerate()
        .fold(COEFFICIENTS[0], |sum, (i, c)| {
            sum + c / (x + i as f64 + 1.0)
        });
    let t = x + G + 0.5;
    0.5 * (2.0 * std::f64::consts::PI).ln() + (x + 0.5) * t.ln() - t + series.ln()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Γ at integers and halves: (n − 1)! and √π.
    #[test]
    fn ln_gamma_matches_closed_forms() {
        for (x, gamma) in [(1.0, 1.0), (5.0, 24.0), (0.5, std::f64::consts::PI.sqrt())] {
            assert!((ln_gamma(x) - f64::ln(gamma)).abs() < 1e-14, "Γ({x})");
        }
        assert!((ln_gamma(0.1) - 2.252_712_651_734_206).abs() < 1e-13);
    }

    /// Closed forms: I_x(1, 1) = x, I_x(a, 1) = x^a, I_x(1, b) = 1 − (1 − x)^b, and the
    /// arcsine law I_x(½, ½) = (2/π) asin √x; the quantile inverts each, to rounding in p.
    #[test]
    fn incomplete_beta_and_its_inverse_match_closed_forms() {
        type Cdf = fn(f64) -> f64;
        let cases: [(f64, f64, Cdf); 4] = [
            (1.0, 1.0, |x| x),
            (2.5, 1.0, |x| x.powf(2.5)),
            (1.0, 3.0, |x| 1.0 - (1.0 - x).powi(3)),
            (0.5, 0.5, |x| 2.0 / std::f64::consts::PI * x.sqrt().asin()),
        ];
        for (a, b, cdf) in cases {
            for x in [1e-6, 0.01, 0.3, 0.5, 0.77, 0.999] {
                let got = regularized_incomplete_beta(x, a, b, ln_beta(a, b));
                assert!((got - cdf(x)).abs() < 1e-14, "I_{x}({a}, {b}) = {got}");
                // Compared in p: near a flat end of the CDF p pins x down only loosely.
                let back = beta_quantile(cdf(x), a, b);
                assert!(
                    (cdf(back) - cdf(x)).abs() < 1e-14,
                    "({a}, {b}) at {x}: {back}"
                );
            }
        }
        assert_eq!(beta_quantile(0.0, 0.6, 0.6), 0.0);
        assert_eq!(beta_quantile(1.0, 0.6, 0.6), 1.0);
    }
}
