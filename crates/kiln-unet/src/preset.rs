//! The UNet presets by name: the one table of the names users type (`--preset faces32`).

use std::fmt;
use std::str::FromStr;

use crate::UNetConfig;

/// A [`UNetConfig`] preset, by the name users type.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum UNetPreset {
    /// `tiny`: [`UNetConfig::tiny`], for tests and CPU demos.
    Tiny,
    /// `faces32`: [`UNetConfig::faces32`], the CPU demo model.
    Faces32,
    /// `faces64`: [`UNetConfig::faces64`], a GPU model for 64×64 faces.
    Faces64,
    /// `cifar10`: [`UNetConfig::ddpm_cifar10`], the 35.7 M-parameter DDPM CIFAR-10 UNet.
    Cifar10,
    /// `celebahq256`: [`UNetConfig::ddpm_celebahq256`], the DDPM CelebA-HQ 256×256 UNet.
    CelebaHq256,
}

impl UNetPreset {
    /// Every preset, in the order of the names in [`UNetPreset::NAMES`].
    pub const ALL: [UNetPreset; 5] = [
        Self::Tiny,
        Self::Faces32,
        Self::Faces64,
        Self::Cifar10,
        Self::CelebaHq256,
    ];
    /// The names accepted by [`FromStr`] and written by [`fmt::Display`].
    pub const NAMES: [&'static str; 5] = ["tiny", "faces32", "faces64", "cifar10", "celebahq256"];

    /// The preset's configuration for images of `channels` channels in and out.
    pub fn config(self, channels: usize) -> UNetConfig {
        match self {
            Self::Tiny => UNetConfig::tiny(channels),
            Self::Faces32 => UNetConfig::faces32(channels),
            Self::Faces64 => UNetConfig::faces64(channels),
            Self::Cifar10 => UNetConfig::ddpm_cifar10(),
            Self::CelebaHq256 => UNetConfig::ddpm_celebahq256(),
        }
        .with_in_channels(channels)
        .with_out_channels(channels)
    }
}

impl FromStr for UNetPreset {
    type Err = String;

    fn from_str(name: &str) -> Result<Self, Self::Err> {
        Self::NAMES
            .iter()
            .zip(Self::ALL)
            .find(|(known, _)| **known == name)
            .map(|(_, preset)| preset)
            .ok_or_else(|| {
                format!(
                    "unknown preset {name:?}; expected one of {}",
                    Self::NAMES.join(", ")
                )
            })
    }
}

impl fmt::Display for UNetPreset {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let index = Self::ALL.iter().position(|p| p == self).unwrap_or_default();
        f.write_str(Self::NAMES[index])
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_name_parses_to_its_preset_and_back() {
        for (preset, name) in UNetPreset::ALL.iter().zip(UNetPreset::NAMES) {
            assert_eq!(name.parse::<UNetPreset>(), Ok(*preset));
            assert_eq!(preset.to_string(), name);
            preset.config(3).validate().unwrap();
        }
        assert_eq!(UNetPreset::Faces32.config(1), UNetConfig::faces32(1));
        assert_eq!(UNetPreset::Cifar10.config(3), UNetConfig::ddpm_cifar10());
        let error = "faces".parse::<UNetPreset>().unwrap_err();
        assert!(error.contains("faces32, faces64"), "{error}");
    }
}
