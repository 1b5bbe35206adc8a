//! DDPM and DDIM samplers over any [`Backend`].
//!
//! Every per-step update is a linear combination with public scalars (plus a
//! clamp for DDIM's x0 clipping), so the secure engine runs the same code.
//! Noise is supplied by the caller (the client provides x_T and, for DDPM,
//! the per-step noise as inputs).
//!
//! Conventions: timesteps are 0-based indices into the schedule,
//! `t ∈ [0, T)`; β is linear from `beta_start` to `beta_end` over T values;
//! `ᾱ_t = Π_{s≤t} (1 − β_s)`.

use crate::model::{Backend, ModelError, Prediction, Result, UNet};

/// The noise schedule (computed in f64 in the clear; the coefficients are public).
#[derive(Clone, Debug)]
pub struct Schedule {
    /// β_t, t = 0..T.
    pub betas: Vec<f64>,
    /// ᾱ_t, t = 0..T.
    pub alphas_cumprod: Vec<f64>,
}

impl Schedule {
    /// Linear betas from `start` to `end` (inclusive) over `t` steps.
    pub fn linear(t: usize, start: f64, end: f64) -> Self {
        let betas: Vec<f64> = (0..t)
            .map(|i| {
                if t == 1 {
                    start
                } else {
                    start + (end - start) * i as f64 / (t - 1) as f64
                }
            })
            .collect();
        let mut alphas_cumprod = Vec::with_capacity(t);
        let mut p = 1.0;
        for b in &betas {
            p *= 1.0 - b;
            alphas_cumprod.push(p);
        }
        Schedule {
            betas,
            alphas_cumprod,
        }
    }

    /// The project's default: T = 1000, β linear 1e-4 … 0.02.
    pub fn default_linear() -> Self {
        Self::linear(1000, 1e-4, 0.02)
    }

    /// Number of diffusion steps T.
    pub fn num_steps(&self) -> usize {
        self.betas.len()
    }

    /// Forward-process coefficients `(sqrt(ᾱ_t), sqrt(1 − ᾱ_t))` for
    /// `x_t = sqrt(ᾱ_t)·x0 + sqrt(1 − ᾱ_t)·ε` (training).
    pub fn q_coeffs(&self, t: usize) -> (f64, f64) {
        let a = self.alphas_cumprod[t];
        (a.sqrt(), (1.0 - a).sqrt())
    }
}

/// Which sampler to run.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SamplerKind {
    /// Ancestral DDPM over all T steps, σ_t = sqrt(β_t).
    Ddpm,
    /// Deterministic DDIM (η = 0) over `steps` uniformly spaced timesteps, x0 clipped to [−1, 1].
    Ddim {
        /// Number of denoising steps S.
        steps: usize,
    },
}

impl SamplerKind {
    /// Parse "ddpm" / "ddim" with a step count (ignored for DDPM).
    pub fn parse(name: &str, steps: usize) -> Option<Self> {
        match name {
            "ddpm" => Some(SamplerKind::Ddpm),
            "ddim" => Some(SamplerKind::Ddim { steps }),
            _ => None,
        }
    }

    /// The descending timesteps at which the model is evaluated.
    pub fn timesteps(&self, sched: &Schedule) -> Vec<usize> {
        match *self {
            SamplerKind::Ddpm => (0..sched.num_steps()).rev().collect(),
            SamplerKind::Ddim { steps } => ddim_timesteps(sched.num_steps(), steps),
        }
    }

    /// Number of fresh noise tensors the caller must supply after x_T
    /// (DDPM: one per step except the last; DDIM: none).
    pub fn noise_tensors_needed(&self, sched: &Schedule) -> usize {
        match *self {
            SamplerKind::Ddpm => sched.num_steps() - 1,
            SamplerKind::Ddim { .. } => 0,
        }
    }
}

/// DDIM's uniform ("leading") timesteps: `k·⌊T/S⌋` for k = S−1 … 0.
pub fn ddim_timesteps(t: usize, s: usize) -> Vec<usize> {
    let s = s.clamp(1, t);
    let ratio = t / s;
    (0..s).rev().map(|k| k * ratio).collect()
}

