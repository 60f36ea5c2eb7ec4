//! Reading and writing 2-D `f32` arrays in NumPy's `.npy` format (version 1.0), so samples and
//! noise can be exchanged with Python tools.
//!
//! The format: the magic `\x93NUMPY`, version bytes 1 0, a little-endian u16 header length, an
//! ASCII header `{'descr': '<f4', 'fortran_order': False, 'shape': (rows, columns), }` padded
//! with spaces and a newline to a multiple of 64 bytes, then the values in C order. Reading
//! also accepts `<f8` (converted to `f32`).

use std::fs;
use std::path::{Path, PathBuf};

use thiserror::Error;

/// Why an `.npy` file could not be read or written.
#[derive(Debug, Error)]
pub enum NpyError {
    /// The file could not be read or written.
    #[error("{path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// What the system reported.
        source: std::io::Error,
    },
    /// The file is not a 2-D little-endian float32/float64 C-order `.npy` array.
    #[error("{path}: {reason}")]
    Format {
        /// The file.
        path: PathBuf,
        /// What is wrong with it.
        reason: String,
    },
}

const MAGIC: &[u8] = b"\x93NUMPY\x01\x00";

/// Writes `values` (row-major, `rows` × `columns`) as a float32 `.npy` file.
pub fn write(path: &Path, values: &[f32], rows: usize, columns: usize) -> Result<(), NpyError> {
    let mut header =
        format!("{{'descr': '<f4', 'fortran_order': False, 'shape': ({rows}, {columns}), }}");
    // Pad so that magic + length + header + newline is a multiple of 64 bytes.
    let unpadded = MAGIC.len() + 2 + header.len() + 1;
    header.push_str(&" ".repeat(unpadded.next_multiple_of(64) - unpadded));
    header.push('\n');
    let mut bytes = MAGIC.to_vec();
    bytes.extend((header.len() as u16).to_le_bytes());
    bytes.extend(header.as_bytes());
    bytes.extend(values.iter().flat_map(|v| v.to_le_bytes()));
    fs::write(path, bytes).map_err(|source| NpyError::Io {
        path: path.to_path_buf(),
        source,
    })
}

/// Reads a 2-D float `.npy` file: its values (row-major, as `f32`) and its shape.
pub fn read(path: &Path) -> Result<(Vec<f32>, [usize; 2]), NpyError> {
    let bytes = fs::read(path).map_err(|source| NpyError::Io {
        path: path.to_path_buf(),
        source,
    })?;
    let bad = |reason: &str| NpyError::Format {
        path: path.to_path_buf(),
        reason: reason.to_string(),
    };
    if bytes.len() < MAGIC.len() + 2 || &bytes[..6] != b"\x93NUMPY" || bytes[6] != 1 {
        return Err(bad("not a version 1 .npy file"));
    }
    let header_len = u16::from_le_bytes([bytes[8], bytes[9]]) as usize;
    let data_start = 10 + header_len;
    let header = bytes
        .get(10..data_start)
        .and_then(|h| std::str::from_utf8(h).ok())
        .ok_or_else(|| bad("truncated header"))?;
    if header.contains("'fortran_order': True") {
        return Err(bad("Fortran-order arrays are not supported"));
    }
    let width = if header.contains("'<f4'") {
        4
    } else if header.contains("'<f8'") {
        8
    } else {
        return Err(bad(
            "expected little-endian float32 ('<f4') or float64 ('<f8') data",
        ));
    };
    let shape_text = header
        .split("'shape': (")
        .nth(1)
        .and_then(|rest| rest.split(')').next())
        .ok_or_else(|| bad("no shape in header"))?;
    let shape: Vec<usize> = shape_text
        .split(',')
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(|s| {
            s.parse()
                .map_err(|_| bad("shape is not a list of integers"))
        })
        .collect::<Result<_, _>>()?;
    let [rows, columns] = shape[..] else {
        return Err(bad(&format!("expected a 2-D array, got shape {shape:?}")));
    };
    let data = &bytes[data_start..];
    if data.len() != rows * columns * width {
        return Err(bad("data length does not match the shape"));
    }
    let values = if width == 4 {
        data.chunks_exact(4)
            .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
            .collect()
    } else {
        data.chunks_exact(8)
            .map(|c| f64::from_le_bytes(c.try_into().expect("8-byte chunk")) as f32)
            .collect()
    };
    Ok((values, [rows, columns]))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn arrays_survive_the_round_trip() {
        let dir = std::env::temp_dir().join(format!("kiln-npy-{}", std::process::id()));
        fs::create_dir_all(&dir).unwrap();
        let path = dir.join("a.npy");
        let values = [1.5f32, -2.0, 0.25, 3.0, 4.0, -0.5];
        write(&path, &values, 3, 2).unwrap();
        let bytes = fs::read(&path).unwrap();
        assert_eq!(
            (bytes.len() - values.len() * 4) % 64,
            0,
            "header is 64-byte aligned"
        );
        assert_eq!(read(&path).unwrap(), (values.to_vec(), [3, 2]));
        fs::write(&path, b"not numpy").unwrap();
        assert!(matches!(read(&path), Err(NpyError::Format { .. })));
        fs::remove_dir_all(&dir).unwrap();
    }
}
