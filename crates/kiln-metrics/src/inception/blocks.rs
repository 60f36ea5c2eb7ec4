//! The mixed blocks of InceptionV3 (Szegedy et al. 2016, "Rethinking the Inception Architecture",
//! figures 5–7 and 10), as torchvision names and orders them, with pytorch-fid's FID variants:
//! average pooling that leaves the padding out of its count (`count_include_pad=False`, as the
//! TensorFlow graph the FID weights come from), and max pooling in the last block.

use burn::tensor::module::{avg_pool2d, max_pool2d};
use burn::tensor::{Tensor, backend::Backend};

use super::conv::{BasicConv, ConvShape, chain};
use crate::{MetricsError, WeightSource};

/// Builds the units of one network from its weights.
pub(super) struct Loader<'a, B: Backend> {
    pub source: &'a mut dyn WeightSource,
    pub device: &'a B::Device,
}

impl<B: Backend> Loader<'_, B> {
    /// The unit `name` of `shape`.
    pub fn conv(&mut self, name: &str, shape: ConvShape) -> Result<BasicConv<B>, MetricsError> {
        BasicConv::load(self.source, name, shape, self.device)
    }

    /// The units `{block}.{name}` of a branch, in order.
    fn branch(
        &mut self,
        block: &str,
        units: &[(&str, ConvShape)],
    ) -> Result<Vec<BasicConv<B>>, MetricsError> {
        units
            .iter()
            .map(|&(name, shape)| self.conv(&format!("{block}.{name}"), shape))
            .collect()
    }
}

/// 3×3 average pooling, stride 1, padding 1, each mean over the pixels inside the image.
fn average_3x3<B: Backend>(x: Tensor<B, 4>) -> Tensor<B, 4> {
    avg_pool2d(x, [3, 3], [1, 1], [1, 1], false, false)
}

/// 3×3 max pooling with `stride`, padding 1 when the size is kept (stride 1), none otherwise.
pub(super) fn max_3x3<B: Backend>(x: Tensor<B, 4>, stride: usize) -> Tensor<B, 4> {
    let padding = if stride == 1 { 1 } else { 0 };
    max_pool2d(
        x,
        [3, 3],
        [stride, stride],
        [padding, padding],
        [1, 1],
        false,
    )
}

/// InceptionA (`Mixed_5b`–`Mixed_5d`, pytorch-fid's `FIDInceptionA`): 1×1; 1×1 → 5×5; 1×1 → 3×3 →
/// 3×3; average pool → 1×1 with `pool_features` outputs; concatenated.
#[derive(Debug, Clone)]
pub(super) struct MixedA<B: Backend> {
    branch1x1: BasicConv<B>,
    branch5x5: Vec<BasicConv<B>>,
    branch3x3dbl: Vec<BasicConv<B>>,
    branch_pool: BasicConv<B>,
}

impl<B: Backend> MixedA<B> {
    pub fn load(
        loader: &mut Loader<B>,
        name: &str,
        input: usize,
        pool_features: usize,
    ) -> Result<Self, MetricsError> {
        let square = ConvShape::square;
        Ok(Self {
            branch1x1: loader.conv(&format!("{name}.branch1x1"), square(input, 64, 1))?,
            branch5x5: loader.branch(
                name,
                &[
                    ("branch5x5_1", square(input, 48, 1)),
                    ("branch5x5_2", square(48, 64, 5).padded([2, 2])),
                ],
            )?,
            branch3x3dbl: loader.branch(
                name,
                &[
                    ("branch3x3dbl_1", square(input, 64, 1)),
                    ("branch3x3dbl_2", square(64, 96, 3).padded([1, 1])),
                    ("branch3x3dbl_3", square(96, 96, 3).padded([1, 1])),
                ],
            )?,
            branch_pool: loader.conv(
                &format!("{name}.branch_pool"),
                square(input, pool_features, 1),
            )?,
        })
    }

    pub fn forward(&self, x: Tensor<B, 4>) -> Tensor<B, 4> {
        let branches = vec![
            self.branch1x1.forward(x.clone()),
            chain(&self.branch5x5, x.clone()),
            chain(&self.branch3x3dbl, x.clone()),
            self.branch_pool.forward(average_3x3(x)),
        ];
        Tensor::cat(branches, 1)
    }
}

