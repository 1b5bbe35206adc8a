//! One generation as a client sees it, without any I/O: the plaintext
//! inputs drawn from a seed, their shares for the three servers, and the
//! bookkeeping of the three servers' replies up to the reconstructed image.
//!
//! The native client (`party-server`'s `client`) and the browser client
//! (`client-wasm`) only move bytes between these functions and their
//! sockets, so that both build the same request and reconstruct the same
//! image from it — the browser end-to-end test compares their pixels.

use crate::fixed::FixedPoint;
use crate::prg::{Prg, Seed};
use crate::proto::{
    Generate, Inputs, ModelInfo, PublicRequest, SamplerName, ServerMsg, TensorShares, VariantName,
};
use crate::share::{PartyBundle, PartyShares, reconstruct, share_seeded};
use rand_core::CryptoRng;
use serde::{Deserialize, Serialize};

/// What to generate, as a user chooses it.
#[derive(Serialize, Deserialize, Debug, Clone, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct Options {
    pub model: String,
    /// Dataset label of the class (conditional models); `None`: image i
    /// gets class i mod classes.
    pub class_label: Option<u32>,
    pub sampler: SamplerName,
    /// DDIM steps (DDPM runs the model's whole schedule).
    pub steps: u32,
    pub variant: VariantName,
    pub batch: u32,
    /// Seed of the Gaussian noise x_T (and DDPM's per-step noise).  It stays
    /// on the client; the sharing randomness is separate and always fresh.
    pub seed: u64,
    /// Ask for shares of x_t after every step, for a live preview.
    pub preview: bool,
    /// Give up when no server says anything for this long.
    pub idle_timeout_secs: u32,
}

/// The noise generator: SplitMix64 with Box–Muller normals.  Not a CSPRNG —
/// the seed never leaves the client, and it makes a sample reproducible
/// from its seed.  It draws exactly the stream of the engine's
/// `model::SplitMix64`, so `bench-sample --seed S` and a client with seed S
/// start from the same x_T (a `party-server` test holds the two together).
pub struct NoiseStream(u64);

impl NoiseStream {
    pub fn new(seed: u64) -> Self {
        NoiseStream(seed)
    }

    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// Uniform in [0, 1).
    pub fn uniform(&mut self) -> f64 {
        (self.next_u64() >> 11) as f64 * (1.0 / (1u64 << 53) as f64)
    }

    /// Standard normal (Box–Muller, one value per pair of uniforms).
    pub fn normal(&mut self) -> f64 {
        let u1 = self.uniform().max(1e-300);
        let u2 = self.uniform();
        (-2.0 * u1.ln()).sqrt() * (2.0 * std::f64::consts::PI * u2).cos()
    }
}

/// The plaintext inputs of a request.  They exist only on the client.
pub struct PlainInputs {
    pub x_t: Vec<f32>,
    pub class: Option<Vec<f32>>,
    pub noise: Option<Vec<f32>>,
}

fn image_len(info: &ModelInfo, batch: u32) -> usize {
    batch as usize * (info.in_channels * info.image_size * info.image_size) as usize
}

/// Draws x_T (and DDPM's per-step noise) from `opts.seed` and builds the
/// one-hot classes.
pub fn plain_inputs(info: &ModelInfo, opts: &Options) -> Result<PlainInputs, String> {
    let numel = image_len(info, opts.batch);
    let mut rng = NoiseStream::new(opts.seed);
    let mut normal = |len: usize| (0..len).map(|_| rng.normal() as f32).collect::<Vec<f32>>();
    let x_t = normal(numel);
    let noise = match opts.sampler {
        SamplerName::Ddim => None,
        SamplerName::Ddpm => {
            let t = info.schedule_steps as usize;
            Some(normal(t.saturating_sub(1) * numel))
        }
    };
    let k = info.num_classes as usize;
    let class = if k == 0 {
        None
    } else {
        let n = opts.batch as usize;
        let idx: Vec<usize> = match opts.class_label {
            Some(l) => {
                let i = info
                    .class_labels
                    .iter()
                    .position(|&c| c == l)
                    .ok_or_else(|| {
                        format!(
                            "model {} has no class {l}; its classes are {:?}",
                            info.name, info.class_labels
                        )
                    })?;
                vec![i; n]
            }
            None => (0..n).map(|i| i % k).collect(),
        };
        let mut one_hot = vec![0.0; n * k];
        for (row, &i) in idx.iter().enumerate() {
            one_hot[row * k + i] = 1.0;
        }
        Some(one_hot)
    };
    Ok(PlainInputs { x_t, class, noise })
}

