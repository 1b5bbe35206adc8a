//! Sample quality of a trained model: class accuracy of class-conditional
//! samples under the project's classifier, and FID on that classifier's
//! penultimate features against the test set (restricted to the model's
//! classes). Writes a PNG grid of the first samples to `docs/images/`.
//!
//! ```text
//! cargo run --release --bin eval-quality -- --model cipherdm-tiny-silu \
//!     --sampler ddim --steps 50 --n 1000 --json
//! ```
//! Options: `--seed S` (noise), `--batch B`, `--backend f32|candle|
//! emulated-cipherdm|emulated-baseline|secure-cipherdm|secure-baseline`
//! (f32 is the reference; candle runs the same builder with fused kernels;
//! the emulated ones reproduce the secure back end's approximations and
//! fixed-point rounding in the clear; the secure ones sample on shares with
//! three in-process parties, a batch at a time, on the same noise),
//! `--classifier DIR`, `--grid PATH`, `--data-dir DIR`, `--models DIR`.

use std::path::{Path, PathBuf};
use std::time::Instant;

use candle_core::{Device, Tensor};
use party_server::fxp::Variant;
use party_server::model::{
    Backend, CpuBackend, CpuTensor, SplitMix64, UNet, UNetConfig, one_hot, weights,
};
use party_server::nn::in_process::{self, Links};
use party_server::nn::{EmulatedBackend, SecureConfig};
use party_server::sampler::{SamplerKind, Schedule, sample};
use rayon::prelude::*;
use shared::FixedPoint;
use train::args::Args;
use train::candle_backend::CandleBackend;
use train::classifier::{Classifier, FEATURE_DIM};
use train::{data, fid, image};

const MODELS_DIR: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../models");
const DOCS_IMAGES: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../../docs/images");

fn main() {
    if let Err(e) = run() {
        eprintln!("error: {e}");
        std::process::exit(1);
    }
}

fn model_dir(models: &Path, m: &str) -> PathBuf {
    let p = PathBuf::from(m);
    if p.join("config.json").exists() {
        p
    } else {
        models.join(m)
    }
}

/// Generate samples `[n][784]` for the requested class indices.
#[allow(clippy::too_many_arguments)]
fn generate(
    backend: &str,
    cfg: &UNetConfig,
    weights: &std::collections::HashMap<String, CpuTensor>,
    kind: SamplerKind,
    classes: &[usize],
    seed: u64,
    batch: usize,
) -> Result<Vec<Vec<f32>>, String> {
    let sched = Schedule::default_linear();
    let npix = cfg.in_channels * cfg.image_size * cfg.image_size;
    let chunks: Vec<(usize, &[usize])> = classes
        .chunks(batch)
        .enumerate()
        .map(|(i, c)| (i * batch, c))
        .collect();
    let secure = backend.starts_with("secure-");
    let one_chunk = |&(start, cls): &(usize, &[usize])| -> Result<Vec<Vec<f32>>, String> {
        let n = cls.len();
        // Noise: one independent stream per sample, so results do not depend on batching.
        let mut x = Vec::with_capacity(n * npix);
        let mut streams: Vec<SplitMix64> = (0..n)
            .map(|i| {
                SplitMix64(
                    seed.wrapping_mul(0x9E37_79B9)
                        .wrapping_add((start + i) as u64),
                )
            })
            .collect();
        for s in streams.iter_mut() {
            s.next_u64();
            for _ in 0..npix {
                x.push(s.normal() as f32);
            }
        }
        let shape = [n, cfg.in_channels, cfg.image_size, cfg.image_size];
        let oh = cfg.num_classes.map(|k| one_hot(cls, k));
        let mut fresh_noise = |k: usize| -> Vec<f32> {
            let _ = k;
            let mut z = Vec::with_capacity(n * npix);
            for s in streams.iter_mut() {
                for _ in 0..npix {
                    z.push(s.normal() as f32);
                }
            }
            z
        };
        let mut noise = |k: usize| fresh_noise(k);
        let inputs = (&x[..], &shape[..], oh.as_deref(), &sched, kind);
        let out: Vec<f32> = match backend {
            "f32" => {
                let be = CpuBackend::with_weights(weights.clone());
                sample_on(be, cfg, inputs, &mut noise)?
            }
            "candle" => {
                let w = weights
                    .iter()
                    .map(|(k, v)| {
                        Tensor::from_vec(v.data.clone(), v.shape.as_slice(), &Device::Cpu)
                            .map(|t| (k.clone(), t))
                    })
                    .collect::<Result<_, _>>()
                    .map_err(|e| e.to_string())?;
                sample_on(CandleBackend::fixed(w), cfg, inputs, &mut noise)?
            }
            "emulated-cipherdm" | "emulated-baseline" => {
                let variant = if backend == "emulated-cipherdm" {
                    Variant::CipherDm
                } else {
                    Variant::Baseline
                };
                let be = EmulatedBackend::new(
                    CpuBackend::with_weights(weights.clone()),
                    FixedPoint::default(),
                    SecureConfig::new(variant),
                );
                sample_on(be, cfg, inputs, &mut noise)?
            }
            "secure-cipherdm" | "secure-baseline" => {
                let variant = if backend == "secure-cipherdm" {
                    Variant::CipherDm
                } else {
                    Variant::Baseline
                };
                // The same noise tensors, in the order the f32 path draws them.
                let noise: Vec<Vec<f32>> = (0..kind.noise_tensors_needed(&sched))
                    .map(&mut noise)
                    .collect();
                let request = in_process::Request {
                    shape,
                    x_t: &x,
                    onehot: oh.as_deref(),
                    noise: &noise,
                };
                let run = in_process::sample(
                    cfg,
                    weights,
                    &request,
                    &sched,
                    kind,
                    variant,
                    in_process::Setup {
                        fx: FixedPoint::default(),
                        links: Links::Memory,
                        seed: None,
                    },
                )
                .map_err(|e| e.to_string())?;
                run.sample
            }
            other => {
                return Err(format!(
                    "unknown backend {other:?} (f32 | candle | emulated-cipherdm | emulated-baseline | secure-cipherdm | secure-baseline)"
                ));
            }
        };
        Ok(out.chunks(npix).map(|c| c.to_vec()).collect())
    };
    // A secure batch already keeps every core busy (three parties and
    // their helpers): batches run one after another.
    let results: Vec<Result<Vec<Vec<f32>>, String>> = if secure {
        chunks.iter().map(one_chunk).collect()
    } else {
        chunks.par_iter().map(one_chunk).collect()
    };
    let mut all = Vec::new();
    for r in results {
        all.extend(r?);
    }
    Ok(all)
}

