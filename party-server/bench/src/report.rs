//! The Markdown page and the plots, from the measured [`Results`] only (and
//! the paper's published numbers, labelled as such).

use crate::paper::{self, activation_index};
use crate::plot;
use crate::run::{OpCost, Secure};
use crate::{LanCheck, Pair, Plan, QualityCell, QualityTable, Results};
use std::collections::BTreeMap;
use std::fmt::Write;
use std::path::Path;
use std::process::Command;

/// Where and when the numbers were measured.
pub struct Header {
    date: String,
    commit: String,
    machine: String,
    load: String,
    command: String,
}

fn command_line(cmd: &str, args: &[&str]) -> Option<String> {
    let out = Command::new(cmd).args(args).output().ok()?;
    out.status
        .success()
        .then(|| String::from_utf8_lossy(&out.stdout).trim().to_string())
}

fn proc_field(file: &str, key: &str) -> Option<String> {
    let text = std::fs::read_to_string(file).ok()?;
    text.lines()
        .find(|l| l.starts_with(key))
        .and_then(|l| l.split(':').nth(1))
        .map(|v| v.trim().to_string())
}

impl Header {
    pub fn collect(plan: &Plan) -> Header {
        let unknown = || "unknown".to_string();
        let dirty = command_line("git", &["status", "--porcelain", "--untracked-files=no"])
            .is_some_and(|s| !s.is_empty());
        let commit =
            command_line("git", &["rev-parse", "--short=12", "HEAD"]).unwrap_or_else(unknown);
        let cores = std::thread::available_parallelism().map_or(0, |n| n.get());
        let mem_gb = proc_field("/proc/meminfo", "MemTotal")
            .and_then(|v| v.trim_end_matches(" kB").parse::<f64>().ok())
            .map_or_else(unknown, |kb| format!("{:.0} GB", kb / 1e6));
        Header {
            date: command_line("date", &["-u", "+%Y-%m-%d %H:%M UTC"]).unwrap_or_else(unknown),
            commit: if dirty {
                format!("{commit} with uncommitted changes")
            } else {
                commit
            },
            machine: format!(
                "{}, {cores} cores, {mem_gb}, Linux {}",
                proc_field("/proc/cpuinfo", "model name").unwrap_or_else(unknown),
                std::fs::read_to_string("/proc/sys/kernel/osrelease")
                    .map_or_else(|_| unknown(), |s| s.trim().to_string())
            ),
            load: std::fs::read_to_string("/proc/loadavg").map_or_else(
                |_| unknown(),
                |s| s.split_whitespace().take(3).collect::<Vec<_>>().join(" "),
            ),
            command: if plan.quick {
                "scripts/bench.sh --quick".into()
            } else {
                "scripts/bench.sh".into()
            },
        }
    }
}

fn gb(bytes: u64) -> f64 {
    bytes as f64 / 1e9
}

fn ratio(a: f64, b: f64) -> String {
    format!("{:.2}×", a / b)
}

fn opt(v: Option<f64>, digits: usize) -> String {
    v.map_or("–".into(), |v| format!("{v:.digits$}"))
}

/// Each party's thread, and the whole process in parentheses.
fn cpu(s: &Secure, scale: f64) -> String {
    let c = s.cpu_seconds_per_party.map(|c| c * scale);
    format!(
        "{:.1} / {:.1} / {:.1} ({:.1})",
        c[0],
        c[1],
        c[2],
        s.cpu_seconds_process * scale
    )
}

/// How a measured run stands for a whole DDPM-1000 (1 for DDIM).
fn scale(p: &Pair) -> f64 {
    if p.ddpm {
        1000.0 / p.cipherdm.steps as f64
    } else {
        1.0
    }
}

fn weights_note(s: &Secure) -> &'static str {
    if s.weights == "random" {
        " (random weights: not trained yet)"
    } else {
        ""
    }
}

fn link(lan: bool) -> &'static str {
    if lan {
        "LAN (emulated)"
    } else {
        "loopback (in memory)"
    }
}

fn sampler(p: &Pair) -> String {
    if p.ddpm {
        "DDPM-1000".into()
    } else {
        format!("DDIM-{}", p.cipherdm.steps)
    }
}

/// The paper's column for a run: its activation's, where the paper has the
/// same model and sampler (DDIM-50, or DDPM scaled to 1000 steps).
fn paper_column(p: &Pair) -> Option<usize> {
    let same_sampler = p.ddpm || p.cipherdm.steps == 50;
    activation_index(p.model.strip_prefix("cipherdm-tiny-")?).filter(|_| same_sampler)
}