/// How the network's output `o` turns into the two quantities the samplers
/// need: `x0 = x0_x·x_t + x0_out·o` and `ε = eps_x·x_t + eps_out·o`.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct OutputCoeffs {
    /// see the type
    pub x0_x: f64,
    /// see the type
    pub x0_out: f64,
    /// see the type
    pub eps_x: f64,
    /// see the type
    pub eps_out: f64,
}

/// The output conversion at timestep `t` for a model predicting `prediction`.
pub fn output_coeffs(sched: &Schedule, t: usize, prediction: Prediction) -> OutputCoeffs {
    let (a, b) = sched.q_coeffs(t);
    match prediction {
        Prediction::Epsilon => OutputCoeffs {
            x0_x: 1.0 / a,
            x0_out: -b / a,
            eps_x: 0.0,
            eps_out: 1.0,
        },
        // v = a·ε − b·x0 and x_t = a·x0 + b·ε, with a² + b² = 1.
        Prediction::VPrediction => OutputCoeffs {
            x0_x: a,
            x0_out: -b,
            eps_x: b,
            eps_out: a,
        },
    }
}

/// Public coefficients of one DDIM step (η = 0).
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct DdimCoeffs {
    /// x0 = `x0_x`·x_t + `x0_out`·o (o: the network's output)
    pub x0_x: f32,
    /// see `x0_x`
    pub x0_out: f32,
    /// ε = `eps_x`·x_t + `eps_out`·o
    pub eps_x: f32,
    /// see `eps_x`
    pub eps_out: f32,
    /// x_prev = `prev_x0`·clip(x0) + `prev_eps`·ε
    pub prev_x0: f32,
    /// see `prev_x0`
    pub prev_eps: f32,
}

/// DDIM coefficients from t to `t_prev` (`None`: the final step, ᾱ_prev = 1).
pub fn ddim_coeffs(
    sched: &Schedule,
    t: usize,
    t_prev: Option<usize>,
    prediction: Prediction,
) -> DdimCoeffs {
    let o = output_coeffs(sched, t, prediction);
    let ap = t_prev.map_or(1.0, |p| sched.alphas_cumprod[p]);
    DdimCoeffs {
        x0_x: o.x0_x as f32,
        x0_out: o.x0_out as f32,
        eps_x: o.eps_x as f32,
        eps_out: o.eps_out as f32,
        prev_x0: ap.sqrt() as f32,
        prev_eps: (1.0 - ap).sqrt() as f32,
    }
}

/// One DDIM step (η = 0, x0 clipped to [−1, 1]) from the network output `out`.
pub fn ddim_step<B: Backend>(
    be: &mut B,
    x: &B::Tensor,
    out: &B::Tensor,
    c: DdimCoeffs,
) -> Result<B::Tensor> {
    let x0 = be.lincomb(c.x0_x, x, c.x0_out, out)?;
    let x0 = be.clamp(&x0, -1.0, 1.0)?;
    // ε-prediction: the output is ε itself (no extra rounding on shares).
    let eps = if c.eps_x == 0.0 && c.eps_out == 1.0 {
        out.clone()
    } else {
        be.lincomb(c.eps_x, x, c.eps_out, out)?
    };
    be.lincomb(c.prev_x0, &x0, c.prev_eps, &eps)
}

/// Public coefficients of one DDPM step.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct DdpmCoeffs {
    /// mean = `mean_x`·x_t + `mean_out`·o (o: the network's output)
    pub mean_x: f32,
    /// see `mean_x`
    pub mean_out: f32,
    /// σ_t = sqrt(β_t) (0 at t = 0)
    pub sigma: f32,
}

/// DDPM coefficients at t: `x_{t−1} = (x_t − β_t/sqrt(1−ᾱ_t)·ε)/sqrt(α_t) + σ_t·z`,
/// with ε written in terms of x_t and the output.
pub fn ddpm_coeffs(sched: &Schedule, t: usize, prediction: Prediction) -> DdpmCoeffs {
    let b = sched.betas[t];
    let a = 1.0 - b;
    let ab = sched.alphas_cumprod[t];
    let mean_x = 1.0 / a.sqrt();
    let mean_eps = -b / ((1.0 - ab).sqrt() * a.sqrt());
    let o = output_coeffs(sched, t, prediction);
    DdpmCoeffs {
        mean_x: (mean_x + mean_eps * o.eps_x) as f32,
        mean_out: (mean_eps * o.eps_out) as f32,
        sigma: if t > 0 { b.sqrt() as f32 } else { 0.0 },
    }
}