/// Classifier features `[n, 128]` and predicted labels for images in [−1, 1].
/// Public inputs of one sampling batch: x_T, its shape, the class one-hot,
/// the schedule and the sampler.
type SampleInputs<'a> = (
    &'a [f32],
    &'a [usize],
    Option<&'a [f32]>,
    &'a Schedule,
    SamplerKind,
);

/// Samples a batch on any back end holding the model's weights.
fn sample_on<B: Backend>(
    mut be: B,
    cfg: &UNetConfig,
    (x, shape, onehot, sched, kind): SampleInputs<'_>,
    fresh_noise: &mut dyn FnMut(usize) -> Vec<f32>,
) -> Result<Vec<f32>, String> {
    let net = UNet::new(cfg, &mut be).map_err(|e| e.to_string())?;
    let xt = be.from_public(x, shape).map_err(|e| e.to_string())?;
    let n = shape[0];
    let c = match onehot {
        Some(v) => Some(
            be.from_public(v, &[n, v.len() / n])
                .map_err(|e| e.to_string())?,
        ),
        None => None,
    };
    let mut noise = |be: &mut B, k: usize| be.from_public(&fresh_noise(k), shape);
    let y = sample(
        &mut be,
        &net,
        sched,
        kind,
        &xt,
        c.as_ref(),
        &mut noise,
        &mut |_, _| {},
    )
    .map_err(|e| e.to_string())?
    .x0;
    be.read(&y).map_err(|e| e.to_string())
}

fn classify(
    clf_w: &std::collections::HashMap<String, CpuTensor>,
    images: &[f32],
) -> Result<(Vec<f32>, Vec<usize>), String> {
    let n = images.len() / 784;
    type Part = Result<(Vec<f32>, Vec<usize>), String>;
    let parts: Vec<Part> = (0..n)
        .collect::<Vec<_>>()
        .par_chunks(500)
        .map(|idx| {
            let mut be = CpuBackend::with_weights(clf_w.clone());
            let clf = Classifier::new(&mut be).map_err(|e| e.to_string())?;
            let (a, b) = (idx[0], idx[idx.len() - 1] + 1);
            let x = be
                .from_public(&images[a * 784..b * 784], &[b - a, 1, 28, 28])
                .map_err(|e| e.to_string())?;
            let f = clf.features(&mut be, &x).map_err(|e| e.to_string())?;
            let l = clf.logits(&mut be, &f).map_err(|e| e.to_string())?;
            let preds = l
                .data
                .chunks(10)
                .map(|r| (0..10).max_by(|&p, &q| r[p].total_cmp(&r[q])).unwrap())
                .collect();
            Ok((f.data, preds))
        })
        .collect();
    let mut feats = Vec::with_capacity(n * FEATURE_DIM);
    let mut preds = Vec::with_capacity(n);
    for p in parts {
        let (f, l) = p?;
        feats.extend(f);
        preds.extend(l);
    }
    Ok((feats, preds))
}

