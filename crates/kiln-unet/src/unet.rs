use burn::module::{Module, ModuleVisitor, Param};
use burn::nn::conv::Conv2d;
use burn::nn::{Embedding, EmbeddingConfig, GroupNorm, GroupNormConfig};
use burn::tensor::{Int, Tensor, backend::Backend};
use kiln_kernels::{cat_channels, silu};

use crate::norm::group_norm;
use crate::resample::{conv, conv3x3};
use crate::resnet::ResnetSpec;
use crate::{
    AttentionBlock, Downsample, ResnetBlock, TimestepEmbedding, UNetConfig, UNetError, Upsample,
    sinusoidal_embedding,
};

/// One resolution level of the down path (diffusers' `DownBlock2D` / `AttnDownBlock2D`).
#[derive(Module, Debug)]
pub struct DownLevel<B: Backend> {
    /// The residual blocks.
    pub resnets: Vec<ResnetBlock<B>>,
    /// Self-attention after each residual block (empty for levels without attention).
    pub attentions: Vec<AttentionBlock<B>>,
    /// The stride-2 convolution to the next level (none on the last level).
    pub downsampler: Option<Downsample<B>>,
}

/// The bottleneck: residual block, self-attention, residual block (`UNetMidBlock2D`).
#[derive(Module, Debug)]
pub struct MidBlock<B: Backend> {
    /// The two residual blocks.
    pub resnets: Vec<ResnetBlock<B>>,
    /// The self-attention between them (empty without `mid_attention`).
    pub attentions: Vec<AttentionBlock<B>>,
}

/// One resolution level of the up path (diffusers' `UpBlock2D` / `AttnUpBlock2D`).
#[derive(Module, Debug)]
pub struct UpLevel<B: Backend> {
    /// The residual blocks, each fed the previous output and one skip connection.
    pub resnets: Vec<ResnetBlock<B>>,
    /// Self-attention after each residual block (empty for levels without attention).
    pub attentions: Vec<AttentionBlock<B>>,
    /// Nearest ×2 upsampling and a convolution to the next level (none on the last level).
    pub upsampler: Option<Upsample<B>>,
}

/// The noise-prediction UNet (see the crate docs and [`UNetConfig`]); field names follow
/// diffusers' `UNet2DModel` parameter names.
#[derive(Module, Debug)]
pub struct UNet<B: Backend> {
    /// 3×3 convolution from the input channels to the first level's.
    pub conv_in: Conv2d<B>,
    /// The MLP on the sinusoidal timestep embedding.
    pub time_embedding: TimestepEmbedding<B>,
    /// Class labels' embeddings, added to the time embedding.
    pub class_embedding: Option<Embedding<B>>,
    /// The down path, highest resolution first.
    pub down_blocks: Vec<DownLevel<B>>,
    /// The bottleneck.
    pub mid_block: MidBlock<B>,
    /// The up path, lowest resolution first.
    pub up_blocks: Vec<UpLevel<B>>,
    /// GroupNorm before the output convolution.
    pub conv_norm_out: GroupNorm<B>,
    /// 3×3 convolution to the output channels.
    pub conv_out: Conv2d<B>,
    in_channels: usize,
    base_channels: usize,
    null_label: Option<usize>,
}