/// One DDPM step; `z` is the caller's standard-normal noise (ignored at t = 0).
pub fn ddpm_step<B: Backend>(
    be: &mut B,
    x: &B::Tensor,
    out: &B::Tensor,
    c: DdpmCoeffs,
    z: Option<&B::Tensor>,
) -> Result<B::Tensor> {
    let mean = be.lincomb(c.mean_x, x, c.mean_out, out)?;
    match z {
        Some(z) if c.sigma != 0.0 => be.lincomb(1.0, &mean, c.sigma, z),
        _ => Ok(mean),
    }
}

/// Run a sampler with an arbitrary denoiser `denoise(be, x_t, t)` whose
/// output stands for `prediction` (ε or v).
///
/// `x_t_init` is x_T (standard normal, from the caller); `noise(be, k)` must
/// return the k-th fresh noise tensor (DDPM only, k = 0 … T−2);
/// `progress(done, total)` is called after every step.
#[allow(clippy::type_complexity, clippy::too_many_arguments)]
pub fn sample_with<B: Backend>(
    be: &mut B,
    sched: &Schedule,
    kind: SamplerKind,
    prediction: Prediction,
    x_t_init: &B::Tensor,
    denoise: &mut dyn FnMut(&mut B, &B::Tensor, usize) -> Result<B::Tensor>,
    noise: &mut dyn FnMut(&mut B, usize) -> Result<B::Tensor>,
    progress: &mut dyn FnMut(usize, usize),
) -> Result<B::Tensor> {
    let ts = kind.timesteps(sched);
    let total = ts.len();
    let mut x = x_t_init.clone();
    for (k, &t) in ts.iter().enumerate() {
        let out = denoise(be, &x, t)?;
        x = match kind {
            SamplerKind::Ddim { .. } => {
                let c = ddim_coeffs(sched, t, ts.get(k + 1).copied(), prediction);
                ddim_step(be, &x, &out, c)?
            }
            SamplerKind::Ddpm => {
                let c = ddpm_coeffs(sched, t, prediction);
                if t > 0 {
                    let z = noise(be, k)?;
                    ddpm_step(be, &x, &out, c, Some(&z))?
                } else {
                    ddpm_step(be, &x, &out, c, None)?
                }
            }
        };
        progress(k + 1, total);
    }
    Ok(x)
}

/// The result of [`sample`].
pub struct Sampled<T> {
    /// x_0.
    pub x0: T,
    /// The network's first output (its prediction at x_T), against which a
    /// back end's per-step error is measured.
    pub first_output: T,
}