/// InceptionB (`Mixed_6a`, a grid reduction): 3×3 stride 2; 1×1 → 3×3 → 3×3 stride 2; 3×3 max
/// pool stride 2; concatenated.
#[derive(Debug, Clone)]
pub(super) struct MixedB<B: Backend> {
    branch3x3: BasicConv<B>,
    branch3x3dbl: Vec<BasicConv<B>>,
}

impl<B: Backend> MixedB<B> {
    pub fn load(loader: &mut Loader<B>, name: &str, input: usize) -> Result<Self, MetricsError> {
        let square = ConvShape::square;
        Ok(Self {
            branch3x3: loader.conv(
                &format!("{name}.branch3x3"),
                square(input, 384, 3).strided(2),
            )?,
            branch3x3dbl: loader.branch(
                name,
                &[
                    ("branch3x3dbl_1", square(input, 64, 1)),
                    ("branch3x3dbl_2", square(64, 96, 3).padded([1, 1])),
                    ("branch3x3dbl_3", square(96, 96, 3).strided(2)),
                ],
            )?,
        })
    }

    pub fn forward(&self, x: Tensor<B, 4>) -> Tensor<B, 4> {
        let branches = vec![
            self.branch3x3.forward(x.clone()),
            chain(&self.branch3x3dbl, x.clone()),
            max_3x3(x, 2),
        ];
        Tensor::cat(branches, 1)
    }
}

/// InceptionC (`Mixed_6b`–`Mixed_6e`, pytorch-fid's `FIDInceptionC`; factorised 7×7): 1×1;
/// 1×1 → 1×7 → 7×1; 1×1 → 7×1 → 1×7 → 7×1 → 1×7; average pool → 1×1; `channels_7x7` inside the
/// branches, 192 out of each.
#[derive(Debug, Clone)]
pub(super) struct MixedC<B: Backend> {
    branch1x1: BasicConv<B>,
    branch7x7: Vec<BasicConv<B>>,
    branch7x7dbl: Vec<BasicConv<B>>,
    branch_pool: BasicConv<B>,
}

impl<B: Backend> MixedC<B> {
    pub fn load(
        loader: &mut Loader<B>,
        name: &str,
        input: usize,
        channels_7x7: usize,
    ) -> Result<Self, MetricsError> {
        let (square, line, c7) = (ConvShape::square, ConvShape::line, channels_7x7);
        Ok(Self {
            branch1x1: loader.conv(&format!("{name}.branch1x1"), square(input, 192, 1))?,
            branch7x7: loader.branch(
                name,
                &[
                    ("branch7x7_1", square(input, c7, 1)),
                    ("branch7x7_2", line(c7, c7, 7, false)),
                    ("branch7x7_3", line(c7, 192, 7, true)),
                ],
            )?,
            branch7x7dbl: loader.branch(
                name,
                &[
                    ("branch7x7dbl_1", square(input, c7, 1)),
                    ("branch7x7dbl_2", line(c7, c7, 7, true)),
                    ("branch7x7dbl_3", line(c7, c7, 7, false)),
                    ("branch7x7dbl_4", line(c7, c7, 7, true)),
                    ("branch7x7dbl_5", line(c7, 192, 7, false)),
                ],
            )?,
            branch_pool: loader.conv(&format!("{name}.branch_pool"), square(input, 192, 1))?,
        })
    }

    pub fn forward(&self, x: Tensor<B, 4>) -> Tensor<B, 4> {
        let branches = vec![
            self.branch1x1.forward(x.clone()),
            chain(&self.branch7x7, x.clone()),
            chain(&self.branch7x7dbl, x.clone()),
            self.branch_pool.forward(average_3x3(x)),
        ];
        Tensor::cat(branches, 1)
    }
}

/// InceptionD (`Mixed_7a`, a grid reduction): 1×1 → 3×3 stride 2; 1×1 → 1×7 → 7×1 → 3×3 stride 2;
/// 3×3 max pool stride 2; concatenated.
#[derive(Debug, Clone)]
pub(super) struct MixedD<B: Backend> {
    branch3x3: Vec<BasicConv<B>>,
    branch7x7x3: Vec<BasicConv<B>>,
}

