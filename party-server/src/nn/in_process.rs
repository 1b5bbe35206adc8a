//! The whole product in one process: the model owner's weights and the
//! client's request are dealt to shares, three party threads run the
//! sampler on them, and the result is opened.  For benchmarks and sample
//! quality studies; the servers deal and open across real links instead.

use super::{OpProfile, SecureBackend, SecureConfig, SecureTensor};
use crate::fxp::Variant;
use crate::model::{CpuTensor, ModelError, Result, UNet, UNetConfig};
use crate::mpc::local::{self, deal, open};
use crate::mpc::{AShare, Ctx};
use crate::net::shaped::{self, Lan};
use crate::sampler::{self, SamplerKind, Schedule};
use shared::FixedPoint;
use std::collections::{BTreeMap, HashMap};
use std::sync::Barrier;
use std::time::Instant;

/// The client's side of one request, in the clear before dealing.
pub struct Request<'a> {
    /// `[n, C, H, W]`
    pub shape: [usize; 4],
    /// x_T, standard normal.
    pub x_t: &'a [f32],
    /// `[n, classes]`, for class-conditional models.
    pub onehot: Option<&'a [f32]>,
    /// DDPM's fresh noise: one tensor per step that adds noise.
    pub noise: &'a [Vec<f32>],
}

/// How the three parties are linked.
#[derive(Clone, Copy, Debug)]
pub enum Links {
    /// In memory.
    Memory,
    /// In memory, with the truncation audit on (inflates the bytes).
    Audited,
    /// In memory, shaped to an emulated LAN.
    Lan(Lan),
}

/// How the three parties are set up.
#[derive(Clone, Copy, Debug)]
pub struct Setup {
    pub fx: FixedPoint,
    pub links: Links,
    /// Seeds the parties' PRG keys, for reproducible tests; `None`: from the OS.
    pub seed: Option<u64>,
}

/// The opened result of a run and what it cost.
pub struct Run {
    /// x_0, opened.
    pub sample: Vec<f32>,
    /// The network's first output (at x_T), opened.
    pub first_output: Vec<f32>,
    /// Wall time of the slowest party's sampling loop.
    pub seconds: f64,
    /// CPU seconds of each party's thread.
    pub cpu: [f64; 3],
    /// CPU seconds of the whole process (parties and helper threads).
    pub cpu_process: f64,
    /// Bytes each party sent.
    pub bytes: [u64; 3],
    pub rounds: u64,
    /// Audited runs only: wrapped truncations and their summed risk.
    pub trunc_failures: u64,
    pub trunc_risk: u128,
    pub first_trunc_failure: Option<(&'static str, u64)>,
    /// Per layer kind, as P0 saw it.
    pub profile: BTreeMap<&'static str, OpProfile>,
}

/// Encodes and deals a plaintext tensor (reproducible from `seed`).
fn deal_f32(fx: FixedPoint, v: &[f32], seed: u64) -> Result<[AShare; 3]> {
    let enc = v
        .iter()
        .map(|&x| fx.encode(f64::from(x)))
        .collect::<std::result::Result<Vec<u64>, _>>()
        .map_err(|e| ModelError::Backend(e.to_string()))?;
    Ok(deal(&enc, seed))
}

/// Samples the request on shares with three in-process parties.
pub fn sample(
    cfg: &UNetConfig,
    weights: &HashMap<String, CpuTensor>,
    request: &Request<'_>,
    sched: &Schedule,
    kind: SamplerKind,
    variant: Variant,
    setup: Setup,
) -> Result<Run> {
    let Setup { fx, links, seed } = setup;
    let mut dealt: [HashMap<String, SecureTensor>; 3] = Default::default();
    let mut names: Vec<&String> = weights.keys().collect();
    names.sort();
    for (i, name) in names.into_iter().enumerate() {
        let t = &weights[name];
        for (p, s) in deal_f32(fx, &t.data, i as u64)?.into_iter().enumerate() {
            dealt[p].insert(name.clone(), SecureTensor::new(&t.shape, s)?);
        }
    }
    let shape = request.shape;
    let n = shape[0];
    let xs = deal_f32(fx, request.x_t, 1 << 40)?;
    let cs = request
        .onehot
        .map(|o| deal_f32(fx, o, (1 << 40) + 1))
        .transpose()?;
    let zs = request
        .noise
        .iter()
        .enumerate()
        .map(|(k, z)| deal_f32(fx, z, (1 << 41) + k as u64))
        .collect::<Result<Vec<_>>>()?;
    let barrier = Barrier::new(3);
    let cpu0 = local::process_cpu_seconds();
    let party = |ctx: &mut Ctx| -> Result<_> {
        let i = ctx.index();
        barrier.wait();
        let (t0, c0, s0) = (Instant::now(), local::thread_cpu_seconds(), ctx.stats());
        let mut be = SecureBackend::new(ctx, dealt[i].clone(), SecureConfig::new(variant));
        let net = UNet::new(cfg, &mut be)?;
        let x = SecureTensor::new(&shape, xs[i].clone())?;
        let c = cs
            .as_ref()
            .map(|c| SecureTensor::new(&[n, c[i].len() / n], c[i].clone()))
            .transpose()?;
        let mut noise = |_: &mut SecureBackend, k: usize| {
            let z = zs.get(k).ok_or_else(|| {
                ModelError::Backend(format!("the sampler asked for noise tensor {k}"))
            })?;
            SecureTensor::new(&shape, z[i].clone())
        };
        let sampled = sampler::sample(
            &mut be,
            &net,
            sched,
            kind,
            &x,
            c.as_ref(),
            &mut noise,
            &mut |_, _| {},
        )?;
        let profile = be.profile().clone();
        let first_fail = be.first_trunc_failure();
        drop(be);
        Ok((
            sampled.x0.data,
            sampled.first_output.data,
            t0.elapsed().as_secs_f64(),
            local::thread_cpu_seconds() - c0,
            ctx.stats() - s0,
            profile,
            first_fail,
        ))
    };
    let out = match links {
        Links::Memory => local::run(fx, seed, party),
        Links::Audited => local::run_audited(fx, seed, party),
        Links::Lan(lan) => local::run_over(fx, seed, shaped::shape(local::mem_links(), lan), party),
    };
    let cpu_process = local::process_cpu_seconds() - cpu0;
    let [o0, o1, o2] = out;
    let out = [o0?, o1?, o2?];
    let dec = |s: [AShare; 3]| -> Vec<f32> {
        fx.decode_slice(&open(&s))
            .into_iter()
            .map(|v| v as f32)
            .collect()
    };
    Ok(Run {
        sample: dec(std::array::from_fn(|i| out[i].0.clone())),
        first_output: dec(std::array::from_fn(|i| out[i].1.clone())),
        seconds: out.iter().map(|o| o.2).fold(0.0, f64::max),
        cpu: std::array::from_fn(|i| out[i].3),
        cpu_process,
        bytes: std::array::from_fn(|i| out[i].4.bytes_sent),
        rounds: out.iter().map(|o| o.4.rounds).max().unwrap_or(0),
        trunc_failures: out[0].4.trunc_failures,
        trunc_risk: out[0].4.trunc_risk,
        first_trunc_failure: out[0].6,
        profile: out[0].5.clone(),
    })
}