fn table45(md: &mut String, pairs: &[&Pair]) {
    md.push_str(
        "| model | link | protocols | time s | CPU s P0 / P1 / P2 (all) | GB all parties | GB max party | rounds | PSNR vs f32 | paper total s (T4) | paper MPC s (T5) | paper GB (T5) |\n\
         |---|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|\n",
    );
    for p in pairs {
        let k = scale(p);
        let (t4, t5) = paper::tables(p.ddpm, p.lan);
        let a = paper_column(p);
        let li = usize::from(p.lan);
        let paper_cell = |f: &dyn Fn(usize) -> f64| a.map_or("–".into(), |a| format!("{}", f(a)));
        let paper_ratio =
            |f: &dyn Fn(usize) -> f64| a.map_or("–".into(), |a| format!("{:.3}×", f(a)));
        let model = format!("`{}`{}", p.model, weights_note(&p.cipherdm));
        let _ = writeln!(
            md,
            "| {model} | {} | f32 plaintext | {:.2} | – | – | – | – | – | {} | – | – |",
            link(p.lan),
            p.cipherdm.f32_seconds * k,
            paper_cell(&|a| t4.cpu[a][li]),
        );
        for (name, s, t4v, t5v) in [
            ("baseline", &p.baseline, &t4.spu, &t5.spu),
            ("CipherDM", &p.cipherdm, &t4.cipherdm, &t5.cipherdm),
        ] {
            let _ = writeln!(
                md,
                "| | | {name} | {:.1} | {} | {:.2} | {:.2} | {:.0} | {} | {} | {} | {} |",
                s.seconds * k,
                cpu(s, k),
                gb(s.bytes_total) * k,
                gb(s.bytes_per_party) * k,
                s.rounds as f64 * k,
                opt(s.psnr_vs_f32, 1),
                paper_cell(&|a| t4v[a][li]),
                paper_cell(&|a| t5v[a].0),
                paper_cell(&|a| t5v[a].1),
            );
        }
        let (b, c) = (&p.baseline, &p.cipherdm);
        let _ = writeln!(
            md,
            "| | | **baseline ÷ CipherDM** | **{}** | {} | **{}** | {} | **{}** | | {} | {} | {} |",
            ratio(b.seconds, c.seconds),
            ratio(
                b.cpu_seconds_per_party.iter().sum(),
                c.cpu_seconds_per_party.iter().sum()
            ),
            ratio(b.bytes_total as f64, c.bytes_total as f64),
            ratio(b.bytes_per_party as f64, c.bytes_per_party as f64),
            ratio(b.rounds as f64, c.rounds as f64),
            paper_ratio(&|a| t4.spu[a][li] / t4.cipherdm[a][li]),
            paper_ratio(&|a| t5.spu[a].0 / t5.cipherdm[a].0),
            paper_ratio(&|a| t5.spu[a].1 / t5.cipherdm[a].1),
        );
    }
}

/// Per U-Net call, per op kind: (baseline, CipherDM) costs, with the time
/// outside the profiled protocols as "other".
fn per_call(p: &Pair) -> BTreeMap<String, (OpCost, OpCost)> {
    let mut m: BTreeMap<String, (OpCost, OpCost)> = BTreeMap::new();
    for (i, s) in [&p.baseline, &p.cipherdm].into_iter().enumerate() {
        let calls = s.steps as f64;
        let mut profiled = 0.0;
        for (op, c) in s.profile.iter().flatten() {
            let e = m.entry(op.clone()).or_default();
            let v = OpCost {
                calls: c.calls / s.steps as u64,
                seconds: c.seconds / calls,
                cpu_seconds: c.cpu_seconds / calls,
                bytes_sent_p0: (c.bytes_sent_p0 as f64 / calls) as u64,
                rounds: (c.rounds as f64 / calls).round() as u64,
            };
            profiled += c.seconds;
            if i == 0 { e.0 = v } else { e.1 = v }
        }
        let e = m.entry("other (outside the protocols)".into()).or_default();
        let other = OpCost {
            seconds: ((s.seconds - profiled) / calls).max(0.0),
            ..OpCost::default()
        };
        if i == 0 { e.0 = other } else { e.1 = other }
    }
    m
}