impl<B: Backend> MixedD<B> {
    pub fn load(loader: &mut Loader<B>, name: &str, input: usize) -> Result<Self, MetricsError> {
        let (square, line) = (ConvShape::square, ConvShape::line);
        Ok(Self {
            branch3x3: loader.branch(
                name,
                &[
                    ("branch3x3_1", square(input, 192, 1)),
                    ("branch3x3_2", square(192, 320, 3).strided(2)),
                ],
            )?,
            branch7x7x3: loader.branch(
                name,
                &[
                    ("branch7x7x3_1", square(input, 192, 1)),
                    ("branch7x7x3_2", line(192, 192, 7, false)),
                    ("branch7x7x3_3", line(192, 192, 7, true)),
                    ("branch7x7x3_4", square(192, 192, 3).strided(2)),
                ],
            )?,
        })
    }

    pub fn forward(&self, x: Tensor<B, 4>) -> Tensor<B, 4> {
        let branches = vec![
            chain(&self.branch3x3, x.clone()),
            chain(&self.branch7x7x3, x.clone()),
            max_3x3(x, 2),
        ];
        Tensor::cat(branches, 1)
    }
}

/// The pooling branch's pooling in an InceptionE block.
#[derive(Debug, Clone, Copy)]
pub(super) enum PoolKind {
    /// Average over the pixels inside the image (`Mixed_7b`, pytorch-fid's `FIDInceptionE_1`).
    Average,
    /// Max (`Mixed_7c`, pytorch-fid's `FIDInceptionE_2`: the TensorFlow graph's max pool).
    Max,
}

/// InceptionE (`Mixed_7b`, `Mixed_7c`; expanded filter banks): 1×1; 1×1 → (1×3 ‖ 3×1);
/// 1×1 → 3×3 → (1×3 ‖ 3×1); pool → 1×1; concatenated (2,048 channels).
#[derive(Debug, Clone)]
pub(super) struct MixedE<B: Backend> {
    branch1x1: BasicConv<B>,
    branch3x3_1: BasicConv<B>,
    branch3x3_2: [BasicConv<B>; 2],
    branch3x3dbl: Vec<BasicConv<B>>,
    branch3x3dbl_3: [BasicConv<B>; 2],
    branch_pool: BasicConv<B>,
    pool: PoolKind,
}

impl<B: Backend> MixedE<B> {
    pub fn load(
        loader: &mut Loader<B>,
        name: &str,
        input: usize,
        pool: PoolKind,
    ) -> Result<Self, MetricsError> {
        let (square, line) = (ConvShape::square, ConvShape::line);
        let mut conv = |unit: &str, shape| loader.conv(&format!("{name}.{unit}"), shape);
        Ok(Self {
            branch1x1: conv("branch1x1", square(input, 320, 1))?,
            branch3x3_1: conv("branch3x3_1", square(input, 384, 1))?,
            branch3x3_2: [
                conv("branch3x3_2a", line(384, 384, 3, false))?,
                conv("branch3x3_2b", line(384, 384, 3, true))?,
            ],
            branch3x3dbl: vec![
                conv("branch3x3dbl_1", square(input, 448, 1))?,
                conv("branch3x3dbl_2", square(448, 384, 3).padded([1, 1]))?,
            ],
            branch3x3dbl_3: [
                conv("branch3x3dbl_3a", line(384, 384, 3, false))?,
                conv("branch3x3dbl_3b", line(384, 384, 3, true))?,
            ],
            branch_pool: conv("branch_pool", square(input, 192, 1))?,
            pool,
        })
    }

    pub fn forward(&self, x: Tensor<B, 4>) -> Tensor<B, 4> {
        let split = |pair: &[BasicConv<B>; 2], y: Tensor<B, 4>| {
            Tensor::cat(vec![pair[0].forward(y.clone()), pair[1].forward(y)], 1)
        };
        let pooled = match self.pool {
            PoolKind::Average => average_3x3(x.clone()),
            PoolKind::Max => max_3x3(x.clone(), 1),
        };
        let branches = vec![
            self.branch1x1.forward(x.clone()),
            split(&self.branch3x3_2, self.branch3x3_1.forward(x.clone())),
            split(&self.branch3x3dbl_3, chain(&self.branch3x3dbl, x)),
            self.branch_pool.forward(pooled),
        ];
        Tensor::cat(branches, 1)
    }
}
