//! One generation on one party: agree with the peers on the public request,
//! then run the secure sampler on this party's shares.  Runs on its own
//! thread (the engine blocks on its links); reports to the client handler
//! through an event channel.

use super::store::StoredModel;
use crate::fxp::Variant;
use crate::model::{ModelError, UNet};
use crate::mpc::{AShare, Ctx, Dir, Transport};
use crate::net::SessionLinks;
use crate::nn::{SecureBackend, SecureConfig, SecureTensor};
use crate::sampler::{SamplerKind, Schedule, sample_with};
use shared::proto::{ErrorCode, PublicRequest, SamplerName, ServerMsg, TensorShares, VariantName};
use shared::{Party, PartyShares, Seed};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;
use tokio::sync::mpsc::UnboundedSender;

/// This party's expanded input shares.
pub struct InputShares {
    pub x_t: PartyShares,
    pub class: Option<PartyShares>,
    pub noise: Option<PartyShares>,
}

/// Everything a session's thread needs.
pub struct Job {
    pub me: Party,
    pub model: Arc<StoredModel>,
    pub request: PublicRequest,
    pub inputs: InputShares,
    pub links: SessionLinks,
    /// This party's seed of the correlated randomness.
    pub own_seed: Seed,
    /// How long to wait for the peers' digests of the request.
    pub start_timeout: Duration,
    /// Set when the client cancels or disconnects.
    pub cancel: Arc<AtomicBool>,
    pub events: UnboundedSender<ServerMsg>,
}

/// SHA-256 of the canonical public request, as four words.
pub fn request_digest(r: &PublicRequest) -> Vec<u64> {
    let d = ring::digest::digest(&ring::digest::SHA256, &r.canonical_bytes());
    d.as_ref()
        .chunks_exact(8)
        .map(|b| u64::from_le_bytes(b.try_into().expect("8 bytes")))
        .collect()
}

/// The link session id of a request id (both are public).
pub fn session_key(request_id: &str) -> u64 {
    let d = ring::digest::digest(&ring::digest::SHA256, request_id.as_bytes());
    u64::from_le_bytes(d.as_ref()[..8].try_into().expect("8 bytes"))
}

/// Why a session ended without a result.
#[derive(Debug)]
pub enum JobError {
    Mismatch,
    Cancelled,
    Aborted(String),
}

impl JobError {
    pub fn to_msg(&self) -> ServerMsg {
        let (code, message) = match self {
            JobError::Mismatch => (
                ErrorCode::Mismatch,
                "the three servers did not receive the same public request; refused".to_string(),
            ),
            JobError::Cancelled => (ErrorCode::Cancelled, "cancelled".to_string()),
            JobError::Aborted(why) => (ErrorCode::Aborted, format!("generation aborted: {why}")),
        };
        ServerMsg::Error { code, message }
    }
}

fn recv_digest(
    t: &mut crate::net::NetTransport,
    from: Dir,
    timeout: Duration,
) -> Result<Vec<u64>, JobError> {
    t.recv_within(from, timeout)
        .map_err(|e| JobError::Aborted(format!("waiting for the peers to get the request: {e}")))
}

/// Runs the job to the end; the caller sends the returned message (result
/// or error) to the client.
pub fn run(job: Job) -> Result<TensorShares, JobError> {
    let mut t = job
        .links
        .transport()
        .map_err(|e| JobError::Aborted(e.to_string()))?;
    // Agreement: the three digests must be equal before any share is used.
    let mine = request_digest(&job.request);
    for d in [Dir::Next, Dir::Prev] {
        t.send(d, mine.clone())
            .map_err(|e| JobError::Aborted(e.to_string()))?;
    }
    // Read both before judging: a peer that saw a mismatch first aborts,
    // and the other peer's digest still tells this party that it was one.
    let next = recv_digest(&mut t, Dir::Next, job.start_timeout);
    let prev = recv_digest(&mut t, Dir::Prev, job.start_timeout);
    if [&next, &prev]
        .iter()
        .any(|d| d.as_ref().is_ok_and(|d| *d != mine))
    {
        return Err(JobError::Mismatch);
    }
    next?;
    prev?;
    let _ = job.events.send(ServerMsg::Accepted { party: job.me });
    let out = compute(&job, Box::new(t));
    match out {
        Ok(y) => {
            job.links.finish();
            Ok(y)
        }
        Err(_) if job.cancel.load(Ordering::Relaxed) => Err(JobError::Cancelled),
        Err(e) => Err(JobError::Aborted(e.to_string())),
    }
}

