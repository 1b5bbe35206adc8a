//! Secure sampling benchmark: three in-process parties run a whole DDIM or
//! DDPM loop of a trained U-Net on secret shares (weights dealt by the model
//! owner, class and noise dealt by the client), and the result is compared
//! with the f32 sampler on the same noise and class.
//!
//! `cargo run --release --bin bench-sample -- --model cipherdm-tiny-silu --sampler ddim --steps 50 --variant cipherdm --json`

/// See [`party_server::alloc`].
#[global_allocator]
static ALLOC: party_server::alloc::MiMalloc = party_server::alloc::MiMalloc;

use clap::{Parser, ValueEnum};
use party_server::fxp::Variant;
use party_server::model::weights::load_safetensors;
use party_server::model::{Backend, CpuBackend, CpuTensor, SplitMix64, UNet, UNetConfig, one_hot};
use party_server::mpc::expected_trunc_failures;
use party_server::net::shaped::Lan;
use party_server::nn::in_process::{self, Links};
use party_server::nn::{EmulatedBackend, SecureConfig};
use party_server::sampler::{self, SamplerKind, Schedule};
use shared::FixedPoint;
use std::collections::HashMap;
use std::path::PathBuf;
use std::time::{Duration, Instant};

#[derive(Clone, Copy, PartialEq, Eq, ValueEnum)]
enum VariantArg {
    Baseline,
    Cipherdm,
    /// Both, side by side, with the ratio.
    Both,
}

#[derive(Clone, Copy, PartialEq, Eq, ValueEnum)]
enum SamplerArg {
    Ddim,
    Ddpm,
}

#[derive(Parser)]
#[command(about = "Time, bytes, rounds and accuracy of secure sampling")]
struct Args {
    /// Model name (a directory under --models) or a path to a model directory.
    #[arg(long, default_value = "cipherdm-tiny-silu")]
    model: String,
    #[arg(long, default_value = concat!(env!("CARGO_MANIFEST_DIR"), "/models"))]
    models: PathBuf,
    #[arg(long, value_enum, default_value = "ddim")]
    sampler: SamplerArg,
    /// DDIM steps (DDPM: see --ddpm-steps).
    #[arg(long, default_value_t = 50)]
    steps: usize,
    /// DDPM on a schedule of this many steps (linear betas 1e-4..0.02 over
    /// them) instead of 1000: every DDPM step runs the same protocols
    /// whatever the schedule, so K steps measure the per-step cost of
    /// DDPM-1000 in K/1000 of its time.
    #[arg(long, default_value_t = 1000)]
    ddpm_steps: usize,
    /// Deterministic random weights (seeded by --seed) instead of the model's
    /// `model.safetensors`: time, bytes and rounds do not depend on the
    /// weights' values, so an untrained model's costs can be measured.
    #[arg(long)]
    random_weights: bool,
    /// Emulated LAN on the in-memory links (`net::shaped`: each party's egress
    /// one queue at the rate, every message delayed): the paper's
    /// 1 Gbit/s with 0.1 ms RTT unless --lan-gbit / --lan-delay-us say otherwise.
    #[arg(long, conflicts_with = "audit_truncation")]
    lan: bool,
    #[arg(long, default_value_t = 1.0, requires = "lan")]
    lan_gbit: f64,
    /// One-way delay of each link (half the RTT).
    #[arg(long, default_value_t = 50, requires = "lan")]
    lan_delay_us: u64,
    #[arg(long, value_enum, default_value = "cipherdm")]
    variant: VariantArg,
    /// Images per request (they share every layer's rounds).
    #[arg(long, default_value_t = 1)]
    batch: usize,
    /// Class index (into the model's classes); default: image i gets class i mod classes.
    #[arg(long)]
    class: Option<usize>,
    #[arg(long, default_value_t = 1)]
    seed: u64,
    /// One JSON object per variant.
    #[arg(long)]
    json: bool,
    /// Fixed-point fraction bits of the secure run.
    #[arg(long, default_value_t = shared::fixed::DEFAULT_FRAC_BITS)]
    frac_bits: u32,
    /// Print time, bytes and rounds per layer kind.
    #[arg(long)]
    profile: bool,
    /// Count wrapped (failed) probabilistic truncations per layer kind: P1
    /// also sends P0 its addends (diagnostics; inflates the byte counts).
    #[arg(long)]
    audit_truncation: bool,
}

