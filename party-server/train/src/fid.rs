//! Fréchet distance between Gaussian fits of two feature sets.

/// Mean and covariance (unbiased) of `n` feature rows of dimension `d`.
pub fn stats(feats: &[f32], d: usize) -> (Vec<f64>, Vec<f64>) {
    let n = feats.len() / d;
    let mut mu = vec![0f64; d];
    for r in feats.chunks(d) {
        for (m, v) in mu.iter_mut().zip(r) {
            *m += *v as f64;
        }
    }
    for m in &mut mu {
        *m /= n as f64;
    }
    let mut cov = vec![0f64; d * d];
    let mut c = vec![0f64; d];
    for r in feats.chunks(d) {
        for i in 0..d {
            c[i] = r[i] as f64 - mu[i];
        }
        for i in 0..d {
            let ci = c[i];
            if ci == 0.0 {
                continue;
            }
            for j in 0..d {
                cov[i * d + j] += ci * c[j];
            }
        }
    }
    let den = (n.max(2) - 1) as f64;
    for v in &mut cov {
        *v /= den;
    }
    (mu, cov)
}

/// Eigen-decomposition of a symmetric matrix (cyclic Jacobi): (eigenvalues, eigenvectors as columns).
pub fn sym_eigen(a: &[f64], d: usize) -> (Vec<f64>, Vec<f64>) {
    let mut a = a.to_vec();
    let mut v = vec![0f64; d * d];
    for i in 0..d {
        v[i * d + i] = 1.0;
    }
    for _sweep in 0..100 {
        let mut off = 0.0;
        for i in 0..d {
            for j in i + 1..d {
                off += a[i * d + j] * a[i * d + j];
            }
        }
        if off < 1e-22 {
            break;
        }
        for p in 0..d {
            for q in p + 1..d {
                let apq = a[p * d + q];
                if apq.abs() < 1e-300 {
                    continue;
                }
                let theta = (a[q * d + q] - a[p * d + p]) / (2.0 * apq);
                let t = theta.signum() / (theta.abs() + (theta * theta + 1.0).sqrt());
                let t = if theta == 0.0 { 1.0 } else { t };
                let c = 1.0 / (t * t + 1.0).sqrt();
                let s = t * c;
                for k in 0..d {
                    let (akp, akq) = (a[k * d + p], a[k * d + q]);
                    a[k * d + p] = c * akp - s * akq;
                    a[k * d + q] = s * akp + c * akq;
                }
                for k in 0..d {
                    let (apk, aqk) = (a[p * d + k], a[q * d + k]);
                    a[p * d + k] = c * apk - s * aqk;
                    a[q * d + k] = s * apk + c * aqk;
                }
                for k in 0..d {
                    let (vkp, vkq) = (v[k * d + p], v[k * d + q]);
                    v[k * d + p] = c * vkp - s * vkq;
                    v[k * d + q] = s * vkp + c * vkq;
                }
            }
        }
    }
    ((0..d).map(|i| a[i * d + i]).collect(), v)
}

fn matmul(a: &[f64], b: &[f64], d: usize) -> Vec<f64> {
    let mut c = vec![0f64; d * d];
    for i in 0..d {
        for k in 0..d {
            let av = a[i * d + k];
            for j in 0..d {
                c[i * d + j] += av * b[k * d + j];
            }
        }
    }
    c
}

/// FID = |μ1 − μ2|² + tr(Σ1) + tr(Σ2) − 2·tr((Σ1^½ Σ2 Σ1^½)^½).
pub fn frechet_distance(mu1: &[f64], s1: &[f64], mu2: &[f64], s2: &[f64], d: usize) -> f64 {
    let (l, v) = sym_eigen(s1, d);
    // Σ1^½ = V diag(sqrt λ) Vᵀ
    let mut vs = v.clone();
    for i in 0..d {
        for j in 0..d {
            vs[i * d + j] *= l[j].max(0.0).sqrt();
        }
    }
    let mut vt = vec![0f64; d * d];
    for i in 0..d {
        for j in 0..d {
            vt[i * d + j] = v[j * d + i];
        }
    }
    let r = matmul(&vs, &vt, d);
    let m = matmul(&matmul(&r, s2, d), &r, d);
    // symmetrise against rounding
    let mut ms = m.clone();
    for i in 0..d {
        for j in 0..d {
            ms[i * d + j] = 0.5 * (m[i * d + j] + m[j * d + i]);
        }
    }
    let (lm, _) = sym_eigen(&ms, d);
    let tr_sqrt: f64 = lm.iter().map(|x| x.max(0.0).sqrt()).sum();
    let diff: f64 = mu1.iter().zip(mu2).map(|(a, b)| (a - b) * (a - b)).sum();
    let tr1: f64 = (0..d).map(|i| s1[i * d + i]).sum();
    let tr2: f64 = (0..d).map(|i| s2[i * d + i]).sum();
    diff + tr1 + tr2 - 2.0 * tr_sqrt
}
