//! 2-D convolution (cross-correlation, as in every deep-learning framework) and its two
//! gradients. For x `[B, C, H, W]`, a weight w `[O, C, K_h, K_w]`, stride s and zero padding p:
//!
//! ```text
//! y[b, o, i, j] = bias[o] + Σ_{c, u, v} w[o, c, u, v] · x[b, c, i·s_h + u − p_h, j·s_w + v − p_w]
//! ```
//!
//! As matrices, per image b: `Y_b = W · X̃_b` with W the `O × C·K_h·K_w` weight and X̃_b the
//! `C·K_h·K_w × H_out·W_out` patch matrix (im2col). Then `dW = Σ_b dY_b · X̃_bᵀ`,
//! `dbias = Σ_{b, pixels} dY_b`, and `dx_b = col2im(Wᵀ · dY_b)`, col2im being the adjoint of
//! im2col (it adds every patch entry back onto the pixel it came from). With stride 1 the same
//! dx is a convolution of dY, padded by K − 1 − p, with the weights turned by 180° and their
//! channel axes swapped.
//!
//! Flex kernel: images are spread over rayon's threads; each thread owns one patch buffer and
//! runs the `gemm` crate's product for its image on that thread (packed SIMD tiles; AVX-512 where
//! the CPU has it), a block of output rows at a time so that the block's patches (about 512 KiB)
//! stay in the core's L2 cache from im2col to the product. A 1×1 convolution with stride 1 and no
//! padding uses x_b itself as X̃_b, with no copy. Backward: one sweep over the images adds each
//! image's dW to its thread's sum — for stride 1 as one product per run of taps along a kernel
//! row, over the zero-padded image stored pixel-major (`shifted_taps`: no patch matrix, and no
//! transposing pack inside `gemm`), otherwise as dY_b·X̃_bᵀ; dx is the forward kernel run on dY
//! (stride 1: a product with inner size O·K_h·K_w and no scatter) or, for larger strides,
//! Wᵀ·dY_b scattered by col2im. Nothing else is transposed or reordered in memory (the products
//! read Wᵀ and X̃ᵀ through strides). Grouped or dilated convolutions, and every other backend,
//! use burn's `conv2d`.

use burn::tensor::Tensor;
use burn::tensor::backend::Backend;
use burn::tensor::module;
use burn::tensor::ops::ConvOptions;

/// 2-D convolution of `x` (`[B, C, H, W]`) with `weight` (`[O, C/groups, K_h, K_w]`) and an
/// optional `bias` (`[O]`), as burn's `module::conv2d`. Kiln's kernel on Flex and
/// `Autodiff<Flex>` (with its backward) for `groups` = 1 and dilation 1; burn's op otherwise.
pub fn conv2d<B: Backend>(
    x: Tensor<B, 4>,
    weight: Tensor<B, 4>,
    bias: Option<Tensor<B, 1>>,
    options: ConvOptions<2>,
) -> Tensor<B, 4> {
    #[cfg(feature = "flex")]
    let (x, weight, bias) = match flex::conv2d(x, weight, bias, &options) {
        Ok(y) => return y,
        Err(inputs) => inputs,
    };
    module::conv2d(x, weight, bias, options)
}

#[cfg(feature = "flex")]
mod flex {
    use burn::tensor::backend::Backend;
    use burn::tensor::ops::ConvOptions;
    use burn::tensor::{Shape, Tensor};
    use burn_autodiff::checkpoint::base::Checkpointer;
    use burn_autodiff::checkpoint::strategy::NoCheckpointing;
    use burn_autodiff::grads::Gradients;
    use burn_autodiff::ops::{Backward, Ops, OpsKind};
    use std::mem::MaybeUninit;

    use burn_flex::{Flex, FlexTensor};
    use rayon::prelude::*;
    use rten_simd::SimdOp;
    use rten_vecmath::Sum;

    use crate::gemm::{Matrix, matmul, matmul_into};
    use crate::node::register_gradients;
    use crate::parallel::{
        assume_init, contiguous, flex_tensor, par_rows_with, transpose_into, values, write_all,
    };
    use crate::route::{self, AutodiffFlexTensor, Route};

    type Inputs<B> = (Tensor<B, 4>, Tensor<B, 4>, Option<Tensor<B, 1>>);

