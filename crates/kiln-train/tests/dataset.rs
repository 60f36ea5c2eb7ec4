//! ImageFolder on a temporary folder of good, odd and broken files.

use std::fs;
use std::path::{Path, PathBuf};

use burn::backend::Flex;
use image::{DynamicImage, ImageBuffer, Luma, LumaA, Rgb, Rgba};
use kiln_train::{DatasetError, DeviceImages, ImageFolder, ImageFolderOptions, Labels, LoadEvent};

/// A fresh empty folder under the target directory's temp space.
fn scratch(name: &str) -> PathBuf {
    let dir = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join(format!("dataset-{name}"));
    let _ = fs::remove_dir_all(&dir);
    fs::create_dir_all(&dir).unwrap();
    dir
}

fn options(channels: usize, strict: bool) -> ImageFolderOptions {
    ImageFolderOptions {
        image_size: 8,
        channels,
        strict,
        labels: Labels::None,
    }
}

/// Good files of several colour types (one in a subfolder), a corrupt PNG, a truncated PNG,
/// an empty JPEG and a text file.
fn mixed_folder(name: &str) -> PathBuf {
    let dir = scratch(name);
    fs::create_dir_all(dir.join("nested")).unwrap();
    // 12×8 grayscale whose left half is black and right half white: after the centre crop
    // (columns 2..10) and resize the left half stays black.
    let gray = ImageBuffer::from_fn(12, 8, |x, _| Luma([if x < 6 { 0u8 } else { 255 }]));
    DynamicImage::from(gray)
        .save(dir.join("a_gray.png"))
        .unwrap();
    let rgba = ImageBuffer::from_pixel(8, 8, Rgba([255u8, 0, 0, 128]));
    DynamicImage::from(rgba)
        .save(dir.join("b_rgba.png"))
        .unwrap();
    let deep = ImageBuffer::from_pixel(8, 8, Rgb([65535u16, 0, 0]));
    DynamicImage::ImageRgb16(deep)
        .save(dir.join("c_16bit.png"))
        .unwrap();
    let luma_alpha = ImageBuffer::from_pixel(16, 16, LumaA([200u8, 255]));
    DynamicImage::from(luma_alpha)
        .save(dir.join("nested/d.png"))
        .unwrap();
    DynamicImage::from(ImageBuffer::from_pixel(8, 8, Rgb([0u8, 0, 255])))
        .save(dir.join("e.bmp"))
        .unwrap();
    fs::write(dir.join("corrupt.png"), b"this is not a png").unwrap();
    let mut bytes = Vec::new();
    DynamicImage::from(ImageBuffer::from_pixel(8, 8, Luma([9u8])))
        .write_to(
            &mut std::io::Cursor::new(&mut bytes),
            image::ImageFormat::Png,
        )
        .unwrap();
    fs::write(dir.join("truncated.png"), &bytes[..bytes.len() / 2]).unwrap();
    fs::write(dir.join("empty.jpg"), b"").unwrap();
    fs::write(dir.join("notes.txt"), b"not an image").unwrap();
    dir
}

fn skipped_names(folder: &ImageFolder) -> Vec<String> {
    folder
        .skipped()
        .iter()
        .map(|file| {
            file.path
                .file_name()
                .unwrap()
                .to_string_lossy()
                .into_owned()
        })
        .collect()
}