fn share_all<R: CryptoRng + ?Sized>(
    fx: FixedPoint,
    v: &[f32],
    rng: &mut R,
) -> Result<[PartyBundle; 3], String> {
    let enc: Vec<u64> = v
        .iter()
        .map(|&x| fx.encode(x as f64))
        .collect::<Result<_, _>>()
        .map_err(|e| e.to_string())?;
    Ok(share_seeded(&enc, rng))
}

/// The public part of a request for `info`.
pub fn public_request(info: &ModelInfo, opts: &Options, request_id: String) -> PublicRequest {
    PublicRequest {
        request_id,
        model: opts.model.clone(),
        sampler: opts.sampler,
        steps: opts.steps,
        activation: info.activation.clone(),
        variant: opts.variant,
        batch: opts.batch,
        frac_bits: info.frac_bits,
        preview: opts.preview,
    }
}

/// The three servers' `Generate` messages: the same public request, and
/// for each server only its own seed-compressed bundle of every input.
pub fn requests<R: CryptoRng + ?Sized>(
    info: &ModelInfo,
    opts: &Options,
    request_id: String,
    rng: &mut R,
) -> Result<[Generate; 3], String> {
    if opts.model != info.name {
        return Err(format!(
            "options name model {:?}, the model info is for {:?}",
            opts.model, info.name
        ));
    }
    let fx = FixedPoint::new(info.frac_bits).map_err(|e| e.to_string())?;
    let request = public_request(info, opts, request_id);
    request.validate().map_err(|e| e.to_string())?;
    let plain = plain_inputs(info, opts)?;
    let x = share_all(fx, &plain.x_t, rng)?;
    let c = plain
        .class
        .as_ref()
        .map(|c| share_all(fx, c, rng))
        .transpose()?;
    let z = plain
        .noise
        .as_ref()
        .map(|z| share_all(fx, z, rng))
        .transpose()?;
    Ok(std::array::from_fn(|i| Generate {
        request: request.clone(),
        inputs: Inputs {
            x_t: x[i].clone(),
            class: c.as_ref().map(|c| c[i].clone()),
            noise: z.as_ref().map(|z| z[i].clone()),
        },
    }))
}

/// A fresh request id (24 hex digits) from `rng`.
pub fn random_request_id<R: CryptoRng + ?Sized>(rng: &mut R) -> String {
    let mut b = [0u8; 12];
    rng.fill_bytes(&mut b);
    b.iter().map(|x| format!("{x:02x}")).collect()
}

/// A sharing randomness that repeats: **insecure**, for the servers' seeded
/// test mode only, where a test compares two clients' results bit for bit
/// (the servers' probabilistic truncation depends on the shares, not only
/// on the values).
pub fn insecure_test_rng(seed: u64) -> Prg {
    let mut s = [0u8; 16];
    s[..8].copy_from_slice(&seed.to_le_bytes());
    s[8..].copy_from_slice(b"TESTONLY");
    Prg::new(Seed(s))
}

/// Models that all three servers hold with identical public descriptions,
/// in party 0's order.  A model that differs between servers (a different
/// dealing or release) cannot be generated with, so it is left out.
pub fn common_models(lists: &[Vec<ModelInfo>; 3]) -> Vec<ModelInfo> {
    lists[0]
        .iter()
        .filter(|m| lists[1..].iter().all(|l| l.contains(m)))
        .cloned()
        .collect()
}

/// Reconstructs from all three servers' shares, checking that two
/// reconstructions agree (a server that returns wrong shares is detected).
pub fn open3(s: &[PartyShares; 3]) -> Result<Vec<u64>, String> {
    let a = reconstruct(&s[0], &s[1]).map_err(|e| e.to_string())?;
    let b = reconstruct(&s[1], &s[2]).map_err(|e| e.to_string())?;
    if a != b {
        return Err("the servers' result shares are inconsistent".into());
    }
    Ok(a)
}

/// Reconstructed images, `[batch, C, H, W]`, values nominally in [-1, 1].
#[derive(Debug, Clone, PartialEq)]
pub struct Image {
    pub shape: [usize; 4],
    pub values: Vec<f32>,
}

impl Image {
    /// Width of the strip that shows the batch side by side.
    pub fn width(&self) -> usize {
        self.shape[0] * self.shape[3]
    }

    pub fn height(&self) -> usize {
        self.shape[2]
    }

