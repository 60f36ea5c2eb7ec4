//! The run's CSV logs (`loss.csv`, `metrics.csv`): a header and one line per record, the step
//! first, appended as the run goes and cut back to the checkpoint when a run resumes.

use std::fs::{self, File};
use std::io::{BufRead, BufReader, BufWriter, Write};
use std::path::{Path, PathBuf};

use crate::TrainError;

/// A CSV file whose lines start with the count of steps done when they were written.
pub(crate) struct CsvLog {
    path: PathBuf,
    writer: BufWriter<File>,
}

impl CsvLog {
    /// Opens the log at `path` with `header` for a run starting at step `start`, keeping the
    /// lines of earlier steps (a resumed run drops those written after its checkpoint).
    pub(crate) fn open(path: &Path, header: &str, start: u64) -> Result<Self, TrainError> {
        let io = |error: std::io::Error| TrainError::io(path, error);
        let mut kept = vec![header.to_string()];
        if start > 0 && path.exists() {
            let reader = BufReader::new(File::open(path).map_err(io)?);
            for line in reader.lines().skip(1) {
                let line = line.map_err(io)?;
                let step: Option<u64> = line.split(',').next().and_then(|s| s.parse().ok());
                if step.is_some_and(|step| step <= start) {
                    kept.push(line);
                }
            }
        }
        let mut writer = BufWriter::new(File::create(path).map_err(io)?);
        for line in &kept {
            writeln!(writer, "{line}").map_err(io)?;
        }
        Ok(Self {
            path: path.to_path_buf(),
            writer,
        })
    }

    /// Appends one line (without its line break).
    pub(crate) fn append(&mut self, line: &str) -> Result<(), TrainError> {
        writeln!(self.writer, "{line}").map_err(|error| TrainError::io(&self.path, error))
    }

    /// Writes what is buffered to the file.
    pub(crate) fn flush(&mut self) -> Result<(), TrainError> {
        self.writer
            .flush()
            .map_err(|error| TrainError::io(&self.path, error))
    }

    /// Columns `columns` of every line of the file as numbers (lines where one does not parse
    /// are left out), after flushing what is buffered.
    pub(crate) fn read_columns<const N: usize>(
        &mut self,
        columns: [usize; N],
    ) -> Result<Vec<[f64; N]>, TrainError> {
        self.flush()?;
        let text =
            fs::read_to_string(&self.path).map_err(|error| TrainError::io(&self.path, error))?;
        Ok(text
            .lines()
            .skip(1)
            .filter_map(|line| {
                let fields: Vec<&str> = line.split(',').collect();
                let mut values = [0.0; N];
                for (value, &column) in values.iter_mut().zip(&columns) {
                    *value = fields.get(column)?.parse().ok()?;
                }
                Some(values)
            })
            .collect())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_resumed_log_keeps_the_lines_up_to_its_start() {
        let path = std::env::temp_dir().join(format!("kiln-csv-log-{}.csv", std::process::id()));
        let mut log = CsvLog::open(&path, "step,value", 0).unwrap();
        for step in 1..=4 {
            log.append(&format!("{step},{}", step * 10)).unwrap();
        }
        assert_eq!(log.read_columns([1]).unwrap().len(), 4);
        let mut resumed = CsvLog::open(&path, "step,value", 2).unwrap();
        resumed.append("3,33").unwrap();
        let rows = resumed.read_columns([0, 1]).unwrap();
        assert_eq!(rows, vec![[1.0, 10.0], [2.0, 20.0], [3.0, 33.0]]);
        let fresh = CsvLog::open(&path, "step,value", 0)
            .unwrap()
            .read_columns([1]);
        assert!(fresh.unwrap().is_empty());
        fs::remove_file(&path).unwrap();
    }
}
