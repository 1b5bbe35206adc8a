//! Per-protocol costs of the MPC engine: three in-process parties (threads
//! linked in memory), release mode.  For every op: wall time, CPU time per
//! party, bytes sent (max per party and total), rounds, and the max abs error
//! against an f64 reference over the op's domain.  Per-party CPU is the
//! party's own thread; "cpu s all" is the whole process (GEMM worker
//! threads and concurrent sub-protocols included).
//!
//! `cargo run --release --bin bench-ops -- [--json] [--quick] [--only OP]`

/// See [`party_server::alloc`].
#[global_allocator]
static ALLOC: party_server::alloc::MiMalloc = party_server::alloc::MiMalloc;

use clap::Parser;
use party_server::fxp::Variant;
use party_server::fxp::activation::{self, Activation};
use party_server::fxp::exp::{self, ExpCoefficients};
use party_server::fxp::norm::GroupNorm;
use party_server::fxp::recip::InversePower;
use party_server::fxp::softmax::{Softmax, SoftmaxConfig};
use party_server::gemm::Gemm;
use party_server::mpc::arith::{self, AShare, MatShape};
use party_server::mpc::bits::{plane_bits, words_for};
use party_server::mpc::compare::{self, CompareWidth};
use party_server::mpc::conv::{Conv2dShape, conv2d_fx};
use party_server::mpc::local::{self, deal, deal_bits, open, open_bits};
use party_server::mpc::{BShare, Ctx};
use shared::FixedPoint;
use std::sync::Barrier;
use std::time::Instant;

#[derive(Parser)]
#[command(about = "Measures every MPC protocol: time, bytes, rounds, error")]
struct Args {
    /// One JSON object per line instead of a table.
    #[arg(long)]
    json: bool,
    /// Small sizes (seconds, not minutes): exercised by the test command.
    #[arg(long)]
    quick: bool,
    /// Only ops whose name contains this.
    #[arg(long)]
    only: Option<String>,
    /// Fixed-point fraction bits.
    #[arg(long, default_value_t = 18)]
    frac_bits: u32,
}

struct Row {
    op: String,
    variant: &'static str,
    n: usize,
    k: Option<u32>,
    seconds: f64,
    cpu_seconds: [f64; 3],
    cpu_total: f64,
    bytes_per_party: u64,
    bytes_total: u64,
    rounds: u64,
    max_abs_err: f64,
}

/// Party-side measurement of one protocol call.
struct Measured<T> {
    out: [T; 3],
    seconds: f64,
    cpu: [f64; 3],
    cpu_total: f64,
    bytes: [u64; 3],
    rounds: u64,
}

fn measure<T: Send>(fx: FixedPoint, f: impl Fn(&mut Ctx) -> T + Sync) -> Measured<T> {
    let barrier = Barrier::new(3);
    let cpu0 = local::process_cpu_seconds();
    let res = local::run(fx, None, |ctx| {
        barrier.wait();
        let (t0, c0, s0) = (Instant::now(), local::thread_cpu_seconds(), ctx.stats());
        let out = f(ctx);
        let st = ctx.stats() - s0;
        (
            out,
            t0.elapsed().as_secs_f64(),
            local::thread_cpu_seconds() - c0,
            st,
        )
    });
    let cpu_total = local::process_cpu_seconds() - cpu0;
    let seconds = res.iter().map(|r| r.1).fold(0.0, f64::max);
    let cpu = std::array::from_fn(|i| res[i].2);
    let bytes = std::array::from_fn(|i| res[i].3.bytes_sent);
    let rounds = res.iter().map(|r| r.3.rounds).max().unwrap_or(0);
    Measured {
        out: res.map(|r| r.0),
        seconds,
        cpu,
        cpu_total,
        bytes,
        rounds,
    }
}

fn row<T>(
    op: &str,
    variant: &'static str,
    n: usize,
    k: Option<u32>,
    m: &Measured<T>,
    err: f64,
) -> Row {
    Row {
        op: op.to_string(),
        variant,
        n,
        k,
        seconds: m.seconds,
        cpu_seconds: m.cpu,
        cpu_total: m.cpu_total,
        bytes_per_party: *m.bytes.iter().max().unwrap_or(&0),
        bytes_total: m.bytes.iter().sum(),
        rounds: m.rounds,
        max_abs_err: err,
    }
}

/// `n` points spread over `[lo, hi]` in a scrambled order.
fn domain(n: usize, lo: f64, hi: f64) -> Vec<f64> {
    (0..n)
        .map(|i| lo + (hi - lo) * ((i * 7919) % n) as f64 / (n.max(2) - 1) as f64)
        .collect()
}

