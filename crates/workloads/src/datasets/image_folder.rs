//! A folder of JPEG/PNG images with an ImageNet-style label file, as a
//! query sample library.
//!
//! Layout (MLPerf's ImageNet validation layout):
//!
//! ```text
//! DIR/val_map.txt           FILENAME LABEL, one per line; line N is sample N
//! DIR/FILENAME              the images (JPEG or PNG, any size, colour or grey)
//! ```
//!
//! [`ImageFolder::open`] reads the label file and every image's header, so a
//! missing file, or one that is not a JPEG or PNG, is an error naming it before
//! anything runs. [`QuerySampleLibrary::load_samples_to_ram`] (LoadGen calls
//! it before the timed run) decodes and preprocesses the samples it is
//! given, in parallel, and an image that does not decode is an error naming
//! the file.

use super::labels::{read_val_map, LabelEntry, VAL_MAP};
use super::preprocess::ImagePreprocess;
use super::DatasetError;
use crate::image_qsl::{ImageSource, Loaded, SampleError};
use candle_core::{Device, Tensor};
use image::{DynamicImage, ImageFormat, ImageReader};
use loadgen::{QuerySampleIndex, QuerySampleLibrary};
use std::path::{Path, PathBuf};

pub struct ImageFolder {
    root: PathBuf,
    labels_path: PathBuf,
    entries: Vec<LabelEntry>,
    preprocess: ImagePreprocess,
    performance: usize,
    loaded: Loaded,
}

impl ImageFolder {
    /// Opens `dir` with its `dir/val_map.txt`.
    pub fn open(dir: &Path, preprocess: ImagePreprocess) -> Result<ImageFolder, DatasetError> {
        ImageFolder::open_with_labels(dir, &dir.join(VAL_MAP), preprocess)
    }

    /// Opens `dir` with a label file somewhere else; file names in it are
    /// relative to `dir`. Checks every listed image's header.
    pub fn open_with_labels(
        dir: &Path,
        labels: &Path,
        preprocess: ImagePreprocess,
    ) -> Result<ImageFolder, DatasetError> {
        preprocess.validate()?;
        if !dir.is_dir() {
            return Err(DatasetError::file(dir, "not a folder"));
        }
        let entries = read_val_map(labels)?;
        let headers = parallel_map(&entries, |entry| check_header(&dir.join(&entry.file)));
        let first_problem = entries
            .iter()
            .zip(headers)
            .find_map(|(entry, header)| header.err().map(|reason| (entry, reason)));
        if let Some((entry, reason)) = first_problem {
            return Err(DatasetError::file(
                &dir.join(&entry.file),
                format!("{reason} (listed at {}:{})", labels.display(), entry.line),
            ));
        }
        let performance = entries.len();
        Ok(ImageFolder {
            root: dir.to_path_buf(),
            labels_path: labels.to_path_buf(),
            entries,
            preprocess,
            performance,
            loaded: Loaded::new(),
        })
    }

    /// How many samples fit in memory at once (LoadGen's performance set);
    /// at least 1 and at most the data set. Default: all of them.
    pub fn with_performance_count(mut self, samples: usize) -> ImageFolder {
        self.performance = samples.clamp(1, self.entries.len());
        self
    }

