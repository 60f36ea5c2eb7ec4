use std::path::PathBuf;

use thiserror::Error;

/// Everything that can be wrong with a metric's input.
#[derive(Debug, Clone, PartialEq, Error)]
pub enum MetricsError {
    /// Feature values that do not form rows of the stated width.
    #[error("{values} feature values do not form rows of {dims}")]
    Shape {
        /// How many values were given.
        values: usize,
        /// The width of a row.
        dims: usize,
    },
    /// A feature value that is NaN or infinite.
    #[error("feature {index} of row {row} is {value}; features must be finite")]
    NotFinite {
        /// The row.
        row: usize,
        /// The position in the row.
        index: usize,
        /// The value.
        value: f64,
    },
    /// Two feature sets of different widths.
    #[error("feature sets of {a} and {b} dimensions cannot be compared")]
    Dimensions {
        /// The first set's width.
        a: usize,
        /// The second set's width.
        b: usize,
    },
    /// Two sets that must be of one size are not.
    #[error("sets of {a} and {b} samples; this statistic compares sets of one size")]
    Sizes {
        /// The first set's size.
        a: usize,
        /// The second set's size.
        b: usize,
    },
    /// A row index past the end of a feature set.
    #[error("row {row} asked of a set of {rows} samples")]
    NoSuchRow {
        /// The index.
        row: usize,
        /// The set's size.
        rows: usize,
    },
    /// Too few rows for the statistic.
    #[error("{what} needs at least {needed} samples, got {found}")]
    TooFew {
        /// The statistic, in words.
        what: &'static str,
        /// The rows it needs.
        needed: usize,
        /// The rows given.
        found: usize,
    },
    /// A setting outside its range.
    #[error("{name} is {value}; expected {expected}")]
    OutOfRange {
        /// The setting.
        name: &'static str,
        /// Its value.
        value: f64,
        /// The range, in words.
        expected: &'static str,
    },
    /// The eigensolver did not converge (a matrix of extreme values).
    #[error("the eigendecomposition of a {0}×{0} matrix did not converge")]
    Eigen(usize),
    /// Reading the features back from the device failed.
    #[error("reading the features back from the device failed: {0}")]
    Device(String),
    /// Images a feature network cannot take.
    #[error("images of shape {shape:?}: {reason}")]
    Images {
        /// The shape given.
        shape: Vec<usize>,
        /// What is wrong, in words.
        reason: &'static str,
    },
    /// No InceptionV3 weights were named.
    #[error(
        "no InceptionV3 weights: pass their path or set {env} to pytorch-fid's \
         pt_inception-2015-12-05-6726825d.pth (download it from {url})"
    )]
    NoInceptionWeights {
        /// The environment variable read.
        env: &'static str,
        /// Where the file is published.
        url: &'static str,
    },
    /// A weight file that cannot be read.
    #[error("cannot read the weights in {path}: {reason}")]
    WeightFile {
        /// The file.
        path: PathBuf,
        /// What failed.
        reason: String,
    },
    /// A tensor a network needs is not in its weights.
    #[error("{source_name} has no tensor {name}")]
    MissingWeight {
        /// The tensor's name.
        name: String,
        /// Where the weights come from, in words.
        source_name: String,
    },
    /// A weight tensor of the wrong shape.
    #[error("{name} has shape {found:?}; the network needs {expected:?}")]
    WeightShape {
        /// The tensor's name.
        name: String,
        /// The shape the network needs.
        expected: Vec<usize>,
        /// The shape in the weights.
        found: Vec<usize>,
    },
}