    /// Kiln's convolution when the backend, dtype and options allow it; the inputs back otherwise.
    pub(super) fn conv2d<B: Backend>(
        x: Tensor<B, 4>,
        weight: Tensor<B, 4>,
        bias: Option<Tensor<B, 1>>,
        options: &ConvOptions<2>,
    ) -> Result<Tensor<B, 4>, Inputs<B>> {
        let geometry = Geometry::new(x.dims(), weight.dims(), options);
        let bias_fits = |g: &Geometry| bias.as_ref().is_none_or(|b| b.dims() == [g.outputs]);
        let Some(geometry) = geometry.filter(bias_fits) else {
            return Err((x, weight, bias));
        };
        match route::backend_of::<B>(x.dtype()) {
            Route::Flex => {
                let x = contiguous(route::into_primitive::<B, 4, FlexTensor>(x));
                let w = contiguous(route::into_primitive::<B, 4, FlexTensor>(weight));
                let bias = bias.map(|b| contiguous(route::into_primitive::<B, 1, FlexTensor>(b)));
                let y = forward(&geometry, values(&x), values(&w), bias.as_ref().map(values));
                Ok(route::from_primitive(y))
            }
            Route::AutodiffFlex => {
                let y = autodiff(
                    geometry,
                    route::into_primitive::<B, 4, AutodiffFlexTensor>(x),
                    route::into_primitive::<B, 4, AutodiffFlexTensor>(weight),
                    bias.map(route::into_primitive::<B, 1, AutodiffFlexTensor>),
                );
                Ok(route::from_primitive(y))
            }
            Route::Burn => Err((x, weight, bias)),
        }
    }

    /// The most bytes of patch matrix the forward builds before multiplying them.
    const PATCH_BLOCK_BYTES: usize = 512 << 10;

    /// The most columns (taps × channels) of one product of the stride-1 weight gradient.
    const MAX_TAPS_WIDTH: usize = 256;

    /// The fewest output pixels per block of the forward's patch matrix.
    const MIN_BLOCK_COLUMNS: usize = 256;

    /// The sizes of one convolution.
    #[derive(Debug, Clone, Copy)]
    struct Geometry {
        batch: usize,
        channels: usize,
        height: usize,
        width: usize,
        outputs: usize,
        kernel: [usize; 2],
        stride: [usize; 2],
        padding: [usize; 2],
        out_height: usize,
        out_width: usize,
    }

    impl Geometry {
        /// The geometry, or `None` for what the kernel does not handle (groups, dilation, shapes
        /// that do not fit, empty outputs).
        fn new(x: [usize; 4], w: [usize; 4], options: &ConvOptions<2>) -> Option<Self> {
            let [batch, channels, height, width] = x;
            let [outputs, per_group, kh, kw] = w;
            let out = |size: usize, k: usize, axis: usize| {
                let padded = size + 2 * options.padding[axis];
                (padded >= k && options.stride[axis] > 0)
                    .then(|| (padded - k) / options.stride[axis] + 1)
            };
            let supported = options.groups == 1
                && options.dilation == [1, 1]
                && per_group == channels
                && batch * outputs > 0;
            let (out_height, out_width) = (out(height, kh, 0)?, out(width, kw, 1)?);
            supported.then_some(Self {
                batch,
                channels,
                height,
                width,
                outputs,
                kernel: [kh, kw],
                stride: options.stride,
                padding: options.padding,
                out_height,
                out_width,
            })
        }

        fn image_len(&self) -> usize {
            self.channels * self.height * self.width
        }

        fn out_pixels(&self) -> usize {
            self.out_height * self.out_width
        }

        /// Rows of the patch matrix: C·K_h·K_w.
        fn patch_rows(&self) -> usize {
            self.channels * self.kernel[0] * self.kernel[1]
        }

        /// The input channel c and kernel tap (u, v) of patch row c·K_h·K_w + u·K_w + v.
        fn patch_row_tap(&self, row: usize) -> (usize, usize, usize) {
            let [kh, kw] = self.kernel;
            (row / (kh * kw), row / kw % kh, row % kw)
        }

        /// A 1×1, stride-1, unpadded convolution, whose patch matrix is the image itself.
        fn is_pointwise(&self) -> bool {
            self.kernel == [1, 1] && self.stride == [1, 1] && self.padding == [0, 0]
        }

