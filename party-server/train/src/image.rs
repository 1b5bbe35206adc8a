//! PNG grids of generated samples.

use std::path::Path;

/// Write `images` (each `size × size`, values in [−1, 1]) as a grid with `cols` columns
/// and a 2-pixel border.
pub fn write_grid(
    path: &Path,
    images: &[Vec<f32>],
    size: usize,
    cols: usize,
) -> Result<(), String> {
    let cols = cols.max(1);
    let rows = images.len().div_ceil(cols).max(1);
    let pad = 2;
    let w = cols * (size + pad) + pad;
    let h = rows * (size + pad) + pad;
    let mut px = vec![40u8; w * h];
    for (k, img) in images.iter().enumerate() {
        let (r, c) = (k / cols, k % cols);
        for y in 0..size {
            for x in 0..size {
                let v = ((img[y * size + x].clamp(-1.0, 1.0) + 1.0) * 127.5).round() as u8;
                px[(pad + r * (size + pad) + y) * w + pad + c * (size + pad) + x] = v;
            }
        }
    }
    if let Some(d) = path.parent() {
        std::fs::create_dir_all(d).map_err(|e| e.to_string())?;
    }
    let f = std::fs::File::create(path).map_err(|e| format!("{}: {e}", path.display()))?;
    let mut enc = png::Encoder::new(std::io::BufWriter::new(f), w as u32, h as u32);
    enc.set_color(png::ColorType::Grayscale);
    enc.set_depth(png::BitDepth::Eight);
    let mut wr = enc.write_header().map_err(|e| e.to_string())?;
    wr.write_image_data(&px).map_err(|e| e.to_string())?;
    Ok(())
}
