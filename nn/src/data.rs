//! Datasets: MNIST (IDX, gzip or not) and CIFAR-10 (binary) readers, normalisation, seeded
//! shuffling and batching.

use std::io::Read;
use std::path::{Path, PathBuf};

use rand::seq::SliceRandom;
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;

use crate::error::{NnError, Result};
use crate::plain::PlainTensor;

/// Which part of a dataset.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Split {
    /// Training images.
    Train,
    /// Test images.
    Test,
}

/// Labelled images as bytes, with the per-channel normalisation to apply.
#[derive(Debug, Clone)]
pub struct Images {
    /// `[C, H, W]` of one image.
    pub shape: [usize; 3],
    /// Pixels, image after image, each `C*H*W` bytes (CHW order).
    pub pixels: Vec<u8>,
    /// One label per image.
    pub labels: Vec<u8>,
    /// Number of classes.
    pub classes: usize,
    /// Per-channel mean of pixel/255.
    pub mean: Vec<f64>,
    /// Per-channel standard deviation of pixel/255.
    pub std: Vec<f64>,
}

impl Images {
    /// Number of images.
    pub fn len(&self) -> usize {
        self.labels.len()
    }

    /// True when there are no images.
    pub fn is_empty(&self) -> bool {
        self.labels.is_empty()
    }

    /// The first `n` images (all when fewer).
    pub fn take(mut self, n: usize) -> Self {
        let n = n.min(self.len());
        self.pixels.truncate(n * self.image_len());
        self.labels.truncate(n);
        self
    }

    fn image_len(&self) -> usize {
        self.shape.iter().product()
    }

    /// The images at `indices` as a normalised `[B, C, H, W]` tensor and one-hot `[B, classes]` labels.
    pub fn batch(&self, indices: &[usize]) -> (PlainTensor, PlainTensor) {
        let len = self.image_len();
        let hw = self.shape[1] * self.shape[2];
        let mut x = Vec::with_capacity(indices.len() * len);
        let mut y = vec![0.0; indices.len() * self.classes];
        for (b, &i) in indices.iter().enumerate() {
            for (j, &p) in self.pixels[i * len..(i + 1) * len].iter().enumerate() {
                let c = j / hw;
                x.push((p as f64 / 255.0 - self.mean[c]) / self.std[c]);
            }
            y[b * self.classes + self.labels[i] as usize] = 1.0;
        }
        let [c, h, w] = self.shape;
        (
            PlainTensor { shape: vec![indices.len(), c, h, w], data: x },
            PlainTensor { shape: vec![indices.len(), self.classes], data: y },
        )
    }

    /// Labels at `indices`.
    pub fn labels_at(&self, indices: &[usize]) -> Vec<usize> {
        indices.iter().map(|&i| self.labels[i] as usize).collect()
    }

    /// The images normalised as `how` says (see [`Normalize`]); given statistics must have one
    /// value, or one per channel.
    pub fn normalized(mut self, how: &Normalize) -> Result<Self> {
        let c = self.shape[0];
        let (mean, std) = match how {
            Normalize::Dataset => return Ok(self),
            Normalize::Pixels => (vec![0.0; c], vec![1.0; c]),
            Normalize::PerChannel { mean, std } if mean.len() == 1 && std.len() == 1 => {
                (vec![mean[0]; c], vec![std[0]; c])
            }
            Normalize::PerChannel { mean, std } if mean.len() == c && std.len() == c => (mean.clone(), std.clone()),
            Normalize::PerChannel { mean, std } => {
                let each = if c == 1 { String::new() } else { format!(", or {c} of each") };
                let detail = format!(
                    "{} means and {} standard deviations for {c}-channel images (give one of each{each})",
                    mean.len(),
                    std.len()
                );
                return Err(normalisation_error(&how.to_string(), detail));
            }
        };
        check_stats(&mean, &std).map_err(|e| normalisation_error(&how.to_string(), e))?;
        (self.mean, self.std) = (mean, std);
        Ok(self)
    }
}

/// The MNIST statistics of pixel/255 (mean, standard deviation), the usual normalisation.
pub const MNIST_STATS: ([f64; 1], [f64; 1]) = ([0.1307], [0.3081]);

