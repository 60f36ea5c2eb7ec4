//! Seeds and random bits derived from a seed and a position, with SplitMix64's output function
//! (Steele, Lea & Flood 2014, "Fast Splittable Pseudorandom Number Generators").

/// The `index`-th value of the SplitMix64 stream seeded with `seed`: the output function
///
/// ```text
/// z = seed + (index + 1)·γ,  γ = 0x9E3779B97F4A7C15
/// z = (z ⊕ z≫30)·0xBF58476D1CE4E5B9;  z = (z ⊕ z≫27)·0x94D049BB133111EB;  z ⊕ z≫31
/// ```
///
/// (wrapping arithmetic). Nearby seeds or indices give unrelated values, so it derives
/// independent seeds for the streams of a run (a step's, an epoch's, a dropout mask's) and the
/// random bits of a dropout mask's elements.
pub fn mix(seed: u64, index: u64) -> u64 {
    const GAMMA: u64 = 0x9E37_79B9_7F4A_7C15;
    let mut z = seed.wrapping_add(index.wrapping_add(1).wrapping_mul(GAMMA));
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

#[cfg(test)]
mod tests {
    use super::mix;

    /// The first outputs of SplitMix64 seeded with 0 (its reference implementation's
    /// `next()` adds γ, then applies the output function).
    #[test]
    fn matches_splitmix64() {
        assert_eq!(mix(0, 0), 0xE220_A839_7B1D_CDAF);
        assert_eq!(mix(0, 1), 0x6E78_9E6A_A1B9_65F4);
        assert_eq!(mix(0, 2), 0x06C4_5D18_8009_454F);
    }
}