fn compute(job: &Job, transport: Box<dyn Transport>) -> crate::model::Result<TensorShares> {
    let m = &job.model;
    let cfg = &m.config;
    let r = &job.request;
    let n = r.batch as usize;
    let shape = [n, cfg.in_channels, cfg.image_size, cfg.image_size];
    let numel: usize = shape.iter().product();
    let link = |e: crate::mpc::TransportError| ModelError::Backend(e.to_string());
    let mut ctx = Ctx::setup(job.me, transport, job.own_seed, m.fx).map_err(link)?;
    let variant = match r.variant {
        VariantName::Baseline => Variant::Baseline,
        VariantName::Cipherdm => Variant::CipherDm,
    };
    let mut be = SecureBackend::new(&mut ctx, m.weights.clone(), SecureConfig::new(variant));
    let net = UNet::new(cfg, &mut be)?;
    let tensor = |s: &PartyShares, shape: &[usize]| {
        SecureTensor::new(
            shape,
            AShare {
                a: s.own.clone(),
                b: s.next.clone(),
            },
        )
    };
    let x = tensor(&job.inputs.x_t, &shape)?;
    let class = match &job.inputs.class {
        Some(c) => Some(tensor(c, &[n, c.len() / n])?),
        None => None,
    };
    let kind = match r.sampler {
        SamplerName::Ddim => SamplerKind::Ddim {
            steps: r.steps as usize,
        },
        SamplerName::Ddpm => SamplerKind::Ddpm,
    };
    let noise_shares = job.inputs.noise.as_ref();
    let mut step = 0u32;
    let y = sample_with(
        &mut be,
        &Schedule::default_linear(),
        kind,
        cfg.prediction_type,
        &x,
        &mut |be, x, t| {
            if job.cancel.load(Ordering::Relaxed) {
                return Err(ModelError::Backend("cancelled".into()));
            }
            if r.preview {
                let _ = job.events.send(ServerMsg::Preview {
                    step,
                    tensor: shares_of(job.me, x),
                });
            }
            step += 1;
            net.forward(be, x, &vec![t as f32; n], class.as_ref())
        },
        &mut |_, k| {
            let z = noise_shares
                .ok_or_else(|| ModelError::Backend("the sampler needs noise inputs".into()))?;
            let range = k * numel..(k + 1) * numel;
            if range.end > z.len() {
                return Err(ModelError::Backend(format!("noise tensor {k} missing")));
            }
            SecureTensor::new(
                &shape,
                AShare {
                    a: z.own[range.clone()].to_vec(),
                    b: z.next[range].to_vec(),
                },
            )
        },
        &mut |done, total| {
            let _ = job.events.send(ServerMsg::Progress {
                step: done as u32,
                total: total as u32,
            });
        },
    )?;
    Ok(shares_of(job.me, &y))
}

fn shares_of(me: Party, t: &SecureTensor) -> TensorShares {
    TensorShares {
        shape: t.shape.iter().map(|&d| d as u32).collect(),
        shares: PartyShares {
            party: me,
            own: t.data.a.clone(),
            next: t.data.b.clone(),
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn deterministic_seeds_differ_per_party_and_per_seed() {
        let a = crate::mpc::local::derive_seeds(1);
        assert_ne!(a[0], a[1]);
        assert_ne!(a[1], a[2]);
        assert_ne!(crate::mpc::local::derive_seeds(2)[0], a[0]);
        assert_eq!(crate::mpc::local::derive_seeds(1)[2], a[2]);
    }

    #[test]
    fn digests_separate_requests() {
        let r = PublicRequest {
            request_id: "abcdefgh".into(),
            model: "m".into(),
            sampler: SamplerName::Ddim,
            steps: 2,
            activation: "silu".into(),
            variant: VariantName::Cipherdm,
            batch: 1,
            frac_bits: 18,
            preview: false,
        };
        let mut s = r.clone();
        s.variant = VariantName::Baseline;
        assert_eq!(request_digest(&r).len(), 4);
        assert_ne!(request_digest(&r), request_digest(&s));
        assert_ne!(session_key("abcdefgh"), session_key("abcdefgi"));
    }
}