fn fig5(md: &mut String, p: &Pair) {
    let ops = per_call(p);
    let (tb, tc): (f64, f64) = ops
        .values()
        .fold((0.0, 0.0), |(a, b), (x, y)| (a + x.seconds, b + y.seconds));
    let _ = writeln!(
        md,
        "\n**`{}`** ({}, {}; paper, Section 5.4: {})\n",
        p.model,
        sampler(p),
        link(p.lan),
        activation_index(p.model.trim_start_matches("cipherdm-tiny-"))
            .map_or("–", |a| paper::FIG5[a])
    );
    md.push_str(
        "| op kind | baseline ms | CipherDM ms | CipherDM CPU ms (P0 thread) | baseline MB (P0) | CipherDM MB (P0) | baseline rounds | CipherDM rounds | share of the time saved |\n\
         |---|---:|---:|---:|---:|---:|---:|---:|---:|\n",
    );
    for (op, (b, c)) in &ops {
        let _ = writeln!(
            md,
            "| {op} | {:.1} | {:.1} | {:.1} | {:.2} | {:.2} | {} | {} | {:.1} % |",
            b.seconds * 1e3,
            c.seconds * 1e3,
            c.cpu_seconds * 1e3,
            b.bytes_sent_p0 as f64 / 1e6,
            c.bytes_sent_p0 as f64 / 1e6,
            b.rounds,
            c.rounds,
            100.0 * (b.seconds - c.seconds) / (tb - tc)
        );
    }
    let _ = writeln!(
        md,
        "| **per U-Net call** | **{:.1}** | **{:.1}** | | | | | | |",
        tb * 1e3,
        tc * 1e3
    );
}

fn quality_table(md: &mut String, table: &QualityTable) {
    md.push_str("| model | backend | n | class accuracy | FID (classifier features) | time s | paper FID (Inception, 10k, T6) |\n|---|---|---:|---:|---:|---:|---:|\n");
    let mut notes = Vec::new();
    for row in &table.rows {
        let a = activation_index(row.model.trim_start_matches("cipherdm-tiny-"))
            .filter(|_| row.model.starts_with("cipherdm-tiny-"));
        for (backend, cell) in table.backends.iter().zip(&row.cells) {
            let paper_fid = match (*backend, a) {
                ("f32", Some(a)) => format!("{} (CPU)", paper::TABLE6_CPU[a]),
                ("emulated-cipherdm" | "secure-cipherdm", Some(a)) => {
                    format!("{} (CipherDM)", paper::TABLE6_CIPHERDM[a])
                }
                _ => "–".into(),
            };
            let cells = match cell {
                QualityCell::Measured(q) => format!(
                    "{} | {} | {} | {:.1}",
                    q.n,
                    opt(q.class_acc.map(|a| 100.0 * a), 1) + " %",
                    opt(q.fid, 2),
                    q.seconds
                ),
                QualityCell::NotTrained => "– | not trained yet | – | –".into(),
                QualityCell::Skipped(why) => {
                    notes.push(format!("`{}`: {why}", row.model));
                    "– | skipped (see below) | – | –".into()
                }
            };
            let trained = row
                .trained_iterations
                .map(|n| format!(" ({n} iterations)"))
                .unwrap_or_default();
            let _ = writeln!(
                md,
                "| `{}`{trained} | {backend} | {cells} | {paper_fid} |",
                row.model
            );
        }
    }
    notes.dedup();
    for n in notes {
        let _ = writeln!(md, "\n- {n}");
    }
}

/// Section 3's secure samples: their quality beside f32 samples of the same
/// noise, and every secure run of section 1 against f32 and the emulation.
fn secure_quality(md: &mut String, r: &Results, plan: &Plan) {
    let _ = writeln!(
        md,
        "\nSecure samples (`eval-quality --backend secure-cipherdm`: three in-process parties \
         sample on shares, {} images per request) beside f32 samples of the same noise and \
         classes, {} of each: FID over so few samples is far above its value at 1000 (the \
         estimate is biased upwards at small n), so compare the two rows of a model with each \
         other, not with the table above. Grids: `images/bench-secure-samples-MODEL-BACKEND.png`.\n",
        crate::SECURE_QUALITY_BATCH,
        plan.secure_n
    );
    quality_table(md, &r.secure_quality);
    let _ = writeln!(
        md,
        "\nEvery secure run of section 1 against the f32 sampler and the fixed-point \
         emulation on the same noise (the emulation reproduces the secure back end's \
         arithmetic, so a high PSNR against it means the emulation's quality figures above \
         stand for the secure samples too):"
    );
    md.push_str("\n| model | sampler | link | protocols | PSNR secure vs f32 dB | PSNR secure vs emulation dB |\n|---|---|---|---|---:|---:|\n");
    for p in &r.pairs {
        for s in [&p.baseline, &p.cipherdm] {
            let _ = writeln!(
                md,
                "| `{}`{} | {} | {} | {} | {} | {} |",
                p.model,
                weights_note(s),
                sampler(p),
                link(p.lan),
                s.variant,
                opt(s.psnr_vs_f32, 1),
                opt(s.psnr_vs_emulated, 1)
            );
        }
    }
}