impl<B: Backend> UNet<B> {
    /// Builds the module with lazy parameters; [`UNetConfig::init`] and
    /// [`UNetConfig::init_for_loading`] validate the configuration first.
    pub(crate) fn new(config: &UNetConfig, device: &B::Device) -> Self {
        let channels = &config.block_out_channels;
        let levels = channels.len();
        let time_channels = config.time_embed_dim();
        let resnet = |input, output| {
            let spec = ResnetSpec {
                input,
                output,
                time_channels,
                groups: config.norm_num_groups,
                eps: config.norm_eps,
                dropout: config.dropout,
                scale_shift: config.scale_shift,
            };
            ResnetBlock::new(spec, device)
        };
        let attention = |channels, normalised: bool| {
            AttentionBlock::new(
                channels,
                config.heads(channels),
                normalised.then_some(config.norm_num_groups),
                config.norm_eps,
                device,
            )
        };
        let attentions = |has: bool, count: usize, channels: usize| {
            if has {
                (0..count).map(|_| attention(channels, true)).collect()
            } else {
                Vec::new()
            }
        };

        let down_blocks = (0..levels)
            .map(|level| {
                let input = channels[level.saturating_sub(1)];
                let output = channels[level];
                let layers = config.layers_per_block;
                DownLevel {
                    resnets: (0..layers)
                        .map(|j| resnet(if j == 0 { input } else { output }, output))
                        .collect(),
                    attentions: attentions(config.attention[level], layers, output),
                    downsampler: (level + 1 < levels).then(|| Downsample::new(output, device)),
                }
            })
            .collect();

        let deepest = channels[levels - 1];
        let mid_block = MidBlock {
            resnets: vec![resnet(deepest, deepest), resnet(deepest, deepest)],
            // diffusers' `UNetMidBlock2D` drops the attention's GroupNorm under scale-shift.
            attentions: if config.mid_attention {
                vec![attention(deepest, !config.scale_shift)]
            } else {
                Vec::new()
            },
        };

        let up_blocks = (0..levels)
            .map(|i| {
                let level = levels - 1 - i;
                let output = channels[level];
                let previous = channels[(level + 1).min(levels - 1)];
                let below = channels[level.saturating_sub(1)];
                let layers = config.layers_per_block + 1;
                UpLevel {
                    resnets: (0..layers)
                        .map(|j| {
                            let from_below = if j == 0 { previous } else { output };
                            let skip = if j + 1 == layers { below } else { output };
                            resnet(from_below + skip, output)
                        })
                        .collect(),
                    attentions: attentions(config.attention[level], layers, output),
                    upsampler: (level > 0).then(|| Upsample::new(output, device)),
                }
            })
            .collect();

        Self {
            conv_in: conv3x3(config.in_channels, channels[0], 1, device),
            time_embedding: TimestepEmbedding::new(channels[0], time_channels, device),
            class_embedding: config
                .num_class_embeds
                .map(|n| EmbeddingConfig::new(n, time_channels).init(device)),
            down_blocks,
            mid_block,
            up_blocks,
            conv_norm_out: GroupNormConfig::new(config.norm_num_groups, channels[0])
                .with_epsilon(config.norm_eps)
                .init(device),
            conv_out: conv3x3(channels[0], config.out_channels, 1, device),
            in_channels: config.in_channels,
            base_channels: channels[0],
            null_label: config.num_class_embeds.map(|n| n - 1),
        }
    }

    /// The model's output for `x` = `[batch, in_channels, h, w]` at one timestep per batch
    /// element, with optional class `labels` (`None` uses the null label of a class-conditional
    /// model). h and w must be divisible by 2^(levels − 1).
    ///
    /// The labels' count is checked, not their values, which live on the device: reading them
    /// back would make every call wait for it. Each must lie in 0..`num_class_embeds` (the
    /// last is the null label); `kiln-pipeline` checks the labels it is given on the host.
    pub fn forward(
        &self,
        x: Tensor<B, 4>,
        timesteps: Tensor<B, 1>,
        labels: Option<Tensor<B, 1, Int>>,
    ) -> Result<Tensor<B, 4>, UNetError> {
        self.check_input(&x, &timesteps, labels.as_ref())?;
        let [batch, _, _, _] = x.dims();
        let device = x.device();
        let mut embedding = self
            .time_embedding
            .forward(sinusoidal_embedding(timesteps, self.base_channels));
        if let (Some(table), Some(null)) = (&self.class_embedding, self.null_label) {
            let labels =
                labels.unwrap_or_else(|| Tensor::<B, 1, Int>::full([batch], null as i64, &device));
            let classes: Tensor<B, 3> = table.forward(labels.reshape([batch, 1]));
            embedding = embedding + classes.squeeze_dim(1);
        }

        let mut h = conv(&self.conv_in, x);
        let mut skips = vec![h.clone()];
        for level in &self.down_blocks {
            for (j, resnet) in level.resnets.iter().enumerate() {
                h = resnet.forward(h, embedding.clone());
                if let Some(attention) = level.attentions.get(j) {
                    h = attention.forward(h);
                }
                skips.push(h.clone());
            }
            if let Some(down) = &level.downsampler {
                h = down.forward(h);
                skips.push(h.clone());
            }
        }

        h = self.mid_block.resnets[0].forward(h, embedding.clone());
        if let Some(attention) = self.mid_block.attentions.first() {
            h = attention.forward(h);
        }
        h = self.mid_block.resnets[1].forward(h, embedding.clone());

        for level in &self.up_blocks {
            for (j, resnet) in level.resnets.iter().enumerate() {
                let skip = skips
                    .pop()
                    .expect("one skip per up resnet, by construction");
                h = resnet.forward(cat_channels(h, skip), embedding.clone());
                if let Some(attention) = level.attentions.get(j) {
                    h = attention.forward(h);
                }
            }
            if let Some(up) = &level.upsampler {
                h = up.forward(h);
            }
        }
        Ok(conv(
            &self.conv_out,
            silu(group_norm(&self.conv_norm_out, h)),
        ))
    }

    /// The number of input channels.
    pub fn in_channels(&self) -> usize {
        self.in_channels
    }

    /// The number of output channels: the input's, or twice that for a model that also
    /// learns the variance of its reverse steps (`UNetConfig::out_channels`).
    pub fn out_channels(&self) -> usize {
        // The shape a loaded weight will have: asking the weight itself would draw it.
        self.conv_out.weight.lazy_shape()[0]
    }

