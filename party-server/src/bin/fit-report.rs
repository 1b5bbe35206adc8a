//! Prints every polynomial approximation the engine uses — domain, degree,
//! and max error over the domain — as fitted by code at run time (no
//! coefficient is typed in; the paper's Table 3 is listed only to show its
//! error).  Re-run after changing a fit:
//!
//! `cargo run --release --bin fit-report`

use party_server::fxp::Variant;
use party_server::fxp::activation::Activation;
use party_server::fxp::exp::{DEFAULT_EXP_DEGREE, ExpCoefficients};
use party_server::fxp::poly::Chebyshev;
use party_server::fxp::recip::{INVERSE_SQRT_DEGREE, RECIPROCAL_DEGREE};
use party_server::fxp::softmax::SoftmaxConfig;

const SAMPLES: usize = 100_001;

fn line(name: &str, domain: (f64, f64), degree: &str, err: f64, note: &str) {
    println!(
        "{name:<34} [{:>6.2}, {:>6.2}] {degree:>10} {err:>12.3e}  {note}",
        domain.0, domain.1
    );
}

fn main() {
    println!(
        "{:<34} {:<16} {:>10} {:>12}  note",
        "approximation", "domain", "degree", "max |err|"
    );
    for d in [6, 7, DEFAULT_EXP_DEGREE, 9, 10, 12] {
        let s = ExpCoefficients::Fitted(d).series();
        let note = if d == DEFAULT_EXP_DEGREE {
            "default (softmax)"
        } else {
            ""
        };
        line(
            "exp, Chebyshev interpolation",
            (s.lo, s.hi),
            &d.to_string(),
            s.max_error(f64::exp, SAMPLES),
            note,
        );
    }
    let paper = ExpCoefficients::Paper.series();
    line(
        "exp, paper Table 3",
        (paper.lo, paper.hi),
        "7",
        paper.max_error(f64::exp, SAMPLES),
        "reproduces the paper only",
    );
    let softmax_degree = SoftmaxConfig::default().recip_degree;
    for (d, note) in [
        (RECIPROCAL_DEGREE, "after normalisation"),
        (softmax_degree, "softmax row sums"),
    ] {
        let recip = Chebyshev::fit(|c| 1.0 / c, 0.5, 1.0, d);
        line(
            "1/c (relative)",
            (0.5, 1.0),
            &d.to_string(),
            relative(&recip, |c| 1.0 / c),
            note,
        );
    }
    let rsqrt = Chebyshev::fit(|c| 1.0 / c.sqrt(), 0.25, 1.0, INVERSE_SQRT_DEGREE);
    line(
        "1/sqrt(c) (relative)",
        (0.25, 1.0),
        &INVERSE_SQRT_DEGREE.to_string(),
        relative(&rsqrt, |c| 1.0 / c.sqrt()),
        "after normalisation",
    );
    for act in Activation::ALL {
        for variant in [Variant::Baseline, Variant::CipherDm] {
            let m = act.model(variant);
            let label = format!("{} ({variant:?})", act.name());
            line(
                &label,
                (-8.0, 8.0),
                "-",
                m.max_error(-8.0, 8.0, SAMPLES),
                "plaintext model of the protocol",
            );
        }
    }
}

fn relative(p: &Chebyshev, f: impl Fn(f64) -> f64) -> f64 {
    (0..SAMPLES)
        .map(|i| p.lo + (p.hi - p.lo) * i as f64 / (SAMPLES - 1) as f64)
        .map(|x| (p.eval(x) / f(x) - 1.0).abs())
        .fold(0.0, f64::max)
}
