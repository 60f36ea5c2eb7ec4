//! diffusers `UNet2DModel` folders (`config.json` + `diffusion_pytorch_model.safetensors`):
//! loading them into Kiln and saving Kiln models as them.

use std::fs;
use std::path::Path;

use burn::tensor::backend::Backend;
use burn_store::{BurnToPyTorchAdapter, ModuleSnapshot, PyTorchToBurnAdapter, SafetensorsStore};
use serde::{Deserialize, Serialize};

use crate::checkpoint::{first_problem, temporary_path};
use crate::{UNet, UNetConfig, UNetError};

/// The name of a diffusers model's configuration file.
const CONFIG_FILE: &str = "config.json";
/// The name of a diffusers model's weights file.
const WEIGHTS_FILE: &str = "diffusion_pytorch_model.safetensors";

/// The parts of tensor names where diffusers' (first) and Kiln's (second) differ: diffusers
/// keeps the attention's output projection and each level's resampler in one-element lists.
const RENAMES: [(&str, &str); 3] = [
    ("to_out.0", "to_out"),
    ("downsamplers.0", "downsampler"),
    ("upsamplers.0", "upsampler"),
];

/// `store` renaming every `.from.` in a tensor name to `.to.` on load and save.
fn renamed(store: SafetensorsStore, from: &str, to: &str) -> SafetensorsStore {
    store.with_key_remapping(
        format!(r"\.{}\.", from.replace('.', r"\.")),
        format!(".{to}."),
    )
}

/// The fields of a diffusers `UNet2DModel` `config.json` that decide the architecture, with
/// diffusers' defaults for absent ones.
#[derive(Debug, Serialize, Deserialize)]
struct DiffusersConfig {
    #[serde(default = "three")]
    in_channels: usize,
    #[serde(default = "three")]
    out_channels: usize,
    block_out_channels: Vec<usize>,
    down_block_types: Vec<String>,
    up_block_types: Vec<String>,
    #[serde(default = "two")]
    layers_per_block: usize,
    #[serde(default = "eight")]
    attention_head_dim: Option<usize>,
    #[serde(default = "thirty_two")]
    norm_num_groups: usize,
    #[serde(default = "norm_eps")]
    norm_eps: f64,
    #[serde(default)]
    dropout: f64,
    #[serde(default = "default_name")]
    resnet_time_scale_shift: String,
    #[serde(default = "yes")]
    add_attention: bool,
    #[serde(default)]
    num_class_embeds: Option<usize>,
    #[serde(default)]
    class_embed_type: Option<String>,
    #[serde(default = "positional")]
    time_embedding_type: String,
    #[serde(default = "yes")]
    flip_sin_to_cos: bool,
    #[serde(default)]
    freq_shift: f64,
    #[serde(default)]
    center_input_sample: bool,
    #[serde(default = "conv")]
    downsample_type: String,
    #[serde(default = "conv")]
    upsample_type: String,
    #[serde(default = "one")]
    mid_block_scale_factor: f64,
    #[serde(default = "one_usize")]
    downsample_padding: usize,
    #[serde(default = "silu")]
    act_fn: String,
    #[serde(default)]
    attn_norm_num_groups: Option<usize>,
    #[serde(default)]
    time_embedding_dim: Option<usize>,
}

fn three() -> usize {
    3
}
fn two() -> usize {
    2
}
fn eight() -> Option<usize> {
    Some(8)
}
fn thirty_two() -> usize {
    32
}
fn norm_eps() -> f64 {
    1e-5
}
fn default_name() -> String {
    "default".into()
}
fn yes() -> bool {
    true
}
fn positional() -> String {
    "positional".into()
}
fn conv() -> String {
    "conv".into()
}
fn one() -> f64 {
    1.0
}
fn one_usize() -> usize {
    1
}
fn silu() -> String {
    "silu".into()
}

