//! The measurements, each in its own process: `bench-sample` (secure
//! sampling, three in-process parties) and `eval-quality` (sample quality),
//! read back from their `--json` output.  Separate processes keep every
//! measurement's memory and allocator state apart and let the report use
//! the very programs a reader would run by hand.

use serde::Deserialize;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Instant;

/// Where the measuring programs and the models are.
pub struct Tools {
    /// Directory of the sibling binaries (the report's own target directory).
    pub bin_dir: PathBuf,
    pub models: PathBuf,
}

/// One op kind's cost in one party's view (P0), summed over the run.
#[derive(Debug, Clone, Copy, Default, Deserialize)]
pub struct OpCost {
    pub calls: u64,
    pub seconds: f64,
    /// CPU time of P0's party thread (sub-protocol threads not counted).
    #[serde(default)]
    pub cpu_seconds: f64,
    pub bytes_sent_p0: u64,
    pub rounds: u64,
}

/// One variant's line of `bench-sample --json`.
#[derive(Debug, Clone, Deserialize)]
pub struct Secure {
    pub variant: String,
    pub seconds: f64,
    pub cpu_seconds_per_party: [f64; 3],
    /// The whole process: the parties and their GEMM worker threads.
    pub cpu_seconds_process: f64,
    pub bytes_per_party: u64,
    pub bytes_total: u64,
    pub rounds: u64,
    /// Not finite (and so `null` in JSON) when the images are identical.
    pub psnr_vs_f32: Option<f64>,
    pub psnr_vs_emulated: Option<f64>,
    pub f32_seconds: f64,
    pub steps: usize,
    pub batch: usize,
    pub weights: String,
    #[serde(default)]
    pub profile: Option<BTreeMap<String, OpCost>>,
}

/// What to ask `bench-sample` for.
#[derive(Debug, Clone)]
pub struct SampleSpec {
    /// A model name under the models directory, or a model directory.
    pub model: String,
    pub ddpm: bool,
    /// DDIM steps, or the DDPM schedule's steps.
    pub steps: usize,
    pub batch: usize,
    /// Emulated LAN: (Gbit/s, one-way delay in µs).
    pub lan: Option<(f64, u64)>,
    /// Both variants side by side, or CipherDM only.
    pub both: bool,
    pub random_weights: bool,
}

fn run_json(cmd: &mut Command, what: &str) -> Result<Vec<serde_json::Value>, String> {
    let t = Instant::now();
    eprintln!("[bench] {what} ...");
    let out = cmd
        .output()
        .map_err(|e| format!("{what}: cannot start {:?}: {e}", cmd.get_program()))?;
    if !out.status.success() {
        let stderr = String::from_utf8_lossy(&out.stderr);
        let tail: Vec<&str> = stderr.lines().rev().take(5).collect();
        return Err(format!(
            "{what}: {} ({})",
            out.status,
            tail.into_iter().rev().collect::<Vec<_>>().join(" | ")
        ));
    }
    eprintln!("[bench] {what}: {:.1} s", t.elapsed().as_secs_f64());
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter(|l| l.starts_with('{'))
        .map(|l| serde_json::from_str(l).map_err(|e| format!("{what}: {e} in {l}")))
        .collect()
}

impl Tools {
    fn bin(&self, name: &str) -> Result<PathBuf, String> {
        let p = self.bin_dir.join(name);
        if p.exists() {
            Ok(p)
        } else {
            Err(format!(
                "{} missing: build it first (scripts/bench.sh does)",
                p.display()
            ))
        }
    }

    /// A model's directory.
    pub fn model_dir(&self, model: &str) -> PathBuf {
        let named = self.models.join(model);
        if named.is_dir() {
            named
        } else {
            PathBuf::from(model)
        }
    }

    /// Whether a model has trained weights.
    pub fn has_weights(&self, model: &str) -> bool {
        self.model_dir(model).join("model.safetensors").exists()
    }

