//! Index maps of layout operations on row-major tensors: a layout change
//! of a shared tensor is the same gather applied to both share components.

/// Row-major strides of `shape`.
fn strides(shape: &[usize]) -> Vec<usize> {
    let mut s = vec![1; shape.len()];
    for i in (0..shape.len().saturating_sub(1)).rev() {
        s[i] = s[i + 1] * shape[i + 1];
    }
    s
}

/// Source index of every output element when dimensions `d0` and `d1` of
/// `shape` are swapped.
pub fn transpose(shape: &[usize], d0: usize, d1: usize) -> (Vec<usize>, Vec<usize>) {
    let mut out_shape = shape.to_vec();
    out_shape.swap(d0, d1);
    let (src, dst) = (strides(shape), strides(&out_shape));
    let n: usize = shape.iter().product();
    let idx = (0..n)
        .map(|o| {
            let mut rem = o;
            let mut at = 0;
            for (d, &st) in dst.iter().enumerate() {
                let c = rem / st;
                rem %= st;
                let sd = if d == d0 {
                    d1
                } else if d == d1 {
                    d0
                } else {
                    d
                };
                at += c * src[sd];
            }
            at
        })
        .collect();
    (idx, out_shape)
}

/// Source indices of `start..start+len` along `dim`.
pub fn narrow(shape: &[usize], dim: usize, start: usize, len: usize) -> (Vec<usize>, Vec<usize>) {
    let outer: usize = shape[..dim].iter().product();
    let inner: usize = shape[dim + 1..].iter().product();
    let mut idx = Vec::with_capacity(outer * len * inner);
    for o in 0..outer {
        for c in start..start + len {
            let base = (o * shape[dim] + c) * inner;
            idx.extend(base..base + inner);
        }
    }
    let mut out = shape.to_vec();
    out[dim] = len;
    (idx, out)
}

/// Indices into `a ++ b` (a first) of the channel concatenation of
/// `[N, Ca, ...]` and `[N, Cb, ...]`.
pub fn concat_channels(a: &[usize], b: &[usize]) -> (Vec<usize>, Vec<usize>) {
    let inner: usize = a[2..].iter().product();
    let (n, ca, cb) = (a[0], a[1], b[1]);
    let a_len = n * ca * inner;
    let mut idx = Vec::with_capacity(n * (ca + cb) * inner);
    for i in 0..n {
        idx.extend(i * ca * inner..(i + 1) * ca * inner);
        idx.extend(a_len + i * cb * inner..a_len + (i + 1) * cb * inner);
    }
    let mut out = a.to_vec();
    out[1] = ca + cb;
    (idx, out)
}

/// Source indices of nearest-neighbour 2× upsampling of `[N, C, H, W]`.
pub fn upsample2x(shape: &[usize]) -> (Vec<usize>, Vec<usize>) {
    let (nc, h, w) = (shape[0] * shape[1], shape[2], shape[3]);
    let mut idx = Vec::with_capacity(nc * 4 * h * w);
    for p in 0..nc {
        for y in 0..2 * h {
            for x in 0..2 * w {
                idx.push((p * h + y / 2) * w + x / 2);
            }
        }
    }
    (idx, vec![shape[0], shape[1], 2 * h, 2 * w])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn transpose_of_a_2x3x4() {
        let (idx, shape) = transpose(&[2, 3, 4], 1, 2);
        assert_eq!(shape, vec![2, 4, 3]);
        // out[0][1][2] = in[0][2][1]
        assert_eq!(idx[3 + 2], 2 * 4 + 1);
        let (back, _) = transpose(&shape, 1, 2);
        let round: Vec<usize> = back.iter().map(|&i| idx[i]).collect();
        assert_eq!(round, (0..24).collect::<Vec<_>>());
    }

    #[test]
    fn narrow_concat_upsample() {
        let (idx, s) = narrow(&[2, 3, 2], 1, 1, 2);
        assert_eq!((idx, s), (vec![2, 3, 4, 5, 8, 9, 10, 11], vec![2, 2, 2]));
        let (idx, s) = concat_channels(&[2, 1, 2], &[2, 2, 2]);
        assert_eq!(s, vec![2, 3, 2]);
        assert_eq!(idx, vec![0, 1, 4, 5, 6, 7, 2, 3, 8, 9, 10, 11]);
        let (idx, s) = upsample2x(&[1, 1, 2, 2]);
        assert_eq!(s, vec![1, 1, 4, 4]);
        assert_eq!(idx, vec![0, 0, 1, 1, 0, 0, 1, 1, 2, 2, 3, 3, 2, 2, 3, 3]);
    }
}
