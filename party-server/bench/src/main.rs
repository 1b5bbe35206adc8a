//! The benchmark report: runs every measurement of `docs/BENCHMARKS.md` side
//! by side in one run — secure sampling with the baseline and the CipherDM
//! protocols (paper Tables 4/5), the cost of each protocol per U-Net call
//! (Fig. 5), sample quality (Table 6), and scaling with batch and width —
//! and writes the Markdown page and its PNG plots from the measured numbers.
//!
//! `scripts/bench.sh` builds the release binaries and runs it; `--quick` is
//! the smoke run of the test command (tiny step counts, written elsewhere
//! than `docs/`, and labelled as not being measurements to quote).

mod paper;
mod plot;
mod report;
mod run;

use clap::Parser;
use run::{QualitySpec, SampleSpec, Secure, Tools};
use std::path::{Path, PathBuf};
use std::time::Instant;

#[derive(Parser)]
#[command(about = "Runs the benchmarks side by side and writes BENCHMARKS.md with its plots")]
struct Args {
    /// Tiny step counts and sizes: a few minutes, exercises every code path.
    #[arg(long)]
    quick: bool,
    /// Where BENCHMARKS.md goes; plots go to OUT/images/bench-*.png.
    #[arg(long, default_value = "docs")]
    out: PathBuf,
    #[arg(long, default_value = "party-server/models")]
    models: PathBuf,
    /// Directory of bench-sample and eval-quality (default: next to this program).
    #[arg(long)]
    bin_dir: Option<PathBuf>,
    /// Samples per back end in the quality table (default 1000, quick 4).
    #[arg(long)]
    quality_n: Option<usize>,
    /// Secure samples per model in the secure quality table, beside f32
    /// samples of the same noise (default 24, quick 2).
    #[arg(long)]
    secure_n: Option<usize>,
    /// Output of `scripts/lan.sh bench` (real servers in network namespaces),
    /// to compare with the in-process LAN shaper on the same request.
    #[arg(long)]
    lan_sh_json: Option<PathBuf>,
    /// The DDIM step count that `lan.sh` ran.
    #[arg(long, default_value_t = 50)]
    lan_sh_steps: usize,
}

/// Sizes of one report run.
pub struct Plan {
    pub quick: bool,
    pub ddim_steps: usize,
    /// DDPM runs on a schedule of this many steps, scaled to 1000.
    pub ddpm_steps: usize,
    pub quality_steps: usize,
    pub quality_n: usize,
    pub secure_n: usize,
    pub batches: Vec<usize>,
    pub widths: Vec<usize>,
    pub scaling_steps: usize,
}

impl Plan {
    fn new(args: &Args) -> Plan {
        if args.quick {
            Plan {
                quick: true,
                ddim_steps: 1,
                // Two, so that a step with fresh noise (t > 0) runs too.
                ddpm_steps: 2,
                quality_steps: 1,
                quality_n: args.quality_n.unwrap_or(4),
                secure_n: args.secure_n.unwrap_or(2),
                batches: vec![1, 2],
                widths: vec![4, 8],
                scaling_steps: 1,
            }
        } else {
            Plan {
                quick: false,
                ddim_steps: 50,
                ddpm_steps: 100,
                quality_steps: 50,
                quality_n: args.quality_n.unwrap_or(1000),
                secure_n: args.secure_n.unwrap_or(24),
                batches: vec![1, 2, 4, 8],
                widths: vec![4, 8, 16, 32],
                scaling_steps: 10,
            }
        }
    }
}

/// The models of the paper's tables.
pub const TINY: [&str; 3] = [
    "cipherdm-tiny-relu",
    "cipherdm-tiny-silu",
    "cipherdm-tiny-mish",
];
/// Models of the quality table: the tiny ones and the product model.
pub const QUALITY_MODELS: [&str; 4] = [
    "cipherdm-tiny-relu",
    "cipherdm-tiny-silu",
    "cipherdm-tiny-mish",
    "mnist",
];
pub const QUALITY_BACKENDS: [&str; 3] = ["f32", "emulated-baseline", "emulated-cipherdm"];
/// Back ends of the secure quality table: f32 on the same noise as the
/// secure samples, so that the two rows compare at the same sample count.
pub const SECURE_QUALITY_BACKENDS: [&str; 2] = ["f32", "secure-cipherdm"];
/// Images per secure request in the secure quality table (the batch with the
/// least time per image in the scaling table).
pub const SECURE_QUALITY_BATCH: usize = 2;

/// Baseline and CipherDM on the same request, one after the other.
pub struct Pair {
    pub model: String,
    pub ddpm: bool,
    pub lan: bool,
    pub baseline: Secure,
    pub cipherdm: Secure,
}

pub enum QualityCell {
    Measured(run::Quality),
    NotTrained,
    Skipped(String),
}