fn max_err(got: &[f64], want: impl Iterator<Item = f64>) -> f64 {
    got.iter()
        .zip(want)
        .map(|(g, w)| (g - w).abs())
        .fold(0.0, f64::max)
}

struct Bench {
    fx: FixedPoint,
    n: usize,
    quick: bool,
    rows: Vec<Row>,
}

impl Bench {
    fn enc(&self, xs: &[f64]) -> Vec<u64> {
        self.fx.encode_slice(xs).expect("inputs in range")
    }
    fn dec(&self, v: &[u64]) -> Vec<f64> {
        self.fx.decode_slice(v)
    }
    /// The fixed-point value the parties actually get.
    fn q(&self, xs: &[f64]) -> Vec<f64> {
        self.dec(&self.enc(xs))
    }

    /// An element-wise op on inputs from `[lo, hi]`.
    fn unary(
        &mut self,
        op: &str,
        variant: &'static str,
        k: Option<u32>,
        (lo, hi): (f64, f64),
        reference: impl Fn(f64) -> f64,
        f: impl Fn(&mut Ctx, &AShare) -> AShare + Sync,
    ) {
        let xs = domain(self.n, lo, hi);
        let sx = deal(&self.enc(&xs), 1);
        let m = measure(self.fx, |ctx| f(ctx, &sx[ctx.index()]));
        let got = self.dec(&open(&m.out));
        let err = max_err(&got, self.q(&xs).into_iter().map(&reference));
        self.rows.push(row(op, variant, self.n, k, &m, err));
    }