#[test]
fn good_files_load_and_bad_ones_are_skipped_by_path() {
    let dir = mixed_folder("mixed");
    let mut skipped_events = 0;
    let mut last_progress = None;
    let folder = ImageFolder::load(&dir, options(3, false), |event| match event {
        LoadEvent::Skipped(file) => {
            assert!(file.path.starts_with(&dir));
            skipped_events += 1;
        }
        LoadEvent::Progress { done, total } => last_progress = Some((done, total)),
        LoadEvent::Misnamed { path, .. } => panic!("{} is named right", path.display()),
    })
    .unwrap();
    assert_eq!(folder.len(), 5);
    assert_eq!(skipped_events, 3);
    assert_eq!(last_progress, Some((8, 8)));
    assert_eq!(
        skipped_names(&folder),
        ["corrupt.png", "empty.jpg", "truncated.png"]
    );

    let device = Default::default();
    let batch = folder
        .batch::<Flex>(&[0, 1, 2, 3], &[false; 4], &device)
        .unwrap();
    assert_eq!(batch.dims(), [4, 3, 8, 8]);
    let values: Vec<f32> = batch.into_data().to_vec().unwrap();
    assert!(values.iter().all(|v| (-1.0..=1.0).contains(v)));
    let pixel = |image: usize, channel: usize, y: usize, x: usize| {
        values[((image * 3 + channel) * 8 + y) * 8 + x]
    };
    // Grayscale becomes equal RGB channels; the crop keeps the black left half.
    assert_eq!(pixel(0, 0, 3, 0), -1.0);
    assert_eq!(pixel(0, 2, 3, 7), 1.0);
    // RGBA drops alpha; 16-bit scales to 8 bits; BMP reads.
    assert_eq!([pixel(1, 0, 0, 0), pixel(1, 1, 0, 0)], [1.0, -1.0]);
    assert_eq!([pixel(2, 0, 5, 5), pixel(2, 2, 5, 5)], [1.0, -1.0]);
    assert_eq!(pixel(3, 2, 1, 1), 1.0);
}

/// An 8×8 RGB picture with a different colour in every pixel, encoded as `format`.
fn encoded(format: image::ImageFormat) -> Vec<u8> {
    let picture = ImageBuffer::from_fn(8, 8, |x, y| Rgb([x as u8 * 30, y as u8 * 30, 200]));
    let mut bytes = Vec::new();
    DynamicImage::from(picture)
        .write_to(&mut std::io::Cursor::new(&mut bytes), format)
        .unwrap();
    bytes
}

#[test]
fn files_are_decoded_by_their_content_not_their_name() {
    use image::ImageFormat::{Jpeg, Png, WebP};
    let named_right = scratch("named-right");
    fs::write(named_right.join("a.png"), encoded(Png)).unwrap();
    fs::write(named_right.join("b.webp"), encoded(WebP)).unwrap();
    fs::write(named_right.join("c.jpg"), encoded(Jpeg)).unwrap();
    let misnamed = scratch("misnamed");
    fs::write(misnamed.join("a.jpg"), encoded(Png)).unwrap();
    fs::write(misnamed.join("b.png"), encoded(WebP)).unwrap();
    fs::write(misnamed.join("c"), encoded(Jpeg)).unwrap();
    fs::write(misnamed.join("d.png"), b"a text file named .png").unwrap();
    let webp = encoded(WebP);
    fs::write(misnamed.join("e.jpg"), &webp[..webp.len() / 2]).unwrap();
    fs::write(misnamed.join("README"), b"no extension, not an image").unwrap();

    let expected = ImageFolder::load(&named_right, options(3, true), |_| {}).unwrap();
    let mut clashes = Vec::new();
    let got = ImageFolder::load(&misnamed, options(3, false), |event| {
        if let LoadEvent::Misnamed {
            path,
            content,
            extension,
        } = event
        {
            let name = path.file_name().unwrap().to_string_lossy().into_owned();
            clashes.push((name, content, extension));
        }
    })
    .unwrap();
    assert_eq!(
        clashes,
        [("a.jpg".into(), Png, Jpeg), ("b.png".into(), WebP, Png)]
    );
    assert_eq!(skipped_names(&got), ["d.png", "e.jpg"]);
    let reason = &got.skipped()[1].reason;
    assert!(
        reason.contains("its bytes are WebP, its name says Jpeg"),
        "{reason}"
    );
    let device = Default::default();
    let pixels = |folder: &ImageFolder| -> Vec<f32> {
        let batch = folder.batch::<Flex>(&[0, 1, 2], &[false; 3], &device);
        let batch = batch.unwrap();
        batch.into_data().to_vec().unwrap()
    };
    assert_eq!(got.len(), 3);
    assert_eq!(pixels(&got), pixels(&expected));
}

#[test]
fn grayscale_loading_and_flips() {
    let dir = mixed_folder("gray");
    let folder = ImageFolder::load(&dir, options(1, false), |_| {}).unwrap();
    assert_eq!(folder.channels(), 1);
    let device = Default::default();
    let plain: Vec<f32> = folder
        .batch::<Flex>(&[0], &[false], &device)
        .unwrap()
        .into_data()
        .to_vec()
        .unwrap();
    let flipped: Vec<f32> = folder
        .batch::<Flex>(&[0], &[true], &device)
        .unwrap()
        .into_data()
        .to_vec()
        .unwrap();
    for row in 0..8 {
        for x in 0..8 {
            assert_eq!(plain[row * 8 + x], flipped[row * 8 + 7 - x]);
        }
    }
    assert_ne!(plain, flipped);
}