/// The CIFAR-10 per-channel statistics of pixel/255 (means, standard deviations; RGB).
pub const CIFAR10_STATS: ([f64; 3], [f64; 3]) = ([0.4914, 0.4822, 0.4465], [0.2470, 0.2435, 0.2616]);

/// How images are normalised: `(pixel/255 - mean[c]) / std[c]` per channel `c`.
#[derive(Debug, Clone, PartialEq)]
pub enum Normalize {
    /// The dataset's usual statistics ([`MNIST_STATS`], [`CIFAR10_STATS`]), as the readers set them.
    Dataset,
    /// pixel/255 (mean 0, standard deviation 1).
    Pixels,
    /// Given statistics: one mean and one standard deviation for every channel, or one each per
    /// channel.
    PerChannel {
        /// The means (one, or one per channel).
        mean: Vec<f64>,
        /// The standard deviations (as many as the means).
        std: Vec<f64>,
    },
}

impl std::str::FromStr for Normalize {
    type Err = NnError;

    /// Parses `MEAN,STD` (for every channel) or `M1,..,MC,S1,..,SC` (per channel): finite numbers,
    /// standard deviations positive.
    fn from_str(s: &str) -> Result<Self> {
        let bad = |detail: String| normalisation_error(s, detail);
        let values = s
            .split(',')
            .map(|v| v.trim().parse::<f64>().map_err(|e| bad(format!("{v:?} is not a number ({e})"))))
            .collect::<Result<Vec<f64>>>()?;
        if values.len() % 2 != 0 {
            return Err(bad(format!(
                "{} values: give MEAN,STD or the means of all channels then their standard deviations",
                values.len()
            )));
        }
        let (mean, std) = values.split_at(values.len() / 2);
        check_stats(mean, std).map_err(bad)?;
        Ok(Normalize::PerChannel { mean: mean.to_vec(), std: std.to_vec() })
    }
}

fn normalisation_error(what: &str, detail: String) -> NnError {
    NnError::Format { path: format!("normalisation {what:?}"), detail }
}

/// Checks normalisation statistics: finite, standard deviations positive.
fn check_stats(mean: &[f64], std: &[f64]) -> std::result::Result<(), String> {
    if let Some(v) = mean.iter().chain(std).find(|v| !v.is_finite()) {
        return Err(format!("{v} is not finite"));
    }
    match std.iter().find(|&&v| v <= 0.0) {
        Some(v) => Err(format!("standard deviation {v} is not positive")),
        None => Ok(()),
    }
}

impl std::fmt::Display for Normalize {
    /// `dataset`, `pixels`, or the statistics as [`FromStr`](std::str::FromStr) reads them.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Normalize::Dataset => write!(f, "dataset"),
            Normalize::Pixels => write!(f, "pixels"),
            Normalize::PerChannel { mean, std } => {
                let all: Vec<String> = mean.iter().chain(std).map(|v| v.to_string()).collect();
                write!(f, "{}", all.join(","))
            }
        }
    }
}

/// Index batches of `batch` images over `n` images, shuffled by `seed` (the last batch may be short).
pub fn shuffled_batches(n: usize, batch: usize, seed: u64) -> Vec<Vec<usize>> {
    let mut idx: Vec<usize> = (0..n).collect();
    idx.shuffle(&mut ChaCha8Rng::seed_from_u64(seed));
    idx.chunks(batch.max(1)).map(|c| c.to_vec()).collect()
}

/// Index batches in order.
pub fn sequential_batches(n: usize, batch: usize) -> Vec<Vec<usize>> {
    (0..n).collect::<Vec<_>>().chunks(batch.max(1)).map(|c| c.to_vec()).collect()
}

fn read(path: &Path) -> Result<Vec<u8>> {
    std::fs::read(path).map_err(|source| NnError::Io { path: path.display().to_string(), source })
}

/// The largest dataset file accepted, and the most a gzip file is ever decompressed to (bytes):
/// above any real image dataset file (EMNIST's largest is 0.55 GB).
pub const MAX_FILE_BYTES: usize = 1 << 31;

fn is_gzip(raw: &[u8]) -> bool {
    raw.starts_with(&[0x1f, 0x8b])
}