    fn run_all(&mut self, only: Option<&str>) {
        let fx = self.fx;
        let want = |name: &str| only.is_none_or(|o| name.contains(o));
        let n = self.n;

        if want("mul") {
            let xs = domain(n, -10.0, 10.0);
            let ys: Vec<f64> = xs.iter().rev().cloned().collect();
            let (sx, sy) = (deal(&self.enc(&xs), 1), deal(&self.enc(&ys), 2));
            let m = measure(fx, |ctx| {
                arith::mul_fx(ctx, &sx[ctx.index()], &sy[ctx.index()]).unwrap()
            });
            let got = self.dec(&open(&m.out));
            let (qx, qy) = (self.q(&xs), self.q(&ys));
            let err = max_err(&got, qx.iter().zip(&qy).map(|(a, b)| a * b));
            self.rows.push(row("mul", "-", n, None, &m, err));
        }
        if want("matmul") {
            let (mm, kk, nn) = if self.quick {
                (16, 64, 64)
            } else {
                (64, 576, 784)
            };
            let xs = domain(mm * kk, -1.0, 1.0);
            let ys = domain(kk * nn, -1.0, 1.0);
            let (sx, sy) = (deal(&self.enc(&xs), 3), deal(&self.enc(&ys), 4));
            let shape = MatShape {
                m: mm,
                k: kk,
                n: nn,
                y_transposed: false,
            };
            let m = measure(fx, |ctx| {
                arith::matmul_fx(ctx, &sx[ctx.index()], &sy[ctx.index()], shape).unwrap()
            });
            let got = self.dec(&open(&m.out));
            let (qx, qy) = (self.q(&xs), self.q(&ys));
            let reference = (0..mm * nn).map(|o| {
                (0..kk)
                    .map(|j| qx[(o / nn) * kk + j] * qy[j * nn + o % nn])
                    .sum::<f64>()
            });
            let err = max_err(&got, reference);
            self.rows.push(row(
                &format!("matmul {mm}x{kk}x{nn}"),
                "-",
                mm * nn,
                None,
                &m,
                err,
            ));
        }
        if want("conv2d") {
            let c = if self.quick { 8 } else { 64 };
            let s = Conv2dShape {
                batch: 1,
                c_in: c,
                height: 28,
                width: 28,
                c_out: c,
                kernel: 3,
                stride: 1,
                padding: 1,
            };
            let xs = domain(c * 28 * 28, -1.0, 1.0);
            let ws = domain(c * c * 9, -0.2, 0.2);
            let (sx, sw) = (deal(&self.enc(&xs), 12), deal(&self.enc(&ws), 13));
            let m = measure(fx, |ctx| {
                conv2d_fx(ctx, &sx[ctx.index()], &sw[ctx.index()], None, s).unwrap()
            });
            let got = self.dec(&open(&m.out));
            let (qx, qw) = (self.q(&xs), self.q(&ws));
            let reference = (0..got.len()).map(|o| {
                let (co, p) = (o / 784, o % 784);
                let (oy, ox) = (p / 28, p % 28);
                let mut acc = 0.0;
                for ci in 0..c {
                    for ky in 0..3 {
                        for kx in 0..3 {
                            let (iy, ix) =
                                (oy as isize + ky as isize - 1, ox as isize + kx as isize - 1);
                            if (0..28).contains(&iy) && (0..28).contains(&ix) {
                                acc += qx[ci * 784 + iy as usize * 28 + ix as usize]
                                    * qw[((co * c + ci) * 3 + ky) * 3 + kx];
                            }
                        }
                    }
                }
                acc
            });
            let err = max_err(&got, reference);
            self.rows.push(row(
                &format!("conv2d {c}->{c} 28x28 3x3"),
                "-",
                got.len(),
                None,
                &m,
                err,
            ));
        }
        if want("trunc") {
            let scale = fx.encode(1.0).expect("one");
            self.unary(
                "trunc",
                "-",
                None,
                (-100.0, 100.0),
                |x| x,
                |ctx, x| arith::trunc(ctx, &x.mul_public_scalar(scale), fx.frac_bits()).unwrap(),
            );
        }
        if want("msb") {
            let xs = domain(n, -1000.0, 1000.0);
            let sx = deal(&self.enc(&xs), 5);
            let m = measure(fx, |ctx| compare::msb(ctx, &sx[ctx.index()], 32).unwrap());
            let bits = plane_bits(&open_bits(&m.out), n);
            let err = max_err(
                &bits.iter().map(|&b| b as f64).collect::<Vec<_>>(),
                self.q(&xs).iter().map(|&x| f64::from(u8::from(x < 0.0))),
            );
            self.rows.push(row("msb", "-", n, Some(32), &m, err));
        }
        if want("relu") {
            self.unary(
                "relu",
                "-",
                Some(32),
                (-8.0, 8.0),
                |x| x.max(0.0),
                |ctx, x| compare::relu(ctx, x, 32).unwrap(),
            );
        }
        if want("b2a") || want("mul_ba") {
            let bits: Vec<u64> = (0..words_for(n))
                .map(|i| (i as u64).wrapping_mul(0x9e37_79b9_7f4a_7c15))
                .collect();
            let plain: Vec<f64> = plane_bits(&bits, n).iter().map(|&b| b as f64).collect();
            let sb: [BShare; 3] = deal_bits(&bits, 6);
            if want("b2a") {
                let m = measure(fx, |ctx| {
                    compare::b2a_bit(ctx, &sb[ctx.index()], n).unwrap()
                });
                let got: Vec<f64> = open(&m.out).iter().map(|&v| v as f64).collect();
                let err = max_err(&got, plain.iter().cloned());
                self.rows.push(row("b2a", "-", n, None, &m, err));
            }
            if want("mul_ba") {
                let xs = domain(n, -10.0, 10.0);
                let sx = deal(&self.enc(&xs), 7);
                let m = measure(fx, |ctx| {
                    compare::mul_ba(ctx, &sb[ctx.index()], &sx[ctx.index()]).unwrap()
                });
                let got = self.dec(&open(&m.out));
                let err = max_err(&got, self.q(&xs).iter().zip(&plain).map(|(x, b)| x * b));
                self.rows.push(row("mul_ba", "-", n, None, &m, err));
            }
        }
        if want("reciprocal") {
            let r = InversePower::reciprocal(0, 8);
            self.unary(
                "reciprocal [1,256)",
                "-",
                Some(r.ring_bits(fx.frac_bits())),
                (1.0, 255.0),
                |x| 1.0 / x,
                |ctx, x| r.eval(ctx, x, None).unwrap(),
            );
        }
        if want("rsqrt") {
            let r = InversePower::inverse_sqrt(-7, 10);
            self.unary(
                "rsqrt [2^-7,2^10)",
                "-",
                Some(r.ring_bits(fx.frac_bits())),
                (0.01, 1000.0),
                |x| 1.0 / x.sqrt(),
                |ctx, x| r.eval(ctx, x, None).unwrap(),
            );
        }
        if want("exp") {
            self.unary(
                "exp [-14,0]",
                "baseline",
                None,
                (-14.0, 0.0),
                f64::exp,
                |ctx, x| exp::exp_baseline(ctx, x).unwrap(),
            );
            for (name, coeffs) in [
                ("fitted", ExpCoefficients::Fitted(exp::DEFAULT_EXP_DEGREE)),
                ("paper coeffs", ExpCoefficients::Paper),
            ] {
                let series = coeffs.series();
                self.unary(
                    &format!("exp [-14,0] ({name})"),
                    "cipherdm",
                    Some(32),
                    (-14.0, 0.0),
                    f64::exp,
                    |ctx, x| {
                        exp::exp_chebyshev(ctx, x, &series, CompareWidth { drop: 0, k: 32 })
                            .unwrap()
                    },
                );
            }
        }
        for act in Activation::ALL {
            if !want(act.name()) {
                continue;
            }
            for (variant, label, k) in [
                (
                    Variant::Baseline,
                    "baseline",
                    activation::BASELINE_RING_BITS,
                ),
                (Variant::CipherDm, "cipherdm", activation::COMPARE_RING_BITS),
            ] {
                let model = act.model(variant);
                self.unary(
                    &format!("{} [-8,8]", act.name()),
                    label,
                    Some(k),
                    (-8.0, 8.0),
                    |x| act.exact(x),
                    |ctx, x| model.eval(ctx, x).unwrap(),
                );
            }
        }
        if want("softmax") {
            let (rows, cols) = if self.quick { (8, 196) } else { (196, 196) };
            let xs: Vec<f64> = (0..rows * cols)
                .map(|i| 14.0 * (((i * 7919) % 197) as f64 / 196.0) - 7.0)
                .collect();
            let qx = self.q(&xs);
            let reference: Vec<f64> = qx
                .chunks(cols)
                .flat_map(|r| {
                    let mx = r.iter().cloned().fold(f64::MIN, f64::max);
                    let s: f64 = r.iter().map(|v| (v - mx).exp()).sum();
                    r.iter()
                        .map(move |v| (v - mx).exp() / s)
                        .collect::<Vec<_>>()
                })
                .collect();
            let sx = deal(&self.enc(&xs), 8);
            for (variant, label) in [
                (Variant::Baseline, "baseline"),
                (Variant::CipherDm, "cipherdm"),
            ] {
                let sm = Softmax::new(variant, cols, SoftmaxConfig::default());
                let m = measure(fx, |ctx| {
                    sm.eval(ctx, &sx[ctx.index()], rows, cols).unwrap()
                });
                let got = self.dec(&open(&m.out));
                let err = max_err(&got, reference.iter().cloned());
                self.rows.push(row(
                    &format!("softmax {rows}x{cols}"),
                    label,
                    rows * cols,
                    Some(32),
                    &m,
                    err,
                ));
            }
        }
        if want("groupnorm") {
            let (c, hw, g) = if self.quick {
                (8, 49, 4)
            } else {
                (64, 784, 32)
            };
            let xs: Vec<f64> = domain(c * hw, -3.0, 5.0);
            let gam: Vec<f64> = (0..c).map(|i| 0.5 + 0.01 * i as f64).collect();
            let bet: Vec<f64> = (0..c).map(|i| 0.1 * (i % 7) as f64).collect();
            let (sx, sg, sb) = (
                deal(&self.enc(&xs), 9),
                deal(&self.enc(&gam), 10),
                deal(&self.enc(&bet), 11),
            );
            let gn = GroupNorm::new(1, c, hw, g, 1e-5);
            let m = measure(fx, |ctx| {
                gn.eval(ctx, &sx[ctx.index()], &sg[ctx.index()], &sb[ctx.index()])
                    .unwrap()
            });
            let got = self.dec(&open(&m.out));
            let qx = self.q(&xs);
            let gl = c / g * hw;
            let reference = (0..c * hw).map(|i| {
                let grp = &qx[i / gl * gl..(i / gl + 1) * gl];
                let mean = grp.iter().sum::<f64>() / gl as f64;
                let var = grp.iter().map(|v| (v - mean).powi(2)).sum::<f64>() / gl as f64;
                gam[i / hw] * (qx[i] - mean) / (var + 1e-5).sqrt() + bet[i / hw]
            });
            let err = max_err(&got, reference);
            self.rows.push(row(
                &format!("groupnorm C{c} {hw} G{g}"),
                "-",
                c * hw,
                None,
                &m,
                err,
            ));
        }
    }
}