        /// The geometry of dx as a convolution of dY (see `input_gradient`): stride 1 only, and
        /// padding no wider than K − 1.
        fn transposed(&self) -> Option<Self> {
            let [kh, kw] = self.kernel;
            let fits = self.stride == [1, 1] && self.padding[0] < kh && self.padding[1] < kw;
            fits.then_some(Self {
                batch: self.batch,
                channels: self.outputs,
                height: self.out_height,
                width: self.out_width,
                outputs: self.channels,
                kernel: self.kernel,
                stride: [1, 1],
                padding: [kh - 1 - self.padding[0], kw - 1 - self.padding[1]],
                out_height: self.height,
                out_width: self.width,
            })
        }

        /// For patch row (c, u, v) and output row i: the input row, if inside the image.
        fn source_row(&self, u: usize, i: usize) -> Option<usize> {
            (i * self.stride[0] + u)
                .checked_sub(self.padding[0])
                .filter(|&row| row < self.height)
        }

        /// For kernel column v: the output columns j whose input column j·s + v − p is inside
        /// the image, and the input column of the first of them.
        fn valid_columns(&self, v: usize) -> (std::ops::Range<usize>, usize) {
            let (s, p) = (self.stride[1], self.padding[1]);
            let first = p.saturating_sub(v).div_ceil(s);
            let last = (self.width + p)
                .saturating_sub(v)
                .div_ceil(s)
                .min(self.out_width);
            let first = first.min(last);
            (first..last, (first * s + v).saturating_sub(p))
        }

        /// Output rows per block of the forward's patch matrix: as many as fit in
        /// [`PATCH_BLOCK_BYTES`], but at least [`MIN_BLOCK_COLUMNS`] and O columns' worth (each
        /// block's product packs all of W, O·C·K_h·K_w values, again: for 512 channels in and
        /// 256 out, blocks of 48 pixels made the layer twice as slow as whole images); all of
        /// them for a pointwise convolution (whose patch matrix is the image, never copied).
        fn block_rows(&self) -> usize {
            let all = self.out_height.max(1);
            if self.is_pointwise() {
                return all;
            }
            let fitting =
                PATCH_BLOCK_BYTES / (self.patch_rows() * self.out_width * size_of::<f32>());
            let columns = MIN_BLOCK_COLUMNS.max(self.outputs);
            fitting.max(columns.div_ceil(self.out_width)).clamp(1, all)
        }

        /// Taps per product of the stride-1 weight gradient ([`shifted_taps`]): as many
        /// neighbours along a kernel row as keep the product at most [`MAX_TAPS_WIDTH`] columns
        /// wide (K_w·C), at least one. Several taps per product pay off for few channels (the
        /// 3-channel first layer: 5.2 → 3.7 ms on one core, all three taps of a row in one
        /// product) but not for many (256 channels and more: one tap per product was 15 %
        /// faster).
        fn taps_per_product(&self) -> usize {
            (MAX_TAPS_WIDTH / self.channels.max(1)).clamp(1, self.kernel[1])
        }

        /// The runs of taps [`shifted_taps`] multiplies at once: (kernel row u, taps v₀..v₁),
        /// row by row.
        fn tap_runs(&self) -> impl Iterator<Item = (usize, std::ops::Range<usize>)> {
            let (per_product, kw) = (self.taps_per_product(), self.kernel[1]);
            (0..self.kernel[0]).flat_map(move |u| {
                (0..kw)
                    .step_by(per_product)
                    .map(move |v| (u, v..(v + per_product).min(kw)))
            })
        }

        /// Whether products should use rayon inside (too few images to spread over threads).
        fn threads_inside(&self) -> bool {
            self.batch < rayon::current_num_threads()
        }
    }

    /// Every run of patch entries taken from inside the image: `visit(patch, pixel, len)` for the
    /// `len` entries from `patch` on in the (C·K_h·K_w × H_out·W_out, row-major) patch matrix,
    /// which come from pixels `pixel`, `pixel + s_w`, … of the (C × H × W) image. The entries no
    /// run covers fall in the zero padding.
    fn inside_runs(g: &Geometry, mut visit: impl FnMut(usize, usize, usize)) {
        for row in 0..g.patch_rows() {
            let (c, u, v) = g.patch_row_tap(row);
            let (columns, first_source) = g.valid_columns(v);
            for i in 0..g.out_height {
                if let Some(source_row) = g.source_row(u, i) {
                    let patch = row * g.out_pixels() + i * g.out_width + columns.start;
                    let pixel = (c * g.height + source_row) * g.width + first_source;
                    visit(patch, pixel, columns.len());
                }
            }
        }
    }