pub struct QualityRow {
    pub model: String,
    /// Training iterations of the weights measured (from the model's
    /// `train_state.json`), for models whose training spans sessions.
    pub trained_iterations: Option<u64>,
    /// One per back end of the table.
    pub cells: Vec<QualityCell>,
}

/// A quality table: every model on each of `backends`.
pub struct QualityTable {
    pub backends: &'static [&'static str],
    pub rows: Vec<QualityRow>,
}

pub struct LanCheck {
    pub steps: usize,
    pub lan_sh_seconds: f64,
    pub shaped: Secure,
    pub memory: Secure,
}

/// CipherDM runs against the batch size, and against the base channel count.
pub struct Scaling {
    pub by_batch: Vec<Secure>,
    pub by_width: Vec<(usize, Secure)>,
}

/// Everything measured in one run.
pub struct Results {
    pub pairs: Vec<Pair>,
    pub quality: QualityTable,
    /// Secure samples beside f32 samples of the same noise.
    pub secure_quality: QualityTable,
    pub scaling: Scaling,
    pub lan_check: Option<LanCheck>,
    pub seconds: f64,
}

fn main() {
    if let Err(e) = real_main() {
        eprintln!("error: {e}");
        std::process::exit(1);
    }
}

fn real_main() -> Result<(), String> {
    let args = Args::parse();
    let plan = Plan::new(&args);
    let bin_dir = match &args.bin_dir {
        Some(d) => d.clone(),
        None => std::env::current_exe()
            .map_err(|e| e.to_string())?
            .parent()
            .ok_or("no directory of the running program")?
            .to_path_buf(),
    };
    let tools = Tools {
        bin_dir,
        models: args.models.clone(),
    };
    let images = args.out.join("images");
    std::fs::create_dir_all(&images).map_err(|e| format!("{}: {e}", images.display()))?;
    plot::init_font()?;
    let header = report::Header::collect(&plan);
    let t0 = Instant::now();
    let mut results = Results {
        pairs: secure_pairs(&tools, &plan)?,
        quality: quality(
            &tools,
            &plan,
            &images,
            QualityPlan {
                backends: &QUALITY_BACKENDS,
                n: plan.quality_n,
                batch: None,
                grid_prefix: "bench-samples",
            },
        ),
        secure_quality: quality(
            &tools,
            &plan,
            &images,
            QualityPlan {
                backends: &SECURE_QUALITY_BACKENDS,
                n: plan.secure_n,
                batch: Some(SECURE_QUALITY_BATCH),
                grid_prefix: "bench-secure-samples",
            },
        ),
        scaling: scaling(&tools, &plan, &args.out)?,
        lan_check: match &args.lan_sh_json {
            Some(path) => Some(lan_check(&tools, path, args.lan_sh_steps)?),
            None => None,
        },
        seconds: 0.0,
    };
    results.seconds = t0.elapsed().as_secs_f64();
    report::plots(&results, &images)?;
    let md = report::markdown(&header, &plan, &results);
    let path = args.out.join("BENCHMARKS.md");
    std::fs::write(&path, md).map_err(|e| format!("{}: {e}", path.display()))?;
    eprintln!(
        "[bench] wrote {} and {}/bench-*.png in {:.0} s",
        path.display(),
        images.display(),
        results.seconds
    );
    Ok(())
}

/// Tables 4/5 and Fig. 5: every tiny model, DDIM and DDPM, loopback and LAN,
/// baseline and CipherDM side by side.
fn secure_pairs(tools: &Tools, plan: &Plan) -> Result<Vec<Pair>, String> {
    let mut pairs = Vec::new();
    for model in TINY {
        for ddpm in [false, true] {
            for lan in [false, true] {
                let spec = SampleSpec {
                    model: model.into(),
                    ddpm,
                    steps: if ddpm {
                        plan.ddpm_steps
                    } else {
                        plan.ddim_steps
                    },
                    batch: 1,
                    lan: lan.then_some((1.0, 50)),
                    both: true,
                    random_weights: !tools.has_weights(model),
                };
                let [baseline, cipherdm]: [Secure; 2] = tools
                    .bench_sample(&spec)?
                    .try_into()
                    .map_err(|_| format!("{model}: expected the two variants"))?;
                pairs.push(Pair {
                    model: model.into(),
                    ddpm,
                    lan,
                    baseline,
                    cipherdm,
                });
            }
        }
    }
    Ok(pairs)
}

/// The reference data `eval-quality` needs, if it is missing.
fn quality_data_missing() -> Option<String> {
    let base = std::env::var("CIPHERDM_DATA").unwrap_or_else(|_| "data".into());
    let dir = Path::new(&base).join("mnist");
    (!dir.is_dir()).then(|| format!("no MNIST data in {} (scripts/fetch-data.sh)", dir.display()))
}