    /// Iterations the model's weights were trained for, when its
    /// `train_state.json` says.
    pub fn trained_iterations(&self, model: &str) -> Option<u64> {
        let text = std::fs::read_to_string(self.model_dir(model).join("train_state.json")).ok()?;
        serde_json::from_str::<serde_json::Value>(&text).ok()?["iterations"].as_u64()
    }

    /// Secure sampling: the variants' results (baseline first when both).
    pub fn bench_sample(&self, s: &SampleSpec) -> Result<Vec<Secure>, String> {
        let mut cmd = Command::new(self.bin("bench-sample")?);
        cmd.arg("--models").arg(&self.models);
        cmd.args(["--model", &s.model, "--json", "--profile"]);
        cmd.args(["--batch", &s.batch.to_string()]);
        cmd.args(["--variant", if s.both { "both" } else { "cipherdm" }]);
        if s.ddpm {
            cmd.args(["--sampler", "ddpm", "--ddpm-steps", &s.steps.to_string()]);
        } else {
            cmd.args(["--sampler", "ddim", "--steps", &s.steps.to_string()]);
        }
        if let Some((gbit, delay)) = s.lan {
            cmd.args(["--lan", "--lan-gbit", &gbit.to_string()]);
            cmd.args(["--lan-delay-us", &delay.to_string()]);
        }
        if s.random_weights {
            cmd.arg("--random-weights");
        }
        let what = format!(
            "bench-sample {} {}-{} batch {}{}",
            Path::new(&s.model)
                .file_name()
                .map_or(s.model.clone(), |f| f.to_string_lossy().into()),
            if s.ddpm { "ddpm" } else { "ddim" },
            s.steps,
            s.batch,
            if s.lan.is_some() { " lan" } else { "" }
        );
        run_json(&mut cmd, &what)?
            .into_iter()
            .filter(|v| v.get("variant").is_some())
            .map(|v| serde_json::from_value(v).map_err(|e| format!("{what}: {e}")))
            .collect()
    }
}

/// `eval-quality --json`'s result.
#[derive(Debug, Clone, Deserialize)]
pub struct Quality {
    pub n: usize,
    pub class_acc: Option<f64>,
    pub fid: Option<f64>,
    pub seconds: f64,
}

/// What to ask `eval-quality` for.
pub struct QualitySpec<'a> {
    pub model: &'a str,
    pub backend: &'a str,
    pub steps: usize,
    pub n: usize,
    /// Images per sampling batch (`eval-quality`'s default when `None`).
    pub batch: Option<usize>,
    /// Where the sample grid goes (never the default `docs/images`).
    pub grid: &'a Path,
}

impl Tools {
    /// Sample quality on one back end.  Tried twice: a model that is
    /// being trained has its weights rewritten now and then, and a read may
    /// meet a half-written file.
    pub fn eval_quality(&self, q: &QualitySpec) -> Result<Quality, String> {
        let what = format!("eval-quality {} {} n={}", q.model, q.backend, q.n);
        let mut last = String::new();
        for _ in 0..2 {
            let mut cmd = Command::new(self.bin("eval-quality")?);
            cmd.arg("--models").arg(&self.models);
            cmd.args(["--model", q.model, "--backend", q.backend, "--json"]);
            cmd.args(["--sampler", "ddim", "--steps", &q.steps.to_string()]);
            cmd.args(["--n", &q.n.to_string()]);
            if let Some(b) = q.batch {
                cmd.args(["--batch", &b.to_string()]);
            }
            cmd.arg("--grid").arg(q.grid);
            match run_json(&mut cmd, &what).and_then(|v| {
                let first = v.into_iter().next().ok_or(format!("{what}: no output"))?;
                serde_json::from_value(first).map_err(|e| format!("{what}: {e}"))
            }) {
                Ok(r) => return Ok(r),
                Err(e) => last = e,
            }
        }
        Err(last)
    }
}
