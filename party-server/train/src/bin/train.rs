//! Train a diffusion U-Net (ε or v prediction per its config, MSE, uniform t) on MNIST / Fashion-MNIST.
//!
//! ```text
//! cargo run --release -p train --bin train -- \
//!     --config party-server/models/cipherdm-tiny-silu/config.json \
//!     --run runs/cipherdm-tiny-silu --out party-server/models/cipherdm-tiny-silu \
//!     --iters 20000 --batch 128 --lr 2e-4 --seed 1
//! ```
//! Resumable: re-running the same command continues from `<run>/ckpt.safetensors`
//! (parameters, EMA, Adam moments, PRNG state, iteration) bit for bit.

#[global_allocator]
static ALLOC: mimalloc::MiMalloc = mimalloc::MiMalloc;

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::time::Instant;

use candle_core::{DType, Device, Tensor};
use party_server::model::{Prediction, SplitMix64, UNet, UNetConfig, one_hot};
use party_server::sampler::Schedule;
use train::adam::Adam;
use train::args::Args;
use train::candle_backend::CandleBackend;
use train::data;

#[derive(serde::Serialize, serde::Deserialize, Default, Clone)]
struct State {
    iter: u64,
    rng: u64,
    loss_avg: f64,
    wall_seconds: f64,
}

fn main() {
    if let Err(e) = run() {
        eprintln!("error: {e}");
        std::process::exit(1);
    }
}

