//! Whether a checkpoint is whole: checksums written with it, checked before it is used.
//!
//! When a checkpoint is written, `state.json` records the size and SHA-256 of every other file
//! in it (`sha256sum model.bin` prints the same digest). [`verify_checkpoint`] checks them
//! without loading anything, so a truncated, emptied or bit-flipped file is found and named
//! before training resumes; [`check_run`] does it for every checkpoint of a run. `state.json`
//! itself is checked by parsing it. Checkpoints written before checksums were recorded are
//! checked for their files being present and non-empty, and are then fully loaded.

use std::collections::BTreeMap;
use std::fs::{self, File};
use std::io::{self, Read};
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use thiserror::Error;

use crate::TrainError;
use crate::checkpoint::{STATE_FILE, TrainState, latest_checkpoint};

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

/// `state.json`: the [`TrainState`] and the digests of the checkpoint's other files by name.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub(crate) struct StateFile {
    #[serde(flatten)]
    pub state: TrainState,
    /// Absent in checkpoints written before checksums were recorded.
    #[serde(default)]
    pub files: BTreeMap<String, FileDigest>,
}

/// What is wrong with a checkpoint: the first damaged file and how.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
#[error("{file}: {problem}")]
pub struct Damage {
    /// The file's name inside the checkpoint folder.
    pub file: String,
    /// What is wrong with it.
    pub problem: String,
}

impl Damage {
    pub(crate) fn new(file: &str, problem: impl Into<String>) -> Self {
        Self {
            file: file.to_string(),
            problem: problem.into(),
        }
    }
}

/// Checks the checkpoint folder `checkpoint` without loading it: `state.json` parses, and each
/// file it records has its recorded size and SHA-256. Returns the state it records.
pub fn verify_checkpoint(checkpoint: &Path) -> Result<TrainState, Damage> {
    let text = match fs::read(checkpoint.join(STATE_FILE)) {
        Ok(text) => text,
        Err(error) if error.kind() == io::ErrorKind::NotFound => {
            return Err(Damage::new(STATE_FILE, "missing"));
        }
        Err(error) => return Err(Damage::new(STATE_FILE, error.to_string())),
    };
    let parsed: StateFile = serde_json::from_slice(&text)
        .map_err(|error| Damage::new(STATE_FILE, format!("not a checkpoint state ({error})")))?;
    if parsed.files.is_empty() {
        for file in crate::checkpoint::FILES {
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

/// One checkpoint of a run as [`check_run`] found it.
#[derive(Debug, Clone, PartialEq)]
pub struct CheckpointHealth {
    /// The checkpoint folder.
    pub path: PathBuf,
    /// Whether `checkpoints/latest` names it.
    pub latest: bool,
    /// Its state if intact, else the damage.
    pub verdict: Result<TrainState, Damage>,
}

/// Verifies every checkpoint of the run folder `out`, newest first.
pub fn check_run(out: &Path) -> Result<Vec<CheckpointHealth>, TrainError> {
    let checkpoints = out.join("checkpoints");
    let latest = latest_checkpoint(&checkpoints)?;
    Ok(newest_first(&checkpoints)?
        .into_iter()
        .map(|path| CheckpointHealth {
            latest: latest.as_ref() == Some(&path),
            verdict: verify_checkpoint(&path),
            path,
        })
        .collect())
}

/// The checkpoint folders (`step-NNNNNNNN`) in `checkpoints`, newest first.
pub(crate) fn newest_first(checkpoints: &Path) -> Result<Vec<PathBuf>, TrainError> {
    let listing = match fs::read_dir(checkpoints) {
        Ok(listing) => listing,
        Err(error) if error.kind() == io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(error) => return Err(TrainError::io(checkpoints, error)),
    };
    let mut found: Vec<(u64, PathBuf)> = listing
        .filter_map(|entry| {
            let entry = entry.ok()?;
            let step = step_of(entry.file_name().to_str()?)?;
            Some((step, entry.path()))
        })
        .collect();
    found.sort_by_key(|(step, _)| std::cmp::Reverse(*step));
    Ok(found.into_iter().map(|(_, path)| path).collect())
}

/// The step of a checkpoint folder's name, `step-` and eight or more digits.
fn step_of(name: &str) -> Option<u64> {
    let digits = name.strip_prefix("step-")?;
    (digits.len() >= 8 && digits.bytes().all(|byte| byte.is_ascii_digit()))
        .then(|| digits.parse().ok())
        .flatten()
}