    pub fn channels(&self) -> usize {
        self.shape[1]
    }

    /// 8-bit pixels of the strip, row-major, channels interleaved (grey or
    /// RGB): what a PNG stores.  [-1, 1] maps to [0, 255], clamped.
    pub fn pixels(&self) -> Vec<u8> {
        let [n, c, h, w] = self.shape;
        let width = n * w;
        let mut px = vec![0u8; width * h * c];
        for b in 0..n {
            for ch in 0..c {
                for y in 0..h {
                    for x in 0..w {
                        let v = self.values[((b * c + ch) * h + y) * w + x];
                        let byte = (((v + 1.0) * 0.5).clamp(0.0, 1.0) * 255.0).round() as u8;
                        px[(y * width + b * w + x) * c + ch] = byte;
                    }
                }
            }
        }
        px
    }

    /// The same pixels as opaque RGBA (grey repeated), what a canvas takes.
    pub fn rgba(&self) -> Vec<u8> {
        let c = self.channels();
        self.pixels()
            .chunks_exact(c)
            .flat_map(|p| match p {
                [g] => [*g, *g, *g, 255],
                [r, g, b, ..] => [*r, *g, *b, 255],
                _ => [0, 0, 0, 255],
            })
            .collect()
    }
}

/// What the client learns while it waits.
#[derive(Debug, Clone, PartialEq)]
pub enum Event {
    /// All three servers accepted (their public requests agree).
    Accepted,
    /// The slowest server has finished `step` of `total`.
    Progress { step: u32, total: u32 },
    /// Reconstructed x_t entering step `step` (only with `preview`).
    Preview { step: u32, image: Image },
    /// The reconstructed result; the generation is over.
    Done(Image),
}

/// Follows the three servers' message streams of one generation and turns
/// them into [`Event`]s.  Errors are final and name the server.
pub struct Tracker {
    fx: FixedPoint,
    shape: [usize; 4],
    accepted: [bool; 3],
    steps: [u32; 3],
    reported_step: u32,
    /// Per preview step: the first share that arrived, until a second one
    /// completes it (`None` afterwards, so a third is ignored).
    previews: std::collections::BTreeMap<u32, Option<PartyShares>>,
    results: [Option<PartyShares>; 3],
}

impl Tracker {
    pub fn new(info: &ModelInfo, batch: u32) -> Result<Self, String> {
        Ok(Tracker {
            fx: FixedPoint::new(info.frac_bits).map_err(|e| e.to_string())?,
            shape: [
                batch as usize,
                info.in_channels as usize,
                info.image_size as usize,
                info.image_size as usize,
            ],
            accepted: [false; 3],
            steps: [0; 3],
            reported_step: 0,
            previews: Default::default(),
            results: Default::default(),
        })
    }

    fn checked(&self, party: usize, t: TensorShares) -> Result<PartyShares, String> {
        let want: Vec<u32> = self.shape.iter().map(|&d| d as u32).collect();
        if t.shape != want {
            return Err(format!(
                "P{party} sent shares of shape {:?}, expected {want:?}",
                t.shape
            ));
        }
        if t.shares.party.index() != party {
            return Err(format!(
                "P{party} sent shares of party {}",
                t.shares.party.index()
            ));
        }
        Ok(t.shares)
    }

    fn image(&self, ring: &[u64]) -> Image {
        Image {
            shape: self.shape,
            values: self
                .fx
                .decode_slice(ring)
                .into_iter()
                .map(|x| x as f32)
                .collect(),
        }
    }