/// Appends what `r` yields to `buf` while `buf` holds at most `limit` bytes; more is an error
/// (a gzip bomb is stopped one byte past `limit`).
fn read_capped(r: impl Read, buf: &mut Vec<u8>, limit: usize, name: &str, what: &str) -> Result<()> {
    let room = (limit + 1).saturating_sub(buf.len()) as u64;
    r.take(room).read_to_end(buf).map_err(|e| gzip_error(name, e))?;
    if buf.len() > limit {
        return Err(NnError::Format { path: name.to_string(), detail: format!("gzip data inflates beyond {what}") });
    }
    Ok(())
}

fn gzip_error(name: &str, e: std::io::Error) -> NnError {
    NnError::Format { path: name.to_string(), detail: format!("bad gzip data: {e}") }
}

/// Decompresses gzip data up to [`MAX_FILE_BYTES`]; other data is returned as it is.
fn gunzip(raw: &[u8], name: &str) -> Result<Vec<u8>> {
    if !is_gzip(raw) {
        return Ok(raw.to_vec());
    }
    let mut out = Vec::new();
    read_capped(flate2::read::GzDecoder::new(raw), &mut out, MAX_FILE_BYTES, name, "the file size limit")?;
    Ok(out)
}

/// Reads an IDX file (gzip or not): its dimensions and `u8` payload. A gzip stream is decompressed
/// only as far as its IDX header says (and at most [`MAX_FILE_BYTES`]): a stream that inflates
/// beyond that (a gzip bomb) is an error after at most one byte more than the header announced.
fn read_idx(raw: &[u8], name: &str) -> Result<(Vec<usize>, Vec<u8>)> {
    if !is_gzip(raw) {
        return parse_idx(raw, name);
    }
    let gz = |e| gzip_error(name, e);
    let mut dec = flate2::read::GzDecoder::new(raw);
    let mut bytes = vec![0u8; 4];
    dec.read_exact(&mut bytes).map_err(gz)?;
    bytes.resize(4 + 4 * bytes[3] as usize, 0);
    dec.read_exact(&mut bytes[4..]).map_err(gz)?;
    let (_, header, n) = idx_header(&bytes, name)?;
    read_capped(dec, &mut bytes, header + n, name, &format!("the {n} payload bytes its IDX header announces"))?;
    parse_idx(&bytes, name)
}

/// `dir/name` or `dir/name.gz`, whichever exists.
fn find(dir: &Path, name: &str) -> Result<PathBuf> {
    for cand in [dir.join(name), dir.join(format!("{name}.gz"))] {
        if cand.is_file() {
            return Ok(cand);
        }
    }
    Err(NnError::Io {
        path: dir.join(name).display().to_string(),
        source: std::io::Error::from(std::io::ErrorKind::NotFound),
    })
}

/// Parses an IDX file: returns the dimensions and the `u8` payload.
pub fn parse_idx(bytes: &[u8], path: &str) -> Result<(Vec<usize>, Vec<u8>)> {
    let (dims, header, n) = idx_header(bytes, path)?;
    if bytes.len() != header + n {
        let bad = |detail: String| NnError::Format { path: path.to_string(), detail };
        return Err(bad(format!("{} payload bytes for dimensions {dims:?} (expected {n})", bytes.len() - header)));
    }
    Ok((dims, bytes[header..].to_vec()))
}

/// An IDX header at the start of `bytes`: the dimensions, the header's length and the payload's
/// length (at most [`MAX_FILE_BYTES`]).
fn idx_header(bytes: &[u8], path: &str) -> Result<(Vec<usize>, usize, usize)> {
    let bad = |detail: String| NnError::Format { path: path.to_string(), detail };
    if bytes.len() < 4 || bytes[0] != 0 || bytes[1] != 0 {
        return Err(bad("not an IDX file (bad magic)".into()));
    }
    if bytes[2] != 0x08 {
        return Err(bad(format!("element type {:#04x} is not unsigned bytes", bytes[2])));
    }
    let nd = bytes[3] as usize;
    let header = 4 + 4 * nd;
    if bytes.len() < header {
        return Err(bad("truncated header".into()));
    }
    let dims: Vec<usize> = (0..nd)
        .map(|i| u32::from_be_bytes(bytes[4 + 4 * i..8 + 4 * i].try_into().expect("4 bytes")) as usize)
        .collect();
    let n = dims.iter().try_fold(1usize, |a, &d| a.checked_mul(d)).ok_or_else(|| bad("dimensions overflow".into()))?;
    if n > MAX_FILE_BYTES {
        return Err(bad(format!("dimensions {dims:?} announce {n} bytes, above the limit of {MAX_FILE_BYTES}")));
    }
    Ok((dims, header, n))
}

