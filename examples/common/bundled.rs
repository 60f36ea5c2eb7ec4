//! Where the bundled faces are.

/// The folder of the bundled faces (AT&T "The Database of Faces": 400 grayscale photos of 40
/// people, one folder each; see assets/faces/README.md).
pub const BUNDLED_FACES: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/assets/faces");