    /// Takes the next message of server `party` (0, 1 or 2).
    pub fn on_message(&mut self, party: usize, msg: ServerMsg) -> Result<Option<Event>, String> {
        match msg {
            ServerMsg::Accepted { .. } => {
                self.accepted[party] = true;
                Ok(self.accepted.iter().all(|&a| a).then_some(Event::Accepted))
            }
            ServerMsg::Progress { step, total } => {
                self.steps[party] = step;
                let slowest = *self.steps.iter().min().expect("three servers");
                if slowest > self.reported_step {
                    self.reported_step = slowest;
                    Ok(Some(Event::Progress {
                        step: slowest,
                        total,
                    }))
                } else {
                    Ok(None)
                }
            }
            ServerMsg::Preview { step, tensor } => {
                let shares = self.checked(party, tensor)?;
                match self.previews.entry(step).or_insert(Some(shares.clone())) {
                    slot @ Some(_) => {
                        let first = slot.take().expect("present");
                        if first.party == shares.party {
                            *slot = Some(first);
                            return Ok(None);
                        }
                        let v = reconstruct(&first, &shares).map_err(|e| e.to_string())?;
                        Ok(Some(Event::Preview {
                            step,
                            image: self.image(&v),
                        }))
                    }
                    None => Ok(None),
                }
            }
            ServerMsg::Result(t) => {
                let shares = self.checked(party, t)?;
                self.results[party] = Some(shares);
                if self.results.iter().any(Option::is_none) {
                    return Ok(None);
                }
                let all = std::mem::take(&mut self.results).map(|r| r.expect("all present"));
                let v = open3(&all)?;
                Ok(Some(Event::Done(self.image(&v))))
            }
            ServerMsg::Error { code, message } => {
                Err(format!("P{party}: {} ({message})", code.explain()))
            }
            ServerMsg::Models(_) => Err(format!("P{party} sent a model list during a generation")),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::proto::ErrorCode;
    use rand::SeedableRng;
    use rand::rngs::StdRng;

    fn info() -> ModelInfo {
        ModelInfo {
            name: "m".into(),
            activation: "silu".into(),
            in_channels: 1,
            image_size: 4,
            num_classes: 2,
            class_labels: vec![3, 7],
            class_names: vec!["3".into(), "7".into()],
            frac_bits: 18,
            schedule_steps: 1000,
        }
    }

    fn opts() -> Options {
        Options {
            model: "m".into(),
            class_label: Some(7),
            sampler: SamplerName::Ddim,
            steps: 2,
            variant: VariantName::Cipherdm,
            batch: 2,
            seed: 1,
            preview: false,
            idle_timeout_secs: 1,
        }
    }

    #[test]
    fn class_labels_map_to_indices_and_unknown_labels_are_refused() {
        let p = plain_inputs(&info(), &opts()).unwrap();
        assert_eq!(p.class.unwrap(), vec![0.0, 1.0, 0.0, 1.0]);
        assert_eq!(p.x_t.len(), 32);
        assert!(p.noise.is_none());
        let mut o = opts();
        o.class_label = Some(5);
        assert!(plain_inputs(&info(), &o).err().unwrap().contains("[3, 7]"));
        let ddpm = Options {
            sampler: SamplerName::Ddpm,
            ..opts()
        };
        assert_eq!(
            plain_inputs(&info(), &ddpm).unwrap().noise.unwrap().len(),
            999 * 32
        );
    }

    #[test]
    fn noise_is_standard_normal_and_reproducible() {
        let mut a = NoiseStream::new(4);
        let xs: Vec<f64> = (0..20_000).map(|_| a.normal()).collect();
        let mean = xs.iter().sum::<f64>() / xs.len() as f64;
        let var = xs.iter().map(|x| (x - mean).powi(2)).sum::<f64>() / xs.len() as f64;
        assert!(
            mean.abs() < 0.03 && (var - 1.0).abs() < 0.05,
            "{mean} {var}"
        );
        assert_eq!(NoiseStream::new(4).normal(), xs[0]);
    }

    fn tracker_with(g: &[Generate; 3]) -> (Tracker, [PartyShares; 3]) {
        let t = Tracker::new(&info(), g[0].request.batch).unwrap();
        (t, g.clone().map(|g| g.inputs.x_t.expand().unwrap()))
    }

    fn shares_msg(s: &PartyShares, step: Option<u32>) -> ServerMsg {
        let tensor = TensorShares {
            shape: vec![2, 1, 4, 4],
            shares: s.clone(),
        };
        match step {
            Some(step) => ServerMsg::Preview { step, tensor },
            None => ServerMsg::Result(tensor),
        }
    }

    #[test]
    fn the_three_requests_reconstruct_the_inputs_through_the_tracker() {
        let mut rng = StdRng::seed_from_u64(5);
        let g = requests(&info(), &opts(), "abcdefgh".into(), &mut rng).unwrap();
        assert!(g.iter().all(|r| r.request == g[0].request));
        // Each server gets one explicit component at most: seeds for the rest.
        assert!(g.iter().all(|r| r.inputs.x_t.explicit_len() <= 32));
        let (mut t, s) = tracker_with(&g);
        let want = plain_inputs(&info(), &opts()).unwrap().x_t;
        let close = |im: &Image| {
            im.values
                .iter()
                .zip(&want)
                .all(|(a, b)| (a - b).abs() < 1e-5)
        };
        for (p, sp) in s.iter().enumerate() {
            let ev = t.on_message(p, ServerMsg::Accepted { party: sp.party });
            assert_eq!(ev.unwrap(), (p == 2).then_some(Event::Accepted));
        }
        // Progress follows the slowest server.
        assert_eq!(
            t.on_message(0, ServerMsg::Progress { step: 1, total: 2 }),
            Ok(None)
        );
        t.on_message(1, ServerMsg::Progress { step: 1, total: 2 })
            .unwrap();
        assert_eq!(
            t.on_message(2, ServerMsg::Progress { step: 1, total: 2 }),
            Ok(Some(Event::Progress { step: 1, total: 2 }))
        );
        // A preview needs two different servers' shares; a third is ignored.
        assert_eq!(t.on_message(2, shares_msg(&s[2], Some(1))), Ok(None));
        match t.on_message(0, shares_msg(&s[0], Some(1))).unwrap() {
            Some(Event::Preview { step: 1, image }) => assert!(close(&image)),
            other => panic!("{other:?}"),
        }
        assert_eq!(t.on_message(1, shares_msg(&s[1], Some(1))), Ok(None));
        assert_eq!(t.on_message(0, shares_msg(&s[0], None)), Ok(None));
        assert_eq!(t.on_message(1, shares_msg(&s[1], None)), Ok(None));
        match t.on_message(2, shares_msg(&s[2], None)).unwrap() {
            Some(Event::Done(image)) => {
                assert!(close(&image));
                assert_eq!((image.width(), image.height()), (8, 4));
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn wrong_shapes_parties_inconsistent_shares_and_server_errors_are_reported() {
        let mut rng = StdRng::seed_from_u64(6);
        let g = requests(&info(), &opts(), "abcdefgh".into(), &mut rng).unwrap();
        let (mut t, s) = tracker_with(&g);
        let e = t.on_message(1, shares_msg(&s[0], None)).unwrap_err();
        assert!(e.contains("P1 sent shares of party 0"), "{e}");
        let bad_shape = ServerMsg::Result(TensorShares {
            shape: vec![1, 1, 4, 4],
            shares: s[0].clone(),
        });
        assert!(t.on_message(0, bad_shape).unwrap_err().contains("shape"));
        let mut tampered = s[2].clone();
        tampered.own[3] ^= 1;
        t.on_message(0, shares_msg(&s[0], None)).unwrap();
        t.on_message(1, shares_msg(&s[1], None)).unwrap();
        assert!(
            t.on_message(2, shares_msg(&tampered, None))
                .unwrap_err()
                .contains("inconsistent")
        );
        let busy = ServerMsg::Error {
            code: ErrorCode::Busy,
            message: "4 sessions".into(),
        };
        let e = t.on_message(2, busy).unwrap_err();
        assert!(e.starts_with("P2: ") && e.contains("busy") && e.contains("4 sessions"));
    }

    #[test]
    fn pixels_map_minus_one_to_black_and_one_to_white() {
        let im = Image {
            shape: [2, 1, 1, 2],
            values: vec![-1.0, 1.0, 0.0, 7.0],
        };
        assert_eq!(im.pixels(), vec![0, 255, 128, 255]);
        assert_eq!(&im.rgba()[..8], &[0, 0, 0, 255, 255, 255, 255, 255]);
        let rgb = Image {
            shape: [1, 3, 1, 1],
            values: vec![-1.0, 0.0, 1.0],
        };
        assert_eq!(rgb.rgba(), vec![0, 128, 255, 255]);
    }

    #[test]
    fn common_models_need_identical_descriptions_on_all_three() {
        let a = info();
        let mut b = info();
        b.name = "b".into();
        let mut b_other = b.clone();
        b_other.frac_bits = 16;
        let lists = [
            vec![a.clone(), b.clone()],
            vec![b.clone(), a.clone()],
            vec![a.clone(), b_other],
        ];
        assert_eq!(common_models(&lists), vec![a]);
    }

    #[test]
    fn test_rng_repeats_and_request_ids_are_valid() {
        let mut a = insecure_test_rng(3);
        let mut b = insecure_test_rng(3);
        let id = random_request_id(&mut a);
        assert_eq!(id, random_request_id(&mut b));
        assert_eq!(id.len(), 24);
        let mut r = public_request(&info(), &opts(), id);
        assert!(r.validate().is_ok());
        r.request_id = random_request_id(&mut insecure_test_rng(4));
        assert!(r.validate().is_ok());
    }
}