fn run() -> Result<(), String> {
    let a = Args::parse(std::env::args().skip(1))?;
    let models = PathBuf::from(a.get("models").unwrap_or(MODELS_DIR));
    let name = a.req("model")?;
    let dir = model_dir(&models, &name);
    let model_name = dir
        .file_name()
        .map(|s| s.to_string_lossy().to_string())
        .unwrap_or(name.clone());
    let sampler = a.get("sampler").unwrap_or("ddim").to_string();
    let steps: usize = a.num("steps", 50)?;
    let kind = SamplerKind::parse(&sampler, steps).ok_or(format!("unknown sampler {sampler}"))?;
    let n: usize = a.num("n", 100)?;
    let seed: u64 = a.num("seed", 0)?;
    let batch: usize = a.num("batch", 50)?;
    let backend = a.get("backend").unwrap_or("f32").to_string();
    let json = a.flag("json");

    let cfg = UNetConfig::from_file(dir.join("config.json")).map_err(|e| e.to_string())?;
    let w = weights::load_safetensors(dir.join("model.safetensors")).map_err(|e| e.to_string())?;
    let dataset = cfg.dataset.clone().unwrap_or_else(|| "mnist".into());
    let clf_dir = a
        .get("classifier")
        .map(PathBuf::from)
        .unwrap_or_else(|| models.join(format!("classifier-{dataset}")));
    let clf_w = weights::load_safetensors(clf_dir.join("model.safetensors")).map_err(|e| {
        format!("{e} (train it with: cargo run --release -p train --bin train-classifier -- --dataset {dataset} --out {})", clf_dir.display())
    })?;

    let ncls = cfg.num_classes.unwrap_or(1);
    let classes: Vec<usize> = (0..n).map(|i| i % ncls).collect();
    let t0 = Instant::now();
    let samples = generate(&backend, &cfg, &w, kind, &classes, seed, batch)?;
    let seconds = t0.elapsed().as_secs_f64();

    // Class accuracy and features of the samples.
    let flat: Vec<f32> = samples.iter().flatten().cloned().collect();
    let (feats, preds) = classify(&clf_w, &flat)?;
    let class_acc = if cfg.num_classes.is_some() {
        let ok = preds
            .iter()
            .zip(&classes)
            .filter(|(p, c)| **p == cfg.class_label(**c))
            .count();
        Some(ok as f64 / n as f64)
    } else {
        None
    };
    // Reference: the test set, restricted to the model's classes.
    let test = data::load(&data::dataset_dir(a.get("data-dir"), &dataset), false)?;
    let test = match &cfg.class_labels {
        Some(l) => test.filter_labels(l),
        None => test,
    };
    let (tf, _) = classify(&clf_w, &test.images)?;
    let fid = if n >= 2 {
        let (m1, s1) = fid::stats(&feats, FEATURE_DIM);
        let (m2, s2) = fid::stats(&tf, FEATURE_DIM);
        Some(fid::frechet_distance(&m1, &s1, &m2, &s2, FEATURE_DIM))
    } else {
        None
    };

    let grid = a.get("grid").map(PathBuf::from).unwrap_or_else(|| {
        PathBuf::from(DOCS_IMAGES).join(format!(
            "{model_name}-{sampler}{}.png",
            match kind {
                SamplerKind::Ddim { steps } => steps.to_string(),
                SamplerKind::Ddpm => String::new(),
            }
        ))
    });
    let shown: Vec<Vec<f32>> = samples.iter().take(100).cloned().collect();
    image::write_grid(&grid, &shown, cfg.image_size, 10)?;
    let grid = std::fs::canonicalize(&grid).unwrap_or(grid);

    let out = serde_json::json!({
        "model": model_name,
        "sampler": sampler,
        "steps": match kind { SamplerKind::Ddim { steps } => steps, SamplerKind::Ddpm => 1000 },
        "n": n,
        "class_acc": class_acc,
        "fid": fid,
        "seconds": seconds,
        "backend": backend,
        "seed": seed,
        "test_reference_images": test.len(),
        "grid": grid.display().to_string(),
    });
    if json {
        println!("{out}");
    } else {
        println!("{}", serde_json::to_string_pretty(&out).unwrap());
    }
    Ok(())
}