/// Single-thread u64 ring GEMM vs f32 GEMM on the conv shape, in Gop/s.
fn gemm_line(quick: bool) -> (String, f64, f64) {
    let (m, k, n) = (64, 576, 784);
    let reps = if quick { 2 } else { 20 };
    let a: Vec<u64> = (0..m * k)
        .map(|i| (i as u64).wrapping_mul(0x9e37_79b9))
        .collect();
    let b: Vec<u64> = (0..k * n)
        .map(|i| (i as u64).wrapping_mul(0x7f4a_7c15))
        .collect();
    let mut c = vec![0u64; m * n];
    let g = Gemm {
        single_thread: true,
        ..Default::default()
    };
    let best = |f: &mut dyn FnMut()| {
        (0..reps)
            .map(|_| {
                let t = Instant::now();
                f();
                t.elapsed().as_secs_f64()
            })
            .fold(f64::MAX, f64::min)
    };
    let ops = 2.0 * (m * k * n) as f64;
    let t_u64 = best(&mut || g.run(m, k, n, &a, &b, &mut c));
    let af: Vec<f32> = a.iter().map(|&v| (v % 1000) as f32).collect();
    let bf: Vec<f32> = b.iter().map(|&v| (v % 1000) as f32).collect();
    let mut cf = vec![0f32; m * n];
    let t_f32 = best(&mut || unsafe {
        // SAFETY: the pointers and strides describe the row-major m×k, k×n
        // and m×n buffers above, which outlive the call.
        matrixmultiply::sgemm(
            m,
            k,
            n,
            1.0,
            af.as_ptr(),
            k as isize,
            1,
            bf.as_ptr(),
            n as isize,
            1,
            0.0,
            cf.as_mut_ptr(),
            n as isize,
            1,
        )
    });
    (format!("{m}x{k}x{n}"), ops / t_u64 / 1e9, ops / t_f32 / 1e9)
}