/// MNIST from `dir` (the four original files, gzip or not).
pub fn load_mnist(dir: &Path, split: Split) -> Result<Images> {
    let (img, lab) = match split {
        Split::Train => ("train-images-idx3-ubyte", "train-labels-idx1-ubyte"),
        Split::Test => ("t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte"),
    };
    let (ip, lp) = (find(dir, img)?, find(dir, lab)?);
    mnist_from_bytes(&read(&ip)?, &read(&lp)?, &ip.display().to_string())
}

/// MNIST from the contents of an image and a label IDX file (gzip or not); `name` labels errors.
pub fn mnist_from_bytes(images: &[u8], labels: &[u8], name: &str) -> Result<Images> {
    let (idims, pixels) = read_idx(images, name)?;
    let (ldims, labels) = read_idx(labels, name)?;
    let fmt = |detail: String| NnError::Format { path: name.to_string(), detail };
    if idims.len() != 3 || ldims.len() != 1 || idims[0] != ldims[0] {
        return Err(fmt(format!("image dims {idims:?} and label dims {ldims:?} do not match")));
    }
    if let Some(l) = labels.iter().find(|&&l| l > 9) {
        return Err(fmt(format!("label {l} out of range 0..10")));
    }
    Ok(Images {
        shape: [1, idims[1], idims[2]],
        pixels,
        labels,
        classes: 10,
        mean: MNIST_STATS.0.to_vec(),
        std: MNIST_STATS.1.to_vec(),
    })
}

/// Bytes per CIFAR-10 record: a label and a 3x32x32 image.
pub const CIFAR_RECORD: usize = 1 + 3 * 32 * 32;