/// Run a sampler with a U-Net: `x_t_init` `[N, C, H, W]`, `class_onehot` `[N, classes]`.
#[allow(clippy::too_many_arguments)]
pub fn sample<B: Backend>(
    be: &mut B,
    unet: &UNet<B>,
    sched: &Schedule,
    kind: SamplerKind,
    x_t_init: &B::Tensor,
    class_onehot: Option<&B::Tensor>,
    noise: &mut dyn FnMut(&mut B, usize) -> Result<B::Tensor>,
    progress: &mut dyn FnMut(usize, usize),
) -> Result<Sampled<B::Tensor>> {
    let n = be.dims(x_t_init)[0];
    let mut first = None;
    let mut denoise = |be: &mut B, x: &B::Tensor, t: usize| {
        let out = unet.forward(be, x, &vec![t as f32; n], class_onehot)?;
        if first.is_none() {
            first = Some(out.clone());
        }
        Ok(out)
    };
    let prediction = unet.config().prediction_type;
    let x0 = sample_with(
        be,
        sched,
        kind,
        prediction,
        x_t_init,
        &mut denoise,
        noise,
        progress,
    )?;
    let first_output = first.ok_or_else(|| ModelError::Config("a sampler without steps".into()))?;
    Ok(Sampled { x0, first_output })
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;

    use super::*;
    use crate::model::{CpuBackend, CpuTensor};

    #[test]
    fn linear_schedule_values() {
        let s = Schedule::default_linear();
        assert_eq!(s.num_steps(), 1000);
        assert!((s.betas[0] - 1e-4).abs() < 1e-15);
        assert!((s.betas[999] - 0.02).abs() < 1e-15);
        assert!((s.alphas_cumprod[0] - 0.9999).abs() < 1e-12);
        // Independent reference values (f64 product): ᾱ_499, ᾱ_999.
        assert!((s.alphas_cumprod[499] - 0.078_587_242_881_778_21).abs() < 1e-12);
        assert!((s.alphas_cumprod[999] - 4.035_829_765_375_675e-5).abs() < 1e-15);
        let (a, b) = s.q_coeffs(999);
        assert!((a * a + b * b - 1.0).abs() < 1e-12);
    }

    #[test]
    fn ddim_timesteps_are_uniform_and_descending() {
        let ts = ddim_timesteps(1000, 50);
        assert_eq!(ts.len(), 50);
        assert_eq!(ts[0], 980);
        assert_eq!(ts[49], 0);
        assert!(ts.windows(2).all(|w| w[0] - w[1] == 20));
        assert_eq!(
            ddim_timesteps(1000, 1000),
            (0..1000).rev().collect::<Vec<_>>()
        );
        assert_eq!(
            SamplerKind::Ddpm
                .timesteps(&Schedule::default_linear())
                .len(),
            1000
        );
        assert_eq!(
            SamplerKind::parse("ddim", 7),
            Some(SamplerKind::Ddim { steps: 7 })
        );
        assert_eq!(SamplerKind::parse("euler", 7), None);
    }

    fn t(v: &[f32]) -> CpuTensor {
        CpuTensor::new(v.to_vec(), &[v.len()]).unwrap()
    }

    #[test]
    fn ddim_step_matches_the_direct_formula() {
        let s = Schedule::default_linear();
        let mut be = CpuBackend::with_weights(HashMap::new());
        let (tt, tp) = (500, 480);
        let x = [0.3f32, -1.2, 2.5, 0.0];
        let e = [0.1f32, 0.9, -0.4, 2.0];
        let c = ddim_coeffs(&s, tt, Some(tp), Prediction::Epsilon);
        let got = ddim_step(&mut be, &t(&x), &t(&e), c).unwrap().data;
        let (a, ap) = (s.alphas_cumprod[tt], s.alphas_cumprod[tp]);
        for i in 0..4 {
            let x0 = ((x[i] as f64 - (1.0 - a).sqrt() * e[i] as f64) / a.sqrt()).clamp(-1.0, 1.0);
            let want = ap.sqrt() * x0 + (1.0 - ap).sqrt() * e[i] as f64;
            assert!(
                (got[i] as f64 - want).abs() < 1e-5,
                "{i}: {} vs {want}",
                got[i]
            );
        }
        // Final step: ᾱ_prev = 1, the result is the clipped x0.
        let c = ddim_coeffs(&s, 0, None, Prediction::Epsilon);
        assert_eq!(c.prev_x0, 1.0);
        assert_eq!(c.prev_eps, 0.0);
    }

    #[test]
    fn ddpm_step_matches_the_direct_formula() {
        let s = Schedule::default_linear();
        let mut be = CpuBackend::with_weights(HashMap::new());
        let x = [0.3f32, -1.2];
        let e = [0.1f32, 0.9];
        let z = [1.5f32, -0.5];
        for tt in [0usize, 1, 700, 999] {
            let c = ddpm_coeffs(&s, tt, Prediction::Epsilon);
            let got = ddpm_step(&mut be, &t(&x), &t(&e), c, Some(&t(&z)))
                .unwrap()
                .data;
            let b = s.betas[tt];
            let ab = s.alphas_cumprod[tt];
            for i in 0..2 {
                let mut want =
                    (x[i] as f64 - b / (1.0 - ab).sqrt() * e[i] as f64) / (1.0 - b).sqrt();
                if tt > 0 {
                    want += b.sqrt() * z[i] as f64;
                }
                assert!(
                    (got[i] as f64 - want).abs() < 1e-5,
                    "t={tt}: {} vs {want}",
                    got[i]
                );
            }
        }
    }

    #[test]
    fn samplers_run_over_a_backend_with_caller_noise() {
        let s = Schedule::default_linear();
        let mut be = CpuBackend::with_weights(HashMap::new());
        // ε ≡ 0 and a small x_T: DDIM never clips, x0 = x_T / sqrt(ᾱ_980) exactly.
        let x_t = t(&[0.001, -0.002]);
        let mut zero = |be: &mut CpuBackend, x: &CpuTensor, _t: usize| be.scale(x, 0.0);
        let mut no_noise = |_: &mut CpuBackend, _: usize| -> Result<CpuTensor> { unreachable!() };
        let mut steps = 0;
        let y = sample_with(
            &mut be,
            &s,
            SamplerKind::Ddim { steps: 50 },
            Prediction::Epsilon,
            &x_t,
            &mut zero,
            &mut no_noise,
            &mut |k, n| {
                steps = k;
                assert_eq!(n, 50);
            },
        )
        .unwrap();
        assert_eq!(steps, 50);
        let a = s.alphas_cumprod[980].sqrt() as f32;
        assert!((y.data[0] - 0.001 / a).abs() < 1e-4 && (y.data[1] + 0.002 / a).abs() < 1e-4);
        // DDPM asks for exactly T − 1 noise tensors, in order.
        let mut asked = Vec::new();
        let mut noise = |be: &mut CpuBackend, k: usize| {
            asked.push(k);
            be.from_public(&[0.0, 0.0], &[2])
        };
        sample_with(
            &mut be,
            &s,
            SamplerKind::Ddpm,
            Prediction::Epsilon,
            &x_t,
            &mut zero,
            &mut noise,
            &mut |_, _| {},
        )
        .unwrap();
        assert_eq!(asked.len(), SamplerKind::Ddpm.noise_tensors_needed(&s));
        assert_eq!(asked, (0..999).collect::<Vec<_>>());
    }

    #[test]
    fn oracle_denoiser_recovers_the_data_point() {
        // With the exact ε (or v) for a single data point x0*, DDIM (and
        // DDPM's mean) land on x0*, whichever quantity the network predicts.
        let s = Schedule::default_linear();
        let target = [0.5f32, -0.25, 0.9, -1.0];
        for prediction in [Prediction::Epsilon, Prediction::VPrediction] {
            let mut oracle = |be: &mut CpuBackend, x: &CpuTensor, tt: usize| {
                let (a, b) = s.q_coeffs(tt);
                let (a, b) = (a as f32, b as f32);
                let x0 = be.from_public(&target, &[4])?;
                let eps = be.lincomb(1.0 / b, x, -a / b, &x0)?;
                match prediction {
                    Prediction::Epsilon => Ok(eps),
                    Prediction::VPrediction => be.lincomb(a, &eps, -b, &x0),
                }
            };
            let mut be = CpuBackend::with_weights(HashMap::new());
            let x_t = t(&[0.3, -1.1, 2.0, 0.7]);
            for kind in [
                SamplerKind::Ddim { steps: 50 },
                SamplerKind::Ddim { steps: 7 },
                SamplerKind::Ddpm,
            ] {
                let mut zero_noise =
                    |be: &mut CpuBackend, _k: usize| be.from_public(&[0.0; 4], &[4]);
                let y = sample_with(
                    &mut be,
                    &s,
                    kind,
                    prediction,
                    &x_t,
                    &mut oracle,
                    &mut zero_noise,
                    &mut |_, _| {},
                )
                .unwrap();
                for (got, want) in y.data.iter().zip(&target) {
                    assert!(
                        (got - want).abs() < 2e-3,
                        "{prediction:?} {kind:?}: {:?}",
                        y.data
                    );
                }
            }
        }
    }

    #[test]
    fn output_conversions_invert_the_forward_process() {
        // x_t = a·x0 + b·ε; feeding the true ε or v must give back x0 and ε.
        let s = Schedule::default_linear();
        let (x0, eps) = (0.7f64, -1.3f64);
        for tt in [0usize, 1, 500, 999] {
            let (a, b) = s.q_coeffs(tt);
            let x = a * x0 + b * eps;
            for (p, out) in [
                (Prediction::Epsilon, eps),
                (Prediction::VPrediction, a * eps - b * x0),
            ] {
                let c = output_coeffs(&s, tt, p);
                let tol = if p == Prediction::Epsilon {
                    1e-9 / a
                } else {
                    1e-9
                };
                assert!(
                    (c.x0_x * x + c.x0_out * out - x0).abs() < tol,
                    "{p:?} t={tt}"
                );
                assert!(
                    (c.eps_x * x + c.eps_out * out - eps).abs() < 1e-9,
                    "{p:?} t={tt}"
                );
            }
        }
    }
}
