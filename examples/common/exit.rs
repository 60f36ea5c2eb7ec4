//! How the examples that run on a device end: a failure is one `error: …` line.

use std::error::Error;
use std::process::ExitCode;

use kiln::device::DeviceError;

/// The exit code of a run on a device: `SUCCESS` if it worked; otherwise prints the error
/// (the device could not be used, or the run itself failed) in one line and returns `FAILURE`.
pub fn exit_code(outcome: Result<Result<(), Box<dyn Error>>, DeviceError>) -> ExitCode {
    match outcome.map_err(Into::into).and_then(|done| done) {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("error: {error}");
            ExitCode::FAILURE
        }
    }
}