    /// Whether the model learns the variance of its reverse steps beside its prediction
    /// (Nichol & Dhariwal 2021): twice as many output channels as input channels, the
    /// prediction first (diffusers' layout for `variance_type = "learned_range"`).
    pub fn learns_variance(&self) -> bool {
        self.out_channels() == 2 * self.in_channels
    }

    /// The null label of a class-conditional model (its last class embedding, used for
    /// unconditional calls); `None` for an unconditional model. Labels below it are classes.
    pub fn null_label(&self) -> Option<usize> {
        self.null_label
    }

    /// Checks that `x` is a valid `[batch, in_channels, h, w]` input: at least one sample, the
    /// channel count, and h and w positive multiples of 2^(levels − 1).
    pub fn check_input_shape(&self, x: &Tensor<B, 4>) -> Result<(), UNetError> {
        self.check_shape(x.dims())
    }

    /// [`Self::check_input_shape`] for an input of shape `shape`, before it is made.
    pub fn check_shape(&self, shape: [usize; 4]) -> Result<(), UNetError> {
        let [batch, channels, height, width] = shape;
        // An empty batch would reach burn-flex's matmul (gemm 0.19), which crashes the process
        // (SIGSEGV) on a zero dimension: the attention block's matmuls did so with burn 0.21.0.
        // Refused here, on every backend, with a reason.
        let problem = if batch == 0 {
            "the batch is empty; give at least one sample".to_string()
        } else if channels != self.in_channels {
            format!("expected {} channels", self.in_channels)
        } else {
            let factor = 1 << (self.down_blocks.len() - 1);
            if height % factor == 0 && width % factor == 0 && height > 0 && width > 0 {
                return Ok(());
            }
            format!("height and width must be positive multiples of {factor}")
        };
        Err(UNetError::Input {
            shape: shape.to_vec(),
            problem,
        })
    }

    fn check_input(
        &self,
        x: &Tensor<B, 4>,
        timesteps: &Tensor<B, 1>,
        labels: Option<&Tensor<B, 1, Int>>,
    ) -> Result<(), UNetError> {
        self.check_input_shape(x)?;
        let shape = x.dims();
        let bad = |problem: String| {
            Err(UNetError::Input {
                shape: shape.to_vec(),
                problem,
            })
        };
        let batch = shape[0];
        if timesteps.dims() != [batch] {
            return bad(format!(
                "{:?} timesteps for a batch of {batch}",
                timesteps.dims()
            ));
        }
        match (labels, &self.class_embedding) {
            (Some(_), None) => bad("labels given to a model without class conditioning".into()),
            (Some(labels), Some(_)) if labels.dims() != [batch] => {
                bad(format!("{:?} labels for a batch of {batch}", labels.dims()))
            }
            _ => Ok(()),
        }
    }
}

impl UNetConfig {
    /// Checks the configuration and builds the module on `device`.
    ///
    /// burn initialises parameters lazily, at first use, so their random draws would follow
    /// the order of the first forward pass; every parameter is initialised here instead, in
    /// module order, so that `B::seed(device, s)` before `init` always gives the same weights.
    pub fn init<B: Backend>(&self, device: &B::Device) -> Result<UNet<B>, UNetError> {
        self.validate()?;
        let model = UNet::new(self, device);
        model.visit(&mut Materialize);
        Ok(model)
    }

    /// Checks the configuration and builds the module on `device` with its parameters not yet
    /// drawn, to load weights into with [`load_weights`](crate::load_weights) or burn-store's
    /// `load_from`, which set each parameter without drawing it. So a load spends no time
    /// on weights it replaces and draws nothing from burn's backend RNG, which is global to the
    /// process: loading a model in one thread leaves a seeded run in another thread as it was.
    /// A parameter that no load sets is drawn at its first use, from whatever the RNG holds
    /// then; [`load_weights`](crate::load_weights) refuses a file that leaves one unset.
    ///
    /// burn 0.21's `load_record` (and so `load_file`) still draws the parameters inside
    /// `Option` fields (biases, skip connections, resamplers, the class embedding) before it
    /// replaces them:
    /// `Option::load_record` counts their parameters, which initialises them (burn-core 0.21.0,
    /// `src/module/param/primitive.rs`, line 32).
    pub fn init_for_loading<B: Backend>(&self, device: &B::Device) -> Result<UNet<B>, UNetError> {
        self.validate()?;
        Ok(UNet::new(self, device))
    }
}

/// Forces the lazy initialisation of every float parameter it visits.
struct Materialize;

impl<B: Backend> ModuleVisitor<B> for Materialize {
    fn visit_float<const D: usize>(&mut self, param: &Param<Tensor<B, D>>) {
        let _ = param.val();
    }
}
