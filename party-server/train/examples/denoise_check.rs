//! Per-timestep MSE of the network's output (ε or v) of a model on test images, and the MSE of a
//! DDIM reconstruction started from the noised test images at that t (f32 back end):
//! `cargo run --release -p train --example denoise_check -- MODEL_DIR [N]`.
use party_server::model::{Backend, Prediction, SplitMix64, load_cpu_model, one_hot};
use party_server::sampler::Schedule;

fn main() {
    let dir = std::env::args().nth(1).expect("model dir");
    let n: usize = std::env::args()
        .nth(2)
        .map(|s| s.parse().unwrap())
        .unwrap_or(20);
    let (net, mut be) = load_cpu_model(&dir).unwrap();
    let cfg = net.config().clone();
    let ds = train::data::load(&train::data::dataset_dir(None, "mnist"), false).unwrap();
    let ds = match &cfg.class_labels {
        Some(l) => ds.filter_labels(l),
        None => ds,
    };
    let s = Schedule::default_linear();
    let mut r = SplitMix64(5);
    for t in [10usize, 100, 300, 500, 700, 900, 990] {
        let (a, b) = s.q_coeffs(t);
        let mut x = Vec::new();
        let mut e = Vec::new();
        let mut lab = Vec::new();
        for i in 0..n {
            for &p in ds.image(i) {
                let z = r.normal() as f32;
                // The network's target: ε, or v = a·ε − b·x0.
                e.push(match cfg.prediction_type {
                    Prediction::Epsilon => z,
                    Prediction::VPrediction => a as f32 * z - b as f32 * p,
                });
                x.push(a as f32 * p + b as f32 * z);
            }
            lab.push(ds.labels[i] as usize);
        }
        let xt = be.from_public(&x, &[n, 1, 28, 28]).unwrap();
        let k = cfg.num_classes.unwrap_or(1);
        let c = be.from_public(&one_hot(&lab, k), &[n, k]).unwrap();
        let y = net
            .forward(&mut be, &xt, &vec![t as f32; n], Some(&c))
            .unwrap();
        let mse: f32 = y
            .data
            .iter()
            .zip(&e)
            .map(|(p, q)| (p - q) * (p - q))
            .sum::<f32>()
            / e.len() as f32;
        // DDIM from this t down to 0 (uniform 20-step stride), starting at the noised test images.
        let ts: Vec<usize> = (0..=t / 20)
            .rev()
            .map(|k| k * 20)
            .filter(|&v| v <= t)
            .collect();
        let mut xs = be.from_public(&x, &[n, 1, 28, 28]).unwrap();
        let mut seq = vec![t];
        seq.extend(ts.iter().copied().filter(|&v| v < t));
        for (k, &tt) in seq.iter().enumerate() {
            let eps = net
                .forward(&mut be, &xs, &vec![tt as f32; n], Some(&c))
                .unwrap();
            let co = party_server::sampler::ddim_coeffs(
                &s,
                tt,
                seq.get(k + 1).copied(),
                cfg.prediction_type,
            );
            xs = party_server::sampler::ddim_step(&mut be, &xs, &eps, co).unwrap();
        }
        let orig: Vec<f32> = (0..n).flat_map(|i| ds.image(i).to_vec()).collect();
        let rec: f32 = xs
            .data
            .iter()
            .zip(&orig)
            .map(|(p, q)| (p - q) * (p - q))
            .sum::<f32>()
            / orig.len() as f32;
        println!("t={t:4} {}-mse {mse:.4}", cfg.prediction_type.name());
        println!("t={t:4}  ddim-from-t reconstruction mse {rec:.4}");
    }
}
