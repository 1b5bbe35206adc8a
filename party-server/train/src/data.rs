//! MNIST / Fashion-MNIST IDX (.gz) reading.

use std::io::Read;
use std::path::{Path, PathBuf};

/// A labelled image set, pixels scaled to [−1, 1], row-major 28×28.
pub struct Dataset {
    /// `n × rows × cols` pixels in [−1, 1].
    pub images: Vec<f32>,
    /// Labels 0..=9.
    pub labels: Vec<u8>,
    /// Image height.
    pub rows: usize,
    /// Image width.
    pub cols: usize,
}

impl Dataset {
    /// Number of images.
    pub fn len(&self) -> usize {
        self.labels.len()
    }
    /// Whether there are no images.
    pub fn is_empty(&self) -> bool {
        self.labels.is_empty()
    }
    /// Pixels of image `i`.
    pub fn image(&self, i: usize) -> &[f32] {
        let s = self.rows * self.cols;
        &self.images[i * s..(i + 1) * s]
    }
    /// Keep only the given labels, relabelled to their index in `keep`.
    pub fn filter_labels(&self, keep: &[usize]) -> Dataset {
        let s = self.rows * self.cols;
        let mut images = Vec::new();
        let mut labels = Vec::new();
        for i in 0..self.len() {
            if let Some(k) = keep.iter().position(|&l| l == self.labels[i] as usize) {
                images.extend_from_slice(&self.images[i * s..(i + 1) * s]);
                labels.push(k as u8);
            }
        }
        Dataset {
            images,
            labels,
            rows: self.rows,
            cols: self.cols,
        }
    }
}

fn read_gz(path: &Path) -> Result<Vec<u8>, String> {
    let f = std::fs::File::open(path).map_err(|e| format!("{}: {e}", path.display()))?;
    let mut d = flate2::read::GzDecoder::new(f);
    let mut v = Vec::new();
    d.read_to_end(&mut v)
        .map_err(|e| format!("{}: {e}", path.display()))?;
    Ok(v)
}

fn be_u32(b: &[u8], o: usize) -> usize {
    u32::from_be_bytes([b[o], b[o + 1], b[o + 2], b[o + 3]]) as usize
}

/// Parse IDX3 image bytes (magic 2051) and IDX1 label bytes (magic 2049).
pub fn parse_idx(img: &[u8], lab: &[u8]) -> Result<Dataset, String> {
    if img.len() < 16 || be_u32(img, 0) != 2051 {
        return Err("not an IDX3 image file (magic 2051)".into());
    }
    if lab.len() < 8 || be_u32(lab, 0) != 2049 {
        return Err("not an IDX1 label file (magic 2049)".into());
    }
    let (n, rows, cols) = (be_u32(img, 4), be_u32(img, 8), be_u32(img, 12));
    let nl = be_u32(lab, 4);
    if n != nl || img.len() != 16 + n * rows * cols || lab.len() != 8 + n {
        return Err(format!(
            "inconsistent IDX sizes: {n} images of {rows}x{cols} ({} bytes), {nl} labels ({} bytes)",
            img.len(),
            lab.len()
        ));
    }
    let images = img[16..].iter().map(|&p| p as f32 / 127.5 - 1.0).collect();
    Ok(Dataset {
        images,
        labels: lab[8..].to_vec(),
        rows,
        cols,
    })
}

/// Load `{train,t10k}-{images-idx3,labels-idx1}-ubyte.gz` of one data set from `dir`.
pub fn load(dir: &Path, train: bool) -> Result<Dataset, String> {
    let p = if train { "train" } else { "t10k" };
    let img = read_gz(&dir.join(format!("{p}-images-idx3-ubyte.gz")))?;
    let lab = read_gz(&dir.join(format!("{p}-labels-idx1-ubyte.gz")))?;
    parse_idx(&img, &lab)
}

/// The directory of data set `name` ("mnist" or "fashion-mnist") under `data_dir`
/// (default: `data/` at the workspace root, filled by `scripts/fetch-data.sh`).
pub fn dataset_dir(data_dir: Option<&str>, name: &str) -> PathBuf {
    let base = data_dir.map(PathBuf::from).unwrap_or_else(|| {
        std::env::var("CIPHERDM_DATA")
            .map(PathBuf::from)
            .unwrap_or_else(|_| PathBuf::from("data"))
    });
    base.join(name)
}
