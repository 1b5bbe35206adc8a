//! Data parsing, FID and classifier plumbing on small synthetic inputs.

use party_server::model::{Backend, CpuBackend, SplitMix64};
use train::classifier::{Classifier, FEATURE_DIM};
use train::{data, fid};

#[test]
fn idx_parsing_and_label_filtering() {
    let mut img = vec![0, 0, 8, 3, 0, 0, 0, 3, 0, 0, 0, 2, 0, 0, 0, 2];
    img.extend([0, 255, 0, 255, 10, 20, 30, 40, 255, 255, 255, 255]);
    let lab = vec![0, 0, 8, 1, 0, 0, 0, 3, 7, 1, 7];
    let d = data::parse_idx(&img, &lab).unwrap();
    assert_eq!((d.len(), d.rows, d.cols), (3, 2, 2));
    assert_eq!(d.image(0), &[-1.0, 1.0, -1.0, 1.0]);
    let f = d.filter_labels(&[1, 7]);
    assert_eq!(f.labels, vec![1, 0, 1]);
    let f = d.filter_labels(&[1]);
    assert_eq!(f.len(), 1);
    assert_eq!(f.image(0), d.image(1));
    assert!(data::parse_idx(&img[..20], &lab).is_err());
    assert!(data::parse_idx(&lab, &img).is_err());
}

#[test]
fn frechet_distance_known_values() {
    // Identical sets: 0. Shifted mean: |Δμ|². Scaled 1-D Gaussians: (σ1 − σ2)².
    let mut r = SplitMix64(1);
    let d = 3;
    let a: Vec<f32> = (0..3000).map(|_| r.normal() as f32).collect();
    let (m, s) = fid::stats(&a, d);
    assert!(fid::frechet_distance(&m, &s, &m, &s, d).abs() < 1e-8);
    let b: Vec<f32> = a.iter().map(|v| v + 2.0).collect();
    let (m2, s2) = fid::stats(&b, d);
    assert!((fid::frechet_distance(&m, &s, &m2, &s2, d) - 12.0).abs() < 1e-6);
    let m1 = vec![0.0];
    assert!((fid::frechet_distance(&m1, &[4.0], &m1, &[1.0], 1) - 1.0).abs() < 1e-9);
    // Eigen-decomposition of a symmetric 2×2.
    let (l, _) = fid::sym_eigen(&[2.0, 1.0, 1.0, 2.0], 2);
    let mut l = l;
    l.sort_by(f64::total_cmp);
    assert!((l[0] - 1.0).abs() < 1e-12 && (l[1] - 3.0).abs() < 1e-12);
}

#[test]
fn classifier_runs_on_the_f32_backend() {
    let mut be = CpuBackend::random(2);
    let clf = Classifier::new(&mut be).unwrap();
    let x = be
        .from_public(&vec![0.1; 3 * 784], &[3, 1, 28, 28])
        .unwrap();
    let f = clf.features(&mut be, &x).unwrap();
    assert_eq!(f.shape, vec![3, FEATURE_DIM]);
    assert!(f.data.iter().all(|v| *v >= 0.0));
    let l = clf.logits(&mut be, &f).unwrap();
    assert_eq!(l.shape, vec![3, 10]);
}