fn run() -> Result<(), String> {
    let a = Args::parse(std::env::args().skip(1))?;
    if a.flag("help") {
        println!(
            "train --config CFG.json --run RUN_DIR [--out MODEL_DIR] [--iters 20000] [--batch 128] \
             [--lr 2e-4] [--weight-decay 0] [--seed 1] [--ema 0.999] [--ema-start 2000] \
             [--ckpt-every 250] [--dataset NAME] [--data-dir DIR] [--export-only ema|raw]"
        );
        return Ok(());
    }
    let cfg_path = a.req("config")?;
    let cfg = UNetConfig::from_file(&cfg_path).map_err(|e| e.to_string())?;
    let run_dir = PathBuf::from(a.req("run")?);
    let out_dir = a.get("out").map(PathBuf::from);
    let iters: u64 = a.num("iters", 20000)?;
    let batch: usize = a.num("batch", 128)?;
    let lr: f64 = a.num("lr", 2e-4)?;
    let wd: f64 = a.num("weight-decay", 0.0)?;
    let seed: u64 = a.num("seed", 1)?;
    let ema_decay: f64 = a.num("ema", 0.999)?;
    let ema_start: u64 = a.num("ema-start", 2000)?;
    let ckpt_every: u64 = a.num("ckpt-every", 250)?;
    let dataset_name = a
        .get("dataset")
        .map(str::to_string)
        .or_else(|| cfg.dataset.clone())
        .unwrap_or_else(|| "mnist".into());
    std::fs::create_dir_all(&run_dir).map_err(|e| e.to_string())?;

    // Data.
    let dir = data::dataset_dir(a.get("data-dir"), &dataset_name);
    let full = data::load(&dir, true)?;
    let ds = match &cfg.class_labels {
        Some(l) => full.filter_labels(l),
        None => full,
    };
    let npix = ds.rows * ds.cols;
    eprintln!(
        "data: {} ({} images of {}x{}), classes {:?}",
        dir.display(),
        ds.len(),
        ds.rows,
        ds.cols,
        cfg.num_classes
    );

    // Checkpoint.
    let ckpt_path = run_dir.join("ckpt.safetensors");
    let state_path = run_dir.join("state.json");
    let (ckpt, mut st): (HashMap<String, Tensor>, State) = if ckpt_path.exists() {
        let t =
            candle_core::safetensors::load(&ckpt_path, &Device::Cpu).map_err(|e| e.to_string())?;
        let s: State =
            serde_json::from_str(&std::fs::read_to_string(&state_path).map_err(|e| e.to_string())?)
                .map_err(|e| e.to_string())?;
        eprintln!(
            "resuming from {} at iteration {}",
            ckpt_path.display(),
            s.iter
        );
        (t, s)
    } else {
        (
            HashMap::new(),
            State {
                rng: seed.wrapping_mul(0x2545_F491_4F6C_DD1D) ^ 0xDA7A,
                ..State::default()
            },
        )
    };
    let params: HashMap<String, Tensor> = ckpt
        .iter()
        .filter_map(|(k, v)| k.strip_prefix("param.").map(|n| (n.to_string(), v.clone())))
        .collect();
    let mut be = CandleBackend::trainable(seed, params).map_err(|e| e.to_string())?;
    let net = UNet::new(&cfg, &mut be).map_err(|e| e.to_string())?;
    let vars = be.vars();
    let nparams: usize = vars.iter().map(|(_, v)| v.elem_count()).sum();
    eprintln!(
        "model: {} parameters, activation {}",
        nparams,
        cfg.activation.name()
    );
    let mut opt = Adam::new(vars.clone(), lr, wd).map_err(|e| e.to_string())?;
    opt.load_state(&ckpt, st.iter);
    let mut ema: HashMap<String, Tensor> = vars
        .iter()
        .map(|(n, v)| {
            let t = ckpt
                .get(&format!("ema.{n}"))
                .cloned()
                .unwrap_or_else(|| v.as_tensor().copy().expect("copy"));
            (n.clone(), t)
        })
        .collect();

    // `--export-only ema|raw`: write the checkpoint's EMA or raw weights to --out and stop.
    if let Some(which) = a.get("export-only") {
        let out = out_dir.as_ref().ok_or("--export-only needs --out")?;
        let w: HashMap<String, Tensor> = match which {
            "ema" => ema.clone(),
            "raw" => vars
                .iter()
                .map(|(n, v)| (n.clone(), v.as_tensor().detach()))
                .collect(),
            other => return Err(format!("--export-only {other}: expected ema or raw")),
        };
        let recipe = serde_json::json!({ "exported": which });
        export(out, &cfg, &w, &st, nparams, &cfg_path, recipe)?;
        eprintln!(
            "exported {which} weights of iteration {} to {}",
            st.iter,
            out.display()
        );
        return Ok(());
    }

    let sched = Schedule::default_linear();
    let tmax = sched.num_steps();
    let mut rng = SplitMix64(st.rng);
    let started = Instant::now();
    let wall0 = st.wall_seconds;
    let mut window_start = (Instant::now(), st.iter);
    let ncls = cfg.num_classes;

    while st.iter < iters {
        // Batch: random images, timesteps, noise (all from the seeded PRNG).
        let mut xt = vec![0f32; batch * npix];
        let mut target = vec![0f32; batch * npix];
        let mut ts = vec![0f32; batch];
        let mut labels = vec![0usize; batch];
        for b in 0..batch {
            let i = (rng.next_u64() % ds.len() as u64) as usize;
            let t = (rng.next_u64() % tmax as u64) as usize;
            let (ca, cb) = sched.q_coeffs(t);
            let img = ds.image(i);
            for p in 0..npix {
                let e = rng.normal() as f32;
                // The regression target: ε, or v = sqrt(ᾱ)·ε − sqrt(1−ᾱ)·x0.
                target[b * npix + p] = match cfg.prediction_type {
                    Prediction::Epsilon => e,
                    Prediction::VPrediction => ca as f32 * e - cb as f32 * img[p],
                };
                xt[b * npix + p] = ca as f32 * img[p] + cb as f32 * e;
            }
            ts[b] = t as f32;
            labels[b] = ds.labels[i] as usize;
        }
        let shape = [batch, 1, ds.rows, ds.cols];
        let mut step = || -> candle_core::Result<f64> {
            let x = Tensor::from_vec(xt.clone(), &shape, &Device::Cpu)?;
            let e = Tensor::from_vec(target.clone(), &shape, &Device::Cpu)?;
            let c = match ncls {
                Some(k) => Some(Tensor::from_vec(
                    one_hot(&labels, k),
                    (batch, k),
                    &Device::Cpu,
                )?),
                None => None,
            };
            let mut be2 = CandleBackend::fixed(HashMap::new());
            let pred = net
                .forward(&mut be2, &x, &ts, c.as_ref())
                .map_err(|e| candle_core::Error::Msg(e.to_string()))?;
            let loss = (pred - e)?.sqr()?.mean_all()?;
            opt.backward_step(&loss)?;
            loss.to_dtype(DType::F64)?.to_scalar::<f64>()
        };
        let loss = step().map_err(|e| e.to_string())?;
        st.iter += 1;
        st.loss_avg = if st.iter == 1 {
            loss
        } else {
            0.99 * st.loss_avg + 0.01 * loss
        };
        // EMA of the weights.
        for (n, v) in &vars {
            let w = v.as_tensor().detach();
            let new = if st.iter <= ema_start {
                w.copy()
            } else {
                (ema[n].clone() * ema_decay).and_then(|e| e + (&w * (1.0 - ema_decay))?)
            }
            .map_err(|e| e.to_string())?;
            ema.insert(n.clone(), new);
        }
        if st.iter % 10 == 0 || st.iter == iters {
            let (t0, i0) = window_start;
            let its = (st.iter - i0) as f64 / t0.elapsed().as_secs_f64().max(1e-9);
            let eta = (iters - st.iter) as f64 / its.max(1e-9);
            eprintln!(
                "iter {}/{} loss {:.5} (avg {:.5}) {:.2} it/s ETA {:.0} s",
                st.iter, iters, loss, st.loss_avg, its, eta
            );
            window_start = (Instant::now(), st.iter);
        }
        if st.iter % ckpt_every == 0 || st.iter == iters {
            st.rng = rng.0;
            st.wall_seconds = wall0 + started.elapsed().as_secs_f64();
            save(&run_dir, &vars, &ema, &opt, &st)?;
            if let Some(out) = &out_dir {
                let recipe = serde_json::json!({
                    "exported": "ema",
                    "lr": lr, "batch": batch, "seed": seed, "weight_decay": wd,
                    "ema": ema_decay, "ema_start": ema_start, "dataset": dataset_name,
                    "threads": std::env::var("RAYON_NUM_THREADS").ok(),
                });
                export(out, &cfg, &ema, &st, nparams, &cfg_path, recipe)?;
            }
        }
    }
    eprintln!(
        "done: {} iterations, final loss avg {:.5}, wall {:.0} s",
        st.iter,
        st.loss_avg,
        wall0 + started.elapsed().as_secs_f64()
    );
    Ok(())
}