    /// Fills `patches` (C·K_h·K_w × rows·W_out, row-major) with the patch matrix's columns of
    /// output rows `rows` of one image (C × H × W), writing every entry once: each output row of
    /// each patch row is a run copied from the image between the zero padding on its left and
    /// right (or all padding). Nothing is zeroed first — that `memset` of the whole matrix per
    /// image was 9 % of a `tiny` step.
    fn im2col(
        g: &Geometry,
        image: &[f32],
        rows: std::ops::Range<usize>,
        patches: &mut [MaybeUninit<f32>],
    ) {
        if g.stride == [1, 1] && g.out_width == g.width {
            return im2col_same_width(g, image, rows, patches);
        }
        let zeros = || std::iter::repeat(0.0);
        let block = rows.len() * g.out_width;
        for (row, patch_row) in patches.chunks_mut(block).enumerate() {
            let (c, u, v) = g.patch_row_tap(row);
            let (columns, first_source) = g.valid_columns(v);
            for (i, out) in rows.clone().zip(patch_row.chunks_mut(g.out_width)) {
                let Some(source_row) = g.source_row(u, i) else {
                    write_all(out, zeros());
                    continue;
                };
                let pixel = (c * g.height + source_row) * g.width + first_source;
                let (left, rest) = out.split_at_mut(columns.start);
                let (inside, right) = rest.split_at_mut(columns.len());
                write_all(left, zeros());
                match g.stride[1] {
                    1 => write_all(inside, image[pixel..].iter().copied()),
                    step => write_all(inside, image[pixel..].iter().step_by(step).copied()),
                };
                write_all(right, zeros());
            }
        }
    }

    /// [`im2col`] for stride 1 and W_out = W (the width padded by (K_w − 1)/2 on each side, as
    /// in every 3×3 "same" convolution). Patch row (c, u, v) over output rows i₀..i₁, read as one
    /// run, is image plane c from pixel (i₀ + u − p_h)·W + v − p_w on: each output row's run
    /// strays into the neighbouring image row exactly where the padding should be. So each
    /// patch row is one copy of up to (i₁ − i₀)·W values, then |v − p_w| entries per row set to
    /// zero (and whole rows for source rows outside the image) — one long `memcpy` where the
    /// general path makes one short copy per output row.
    fn im2col_same_width(
        g: &Geometry,
        image: &[f32],
        rows: std::ops::Range<usize>,
        patches: &mut [MaybeUninit<f32>],
    ) {
        let [ph, pw] = g.padding;
        let (width, plane) = (g.width, g.height * g.width);
        let zeros = || std::iter::repeat(0.0);
        for (row, out) in patches.chunks_mut(rows.len() * width).enumerate() {
            let (c, u, v) = g.patch_row_tap(row);
            let plane_values = &image[c * plane..][..plane];
            // Output rows i whose source row i + u − p_h lies inside the image.
            let first = ph.saturating_sub(u).clamp(rows.start, rows.end);
            let last = (g.height + ph).saturating_sub(u).clamp(first, rows.end);
            let (above, rest) = out.split_at_mut((first - rows.start) * width);
            let (inside, below) = rest.split_at_mut((last - first) * width);
            write_all(above, zeros());
            write_all(below, zeros());
            // inside[k] is plane value `start + k`, for the k that fall inside the plane.
            let start = ((first + u - ph) * width + v) as isize - pw as isize;
            let lo = (-start).clamp(0, inside.len() as isize) as usize;
            let hi = (plane as isize - start).clamp(lo as isize, inside.len() as isize) as usize;
            let (before, rest) = inside.split_at_mut(lo);
            let (copied, after) = rest.split_at_mut(hi - lo);
            write_all(before, zeros());
            // (Clamped for an empty copy, whose start may lie outside the plane.)
            let from = (start + lo as isize).clamp(0, plane as isize) as usize;
            write_all(copied, plane_values[from..].iter().copied());
            write_all(after, zeros());
            // The entries that strayed into a neighbouring row are padding.
            let (left, right) = (
                pw.saturating_sub(v).min(width),
                v.saturating_sub(pw).min(width),
            );
            for out_row in inside.chunks_mut(width) {
                write_all(&mut out_row[..left], zeros());
                write_all(&mut out_row[width - right..], zeros());
            }
        }
    }