fn main() {
    party_server::alloc::keep_freed_memory();
    let args = Args::parse();
    let fx = FixedPoint::new(args.frac_bits).unwrap_or_else(|e| {
        eprintln!("error: {e}");
        std::process::exit(2)
    });
    let n = if args.quick { 4096 } else { 1 << 16 };
    let mut bench = Bench {
        fx,
        n,
        quick: args.quick,
        rows: Vec::new(),
    };
    bench.run_all(args.only.as_deref());
    let gemm = args
        .only
        .as_deref()
        .is_none_or(|o| "gemm".contains(o))
        .then(|| gemm_line(args.quick));

    if args.json {
        for r in &bench.rows {
            let v = serde_json::json!({
                "op": r.op, "variant": r.variant, "n": r.n, "k": r.k, "seconds": r.seconds,
                "cpu_seconds_per_party": r.cpu_seconds, "cpu_seconds_process": r.cpu_total, "bytes_per_party": r.bytes_per_party,
                "bytes_total": r.bytes_total, "rounds": r.rounds, "max_abs_err": r.max_abs_err,
            });
            println!("{v}");
        }
        if let Some((shape, u, f)) = &gemm {
            println!(
                "{}",
                serde_json::json!({"op": "gemm", "variant": "-", "shape": shape, "u64_gops_single_thread": u, "f32_gops_single_thread": f, "ratio_u64_over_f32": u / f})
            );
        }
        return;
    }
    println!(
        "three in-process parties, {} fraction bits, release build",
        fx.frac_bits()
    );
    println!(
        "{:<26} {:<14} {:>7} {:>4} {:>9} {:>20} {:>9} {:>10} {:>9} {:>7} {:>10}",
        "op",
        "variant",
        "n",
        "k",
        "wall s",
        "cpu s P0/P1/P2",
        "cpu s all",
        "B/elem tot",
        "B/party",
        "rounds",
        "max err"
    );
    for r in &bench.rows {
        println!(
            "{:<26} {:<14} {:>7} {:>4} {:>9.4} {:>20} {:>9.3} {:>10.1} {:>9} {:>7} {:>10.2e}",
            r.op,
            r.variant,
            r.n,
            r.k.map_or("-".into(), |k| k.to_string()),
            r.seconds,
            format!(
                "{:.3}/{:.3}/{:.3}",
                r.cpu_seconds[0], r.cpu_seconds[1], r.cpu_seconds[2]
            ),
            r.cpu_total,
            r.bytes_total as f64 / r.n as f64,
            r.bytes_per_party,
            r.rounds,
            r.max_abs_err
        );
    }
    if let Some((shape, u, f)) = gemm {
        println!(
            "gemm {shape} single thread: u64 ring {u:.1} Gop/s, f32 {f:.1} Gop/s (u64/f32 = {:.2})",
            u / f
        );
    }
}
