//! Feature vectors, one row a sample, in f64 for the statistics.

use burn::tensor::{Tensor, backend::Backend};
use faer::{Mat, MatRef};

use crate::MetricsError;

/// A set of feature vectors: `len()` samples of `dims()` values each, held in f64 (a feature
/// extractor's f32 outputs convert exactly).
#[derive(Debug, Clone, PartialEq)]
pub struct Features {
    rows: Mat<f64>,
}

impl Features {
    /// `values` laid out row by row, `dims` values a row; every value finite.
    pub fn new<T: Copy + Into<f64>>(values: &[T], dims: usize) -> Result<Self, MetricsError> {
        if dims == 0 || !values.len().is_multiple_of(dims) {
            return Err(MetricsError::Shape {
                values: values.len(),
                dims,
            });
        }
        if let Some(position) = values.iter().position(|v| !(*v).into().is_finite()) {
            return Err(MetricsError::NotFinite {
                row: position / dims,
                index: position % dims,
                value: values[position].into(),
            });
        }
        let rows = Mat::from_fn(values.len() / dims, dims, |i, j| {
            values[i * dims + j].into()
        });
        Ok(Self { rows })
    }

    /// The rows of a `[samples, dims]` tensor, read back from its device once.
    pub fn from_tensor<B: Backend>(features: Tensor<B, 2>) -> Result<Self, MetricsError> {
        let [_, dims] = features.dims();
        let values = features
            .into_data()
            .convert::<f64>()
            .into_vec::<f64>()
            .map_err(|error| MetricsError::Device(format!("{error:?}")))?;
        Self::new(&values, dims)
    }

    /// How many samples.
    pub fn len(&self) -> usize {
        self.rows.nrows()
    }

    /// Whether there are none.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Values per sample.
    pub fn dims(&self) -> usize {
        self.rows.ncols()
    }

    /// The samples as the rows of a matrix.
    pub fn matrix(&self) -> MatRef<'_, f64> {
        self.rows.as_ref()
    }

    /// The samples at `indices`, in that order.
    pub fn select(&self, indices: &[usize]) -> Result<Self, MetricsError> {
        if let Some(&row) = indices.iter().find(|&&row| row >= self.len()) {
            return Err(MetricsError::NoSuchRow {
                row,
                rows: self.len(),
            });
        }
        Ok(Self {
            rows: Mat::from_fn(indices.len(), self.dims(), |i, j| {
                self.rows[(indices[i], j)]
            }),
        })
    }

    /// Checks that `self` and `other` have the same width.
    pub(crate) fn check_comparable(&self, other: &Features) -> Result<(), MetricsError> {
        if self.dims() == other.dims() {
            Ok(())
        } else {
            Err(MetricsError::Dimensions {
                a: self.dims(),
                b: other.dims(),
            })
        }
    }

    /// Checks that there are at least `needed` samples for `what`.
    pub(crate) fn check_len(&self, what: &'static str, needed: usize) -> Result<(), MetricsError> {
        if self.len() >= needed {
            Ok(())
        } else {
            Err(MetricsError::TooFew {
                what,
                needed,
                found: self.len(),
            })
        }
    }
}
