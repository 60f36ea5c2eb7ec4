use burn::config::Config;

use crate::UNetError;

/// The most levels a UNet may have: the last works on images 2^31 times smaller.
const MAX_LEVELS: usize = 32;

/// The architecture of a [`UNet`](crate::UNet), in diffusers' `UNet2DModel` vocabulary.
///
/// Level i of the down path has `block_out_channels[i]` channels and `layers_per_block`
/// residual blocks (followed by self-attention where `attention[i]`); every level but the last
/// ends in a stride-2 downsampler. The up path mirrors it with one more block per level. The
/// time embedding has 4 × `block_out_channels[0]` channels.
#[derive(Config, Debug, PartialEq)]
pub struct UNetConfig {
    /// Channels of the input (1 for grayscale, 3 for RGB).
    #[config(default = 3)]
    pub in_channels: usize,
    /// Channels of the output (the input's, or twice that for a learned variance).
    #[config(default = 3)]
    pub out_channels: usize,
    /// Channels at each resolution level, highest resolution first.
    pub block_out_channels: Vec<usize>,
    /// Whether each level has self-attention (diffusers' `AttnDownBlock2D`/`AttnUpBlock2D`).
    pub attention: Vec<bool>,
    /// Residual blocks per down level (the up levels have one more).
    #[config(default = 2)]
    pub layers_per_block: usize,
    /// Channels per attention head; `None` is one head over all channels.
    #[config(default = "Some(8)")]
    pub attention_head_dim: Option<usize>,
    /// Groups of every GroupNorm.
    #[config(default = 32)]
    pub norm_num_groups: usize,
    /// ε of every GroupNorm.
    #[config(default = 1e-5)]
    pub norm_eps: f64,
    /// Dropout inside the residual blocks.
    #[config(default = 0.0)]
    pub dropout: f64,
    /// Apply the time embedding as a scale and shift of the second norm (Nichol & Dhariwal
    /// 2021, "improved DDPM"; diffusers' `resnet_time_scale_shift = "scale_shift"`) instead of
    /// adding it.
    #[config(default = false)]
    pub scale_shift: bool,
    /// Self-attention in the middle block (diffusers' `add_attention`).
    #[config(default = true)]
    pub mid_attention: bool,
    /// Class-conditional: the number of class labels, the last of which is the "null" label
    /// used for unconditional calls (for classifier-free guidance).
    #[config(default = "None")]
    pub num_class_embeds: Option<usize>,
}

impl UNetConfig {
    /// `tiny`: 2 levels of 32 and 64 channels, attention at the second, 1 block per level,
    /// groups of 8. For tests and CPU demos.
    pub fn tiny(channels: usize) -> Self {
        Self::new(vec![32, 64], vec![false, true])
            .with_in_channels(channels)
            .with_out_channels(channels)
            .with_layers_per_block(1)
            .with_norm_num_groups(8)
    }

    /// `faces32`: a 32×32 face model that trains on a CPU: 3 levels of 32, 64, 128 channels,
    /// one residual block per level, attention (4 heads of 32 channels) at 8×8, 8 groups
    /// (2.7 M parameters with one channel).
    pub fn faces32(channels: usize) -> Self {
        Self::new(vec![32, 64, 128], vec![false, false, true])
            .with_in_channels(channels)
            .with_out_channels(channels)
            .with_layers_per_block(1)
            .with_norm_num_groups(8)
            .with_attention_head_dim(Some(32))
    }

    /// `faces64`: a 64×64 face model that trains on one consumer GPU: 4 levels of 64, 128,
    /// 256, 256 channels with attention at 16×16 and 8×8, 2 blocks per level, scale-shift
    /// time conditioning, dropout 0.1.
    pub fn faces64(channels: usize) -> Self {
        Self::new(vec![64, 128, 256, 256], vec![false, false, true, true])
            .with_in_channels(channels)
            .with_out_channels(channels)
            .with_attention_head_dim(Some(64))
            .with_scale_shift(true)
            .with_dropout(0.1)
    }

    /// The published DDPM CIFAR-10 model (Ho et al. 2020; google/ddpm-cifar10-32):
    /// 128, 256, 256, 256 channels, attention at 16×16, 35.7 M parameters.
    pub fn ddpm_cifar10() -> Self {
        Self::new(vec![128, 256, 256, 256], vec![false, true, false, false])
            .with_attention_head_dim(None)
            .with_dropout(0.1)
    }

    /// The published DDPM CelebA-HQ 256×256 model (google/ddpm-celebahq-256): 128, 128, 256,
    /// 256, 512, 512 channels, attention at 16×16.
    pub fn ddpm_celebahq256() -> Self {
        Self::new(
            vec![128, 128, 256, 256, 512, 512],
            vec![false, false, false, false, true, false],
        )
        .with_attention_head_dim(None)
    }

    /// The time embedding's width, 4 × `block_out_channels[0]` (of a validated config).
    pub(crate) fn time_embed_dim(&self) -> usize {
        4 * self.block_out_channels[0]
    }

    /// The number of attention heads at `channels` channels (of a validated config).
    pub(crate) fn heads(&self, channels: usize) -> usize {
        self.attention_head_dim.map_or(1, |dim| channels / dim)
    }

    pub(crate) fn validate(&self) -> Result<(), UNetError> {
        let bad = |field, problem: String| Err(UNetError::Config { field, problem });
        if self.block_out_channels.is_empty() {
            return bad("block_out_channels", "at least one level is needed".into());
        }
        // Each level below the first halves the image: 2^(levels − 1) must divide its size.
        if self.block_out_channels.len() > MAX_LEVELS {
            return bad(
                "block_out_channels",
                format!(
                    "{} levels; at most {MAX_LEVELS} (each halves the image)",
                    self.block_out_channels.len()
                ),
            );
        }
        if self.attention.len() != self.block_out_channels.len() {
            return bad(
                "attention",
                format!(
                    "{} entries for {} levels",
                    self.attention.len(),
                    self.block_out_channels.len()
                ),
            );
        }
        for (name, value) in [
            ("in_channels", self.in_channels),
            ("out_channels", self.out_channels),
            ("layers_per_block", self.layers_per_block),
            ("norm_num_groups", self.norm_num_groups),
        ] {
            if value == 0 {
                return bad(name, "must be at least 1".into());
            }
        }
        for &channels in &self.block_out_channels {
            if channels == 0 || channels % self.norm_num_groups != 0 {
                return bad(
                    "block_out_channels",
                    format!(
                        "{channels} is not a positive multiple of norm_num_groups {}",
                        self.norm_num_groups
                    ),
                );
            }
            if let Some(dim) = self.attention_head_dim
                && (dim == 0 || channels % dim != 0)
            {
                return bad(
                    "attention_head_dim",
                    format!("{dim} does not divide {channels} channels"),
                );
            }
        }
        if !(0.0..1.0).contains(&self.dropout) {
            return bad("dropout", format!("{} is not in [0, 1)", self.dropout));
        }
        // GroupNorm divides by √(var + ε): ε ≤ 0 or NaN makes NaN outputs.
        if !(self.norm_eps.is_finite() && self.norm_eps > 0.0) {
            return bad(
                "norm_eps",
                format!("{}; must be finite and > 0", self.norm_eps),
            );
        }
        if self.num_class_embeds == Some(0) {
            return bad(
                "num_class_embeds",
                "must be at least 1 (the null label)".into(),
            );
        }
        Ok(())
    }
}
