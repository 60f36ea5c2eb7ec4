//! Writes a folder of many face images made from a few, to time training on a data set of the
//! size Kiln's original project trained on (30,000 faces at 64×64) where no such set is at
//! hand. Each image is a random crop (80–100 % of the side, anywhere) of one of the source
//! photos, mirrored at random and resized to `--size`; the pictures repeat, so the folder is
//! for timing only, not for judging a model.
//!
//! ```text
//! cargo run --release --example timing_faces -- --out /tmp/faces30k
//! face_train --data /tmp/faces30k --channels 3 --image-size 64 --preset faces64 --batch-size 64 …
//! ```

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use clap::Parser;
use image::imageops::FilterType;
use rand::{RngExt, SeedableRng, rngs::StdRng};

/// Writes `--count` crops of the photos under `--from` into `--out`.
#[derive(Parser, Debug)]
struct Args {
    /// Folder of source photos (searched recursively; the bundled faces by default).
    #[arg(long, default_value = concat!(env!("CARGO_MANIFEST_DIR"), "/assets/faces"))]
    from: PathBuf,
    /// Folder to write into (created; must not hold images already).
    #[arg(long)]
    out: PathBuf,
    /// Images to write.
    #[arg(long, default_value_t = 30_000)]
    count: usize,
    /// Side of the square images written, in pixels.
    #[arg(long, default_value_t = 64)]
    size: u32,
    /// Seed of the crops and flips.
    #[arg(long, default_value_t = 0)]
    seed: u64,
}

fn main() -> ExitCode {
    let args = Args::parse();
    match write_folder(&args) {
        Ok(written) => {
            println!("wrote {written} images to {}", args.out.display());
            ExitCode::SUCCESS
        }
        Err(error) => {
            eprintln!("error: {error}");
            ExitCode::FAILURE
        }
    }
}

fn write_folder(args: &Args) -> Result<usize, String> {
    let mut sources = Vec::new();
    collect_pngs(&args.from, &mut sources)?;
    sources.sort();
    if sources.is_empty() {
        return Err(format!("no PNG images under {}", args.from.display()));
    }
    let photos = sources
        .iter()
        .map(|path| image::open(path).map_err(|error| format!("{}: {error}", path.display())))
        .collect::<Result<Vec<_>, _>>()?;
    std::fs::create_dir_all(&args.out)
        .map_err(|error| format!("{}: {error}", args.out.display()))?;
    let mut rng = StdRng::seed_from_u64(args.seed);
    for index in 0..args.count {
        let photo = &photos[index % photos.len()];
        let side = photo.width().min(photo.height());
        let crop = (side as f64 * rng.random_range(0.8..=1.0)) as u32;
        let x = rng.random_range(0..=photo.width() - crop);
        let y = rng.random_range(0..=photo.height() - crop);
        let mut face = photo.crop_imm(x, y, crop, crop).resize_exact(
            args.size,
            args.size,
            FilterType::Triangle,
        );
        if rng.random_bool(0.5) {
            face = face.fliph();
        }
        let path = args.out.join(format!("{index:05}.png"));
        face.save(&path)
            .map_err(|error| format!("{}: {error}", path.display()))?;
    }
    Ok(args.count)
}

/// Every `.png` file under `dir`, recursively.
fn collect_pngs(dir: &Path, into: &mut Vec<PathBuf>) -> Result<(), String> {
    let entries = std::fs::read_dir(dir).map_err(|error| format!("{}: {error}", dir.display()))?;
    for entry in entries {
        let path = entry
            .map_err(|error| format!("{}: {error}", dir.display()))?
            .path();
        if path.is_dir() {
            collect_pngs(&path, into)?;
        } else if path.extension().is_some_and(|extension| extension == "png") {
            into.push(path);
        }
    }
    Ok(())
}