struct Inputs {
    x_t: Vec<f32>,
    onehot: Option<Vec<f32>>,
    noise: Vec<Vec<f32>>,
}

fn fail(msg: impl std::fmt::Display) -> ! {
    eprintln!("error: {msg}");
    std::process::exit(1)
}

fn schedule(args: &Args) -> Schedule {
    match args.sampler {
        SamplerArg::Ddpm => Schedule::linear(args.ddpm_steps, 1e-4, 0.02),
        SamplerArg::Ddim => Schedule::default_linear(),
    }
}

fn lan(args: &Args) -> Option<Lan> {
    args.lan.then(|| Lan {
        bits_per_second: args.lan_gbit * 1e9,
        one_way_delay: Duration::from_micros(args.lan_delay_us),
    })
}

fn kind(args: &Args) -> SamplerKind {
    match args.sampler {
        SamplerArg::Ddim => SamplerKind::Ddim { steps: args.steps },
        SamplerArg::Ddpm => SamplerKind::Ddpm,
    }
}

/// The sampler on a plaintext back end (the f32 reference, or the
/// fixed-point emulation); also returns its first ε prediction.
fn plaintext<B: Backend<Tensor = CpuTensor>>(
    mut be: B,
    cfg: &UNetConfig,
    args: &Args,
    inp: &Inputs,
) -> (Vec<f32>, Vec<f32>) {
    let net = UNet::new(cfg, &mut be).unwrap_or_else(|e| fail(e));
    let n = args.batch;
    let shape = [n, cfg.in_channels, cfg.image_size, cfg.image_size];
    let x = be.from_public(&inp.x_t, &shape).unwrap();
    let c = inp
        .onehot
        .as_ref()
        .map(|o| be.from_public(o, &[n, o.len() / n]).unwrap());
    let mut noise = |be: &mut B, k: usize| be.from_public(&inp.noise[k], &shape);
    let sampled = sampler::sample(
        &mut be,
        &net,
        &schedule(args),
        kind(args),
        &x,
        c.as_ref(),
        &mut noise,
        &mut |_, _| {},
    )
    .unwrap_or_else(|e| fail(e));
    (sampled.x0.data, sampled.first_output.data)
}

fn secure(
    cfg: &UNetConfig,
    weights: &HashMap<String, CpuTensor>,
    args: &Args,
    inp: &Inputs,
    variant: Variant,
) -> in_process::Run {
    let fx = FixedPoint::new(args.frac_bits).unwrap_or_else(|e| fail(e));
    let request = in_process::Request {
        shape: [args.batch, cfg.in_channels, cfg.image_size, cfg.image_size],
        x_t: &inp.x_t,
        onehot: inp.onehot.as_deref(),
        noise: &inp.noise,
    };
    let links = match (args.audit_truncation, lan(args)) {
        (true, _) => Links::Audited,
        (false, Some(lan)) => Links::Lan(lan),
        (false, None) => Links::Memory,
    };
    in_process::sample(
        cfg,
        weights,
        &request,
        &schedule(args),
        kind(args),
        variant,
        in_process::Setup {
            fx,
            links,
            seed: None,
        },
    )
    .unwrap_or_else(|e| fail(e))
}

fn psnr(a: &[f32], b: &[f32]) -> f64 {
    let mse = a
        .iter()
        .zip(b)
        .map(|(x, y)| ((x - y) as f64).powi(2))
        .sum::<f64>()
        / a.len() as f64;
    10.0 * (4.0 / mse).log10()
}