/// CIFAR-10 from `dir`: every `data_batch*.bin` (train) or `test_batch*.bin` (test) file in name
/// order; the record count comes from each file's size.
pub fn load_cifar10(dir: &Path, split: Split) -> Result<Images> {
    let prefix = match split {
        Split::Train => "data_batch",
        Split::Test => "test_batch",
    };
    let io = |source| NnError::Io { path: dir.display().to_string(), source };
    let mut files: Vec<PathBuf> = std::fs::read_dir(dir)
        .map_err(io)?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| {
            p.file_name().and_then(|n| n.to_str()).is_some_and(|n| n.starts_with(prefix) && n.ends_with(".bin"))
        })
        .collect();
    files.sort();
    if files.is_empty() {
        return Err(NnError::Io {
            path: dir.join(format!("{prefix}*.bin")).display().to_string(),
            source: std::io::Error::from(std::io::ErrorKind::NotFound),
        });
    }
    let (mut pixels, mut labels) = (Vec::new(), Vec::new());
    for f in files {
        let bytes = gunzip(&read(&f)?, &f.display().to_string())?;
        if bytes.is_empty() || bytes.len() % CIFAR_RECORD != 0 {
            return Err(NnError::Format {
                path: f.display().to_string(),
                detail: format!("{} bytes is not a whole number of {CIFAR_RECORD}-byte records", bytes.len()),
            });
        }
        for rec in bytes.chunks(CIFAR_RECORD) {
            if rec[0] > 9 {
                return Err(NnError::Format {
                    path: f.display().to_string(),
                    detail: format!("label {} out of range 0..10", rec[0]),
                });
            }
            labels.push(rec[0]);
            pixels.extend_from_slice(&rec[1..]);
        }
    }
    Ok(Images {
        shape: [3, 32, 32],
        pixels,
        labels,
        classes: 10,
        mean: CIFAR10_STATS.0.to_vec(),
        std: CIFAR10_STATS.1.to_vec(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    fn gzip(bytes: &[u8]) -> Vec<u8> {
        let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::best());
        e.write_all(bytes).unwrap();
        e.finish().unwrap()
    }

    /// An IDX header of unsigned bytes with the given dimensions.
    fn header(dims: &[u32]) -> Vec<u8> {
        let mut h = vec![0, 0, 8, dims.len() as u8];
        dims.iter().for_each(|d| h.extend(d.to_be_bytes()));
        h
    }

    #[test]
    fn gzip_is_inflated_only_as_far_as_the_idx_header_says() {
        let mut ok = header(&[3, 2]);
        ok.extend([1, 2, 3, 4, 5, 6]);
        assert_eq!(read_idx(&gzip(&ok), "ok").unwrap(), (vec![3, 2], vec![1, 2, 3, 4, 5, 6]));
        // A bomb: 6 payload bytes announced, 64 MiB of zeros behind them (64 KiB compressed).
        let mut bomb = ok.clone();
        bomb.resize(bomb.len() + (64 << 20), 0);
        let err = read_idx(&gzip(&bomb), "bomb").unwrap_err().to_string();
        assert!(err.contains("inflates beyond the 6 payload bytes"), "{err}");
        // Too short, a header announcing more than the limit, and a truncated header.
        let err = read_idx(&gzip(&ok[..ok.len() - 1]), "short").unwrap_err().to_string();
        assert!(err.contains("5 payload bytes") && err.contains("expected 6"), "{err}");
        let err = read_idx(&gzip(&header(&[1 << 16, 1 << 16])), "huge").unwrap_err().to_string();
        assert!(err.contains("above the limit"), "{err}");
        assert!(read_idx(&gzip(&[0, 0, 8, 3, 0, 0]), "cut").is_err());
    }

    fn two_channels() -> Images {
        // Two 1x1 images of 2 channels.
        Images {
            shape: [2, 1, 1],
            pixels: vec![0, 255, 51, 102],
            labels: vec![0, 1],
            classes: 2,
            mean: vec![0.5; 2],
            std: vec![0.5; 2],
        }
    }

    #[test]
    fn normalisations_parse_and_apply_per_channel() {
        let x = |im: &Images| im.batch(&[0, 1]).0.data;
        let close =
            |a: Vec<f64>, b: [f64; 4]| assert!(approx::abs_diff_eq!(a[..], b[..], epsilon = 1e-12), "{a:?} vs {b:?}");
        let n: Normalize = "0.5,0.25".parse().unwrap();
        assert_eq!(n, Normalize::PerChannel { mean: vec![0.5], std: vec![0.25] });
        close(x(&two_channels().normalized(&n).unwrap()), [-2.0, 2.0, -1.2, -0.4]);
        let n: Normalize = "0, 1, 1, 0.5".parse().unwrap();
        assert_eq!(n.to_string(), "0,1,1,0.5");
        close(x(&two_channels().normalized(&n).unwrap()), [0.0, 0.0, 0.2, -1.2]);
        close(x(&two_channels().normalized(&Normalize::Pixels).unwrap()), [0.0, 1.0, 0.2, 0.4]);
        assert_eq!(x(&two_channels().normalized(&Normalize::Dataset).unwrap()), x(&two_channels()));
        let err = two_channels().normalized(&"1,2,3,1,1,1".parse().unwrap()).unwrap_err().to_string();
        assert!(err.contains("3 means and 3 standard deviations for 2-channel images"), "{err}");
        let direct = Normalize::PerChannel { mean: vec![0.0], std: vec![-1.0] };
        let err = two_channels().normalized(&direct).unwrap_err().to_string();
        assert!(err.contains("standard deviation -1 is not positive"), "{err}");
    }

    #[test]
    fn bad_normalisations_are_named() {
        for (text, needle) in [
            ("0.5,0", "standard deviation 0 is not positive"),
            ("0.5", "1 values: give MEAN,STD"),
            ("0.5,x", "\"x\" is not a number"),
            ("", "\"\" is not a number"),
            ("NaN,1", "NaN is not finite"),
            ("0,inf", "inf is not finite"),
        ] {
            let err = text.parse::<Normalize>().unwrap_err().to_string();
            assert!(err.contains(needle) && err.starts_with("normalisation"), "{text}: {err}");
        }
    }
}