    /// Adds every entry of `patches` onto the pixel of `image` it was taken from (im2col's
    /// adjoint); `image` must start at zero.
    fn col2im(g: &Geometry, patches: &[f32], image: &mut [f32]) {
        inside_runs(g, |patch, pixel, len| {
            let values = &patches[patch..patch + len];
            if g.stride[1] == 1 {
                let target = &mut image[pixel..pixel + len];
                target.iter_mut().zip(values).for_each(|(t, &v)| *t += v);
            } else {
                let target = image[pixel..].iter_mut().step_by(g.stride[1]);
                target.zip(values).for_each(|(t, &v)| *t += v);
            }
        });
    }

    /// The columns of output rows `rows` of image `b`'s patch matrix (C·K_h·K_w × rows·W_out):
    /// the image itself for a pointwise convolution over all rows, else built in `buffer`.
    fn patches<'a>(
        g: &Geometry,
        x: &'a [f32],
        b: usize,
        rows: std::ops::Range<usize>,
        buffer: &'a mut Vec<f32>,
    ) -> &'a [f32] {
        let image = &x[b * g.image_len()..(b + 1) * g.image_len()];
        if g.is_pointwise() && rows == (0..g.out_height) {
            return image;
        }
        let len = g.patch_rows() * rows.len() * g.out_width;
        buffer.clear();
        buffer.reserve(len);
        im2col(g, image, rows, &mut buffer.spare_capacity_mut()[..len]);
        // SAFETY: im2col wrote all `len` entries (each run through `write_all`, which checks
        // that it filled its slice, and the runs tile the matrix).
        unsafe { buffer.set_len(len) };
        buffer
    }

    /// y = conv(x, w) + bias. Per image, the patch matrix is built and multiplied a block of
    /// output rows at a time ([`Geometry::block_rows`]), so that the block stays in the core's
    /// L2 cache between its writing and the product's reading: a whole image's matrix (3.5 MiB
    /// for 96 channels at 32×32) went out to memory and back.
    fn forward(g: &Geometry, x: &[f32], w: &[f32], bias: Option<&[f32]>) -> FlexTensor {
        let pixels = g.out_pixels();
        let weight = Matrix::row_major(w, g.outputs, g.patch_rows());
        let block = g.block_rows();
        let y = par_rows_with(
            g.batch * g.outputs * pixels,
            g.outputs * pixels,
            Vec::new,
            |buffer, b, out| {
                for start in (0..g.out_height).step_by(block) {
                    let rows = start..(start + block).min(g.out_height);
                    let columns = rows.len() * g.out_width;
                    let patches = patches(g, x, b, rows, buffer);
                    let patches = Matrix::row_major(patches, g.patch_rows(), columns);
                    let out = &mut out[start * g.out_width..];
                    matmul_into(out, pixels, weight, patches, 1.0, g.threads_inside());
                }
                // SAFETY: the blocks' O × rows·W_out products, each at its block's first column
                // with row stride H_out·W_out, tile all of `out` (gemm writes without reading).
                let out = unsafe { assume_init(out) };
                if let Some(bias) = bias {
                    for (row, &value) in out.chunks_exact_mut(pixels).zip(bias) {
                        row.iter_mut().for_each(|y| *y += value);
                    }
                }
                out
            },
        );
        flex_tensor(
            y,
            Shape::new([g.batch, g.outputs, g.out_height, g.out_width]),
        )
    }

    /// dx (when `need_input`), dW and dbias from x, w and dy.
    fn backward(
        g: &Geometry,
        x: &[f32],
        w: &[f32],
        dy: &[f32],
        need_input: bool,
    ) -> (Option<FlexTensor>, FlexTensor, FlexTensor) {
        let dx = need_input.then(|| input_gradient(g, w, dy));
        let (dw, dbias) = weight_gradients(g, x, dy);
        let [kh, kw] = g.kernel;
        let dw = flex_tensor(dw, Shape::new([g.outputs, g.channels, kh, kw]));
        (dx, dw, flex_tensor(dbias, Shape::new([g.outputs])))
    }

    /// dx. With stride 1 it is itself a convolution: of dY with the weights turned by 180° and
    /// transposed (`[C, O, K_h, K_w]`), padded by K − 1 − p, so it runs through [`forward`] (a
    /// product with inner size O·K_h·K_w, no scatter). Otherwise each image gets
    /// col2im(Wᵀ·dY_b).
    fn input_gradient(g: &Geometry, w: &[f32], dy: &[f32]) -> FlexTensor {
        if let Some(transposed) = g.transposed() {
            return forward(&transposed, dy, &turned(g, w), None);
        }
        let pixels = g.out_pixels();
        let weight_t = Matrix::row_major(w, g.outputs, g.patch_rows()).t();
        let dx = par_rows_with(
            g.batch * g.image_len(),
            g.image_len(),
            Vec::new,
            |scratch, b, out| {
                let dx_image = write_all(out, std::iter::repeat(0.0));
                let grad = Matrix::row_major(
                    &dy[b * g.outputs * pixels..][..g.outputs * pixels],
                    g.outputs,
                    pixels,
                );
                scratch.resize(g.patch_rows() * pixels, 0.0);
                matmul(scratch, weight_t, grad, false, g.threads_inside());
                col2im(g, scratch, dx_image);
                dx_image
            },
        );
        flex_tensor(dx, Shape::new([g.batch, g.channels, g.height, g.width]))
    }

    /// The weights `[O, C, K_h, K_w]` turned by 180° and transposed: w'[c, o, u, v] =
    /// w[o, c, K_h − 1 − u, K_w − 1 − v].
    fn turned(g: &Geometry, w: &[f32]) -> Vec<f32> {
        let [kh, kw] = g.kernel;
        let mut turned = Vec::with_capacity(w.len());
        for c in 0..g.channels {
            for o in 0..g.outputs {
                let kernel = &w[(o * g.channels + c) * kh * kw..][..kh * kw];
                turned.extend(kernel.iter().rev());
            }
        }
        turned
    }

    /// dW and dbias = Σ_{b, pixels} dY_b: the images in fixed groups, one per thread (by
    /// [`shifted_taps`] for stride 1, by [`patch_products`] otherwise), then the groups' sums
    /// added in order. Fixed groups and a fixed order make the result the same on every run with
    /// the same thread count — a sum over whichever images each thread happened to take (rayon's
    /// `fold`) differs in the last bits from run to run, and a training run would not resume
    /// bit for bit.
    fn weight_gradients(g: &Geometry, x: &[f32], dy: &[f32]) -> (Vec<f32>, Vec<f32>) {
        let pixels = g.out_pixels();
        let weight_len = g.outputs * g.patch_rows();
        let zeros = || (vec![0.0f32; weight_len], vec![0.0f32; g.outputs]);
        let shifted = g.stride == [1, 1];
        let group = g.batch.div_ceil(rayon::current_num_threads());
        let groups: Vec<_> = dy
            .par_chunks(g.outputs * pixels)
            .enumerate()
            .fold_chunks(
                group,
                || (zeros(), Scratch::default()),
                |((mut dw, mut dbias), mut scratch), (b, grad)| {
                    for (sum, row) in dbias.iter_mut().zip(grad.chunks_exact(pixels)) {
                        *sum += Sum::new(row).dispatch();
                    }
                    if shifted {
                        shifted_taps(g, x, b, grad, &mut scratch, &mut dw);
                    } else {
                        patch_products(g, x, b, grad, &mut scratch.image, &mut dw);
                    }
                    ((dw, dbias), scratch)
                },
            )
            .map(|(sums, _)| sums)
            .collect();
        let (dw, dbias) = groups
            .into_iter()
            .reduce(|(mut dw, mut dbias), (other_w, other_b)| {
                dw.iter_mut().zip(other_w).for_each(|(a, b)| *a += b);
                dbias.iter_mut().zip(other_b).for_each(|(a, b)| *a += b);
                (dw, dbias)
            })
            .unwrap_or_else(zeros);
        let dw = if shifted {
            products_to_weight(g, &dw)
        } else {
            dw
        };
        (dw, dbias)
    }

    /// A thread's buffers for the weight gradient: one image rearranged, and dY_b widened.
    #[derive(Default)]
    struct Scratch {
        image: Vec<f32>,
        grad: Vec<f32>,
    }

    /// dW += dY_b·X̃_bᵀ (`dw` as `[O, C, K_h, K_w]`), with X̃_b built by im2col in `buffer`.
    fn patch_products(
        g: &Geometry,
        x: &[f32],
        b: usize,
        grad: &[f32],
        buffer: &mut Vec<f32>,
        dw: &mut [f32],
    ) {
        let grad = Matrix::row_major(grad, g.outputs, g.out_pixels());
        let patches = patches(g, x, b, 0..g.out_height, buffer);
        let patches = Matrix::row_major(patches, g.patch_rows(), g.out_pixels());
        matmul(dw, grad, patches.t(), true, g.threads_inside());
    }

    /// dW += the stride-1 weight gradient of image b, one product per run of
    /// [`Geometry::taps_per_product`] taps along a kernel row, with `dw` in those products'
    /// layout ([`products_to_weight`] turns it into `[O, C, K_h, K_w]`).
    ///
    /// With X̂_b image b zero-padded and stored pixel-major (a row of C channels per padded
    /// pixel; W_p = W + 2p_w padded pixels per row), and dŶ_b the `O × H_out·W_p` matrix of dY_b
    /// with every row widened to W_p by zeros, output pixel q = i·W_p + j reads X̂_b row
    /// q + u·W_p + v under tap (u, v), whatever i and j. Taps v₀ … v₀ + n − 1 of kernel row u
    /// read channels c of rows q + u·W_p + v, which are entries (q + u·W_p + v₀)·C + (v − v₀)·C
    /// plus c of X̂_b: for row q, the n·C entries from (q + u·W_p + v₀)·C on. So X̂_b read with
    /// a row stride of C (rows overlapping when n > 1) is, for the n taps at once, the matrix of
    /// one product,
    ///
    /// ```text
    /// dW[:, :, u, v₀..v₀+n] += dŶ_b · X̂_b[(u·W_p + v₀)·C ..] as (H_out·W_p) × (n·C), row stride C
    /// ```
    ///
    /// (O × n·C, inner size H_out·W_p), which `gemm` reads as stored: its packing copies runs
    /// of n·C values instead of transposing the C·K_h·K_w × H·W patch matrix that dY_b·X̃_bᵀ
    /// packs (half of that product's time). The widening costs (W_p − W_out)/W_out more
    /// products (6 % at 32×32, 12 % at 16×16); building X̂_b and dŶ_b moves each value once.
    fn shifted_taps(
        g: &Geometry,
        x: &[f32],
        b: usize,
        grad: &[f32],
        scratch: &mut Scratch,
        dw: &mut [f32],
    ) {
        let (channels, padded_width) = (g.channels, g.width + 2 * g.padding[1]);
        let span = g.out_height * padded_width;
        let image = &x[b * g.image_len()..][..g.image_len()];
        let padded = pixel_major_padded(g, image, &mut scratch.image);
        let grad = widened_rows(g, grad, padded_width, &mut scratch.grad);
        let grad = Matrix::row_major(grad, g.outputs, span);
        let mut rest = dw;
        for (u, taps) in g.tap_runs() {
            let (dw_taps, tail) = rest.split_at_mut(g.outputs * taps.len() * channels);
            let image = &padded[(u * padded_width + taps.start) * channels..];
            let image = Matrix::strided(image, span, taps.len() * channels, channels);
            matmul(dw_taps, grad, image, true, g.threads_inside());
            rest = tail;
        }
    }

    /// Image `image` (C × H × W) zero-padded by p and stored pixel-major in `buffer`:
    /// `(H + 2p_h)·(W + 2p_w) + K_w − 1` rows of C values (the last K_w − 1 rows are zeros for
    /// the taps of the widened last row to read).
    fn pixel_major_padded<'a>(g: &Geometry, image: &[f32], buffer: &'a mut Vec<f32>) -> &'a [f32] {
        let [ph, pw] = g.padding;
        let padded_width = g.width + 2 * pw;
        let rows = (g.height + 2 * ph) * padded_width + g.kernel[1] - 1;
        let channels = g.channels;
        buffer.clear();
        buffer.resize(rows * channels, 0.0);
        let plane = g.height * g.width;
        for i in 0..g.height {
            let start = ((i + ph) * padded_width + pw) * channels;
            let row = &mut buffer[start..][..g.width * channels];
            transpose_into(
                &image[i * g.width..],
                [channels, g.width],
                plane,
                row,
                channels,
            );
        }
        buffer
    }

    /// dY_b (O × H_out × W_out) with each row widened by zeros to `width`, in `buffer`.
    fn widened_rows<'a>(
        g: &Geometry,
        grad: &[f32],
        width: usize,
        buffer: &'a mut Vec<f32>,
    ) -> &'a [f32] {
        buffer.clear();
        buffer.resize(g.outputs * g.out_height * width, 0.0);
        for (widened, row) in buffer
            .chunks_exact_mut(width)
            .zip(grad.chunks_exact(g.out_width))
        {
            widened[..g.out_width].copy_from_slice(row);
        }
        buffer
    }

    /// The weight gradient in [`shifted_taps`]' layout — an `O × n·C` block per run of n taps
    /// of [`Geometry::tap_runs`], in their order — as burn's `[O, C, K_h, K_w]`.
    fn products_to_weight(g: &Geometry, products: &[f32]) -> Vec<f32> {
        let (kw, outputs, channels) = (g.kernel[1], g.outputs, g.channels);
        // For each tap (u, v): where its column block starts, and its product's row stride.
        let mut places = vec![(0, 0); g.kernel[0] * kw];
        let mut start = 0;
        for (u, taps) in g.tap_runs() {
            let width = taps.len() * channels;
            for (k, v) in taps.enumerate() {
                places[u * kw + v] = (start + k * channels, width);
            }
            start += outputs * width;
        }
        let places = &places;
        (0..outputs)
            .flat_map(|o| (0..channels).map(move |c| (o, c)))
            .flat_map(|(o, c)| {
                places
                    .iter()
                    .map(move |&(at, width)| products[at + o * width + c])
            })
            .collect()
    }

    /// The convolution node of burn's autodiff graph, with parents x, w and bias.
    #[derive(Debug)]
    struct ConvWithBias;

    /// The convolution node of burn's autodiff graph, with parents x and w.
    #[derive(Debug)]
    struct ConvWithoutBias;

    /// What the backward pass needs: the geometry, x and w.
    #[derive(Debug, Clone)]
    struct Saved {
        geometry: Geometry,
        x: FlexTensor,
        weight: FlexTensor,
    }

    /// The backward step of either node: parents are x, w and, if present, the bias.
    fn backward_step<const N: usize>(ops: Ops<Saved, N>, grads: &mut Gradients) {
        let Saved {
            geometry,
            x,
            weight,
        } = ops.state;
        let dy = contiguous(grads.consume::<Flex>(&ops.node));
        let mut parents = ops
            .parents
            .into_iter()
            .map(|parent| parent.map(|node| node.id));
        let parents = [(); 3].map(|_| parents.next().flatten());
        let (dx, dw, dbias) = backward(
            &geometry,
            values(&x),
            values(&weight),
            values(&dy),
            parents[0].is_some(),
        );
        register_gradients(parents, [dx, Some(dw), Some(dbias)], grads);
    }

    impl Backward<Flex, 3> for ConvWithBias {
        type State = Saved;

        fn backward(self, ops: Ops<Saved, 3>, grads: &mut Gradients, _: &mut Checkpointer) {
            backward_step(ops, grads);
        }
    }

    impl Backward<Flex, 2> for ConvWithoutBias {
        type State = Saved;

        fn backward(self, ops: Ops<Saved, 2>, grads: &mut Gradients, _: &mut Checkpointer) {
            backward_step(ops, grads);
        }
    }

    /// Convolution on `Autodiff<Flex>`: the forward kernel, and the backward node when any input
    /// needs a gradient.
    fn autodiff(
        geometry: Geometry,
        x: AutodiffFlexTensor,
        weight: AutodiffFlexTensor,
        bias: Option<AutodiffFlexTensor>,
    ) -> AutodiffFlexTensor {
        let input = contiguous(x.primitive.clone());
        let w = contiguous(weight.primitive.clone());
        let bias_values = bias.as_ref().map(|b| contiguous(b.primitive.clone()));
        let y = forward(
            &geometry,
            values(&input),
            values(&w),
            bias_values.as_ref().map(values),
        );
        let saved = Saved {
            geometry,
            x: input,
            weight: w,
        };
        match bias {
            Some(bias) => {
                let nodes = [x.node.clone(), weight.node.clone(), bias.node.clone()];
                match ConvWithBias
                    .prepare::<NoCheckpointing>(nodes)
                    .compute_bound()
                    .stateful()
                {
                    OpsKind::Tracked(prep) => prep.finish(saved, y),
                    OpsKind::UnTracked(prep) => prep.finish(y),
                }
            }
            None => {
                let nodes = [x.node.clone(), weight.node.clone()];
                match ConvWithoutBias
                    .prepare::<NoCheckpointing>(nodes)
                    .compute_bound()
                    .stateful()
                {
                    OpsKind::Tracked(prep) => prep.finish(saved, y),
                    OpsKind::UnTracked(prep) => prep.finish(y),
                }
            }
        }
    }
}
