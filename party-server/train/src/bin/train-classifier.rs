//! Train the evaluation classifier (small CNN, see `train::classifier`) on
//! MNIST or Fashion-MNIST and write `model.safetensors` + `info.json`.
//!
//! `cargo run --release -p train --bin train-classifier -- --dataset mnist
//!  --out party-server/models/classifier-mnist [--iters 1500] [--seed 1] [--data-dir DIR]`

use std::collections::HashMap;
use std::time::Instant;

use candle_core::{Device, Tensor};
use party_server::model::{Backend, SplitMix64};
use train::adam::Adam;
use train::args::Args;
use train::candle_backend::CandleBackend;
use train::classifier::Classifier;
use train::data;

fn main() {
    if let Err(e) = run() {
        eprintln!("error: {e}");
        std::process::exit(1);
    }
}

fn run() -> Result<(), String> {
    let a = Args::parse(std::env::args().skip(1))?;
    let dataset = a.get("dataset").unwrap_or("mnist").to_string();
    let out = std::path::PathBuf::from(a.req("out")?);
    let iters: u64 = a.num("iters", 1500)?;
    let batch: usize = a.num("batch", 128)?;
    let lr: f64 = a.num("lr", 1e-3)?;
    let seed: u64 = a.num("seed", 1)?;
    let dir = data::dataset_dir(a.get("data-dir"), &dataset);
    let tr = data::load(&dir, true)?;
    let te = data::load(&dir, false)?;
    let mut be = CandleBackend::trainable(seed, HashMap::new()).map_err(|e| e.to_string())?;
    let net = Classifier::new(&mut be).map_err(|e| e.to_string())?;
    let vars = be.vars();
    let mut opt = Adam::new(vars.clone(), lr, 0.0).map_err(|e| e.to_string())?;
    let mut rng = SplitMix64(seed ^ 0xC1A5);
    let t0 = Instant::now();
    let mut avg = 0.0;
    for it in 1..=iters {
        let mut x = Vec::with_capacity(batch * 784);
        let mut y = Vec::with_capacity(batch);
        for _ in 0..batch {
            let i = (rng.next_u64() % tr.len() as u64) as usize;
            x.extend_from_slice(tr.image(i));
            y.push(tr.labels[i] as u32);
        }
        let step = |opt: &mut Adam, be: &mut CandleBackend| -> Result<f64, String> {
            let xt = Tensor::from_vec(x.clone(), (batch, 1, 28, 28), &Device::Cpu)
                .map_err(|e| e.to_string())?;
            let yt = Tensor::from_vec(y.clone(), batch, &Device::Cpu).map_err(|e| e.to_string())?;
            let f = net.features(be, &xt).map_err(|e| e.to_string())?;
            let l = net.logits(be, &f).map_err(|e| e.to_string())?;
            let loss = candle_nn::loss::cross_entropy(&l, &yt).map_err(|e| e.to_string())?;
            opt.backward_step(&loss).map_err(|e| e.to_string())?;
            loss.to_scalar::<f32>()
                .map(|v| v as f64)
                .map_err(|e| e.to_string())
        };
        let loss = step(&mut opt, &mut be)?;
        avg = if it == 1 {
            loss
        } else {
            0.98 * avg + 0.02 * loss
        };
        if it % 100 == 0 {
            eprintln!(
                "iter {it}/{iters} loss {avg:.4} ({:.1} it/s)",
                it as f64 / t0.elapsed().as_secs_f64()
            );
        }
    }
    // Test accuracy.
    let mut correct = 0usize;
    for start in (0..te.len()).step_by(1000) {
        let n = 1000.min(te.len() - start);
        let x = te.images[start * 784..(start + n) * 784].to_vec();
        let xt = Tensor::from_vec(x, (n, 1, 28, 28), &Device::Cpu).map_err(|e| e.to_string())?;
        let f = net.features(&mut be, &xt).map_err(|e| e.to_string())?;
        let l = net.logits(&mut be, &f).map_err(|e| e.to_string())?;
        let lv = be.read(&l).map_err(|e| e.to_string())?;
        for i in 0..n {
            let r = &lv[i * 10..(i + 1) * 10];
            let am = (0..10).max_by(|&p, &q| r[p].total_cmp(&r[q])).unwrap();
            correct += (am == te.labels[start + i] as usize) as usize;
        }
    }
    let acc = correct as f64 / te.len() as f64;
    eprintln!("test accuracy {acc:.4} ({} s)", t0.elapsed().as_secs());
    std::fs::create_dir_all(&out).map_err(|e| e.to_string())?;
    let w: HashMap<String, Tensor> = vars
        .iter()
        .map(|(n, v)| (n.clone(), v.as_tensor().detach()))
        .collect();
    candle_core::safetensors::save(&w, out.join("model.safetensors")).map_err(|e| e.to_string())?;
    let info = serde_json::json!({
        "dataset": dataset, "iterations": iters, "batch": batch, "lr": lr, "seed": seed,
        "test_accuracy": acc, "final_loss": avg, "seconds": t0.elapsed().as_secs_f64(),
        "architecture": "conv3x3 s2 1->8, relu, conv3x3 s2 8->16, relu, dense 784->128, relu (features), dense 128->10",
    });
    std::fs::write(
        out.join("info.json"),
        serde_json::to_string_pretty(&info).unwrap() + "\n",
    )
    .map_err(|e| e.to_string())?;
    println!("{info}");
    Ok(())
}