fn main() {
    party_server::alloc::keep_freed_memory();
    let args = Args::parse();
    let dir = if args.models.join(&args.model).is_dir() {
        args.models.join(&args.model)
    } else {
        PathBuf::from(&args.model)
    };
    let cfg = UNetConfig::from_file(dir.join("config.json"))
        .unwrap_or_else(|e| fail(format!("{}: {e}", dir.display())));
    let weights = if args.random_weights {
        let mut be = CpuBackend::random(args.seed);
        UNet::new(&cfg, &mut be).unwrap_or_else(|e| fail(e));
        be.created_params().clone()
    } else {
        load_safetensors(dir.join("model.safetensors")).unwrap_or_else(|e| {
            fail(format!(
                "{}: {e} (--random-weights measures costs without trained weights)",
                dir.display()
            ))
        })
    };
    if args.batch == 0
        || (args.sampler == SamplerArg::Ddim && !(1..=1000).contains(&args.steps))
        || !(1..=1000).contains(&args.ddpm_steps)
    {
        fail("batch must be ≥ 1 and DDIM steps and DDPM schedule steps in 1..=1000");
    }
    let n = args.batch;
    let numel = n * cfg.in_channels * cfg.image_size * cfg.image_size;
    let mut rng = SplitMix64(args.seed);
    let mut normal = |len: usize| (0..len).map(|_| rng.normal() as f32).collect::<Vec<f32>>();
    let x_t = normal(numel);
    let noise = match args.sampler {
        SamplerArg::Ddim => Vec::new(),
        SamplerArg::Ddpm => (0..args.ddpm_steps).map(|_| normal(numel)).collect(),
    };
    let onehot = cfg.num_classes.map(|k| {
        let labels: Vec<usize> = (0..n).map(|i| args.class.unwrap_or(i) % k).collect();
        one_hot(&labels, k)
    });
    let inp = Inputs { x_t, onehot, noise };

    let t = Instant::now();
    let (want, want_eps) = plaintext(CpuBackend::with_weights(weights.clone()), &cfg, &args, &inp);
    let f32_seconds = t.elapsed().as_secs_f64();
    let variants: Vec<(Variant, &str)> = match args.variant {
        VariantArg::Baseline => vec![(Variant::Baseline, "baseline")],
        VariantArg::Cipherdm => vec![(Variant::CipherDm, "cipherdm")],
        VariantArg::Both => vec![
            (Variant::Baseline, "baseline"),
            (Variant::CipherDm, "cipherdm"),
        ],
    };
    let sampler_name = match args.sampler {
        SamplerArg::Ddim => "ddim",
        SamplerArg::Ddpm => "ddpm",
    };
    let steps = match args.sampler {
        SamplerArg::Ddim => args.steps,
        SamplerArg::Ddpm => args.ddpm_steps,
    };
    let mut results = Vec::new();
    for (variant, name) in variants {
        let r = secure(&cfg, &weights, &args, &inp, variant);
        let p = psnr(&r.sample, &want);
        let fx = FixedPoint::new(args.frac_bits).unwrap_or_else(|e| fail(e));
        let emu = EmulatedBackend::new(
            CpuBackend::with_weights(weights.clone()),
            fx,
            SecureConfig::new(variant),
        );
        let (emulated, _) = plaintext(emu, &cfg, &args, &inp);
        let (p_emu, p_sec_emu) = (psnr(&emulated, &want), psnr(&r.sample, &emulated));
        let eps_err = r
            .first_output
            .iter()
            .zip(&want_eps)
            .map(|(a, b)| (a - b).abs())
            .fold(0.0f32, f32::max);
        if args.json {
            println!(
                "{}",
                serde_json::json!({
                    "model": args.model, "sampler": sampler_name, "steps": steps, "variant": name,
                    "activation": format!("{:?}", cfg.activation).to_lowercase(), "batch": n,
                    "seconds": r.seconds, "cpu_seconds_per_party": r.cpu, "cpu_seconds_process": r.cpu_process,
                    "bytes_per_party": r.bytes.iter().max(), "bytes_total": r.bytes.iter().sum::<u64>(),
                    "rounds": r.rounds, "psnr_vs_f32": p, "max_abs_err_eps": eps_err, "f32_seconds": f32_seconds,
                    "psnr_emulated_vs_f32": p_emu, "psnr_vs_emulated": p_sec_emu,
                    "trunc_failures": args.audit_truncation.then_some(r.trunc_failures),
                    "expected_trunc_failures": args.audit_truncation.then(|| expected_trunc_failures(r.trunc_risk)),
                    "first_trunc_failure": r.first_trunc_failure.map(|(op, call)| format!("{op} #{call}")),
                    "weights": if args.random_weights { "random" } else { "trained" },
                    "lan": lan(&args).map(|l| serde_json::json!({"gbit": l.bits_per_second / 1e9, "one_way_delay_us": l.one_way_delay.as_micros() as u64})),
                    "profile": args.profile.then(|| r.profile.iter().map(|(op, s)| (op.to_string(), serde_json::json!({
                        "calls": s.calls, "seconds": s.seconds, "cpu_seconds": s.cpu_seconds, "bytes_sent_p0": s.bytes_sent, "rounds": s.rounds}))).collect::<serde_json::Map<_, _>>()),
                })
            );
        } else {
            println!(
                "{} {sampler_name}-{steps} {name} batch {n}: {:.2} s wall (f32 {:.3} s), cpu/party {:.2}/{:.2}/{:.2} s (process {:.2} s), {:.1} MB total ({:.1} MB max/party), {} rounds, PSNR vs f32 {:.1} dB (emulation vs f32 {:.1} dB, vs emulation {:.1} dB), first-step ε max err {:.2e}",
                args.model,
                r.seconds,
                f32_seconds,
                r.cpu[0],
                r.cpu[1],
                r.cpu[2],
                r.cpu_process,
                r.bytes.iter().sum::<u64>() as f64 / 1e6,
                *r.bytes.iter().max().unwrap_or(&0) as f64 / 1e6,
                r.rounds,
                p,
                p_emu,
                p_sec_emu,
                eps_err
            );
        }
        if args.audit_truncation && !args.json {
            println!(
                "truncation audit: {} wrapped, {:.2e} expected{}",
                r.trunc_failures,
                expected_trunc_failures(r.trunc_risk),
                r.first_trunc_failure
                    .map(|(op, call)| format!(" (first in {op} call {call})"))
                    .unwrap_or_default()
            );
        }
        if args.profile && !args.json {
            println!(
                "{:<12} {:>6} {:>9} {:>9} {:>12} {:>8} {:>10} {:>10}",
                "op", "calls", "seconds", "cpu s", "MB (P0)", "rounds", "trunc fail", "expected"
            );
            for (op, s) in &r.profile {
                let (fails, expected) = if args.audit_truncation {
                    (
                        s.trunc_failures.to_string(),
                        format!("{:.2e}", expected_trunc_failures(s.trunc_risk)),
                    )
                } else {
                    ("-".into(), "-".into())
                };
                println!(
                    "{op:<12} {:>6} {:>9.3} {:>9.3} {:>12.2} {:>8} {fails:>10} {expected:>10}",
                    s.calls,
                    s.seconds,
                    s.cpu_seconds,
                    s.bytes_sent as f64 / 1e6,
                    s.rounds,
                );
            }
        }
        results.push((name, r));
    }
    if let [(_, base), (_, cdm)] = &results[..] {
        let ratio = |a: f64, b: f64| a / b;
        let (bb, cb) = (
            base.bytes.iter().sum::<u64>() as f64,
            cdm.bytes.iter().sum::<u64>() as f64,
        );
        if args.json {
            println!(
                "{}",
                serde_json::json!({"ratio": "baseline/cipherdm", "seconds": ratio(base.seconds, cdm.seconds), "bytes_total": ratio(bb, cb), "rounds": ratio(base.rounds as f64, cdm.rounds as f64)})
            );
        } else {
            println!(
                "baseline/cipherdm: time {:.2}x, bytes {:.2}x, rounds {:.2}x",
                ratio(base.seconds, cdm.seconds),
                ratio(bb, cb),
                ratio(base.rounds as f64, cdm.rounds as f64)
            );
        }
    }
}