/// The emulated LAN beside a model of it: the in-memory time plus the
/// largest party's bytes at 1 Gbit/s plus 0.05 ms per round, every delay in
/// series.  Where the parties wait for cores, the shaper's delays partly
/// elapse during the wait and the measurement falls below the model.
fn lan_model(md: &mut String, pairs: &[Pair]) {
    md.push_str(
        "\nThe emulated LAN beside a **model** of it (not a measurement): the in-memory time + the \
         largest party's bytes ÷ 1 Gbit/s + rounds × 0.05 ms. Where the three parties wait for \
         this machine's cores, a delay partly elapses during the wait, and the measurement \
         falls below the model.\n\n\
         | model | sampler | protocols | in memory s | LAN emulated s | LAN model s |\n|---|---|---|---:|---:|---:|\n",
    );
    for p in pairs.iter().filter(|p| p.lan) {
        let Some(m) = pairs
            .iter()
            .find(|m| !m.lan && m.model == p.model && m.ddpm == p.ddpm)
        else {
            continue;
        };
        let k = scale(p);
        for (mem, shaped) in [(&m.baseline, &p.baseline), (&m.cipherdm, &p.cipherdm)] {
            let model = mem.seconds + gb(mem.bytes_per_party) * 8.0 + mem.rounds as f64 * 50e-6;
            let _ = writeln!(
                md,
                "| `{}` | {} | {} | {:.1} | {:.1} | {:.1} |",
                p.model,
                sampler(p),
                mem.variant,
                mem.seconds * k,
                shaped.seconds * k,
                model * k
            );
        }
    }
}

/// Our CipherDM runs against the paper's CipherDM (Table 5), as ratios: a
/// comparison across machines, labelled so.
fn versus_paper(md: &mut String, pairs: &[Pair]) {
    md.push_str(
        "\nOurs against the paper's CipherDM (Table 5 MPC time and communication; **different \
         machines**, see the top of the page):\n\n\
         | model | sampler | link | paper s | ours s | paper ÷ ours | paper GB | ours GB (all parties) | paper ÷ ours |\n\
         |---|---|---|---:|---:|---:|---:|---:|---:|\n",
    );
    for p in pairs {
        let Some(a) = paper_column(p) else {
            continue;
        };
        let (secs, comm) = paper::tables(p.ddpm, p.lan).1.cipherdm[a];
        let k = scale(p);
        let (ours_s, ours_gb) = (p.cipherdm.seconds * k, gb(p.cipherdm.bytes_total) * k);
        let _ = writeln!(
            md,
            "| `{}` | {} | {} | {secs} | {ours_s:.1} | {} | {comm} | {ours_gb:.2} | {} |",
            p.model,
            sampler(p),
            link(p.lan),
            ratio(secs, ours_s),
            ratio(comm, ours_gb)
        );
    }
}

fn scaling_tables(md: &mut String, r: &Results) {
    md.push_str("\n| batch | time s | s per image | MB per image (all parties) | rounds | CPU s P0 / P1 / P2 (all) |\n|---:|---:|---:|---:|---:|---:|\n");
    for s in &r.scaling.by_batch {
        let n = s.batch as f64;
        let _ = writeln!(
            md,
            "| {} | {:.2} | {:.2} | {:.1} | {} | {} |",
            s.batch,
            s.seconds,
            s.seconds / n,
            s.bytes_total as f64 / 1e6 / n,
            s.rounds,
            cpu(s, 1.0)
        );
    }
    md.push_str("\n| base channels | time s | MB (all parties) | rounds | CPU s P0 / P1 / P2 (all) | f32 s |\n|---:|---:|---:|---:|---:|---:|\n");
    for (w, s) in &r.scaling.by_width {
        let _ = writeln!(
            md,
            "| {w} | {:.2} | {:.1} | {} | {} | {:.3} |",
            s.seconds,
            s.bytes_total as f64 / 1e6,
            s.rounds,
            cpu(s, 1.0),
            s.f32_seconds
        );
    }
}

