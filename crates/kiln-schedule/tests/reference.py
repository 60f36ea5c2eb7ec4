"""Prints the reference values used by schedule.rs, computed with numpy in float64 by
the formulas of diffusers' schedulers (DDPMScheduler, DDIMScheduler, DPMSolverMultistepScheduler,
EulerDiscreteScheduler). Run: python3 crates/kiln-schedule/tests/reference.py"""
import math

import numpy as np

T = 1000
linear = np.linspace(1e-4, 0.02, T)
scaled = np.linspace(1e-4**0.5, 0.02**0.5, T) ** 2
sigmoid = 1 / (1 + np.exp(-np.linspace(-6, 6, T))) * (0.02 - 1e-4) + 1e-4


def alpha_bar(t):
    return math.cos((t + 0.008) / 1.008 * math.pi / 2) ** 2


cosine = np.array([min(1 - alpha_bar((i + 1) / T) / alpha_bar(i / T), 0.999) for i in range(T)])

print("linear alphas_cumprod[999]", repr(np.cumprod(1 - linear)[999]))
print("scaled_linear betas[500]", repr(scaled[500]), "alphas_cumprod[999]", repr(np.cumprod(1 - scaled)[999]))
print("sigmoid betas[0]", repr(sigmoid[0]), "betas[500]", repr(sigmoid[500]))
print("cosine betas[0]", repr(cosine[0]), "alphas_cumprod[500]", repr(np.cumprod(1 - cosine)[500]))

# Lin et al. 2023, Algorithm 1, on the linear schedule.
abar_sqrt = np.sqrt(np.cumprod(1 - linear))
a0, aT = abar_sqrt[0], abar_sqrt[-1]
rescaled = ((abar_sqrt - aT) * a0 / (a0 - aT)) ** 2
print("zero-snr alphas_cumprod[500]", repr(rescaled[500]), "betas[998]", repr(1 - rescaled[998] / rescaled[997]))

# Karras sigmas (rho = 7) between the linear schedule's extreme sigmas.
sigmas = np.sqrt((1 - np.cumprod(1 - linear)) / np.cumprod(1 - linear))
ramp = np.linspace(0, 1, 10)
lo, hi = sigmas[0] ** (1 / 7), sigmas[-1] ** (1 / 7)
karras = (hi + ramp * (lo - hi)) ** 7
print("karras", repr(list(karras[[0, 3, 9]])))


# diffusers' _sigma_to_t
def sigma_to_t(sigma, log_sigmas):
    log_sigma = np.log(np.maximum(sigma, 1e-10))
    dists = log_sigma - log_sigmas[:, np.newaxis]
    low_idx = np.cumsum((dists >= 0), axis=0).argmax(axis=0).clip(max=log_sigmas.shape[0] - 2)
    high_idx = low_idx + 1
    low, high = log_sigmas[low_idx], log_sigmas[high_idx]
    w = np.clip((low - log_sigma) / (low - high), 0, 1)
    return (1 - w) * low_idx + w * high_idx


print("sigma_to_t(karras[3])", repr(sigma_to_t(np.array([karras[3]]), np.log(sigmas))[0]))
print("euler linspace 1100/10", list(np.linspace(0, 1099, 10)[::-1]))
print("dpm leading 1000/10 offset 1", list((np.arange(0, 11) * (1000 // 11)).round()[::-1][:-1] + 1))
print("trailing 1000/7", list(np.round(np.arange(1000, 0, -1000 / 7)).astype(np.int64) - 1))