impl DiffusersConfig {
    /// The diffusers configuration of `config`'s architecture: every Kiln UNet is one.
    fn from_kiln(config: &UNetConfig) -> Self {
        let blocks = |kind: &str| -> Vec<String> {
            config
                .attention
                .iter()
                .map(|&attention| format!("{}{kind}Block2D", if attention { "Attn" } else { "" }))
                .collect()
        };
        let mut up_block_types = blocks("Up");
        up_block_types.reverse();
        Self {
            in_channels: config.in_channels,
            out_channels: config.out_channels,
            block_out_channels: config.block_out_channels.clone(),
            down_block_types: blocks("Down"),
            up_block_types,
            layers_per_block: config.layers_per_block,
            attention_head_dim: config.attention_head_dim,
            norm_num_groups: config.norm_num_groups,
            norm_eps: config.norm_eps,
            dropout: config.dropout,
            resnet_time_scale_shift: if config.scale_shift {
                "scale_shift"
            } else {
                "default"
            }
            .into(),
            add_attention: config.mid_attention,
            num_class_embeds: config.num_class_embeds,
            class_embed_type: None,
            time_embedding_type: positional(),
            flip_sin_to_cos: true,
            freq_shift: 0.0,
            center_input_sample: false,
            downsample_type: conv(),
            upsample_type: conv(),
            mid_block_scale_factor: one(),
            downsample_padding: one_usize(),
            act_fn: silu(),
            attn_norm_num_groups: None,
            time_embedding_dim: None,
        }
    }

    /// The Kiln configuration of the same architecture, or an error naming the first field
    /// whose value Kiln does not implement.
    fn to_kiln(&self) -> Result<UNetConfig, UNetError> {
        let unsupported =
            |field: &'static str, value: String| UNetError::Unsupported { field, value };
        let expect_str = |field, value: &str, wanted: &str| {
            if value == wanted {
                Ok(())
            } else {
                Err(unsupported(field, format!("{value:?} (only {wanted:?})")))
            }
        };
        expect_str(
            "time_embedding_type",
            &self.time_embedding_type,
            "positional",
        )?;
        expect_str("downsample_type", &self.downsample_type, "conv")?;
        expect_str("upsample_type", &self.upsample_type, "conv")?;
        expect_str("act_fn", &self.act_fn, "silu")?;
        let checks = [
            (
                "flip_sin_to_cos",
                !self.flip_sin_to_cos,
                self.flip_sin_to_cos.to_string(),
            ),
            (
                "freq_shift",
                self.freq_shift != 0.0,
                self.freq_shift.to_string(),
            ),
            (
                "center_input_sample",
                self.center_input_sample,
                "true".into(),
            ),
            (
                "mid_block_scale_factor",
                self.mid_block_scale_factor != 1.0,
                self.mid_block_scale_factor.to_string(),
            ),
            (
                "downsample_padding",
                self.downsample_padding != 1,
                self.downsample_padding.to_string(),
            ),
            (
                "class_embed_type",
                self.class_embed_type.is_some(),
                format!("{:?}", self.class_embed_type),
            ),
            (
                "attn_norm_num_groups",
                self.attn_norm_num_groups.is_some(),
                format!("{:?}", self.attn_norm_num_groups),
            ),
            (
                "time_embedding_dim",
                self.time_embedding_dim.is_some(),
                format!("{:?}", self.time_embedding_dim),
            ),
        ];
        if let Some((field, _, value)) = checks.into_iter().find(|check| check.1) {
            return Err(unsupported(field, value));
        }
        let scale_shift = match self.resnet_time_scale_shift.as_str() {
            "default" => false,
            "scale_shift" => true,
            other => return Err(unsupported("resnet_time_scale_shift", format!("{other:?}"))),
        };
        let attention = self
            .down_block_types
            .iter()
            .map(|block| match block.as_str() {
                "DownBlock2D" => Ok(false),
                "AttnDownBlock2D" => Ok(true),
                other => Err(unsupported("down_block_types", format!("{other:?}"))),
            })
            .collect::<Result<Vec<bool>, _>>()?;
        let mirrored: Vec<String> = attention
            .iter()
            .rev()
            .map(|&a| if a { "AttnUpBlock2D" } else { "UpBlock2D" }.to_string())
            .collect();
        if self.up_block_types != mirrored {
            return Err(unsupported(
                "up_block_types",
                format!(
                    "{:?} (expected the mirror of down_block_types, {mirrored:?})",
                    self.up_block_types
                ),
            ));
        }
        Ok(UNetConfig::new(self.block_out_channels.clone(), attention)
            .with_in_channels(self.in_channels)
            .with_out_channels(self.out_channels)
            .with_layers_per_block(self.layers_per_block)
            .with_attention_head_dim(self.attention_head_dim)
            .with_norm_num_groups(self.norm_num_groups)
            .with_norm_eps(self.norm_eps)
            .with_dropout(self.dropout)
            .with_scale_shift(scale_shift)
            .with_mid_attention(self.add_attention)
            .with_num_class_embeds(self.num_class_embeds))
    }
}