fn lan_check(md: &mut String, c: &LanCheck) {
    let _ = writeln!(
        md,
        "\n## 5. The LAN shaper against `scripts/lan.sh`\n\n\
         The same request (`cipherdm-tiny-silu`, DDIM-{}, CipherDM protocols) three ways. \
         `lan.sh` runs three real servers in network namespaces with TLS links shaped to \
         1 Gbit/s by `tc` with no added delay (`scripts/bench.sh` runs it with `DELAY=0us`: \
         on a kernel without netem the rate is all it can emulate), and the native client. \
         The in-process shaper ran with the same rate and no delay.\n\n\
         | how | time s |\n|---|---:|\n\
         | `scripts/lan.sh` (servers, namespaces, 1 Gbit/s) | {:.1} |\n\
         | in process, shaped (1 Gbit/s, no delay) | {:.1} |\n\
         | in process, in memory | {:.1} |\n\n\
         lan.sh ÷ shaped: {}. The servers' own overhead (TLS, framing, the client) is \
         in the first number only: on loopback without shaping it is 1.09–1.21× (README).",
        c.steps,
        c.lan_sh_seconds,
        c.shaped.seconds,
        c.memory.seconds,
        ratio(c.lan_sh_seconds, c.shaped.seconds)
    );
}

pub fn markdown(h: &Header, plan: &Plan, r: &Results) -> String {
    let mut md = String::new();
    let _ = writeln!(
        md,
        "# Benchmarks\n\n\
         Generated by `{}` in {:.0} s — do not edit by hand; rerun the command.\n\n\
         - date: {}\n- commit: {}\n- machine: {} (load average at the start: {})\n\
         - build: {}; three in-process parties (threads) linked in memory; \
         every number below was measured in this run unless it is labelled *paper*\n\
         - **paper**: CipherDM's published numbers, measured on a different machine \
         (3 parties, one thread each of an Intel Xeon Silver 4314 @ 2.40 GHz, SPU, Linux tc LAN) — \
         compare ratios, not absolute times",
        h.command,
        r.seconds,
        h.date,
        h.commit,
        h.machine,
        h.load,
        if cfg!(debug_assertions) {
            "debug"
        } else {
            "release"
        }
    );
    if plan.quick {
        md.push_str(
            "\n> **Smoke run (`--quick`)**: tiny step counts and sample counts, built to check that the \
             benchmark code works, not to be quoted.\n",
        );
    }
    let _ = writeln!(
        md,
        "\n## 1. Sampling one image (paper Tables 4 and 5)\n\n\
         *time* is the wall time of the whole sampling loop on shares (the slowest party); \
         the three parties share this machine's cores, so the CPU seconds of each party's \
         thread are given beside it, and of the whole process (parties and GEMM worker threads). There is no separate setup or compilation phase as in SPU: the \
         paper's total time (Table 4) and MPC time (Table 5) are both shown next to our one time. \
         Bytes are what the parties send (all three summed, and the largest single party); the \
         paper does not say which of the two its GB are. *LAN (emulated)*: the in-process links \
         shaped to the paper's LAN: each party's egress (shared by its two links, as in \
         `scripts/lan.sh`) at 1 Gbit/s, and 0.05 ms one-way delay (RTT 0.1 ms) per message (`bench-sample --lan`, `party_server::net::shaped`). \
         DDPM runs on a {}-step schedule (the same protocols per step as DDPM-1000) and every \
         DDPM number is scaled ×{}; the per-step figures follow the tables. Models \
         marked *random weights* have no trained weights yet: time, bytes and rounds do not \
         depend on the weights' values, their PSNR is that of a random network.\n",
        plan.ddpm_steps,
        1000 / plan.ddpm_steps
    );
    for ddpm in [false, true] {
        let rows: Vec<&Pair> = r.pairs.iter().filter(|p| p.ddpm == ddpm).collect();
        if let Some(p) = rows.first() {
            let _ = writeln!(md, "### {}\n", sampler(p));
            table45(&mut md, &rows);
            md.push('\n');
        }
    }
    md.push_str("DDPM per step (measured, unscaled):\n\n| model | link | protocols | s per step | MB per step (all parties) | rounds per step |\n|---|---|---|---:|---:|---:|\n");
    for p in r.pairs.iter().filter(|p| p.ddpm) {
        for s in [&p.baseline, &p.cipherdm] {
            let k = s.steps as f64;
            let _ = writeln!(
                md,
                "| `{}` | {} | {} | {:.3} | {:.1} | {:.0} |",
                p.model,
                link(p.lan),
                s.variant,
                s.seconds / k,
                s.bytes_total as f64 / 1e6 / k,
                s.rounds as f64 / k
            );
        }
    }
    lan_model(&mut md, &r.pairs);
    versus_paper(&mut md, &r.pairs);
    md.push_str("\n![Improvement ratios, ours and the paper's](images/bench-speedup.png)\n");
    let _ = writeln!(
        md,
        "\n## 2. Where the cost goes, per U-Net call (paper Fig. 5)\n\n\
         Per op kind, from the DDIM runs of section 1 on the in-memory links, divided by the \
         number of U-Net calls: P0's wall time inside the protocol, P0's bytes sent, rounds. \
         The CPU time of P0's party thread is given beside the CipherDM time: the rest is \
         waiting for the other parties (three parties share two cores here) and the threads \
         of concurrent sub-protocols, which it does not count. \
         *Share of the time saved* is each op kind's part of (baseline − CipherDM). The \
         paper's *time embedding* protocol has no counterpart here: the timestep is public, so \
         its sinusoidal embedding is computed in the clear and only its two Dense layers and \
         activation (8 elements) run on shares, inside the linear and activation rows."
    );
    for p in r.pairs.iter().filter(|p| !p.ddpm && !p.lan) {
        fig5(&mut md, p);
    }
    md.push_str("\n![Time per U-Net call by op kind](images/bench-ops.png)\n");
    let _ = writeln!(
        md,
        "\n## 3. Sample quality (paper Table 6)\n\n\
         Class accuracy of class-conditional samples under the project's MNIST classifier, and \
         FID on that classifier's 128-d features against the test set of the model's classes \
         (`eval-quality`): f32, and the fixed-point emulation of the secure back end with the \
         baseline and the CipherDM approximations, {} samples each. The paper's FID uses \
         Inception features of 10k images: its scale is not comparable with ours, only the gap \
         between its rows is. Sample grids: `images/bench-samples-MODEL-BACKEND.png`.\n",
        plan.quality_n
    );
    quality_table(&mut md, &r.quality);
    let _ = writeln!(
        md,
        "\nDDIM-{} samples, classes in turn.",
        plan.quality_steps
    );
    secure_quality(&mut md, r, plan);
    let _ = writeln!(
        md,
        "\n## 4. Scaling (CipherDM protocols, DDIM-{}, in memory)\n\n\
         Batch: `cipherdm-tiny-silu`, images of one request share every layer's rounds. \
         Width: the tiny U-Net's config with other base channel counts (random weights).",
        plan.scaling_steps
    );
    scaling_tables(&mut md, r);
    md.push_str(
        "\n![Time and bytes per image against batch and width](images/bench-scaling.png)\n",
    );
    match &r.lan_check {
        Some(c) => lan_check(&mut md, c),
        None => md.push_str(
            "\n## 5. The LAN shaper against `scripts/lan.sh`\n\nNot run (it needs root and network \
             namespaces: `scripts/bench.sh` runs it when it can).\n",
        ),
    }
    // Every section says where and when its numbers were measured, so that
    // a table quoted alone still carries them.
    let stamp = format!(
        "\n*Measured {} on {}, commit {}.*",
        h.date, h.machine, h.commit
    );
    md.lines()
        .map(|l| {
            if l.starts_with("## ") {
                format!("{l}\n{stamp}\n")
            } else {
                format!("{l}\n")
            }
        })
        .collect()
}