    pub fn len(&self) -> usize {
        self.entries.len()
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// The label file's entries, in sample order.
    pub fn entries(&self) -> &[LabelEntry] {
        &self.entries
    }

    pub fn root(&self) -> &Path {
        &self.root
    }

    pub fn preprocess(&self) -> &ImagePreprocess {
        &self.preprocess
    }

    /// The file of one sample.
    pub fn path(&self, index: QuerySampleIndex) -> Option<PathBuf> {
        self.entries.get(index).map(|e| self.root.join(&e.file))
    }

    /// Decodes and preprocesses one sample: CHW `f32`, the preprocessing's shape.
    pub fn load_image(&self, index: QuerySampleIndex) -> Result<Vec<f32>, DatasetError> {
        let path = self.path(index).ok_or_else(|| DatasetError::OutOfRange {
            index,
            size: self.entries.len(),
            labels: self.labels_path.clone(),
        })?;
        let image = decode(&path).map_err(|reason| DatasetError::file(&path, reason))?;
        Ok(self.preprocess.apply(&image))
    }

    fn load_tensor(&self, index: QuerySampleIndex) -> Result<Tensor, DatasetError> {
        let values = self.load_image(index)?;
        Tensor::from_vec(values, self.preprocess.shape(), &Device::Cpu)
            .map_err(|error| DatasetError::Tensor { index, error })
    }
}

/// What is wrong with one image file (the caller names the file).
#[derive(Debug, thiserror::Error)]
enum ImageFileError {
    #[error("image file is missing")]
    Missing,
    #[error("cannot open: {0}")]
    Open(std::io::Error),
    #[error("cannot read: {0}")]
    Read(std::io::Error),
    #[error("{0:?} images are not supported (JPEG and PNG are)")]
    Format(ImageFormat),
    #[error("not a JPEG or PNG image")]
    NotAnImage,
    #[error("cannot read the image header: {0}")]
    Header(image::ImageError),
    #[error("image is {width}×{height} px")]
    Empty { width: u32, height: u32 },
    #[error("does not decode: {0}")]
    Decode(image::ImageError),
}

/// Reads just enough of a file to know it is a JPEG or PNG with a size.
fn check_header(path: &Path) -> Result<(), ImageFileError> {
    let reader = open_reader(path)?;
    let (width, height) = reader.into_dimensions().map_err(ImageFileError::Header)?;
    if width == 0 || height == 0 {
        return Err(ImageFileError::Empty { width, height });
    }
    Ok(())
}

fn open_reader(
    path: &Path,
) -> Result<ImageReader<std::io::BufReader<std::fs::File>>, ImageFileError> {
    let reader = ImageReader::open(path)
        .map_err(|e| match e.kind() {
            std::io::ErrorKind::NotFound => ImageFileError::Missing,
            _ => ImageFileError::Open(e),
        })?
        .with_guessed_format()
        .map_err(ImageFileError::Read)?;
    match reader.format() {
        Some(ImageFormat::Jpeg | ImageFormat::Png) => Ok(reader),
        Some(other) => Err(ImageFileError::Format(other)),
        None => Err(ImageFileError::NotAnImage),
    }
}

/// Decodes a whole image, turned upright by its EXIF orientation as
/// OpenCV's `imread` (MLPerf's reader) does.
fn decode(path: &Path) -> Result<DynamicImage, ImageFileError> {
    use image::ImageDecoder;
    let mut decoder = open_reader(path)?
        .into_decoder()
        .map_err(ImageFileError::Decode)?;
    let orientation = decoder.orientation().map_err(ImageFileError::Decode)?;
    let mut image = DynamicImage::from_decoder(decoder).map_err(ImageFileError::Decode)?;
    image.apply_orientation(orientation);
    Ok(image)
}

/// `f` over `items` on all cores, results in order. Decoding is the slow
/// part of loading a data set, and files are independent.
fn parallel_map<T: Sync, R: Send>(items: &[T], f: impl Fn(&T) -> R + Sync) -> Vec<R> {
    let threads = std::thread::available_parallelism()
        .map_or(1, |n| n.get())
        .min(items.len())
        .max(1);
    let chunk = items.len().div_ceil(threads).max(1);
    std::thread::scope(|scope| {
        let workers: Vec<_> = items
            .chunks(chunk)
            .map(|part| scope.spawn(|| part.iter().map(&f).collect::<Vec<R>>()))
            .collect();
        workers
            .into_iter()
            .flat_map(|w| w.join().unwrap_or_else(|p| std::panic::resume_unwind(p)))
            .collect()
    })
}

impl QuerySampleLibrary for ImageFolder {
    fn name(&self) -> &str {
        "joulebench-image-folder"
    }
    fn total_sample_count(&self) -> usize {
        self.entries.len()
    }
    fn performance_sample_count(&self) -> usize {
        self.performance
    }
    fn load_samples_to_ram(
        &self,
        samples: &[QuerySampleIndex],
    ) -> Result<(), loadgen::qsl::QslError> {
        let made = parallel_map(samples, |&i| self.load_tensor(i).map(|t| (i, t)));
        let made: Vec<(QuerySampleIndex, Tensor)> = made.into_iter().collect::<Result<_, _>>()?;
        Ok(self.loaded.insert(made)?)
    }
    fn unload_samples_from_ram(&self, samples: &[QuerySampleIndex]) {
        self.loaded.remove(samples)
    }
}

impl ImageSource for ImageFolder {
    fn batch(&self, indices: &[QuerySampleIndex]) -> Result<Tensor, SampleError> {
        self.loaded.stack(indices)
    }
    fn write_batch(
        &self,
        indices: &[QuerySampleIndex],
        out: &mut [f32],
    ) -> Result<(), SampleError> {
        self.loaded.write(indices, out)
    }
    fn label(&self, index: QuerySampleIndex) -> Option<u32> {
        self.entries.get(index).map(|e| e.label)
    }
    fn describe(&self) -> String {
        format!(
            "image folder {} ({} images, labels {}), preprocessed at load: {}",
            self.root.display(),
            self.entries.len(),
            self.labels_path.display(),
            self.preprocess.describe()
        )
    }
}