/// The images held on the device give the host's batches to the bit: in colour and in gray,
/// with an image length that is (64) and is not (3·7·7 = 147) a multiple of four bytes,
/// repeated indices and mirrored images.
#[test]
fn device_images_give_the_host_batches() {
    let dir = mixed_folder("resident");
    let device = Default::default();
    for (channels, image_size) in [(1, 8), (3, 7)] {
        let options = ImageFolderOptions {
            image_size,
            ..options(channels, false)
        };
        let folder = ImageFolder::load(&dir, options, |_| {}).unwrap();
        let resident = DeviceImages::<Flex>::new(&folder, &device);
        assert_eq!(resident.len(), folder.len());
        assert_eq!(
            resident.image_len(),
            channels * (image_size * image_size) as usize
        );
        let indices = [4, 0, 2, 0, 1, 3];
        let flips = [true, false, true, true, false, false];
        let on_host = folder.batch::<Flex>(&indices, &flips, &device).unwrap();
        let on_device = resident.batch(&indices, &flips).unwrap();
        assert_eq!(on_device.dims(), on_host.dims());
        let bits = |tensor: burn::tensor::Tensor<Flex, 4>| -> Vec<u32> {
            let values: Vec<f32> = tensor.into_data().to_vec().unwrap();
            values.iter().map(|value| value.to_bits()).collect()
        };
        assert_eq!(bits(on_device), bits(on_host), "{channels} channels");
    }
}

/// An index past the end or too few mirror flags are refused on the host, by both batches
/// and by the label and subset lookups, naming the numbers.
#[test]
fn batches_refuse_missing_images_and_flags() {
    let dir = mixed_folder("indices");
    let folder = ImageFolder::load(&dir, options(1, false), |_| {}).unwrap();
    let device = Default::default();
    let resident = DeviceImages::<Flex>::new(&folder, &device);
    let images = folder.len();
    let past = DatasetError::NoSuchImage {
        index: images,
        images,
    };
    let short = DatasetError::FlipCount {
        flips: 1,
        images: 2,
    };
    let host = |indices: &[usize], flips: &[bool]| {
        folder
            .batch::<Flex>(indices, flips, &device)
            .unwrap_err()
            .to_string()
    };
    let on_device =
        |indices: &[usize], flips: &[bool]| resident.batch(indices, flips).unwrap_err().to_string();
    assert_eq!(host(&[0, images], &[false; 2]), past.to_string());
    assert_eq!(on_device(&[0, images], &[false; 2]), past.to_string());
    assert_eq!(host(&[0, 1], &[false]), short.to_string());
    assert_eq!(on_device(&[0, 1], &[false]), short.to_string());
    assert_eq!(
        folder.labels_of(&[images]).unwrap_err().to_string(),
        past.to_string()
    );
    assert!(folder.subset(&[0, images]).is_err());
}

#[test]
fn strict_mode_fails_on_the_first_bad_file_naming_it() {
    let dir = mixed_folder("strict");
    let error = ImageFolder::load(&dir, options(3, true), |_| {}).unwrap_err();
    assert!(error.to_string().contains("corrupt.png"), "{error}");
}

fn load_error(dir: &Path) -> DatasetError {
    ImageFolder::load(dir, options(3, false), |_| {}).unwrap_err()
}

#[test]
fn empty_and_imageless_folders_are_errors_naming_the_folder() {
    let empty = scratch("empty");
    assert!(matches!(load_error(&empty), DatasetError::Empty(path) if path == empty));
    let text_only = scratch("text");
    fs::write(text_only.join("readme.md"), "no images").unwrap();
    assert!(matches!(load_error(&text_only), DatasetError::NoImages(_)));
    let broken_only = scratch("broken");
    fs::write(broken_only.join("x.png"), b"").unwrap();
    assert!(matches!(
        load_error(&broken_only),
        DatasetError::NoneReadable { count: 1, .. }
    ));
    let missing = empty.join("missing");
    assert!(load_error(&missing).to_string().contains("missing"));
}