fn save(
    run: &Path,
    vars: &[(String, candle_core::Var)],
    ema: &HashMap<String, Tensor>,
    opt: &Adam,
    st: &State,
) -> Result<(), String> {
    let mut all: HashMap<String, Tensor> = opt.state();
    for (n, v) in vars {
        all.insert(format!("param.{n}"), v.as_tensor().clone());
        all.insert(format!("ema.{n}"), ema[n].clone());
    }
    let tmp = run.join("ckpt.safetensors.tmp");
    candle_core::safetensors::save(&all, &tmp).map_err(|e| e.to_string())?;
    std::fs::write(
        run.join("state.json.tmp"),
        serde_json::to_string_pretty(st).map_err(|e| e.to_string())?,
    )
    .map_err(|e| e.to_string())?;
    std::fs::rename(&tmp, run.join("ckpt.safetensors")).map_err(|e| e.to_string())?;
    std::fs::rename(run.join("state.json.tmp"), run.join("state.json"))
        .map_err(|e| e.to_string())?;
    Ok(())
}

fn export(
    out: &Path,
    cfg: &UNetConfig,
    ema: &HashMap<String, Tensor>,
    st: &State,
    nparams: usize,
    cfg_path: &str,
    recipe: serde_json::Value,
) -> Result<(), String> {
    std::fs::create_dir_all(out).map_err(|e| e.to_string())?;
    let tmp = out.join("model.safetensors.tmp");
    candle_core::safetensors::save(ema, &tmp).map_err(|e| e.to_string())?;
    std::fs::rename(&tmp, out.join("model.safetensors")).map_err(|e| e.to_string())?;
    if Path::new(cfg_path) != out.join("config.json") {
        std::fs::write(out.join("config.json"), cfg.to_json() + "\n").map_err(|e| e.to_string())?;
    }
    let info = serde_json::json!({
        "iterations": st.iter,
        "loss_avg": st.loss_avg,
        "wall_seconds": st.wall_seconds,
        "parameters": nparams,
        "last_invocation": recipe,
    });
    std::fs::write(
        out.join("train_state.json"),
        serde_json::to_string_pretty(&info).unwrap() + "\n",
    )
    .map_err(|e| e.to_string())?;
    Ok(())
}