/// Label of an activation in the plots.
fn short(model: &str) -> String {
    model.trim_start_matches("cipherdm-tiny-").to_string()
}

pub fn plots(r: &Results, images: &Path) -> Result<(), String> {
    // Improvement ratios, ours against the paper's, per sampler.
    plot::figure(
        &images.join("bench-speedup.png"),
        (1200, 500),
        (1, 2),
        |i, area| {
            let ddpm = i == 1;
            let rows: Vec<&Pair> = r.pairs.iter().filter(|p| p.ddpm == ddpm).collect();
            let groups: Vec<String> = rows
                .iter()
                .map(|p| {
                    format!(
                        "{} {}",
                        short(&p.model),
                        if p.lan { "LAN" } else { "local" }
                    )
                })
                .collect();
            let paper = |f: &dyn Fn(&paper::Table5, usize) -> f64| -> Vec<f64> {
                rows.iter()
                    .map(|p| {
                        paper_column(p).map_or(f64::NAN, |a| f(paper::tables(p.ddpm, p.lan).1, a))
                    })
                    .collect()
            };
            let series = vec![
                (
                    "ours: time".to_string(),
                    rows.iter()
                        .map(|p| p.baseline.seconds / p.cipherdm.seconds)
                        .collect(),
                ),
                (
                    "ours: bytes".to_string(),
                    rows.iter()
                        .map(|p| p.baseline.bytes_total as f64 / p.cipherdm.bytes_total as f64)
                        .collect(),
                ),
                (
                    "paper: MPC time".to_string(),
                    paper(&|t, a| t.spu[a].0 / t.cipherdm[a].0),
                ),
                (
                    "paper: comm.".to_string(),
                    paper(&|t, a| t.spu[a].1 / t.cipherdm[a].1),
                ),
            ];
            let title = format!(
                "baseline ÷ CipherDM, {}",
                if ddpm { "DDPM" } else { "DDIM" }
            );
            plot::bars(area, &title, "ratio", &groups, &series)
        },
    )?;
    // Fig. 5: time per U-Net call per op kind, one panel per activation.
    let fig5: Vec<&Pair> = r.pairs.iter().filter(|p| !p.ddpm && !p.lan).collect();
    plot::figure(
        &images.join("bench-ops.png"),
        (1500, 450),
        (1, fig5.len().max(1)),
        |i, area| {
            let Some(p) = fig5.get(i) else { return Ok(()) };
            // Op kinds under 1 % of the baseline's time would only crowd the axis.
            let all = per_call(p);
            let total: f64 = all.values().map(|v| v.0.seconds).sum();
            let ops: BTreeMap<&String, &(OpCost, OpCost)> = all
                .iter()
                .filter(|(_, v)| v.0.seconds.max(v.1.seconds) >= 0.01 * total)
                .collect();
            let groups: Vec<String> = ops
                .keys()
                .map(|k| k.split(' ').next().unwrap_or(k).to_string())
                .collect();
            let series = vec![
                (
                    "baseline".to_string(),
                    ops.values().map(|v| v.0.seconds * 1e3).collect(),
                ),
                (
                    "CipherDM".to_string(),
                    ops.values().map(|v| v.1.seconds * 1e3).collect(),
                ),
            ];
            plot::bars(
                area,
                &format!("{}: ms per U-Net call", short(&p.model)),
                "ms (P0)",
                &groups,
                &series,
            )
        },
    )?;
    // Scaling with batch and width.
    let per_image = |s: &Secure| {
        (
            s.seconds / s.batch as f64,
            s.bytes_total as f64 / 1e6 / s.batch as f64,
        )
    };
    let batch: Vec<(f64, (f64, f64))> = r
        .scaling
        .by_batch
        .iter()
        .map(|s| (s.batch as f64, per_image(s)))
        .collect();
    let width: Vec<(f64, (f64, f64))> = r
        .scaling
        .by_width
        .iter()
        .map(|(w, s)| (*w as f64, per_image(s)))
        .collect();
    plot::figure(
        &images.join("bench-scaling.png"),
        (1100, 800),
        (2, 2),
        |i, area| {
            let (data, x_desc) = if i < 2 {
                (&batch, "batch")
            } else {
                (&width, "base channels")
            };
            let (pts, y_desc): (Vec<(f64, f64)>, &str) = if i % 2 == 0 {
                (data.iter().map(|(x, y)| (*x, y.0)).collect(), "s per image")
            } else {
                (
                    data.iter().map(|(x, y)| (*x, y.1)).collect(),
                    "MB per image",
                )
            };
            plot::lines(
                area,
                &format!("{y_desc} vs {x_desc}"),
                (x_desc, y_desc),
                &[("CipherDM".to_string(), pts)],
            )
        },
    )?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run(variant: &str, seconds: f64, softmax: f64, silu: f64) -> Secure {
        serde_json::from_value(serde_json::json!({
            "variant": variant, "seconds": seconds, "cpu_seconds_per_party": [1.0, 1.0, 1.0],
            "cpu_seconds_process": 3.0, "bytes_per_party": 4_000_000_000u64, "bytes_total": 12_000_000_000u64,
            "rounds": 1000, "psnr_vs_f32": null, "psnr_vs_emulated": 60.0, "f32_seconds": 0.1,
            "steps": 2, "batch": 1, "weights": "trained",
            "profile": {
                "softmax": {"calls": 12, "seconds": softmax, "bytes_sent_p0": 2_000_000, "rounds": 100},
                "silu": {"calls": 20, "seconds": silu, "bytes_sent_p0": 1_000_000, "rounds": 40},
            },
        }))
        .unwrap()
    }

    fn pair(steps_ddim: usize) -> Pair {
        let mut p = Pair {
            model: "cipherdm-tiny-silu".into(),
            ddpm: false,
            lan: false,
            baseline: run("baseline", 10.0, 6.0, 3.0),
            cipherdm: run("cipherdm", 5.0, 3.0, 1.5),
        };
        p.baseline.steps = steps_ddim;
        p.cipherdm.steps = steps_ddim;
        p
    }

    #[test]
    fn secure_rows_carry_the_papers_cipherdm_fid_and_untrained_models_say_so() {
        let measured = crate::run::Quality {
            n: 24,
            class_acc: Some(0.75),
            fid: Some(123.456),
            seconds: 9.0,
        };
        let table = QualityTable {
            backends: &crate::SECURE_QUALITY_BACKENDS,
            rows: vec![
                crate::QualityRow {
                    model: "cipherdm-tiny-mish".into(),
                    trained_iterations: Some(9600),
                    cells: vec![QualityCell::Measured(measured), QualityCell::NotTrained],
                },
                crate::QualityRow {
                    model: "mnist".into(),
                    trained_iterations: None,
                    cells: vec![
                        QualityCell::Skipped("no data".into()),
                        QualityCell::Skipped("no data".into()),
                    ],
                },
            ],
        };
        let mut md = String::new();
        quality_table(&mut md, &table);
        let mish = paper::activation_index("mish").unwrap();
        assert!(
            md.contains(&format!(
                "| `cipherdm-tiny-mish` (9600 iterations) | f32 | 24 | 75.0 % | 123.46 | 9.0 | {} (CPU) |",
                paper::TABLE6_CPU[mish]
            )),
            "{md}"
        );
        assert!(
            md.contains(&format!(
                "| secure-cipherdm | – | not trained yet | – | – | {} (CipherDM) |",
                paper::TABLE6_CIPHERDM[mish]
            )),
            "{md}"
        );
        assert!(md.contains("| `mnist` | secure-cipherdm | – | skipped (see below) | – | – | – |"));
        assert_eq!(md.matches("- `mnist`: no data").count(), 1, "{md}");
    }

    #[test]
    fn per_call_divides_by_the_unet_calls_and_keeps_the_rest_as_other() {
        let ops = per_call(&pair(2));
        assert_eq!(ops["softmax"].0.seconds, 3.0);
        assert_eq!(ops["softmax"].1.bytes_sent_p0, 1_000_000);
        assert_eq!(ops["silu"].1.rounds, 20);
        let other = &ops["other (outside the protocols)"];
        assert_eq!((other.0.seconds, other.1.seconds), (0.5, 0.25));
        let total: f64 = ops.values().map(|v| v.0.seconds).sum();
        assert_eq!(total, 5.0, "per call, the baseline's whole time");
    }

    #[test]
    fn paper_numbers_only_beside_the_papers_sampler() {
        assert_eq!(paper_column(&pair(50)), Some(1));
        assert_eq!(
            paper_column(&pair(10)),
            None,
            "DDIM-10 is not the paper's DDIM-50"
        );
        let mut ddpm = pair(100);
        ddpm.ddpm = true;
        assert_eq!(paper_column(&ddpm), Some(1), "DDPM is scaled to 1000 steps");
        assert_eq!(scale(&ddpm), 10.0);
        ddpm.model = "mnist".into();
        assert_eq!(paper_column(&ddpm), None);
    }

    #[test]
    fn the_table_carries_ours_the_ratio_and_the_paper() {
        let mut md = String::new();
        table45(&mut md, &[&pair(50)]);
        assert!(md.contains("| | | baseline | 10.0 |"), "{md}");
        assert!(md.contains("**2.00×**"), "{md}");
        // Paper Table 4 DDIM SiLU local: SPU 808 s, CipherDM 648 s.
        assert!(md.contains("| 808 |") && md.contains("| 648 |"), "{md}");
        assert!(md.contains("1.247×"), "{md}");
    }
}
