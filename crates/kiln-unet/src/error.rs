use thiserror::Error;

/// Everything that can be wrong with a UNet's configuration or input.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum UNetError {
    /// A configuration field is invalid.
    #[error("{field}: {problem}")]
    Config {
        /// The field's name.
        field: &'static str,
        /// What is wrong.
        problem: String,
    },
    /// A diffusers configuration uses a feature Kiln does not implement.
    #[error("unsupported {field}: {value}")]
    Unsupported {
        /// The `config.json` field.
        field: &'static str,
        /// Its value.
        value: String,
    },
    /// A file could not be read or parsed.
    #[error("{path}: {message}")]
    Io {
        /// The file.
        path: String,
        /// What went wrong.
        message: String,
    },
    /// The weights do not fit the model.
    #[error("{path}: {problem}")]
    Weights {
        /// The weights file.
        path: String,
        /// The first mismatch (a missing, unused or wrongly shaped tensor).
        problem: String,
    },
    /// The input does not fit the model.
    #[error("input of shape {shape:?}: {problem}")]
    Input {
        /// The input's shape.
        shape: Vec<usize>,
        /// What is wrong.
        problem: String,
    },
}