/// What one quality table measures.
struct QualityPlan {
    backends: &'static [&'static str],
    n: usize,
    batch: Option<usize>,
    /// Sample grids go to `images/PREFIX-MODEL-BACKEND.png`.
    grid_prefix: &'static str,
}

/// Table 6: class accuracy and FID per model and back end.
fn quality(tools: &Tools, plan: &Plan, images: &Path, q: QualityPlan) -> QualityTable {
    let missing = quality_data_missing();
    let rows = QUALITY_MODELS
        .iter()
        .map(|&model| QualityRow {
            model: model.into(),
            trained_iterations: tools.trained_iterations(model),
            cells: q
                .backends
                .iter()
                .map(|&backend| {
                    if !tools.has_weights(model) {
                        return QualityCell::NotTrained;
                    }
                    if let Some(m) = &missing {
                        return QualityCell::Skipped(m.clone());
                    }
                    let grid = images.join(format!("{}-{model}-{backend}.png", q.grid_prefix));
                    let spec = QualitySpec {
                        model,
                        backend,
                        steps: plan.quality_steps,
                        n: q.n,
                        batch: q.batch,
                        grid: &grid,
                    };
                    match tools.eval_quality(&spec) {
                        Ok(q) => QualityCell::Measured(q),
                        Err(e) => QualityCell::Skipped(e),
                    }
                })
                .collect(),
        })
        .collect();
    QualityTable {
        backends: q.backends,
        rows,
    }
}

/// Time and bytes per image against the batch size (trained tiny SiLU or
/// random weights) and against the width (random weights: configs of the
/// tiny U-Net with other base channel counts, written under OUT/tmp and
/// removed afterwards).
fn scaling(tools: &Tools, plan: &Plan, out: &Path) -> Result<Scaling, String> {
    let model = "cipherdm-tiny-silu";
    let spec = |model: String, batch: usize, random_weights: bool| SampleSpec {
        model,
        ddpm: false,
        steps: plan.scaling_steps,
        batch,
        lan: None,
        both: false,
        random_weights,
    };
    let mut by_batch = Vec::new();
    for &b in &plan.batches {
        let r = tools.bench_sample(&spec(model.into(), b, !tools.has_weights(model)))?;
        by_batch.extend(r);
    }
    let cfg_path = tools.model_dir(model).join("config.json");
    let cfg: serde_json::Value = std::fs::read_to_string(&cfg_path)
        .map_err(|e| e.to_string())
        .and_then(|s| serde_json::from_str(&s).map_err(|e| e.to_string()))
        .map_err(|e| format!("{}: {e}", cfg_path.display()))?;
    let mut by_width = Vec::new();
    let scratch = out.join("tmp");
    for &w in &plan.widths {
        let dir = scratch.join(format!("tiny-width-{w}"));
        std::fs::create_dir_all(&dir).map_err(|e| format!("{}: {e}", dir.display()))?;
        let mut c = cfg.clone();
        c["base_channels"] = w.into();
        std::fs::write(dir.join("config.json"), c.to_string()).map_err(|e| e.to_string())?;
        let dir = dir.canonicalize().map_err(|e| e.to_string())?;
        for r in tools.bench_sample(&spec(dir.display().to_string(), 1, true))? {
            by_width.push((w, r));
        }
    }
    std::fs::remove_dir_all(&scratch).map_err(|e| format!("{}: {e}", scratch.display()))?;
    Ok(Scaling { by_batch, by_width })
}

/// The in-process shaper against `scripts/lan.sh` on the same request
/// (CipherDM, DDIM, tiny SiLU): rate only, as lan.sh has no delay here.
fn lan_check(tools: &Tools, lan_sh: &Path, steps: usize) -> Result<LanCheck, String> {
    let text = std::fs::read_to_string(lan_sh).map_err(|e| format!("{}: {e}", lan_sh.display()))?;
    let v: serde_json::Value = text
        .lines()
        .rev()
        .find_map(|l| serde_json::from_str(l).ok())
        .ok_or(format!("{}: no JSON line", lan_sh.display()))?;
    let lan_sh_seconds = v["seconds"]
        .as_f64()
        .ok_or(format!("{}: no seconds", lan_sh.display()))?;
    let model = "cipherdm-tiny-silu";
    let spec = |lan| SampleSpec {
        model: model.into(),
        ddpm: false,
        steps,
        batch: 1,
        lan,
        both: false,
        random_weights: !tools.has_weights(model),
    };
    let one = |s: SampleSpec| -> Result<Secure, String> {
        tools
            .bench_sample(&s)?
            .into_iter()
            .next()
            .ok_or("bench-sample: no result".into())
    };
    Ok(LanCheck {
        steps,
        lan_sh_seconds,
        shaped: one(spec(Some((1.0, 0))))?,
        memory: one(spec(None))?,
    })
}
