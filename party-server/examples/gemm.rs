//! Throughput of the Z_2^64 GEMM against an f32 SGEMM on the same shape.
//!
//! `cargo run --release -p party-server --example gemm [M K N] [REPS]`
//! (default: 64 576 784, the conv im2col shape). Prints the best of REPS
//! runs in Gop/s, counting a multiply-add as two operations.

use std::hint::black_box;
use std::time::Instant;

use party_server::gemm::Gemm;

fn best_gops(m: usize, k: usize, n: usize, reps: usize, mut f: impl FnMut()) -> f64 {
    f(); // warm caches, page in buffers, start rayon's pool
    let best = (0..reps)
        .map(|_| {
            let t = Instant::now();
            f();
            t.elapsed().as_secs_f64()
        })
        .fold(f64::INFINITY, f64::min);
    2.0 * (m * k * n) as f64 / best / 1e9
}

fn main() {
    let args: Vec<usize> = std::env::args()
        .skip(1)
        .map(|s| s.parse().expect("arguments: M K N [REPS]"))
        .collect();
    let (m, k, n) = match args[..] {
        [m, k, n, ..] => (m, k, n),
        _ => (64, 576, 784),
    };
    let reps = args.get(3).copied().unwrap_or(50);

    let mut x = 0x2545_f491_4f6c_dd1du64;
    let mut next = move || {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        x
    };
    let a: Vec<u64> = (0..m * k).map(|_| next()).collect();
    let b: Vec<u64> = (0..k * n).map(|_| next()).collect();
    let mut c = vec![0u64; m * n];
    let af: Vec<f32> = a.iter().map(|&v| (v >> 40) as f32).collect();
    let bf: Vec<f32> = b.iter().map(|&v| (v >> 40) as f32).collect();
    let mut cf = vec![0f32; m * n];

    println!("{m}×{k}×{n}, best of {reps}, Gop/s (2 per multiply-add)");
    let cases = [
        (
            "u64 gemm, 1 thread",
            Gemm {
                single_thread: true,
                ..Gemm::default()
            },
        ),
        (
            "u64 gemm_acc, 1 thread",
            Gemm {
                single_thread: true,
                accumulate: true,
                ..Gemm::default()
            },
        ),
        (
            "u64 gemm_bt, 1 thread",
            Gemm {
                single_thread: true,
                b_transposed: true,
                ..Gemm::default()
            },
        ),
        ("u64 gemm, all threads", Gemm::default()),
    ];
    for (name, op) in cases {
        let g = best_gops(m, k, n, reps, || op.run(m, k, n, black_box(&a), &b, &mut c));
        println!("{name:>26}: {g:6.2}");
    }
    let g = best_gops(m, k, n, reps, || {
        // SAFETY: the pointers and row-major strides describe the three
        // vectors above, which outlive the call.
        unsafe {
            matrixmultiply::sgemm(
                m,
                k,
                n,
                1.0,
                black_box(af.as_ptr()),
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
        }
    });
    println!("{:>26}: {g:6.2}", "f32 sgemm, 1 thread");
    println!("{:>26}: {}", "rayon threads", rayon::current_num_threads());
}