/// Reads a diffusers `UNet2DModel` folder into a Kiln configuration and module on `device`.
///
/// Tensor names are mapped from diffusers' (`…attentions.0.to_out.0.weight`,
/// `…downsamplers.0.conv…`, `…upsamplers.0.conv…`) to Kiln's, linear weights are transposed
/// and norm weights renamed by burn-store's `PyTorchToBurnAdapter`. Every tensor of the module
/// must be found with its exact shape, and every tensor of the file used. Nothing is drawn
/// from burn's backend RNG (the module is built by [`UNetConfig::init_for_loading`]).
///
/// For a class-conditional diffusers model, the last class doubles as Kiln's null label.
pub fn load_diffusers<B: Backend>(
    folder: &Path,
    device: &B::Device,
) -> Result<(UNetConfig, UNet<B>), UNetError> {
    let config_path = folder.join(CONFIG_FILE);
    let text = std::fs::read_to_string(&config_path).map_err(|error| UNetError::Io {
        path: config_path.display().to_string(),
        message: error.to_string(),
    })?;
    let parsed: DiffusersConfig = serde_json::from_str(&text).map_err(|error| UNetError::Io {
        path: config_path.display().to_string(),
        message: error.to_string(),
    })?;
    let config = parsed.to_kiln()?;
    let mut model = config.init_for_loading::<B>(device)?;
    let weights = folder.join(WEIGHTS_FILE);
    let mut store = RENAMES.iter().fold(
        SafetensorsStore::from_file(&weights).with_from_adapter(PyTorchToBurnAdapter),
        |store, (theirs, ours)| renamed(store, theirs, ours),
    );
    store = store
        // Collect every problem in the result and report the first one below.
        .validate(false)
        .allow_partial(true);
    let result = model.load_from(&mut store).map_err(|error| UNetError::Io {
        path: weights.display().to_string(),
        message: error.to_string(),
    })?;
    let problem = first_problem(&result);
    match problem {
        Some(problem) => Err(UNetError::Weights {
            path: weights.display().to_string(),
            problem,
        }),
        None => Ok((config, model)),
    }
}

/// Saves `model` with its `config` as a diffusers `UNet2DModel` folder that
/// `UNet2DModel.from_pretrained(folder)` (and [`load_diffusers`]) reads: `config.json` in
/// diffusers' vocabulary, with `sample_size` where given, and the weights under diffusers'
/// names in `diffusion_pytorch_model.safetensors` (linear weights transposed back, norm
/// parameters named `weight`/`bias`). The folder is created if missing; each file is written
/// beside its place and renamed into it, so a failed save leaves no half-written file.
///
/// For a class-conditional model, diffusers sees `num_class_embeds` labels, the last of them
/// Kiln's null label.
pub fn save_diffusers<B: Backend>(
    model: &UNet<B>,
    config: &UNetConfig,
    sample_size: Option<usize>,
    folder: &Path,
) -> Result<(), UNetError> {
    let io_error = |path: &Path, message: String| UNetError::Io {
        path: path.display().to_string(),
        message,
    };
    fs::create_dir_all(folder).map_err(|error| io_error(folder, error.to_string()))?;
    let mut json = serde_json::to_value(DiffusersConfig::from_kiln(config))
        .map_err(|error| io_error(folder, error.to_string()))?;
    if let Some(fields) = json.as_object_mut() {
        fields.insert("_class_name".into(), "UNet2DModel".into());
        fields.insert("sample_size".into(), sample_size.into());
    }
    let text =
        serde_json::to_string_pretty(&json).map_err(|error| io_error(folder, error.to_string()))?;
    let config_path = folder.join(CONFIG_FILE);
    let temporary = temporary_path(&config_path);
    fs::write(&temporary, text + "\n").map_err(|error| io_error(&temporary, error.to_string()))?;
    fs::rename(&temporary, &config_path)
        .map_err(|error| io_error(&config_path, error.to_string()))?;

    let weights = folder.join(WEIGHTS_FILE);
    let temporary = temporary_path(&weights);
    let mut store = RENAMES.iter().fold(
        SafetensorsStore::from_file(&temporary)
            .with_to_adapter(BurnToPyTorchAdapter)
            .metadata("format", "pt"),
        |store, (theirs, ours)| renamed(store, ours, theirs),
    );
    model
        .save_into(&mut store)
        .map_err(|error| io_error(&temporary, error.to_string()))?;
    fs::rename(&temporary, &weights).map_err(|error| io_error(&weights, error.to_string()))
}
