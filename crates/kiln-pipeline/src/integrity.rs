//! Whether a checkpoint is whole: checksums written with it, checked before it is used.
//!
//! When a checkpoint is written, `state.json` records the size and SHA-256 of every other file
//! in it (`sha256sum model.bin` prints the same digest). [`verify_checkpoint`] checks them
//! without loading anything, so a truncated, emptied or bit-flipped file is found and named
//! before it is used. `state.json` itself is checked by parsing it. Checkpoints written before
//! checksums were recorded are checked for their files being present and non-empty.

use std::collections::BTreeMap;
use std::fs::{self, File};
use std::io::{self, Read};
use std::path::Path;

use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::Damage;
use crate::run_folder::{CHECKPOINT_FILES, STATE_FILE};

/// A file as it was written: its size and SHA-256.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FileDigest {
    /// Size in bytes.
    pub bytes: u64,
    /// SHA-256 of the contents, lower-case hex.
    pub sha256: String,
}

impl FileDigest {
    /// Reads `path` and digests it.
    pub fn of(path: &Path) -> io::Result<Self> {
        let mut file = File::open(path)?;
        let mut hasher = Sha256::new();
        let mut buffer = vec![0; 1 << 16];
        let mut bytes = 0;
        loop {
            let read = file.read(&mut buffer)?;
            if read == 0 {
                break;
            }
            hasher.update(&buffer[..read]);
            bytes += read as u64;
        }
        let sha256 = hasher
            .finalize()
            .iter()
            .map(|byte| format!("{byte:02x}"))
            .collect();
        Ok(Self { bytes, sha256 })
    }
}

/// `state.json`: the run's state `S` (kiln-train's `TrainState`, or the part of it a reader
/// needs) and the digests of the checkpoint's other files by name.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StateFile<S> {
    /// The run's state, its fields at the top level of the file.
    #[serde(flatten)]
    pub state: S,
    /// Absent in checkpoints written before checksums were recorded.
    #[serde(default)]
    pub files: BTreeMap<String, FileDigest>,
}

/// Checks the checkpoint folder `checkpoint` without loading it: `state.json` parses as a
/// [`StateFile<S>`], and each file it records has its recorded size and SHA-256. Returns the
/// state it records.
pub fn verify_checkpoint<S: DeserializeOwned>(checkpoint: &Path) -> Result<S, Damage> {
    let text = match fs::read(checkpoint.join(STATE_FILE)) {
        Ok(text) => text,
        Err(error) if error.kind() == io::ErrorKind::NotFound => {
            return Err(Damage::new(STATE_FILE, "missing"));
        }
        Err(error) => return Err(Damage::new(STATE_FILE, error.to_string())),
    };
    let parsed: StateFile<S> = serde_json::from_slice(&text)
        .map_err(|error| Damage::new(STATE_FILE, format!("not a checkpoint state ({error})")))?;
    if parsed.files.is_empty() {
        for file in CHECKPOINT_FILES {
            let size = fs::metadata(checkpoint.join(file)).map_or(0, |meta| meta.len());
            if size == 0 {
                return Err(Damage::new(file, "missing or empty"));
            }
        }
    }
    for (name, recorded) in &parsed.files {
        let found = FileDigest::of(&checkpoint.join(name)).map_err(|error| match error.kind() {
            io::ErrorKind::NotFound => Damage::new(name, "missing"),
            _ => Damage::new(name, error.to_string()),
        })?;
        if found.bytes != recorded.bytes {
            let problem = format!("{} bytes, {} when written", found.bytes, recorded.bytes);
            return Err(Damage::new(name, problem));
        }
        if found.sha256 != recorded.sha256 {
            return Err(Damage::new(
                name,
                "contents changed since written (SHA-256 differs)",
            ));
        }
    }
    Ok(parsed.state)
}
