//! The native client: shares a request's inputs, sends each server its
//! bundle, follows the three progress streams and reconstructs the result.
//! It uses the same `shared` sharing and message code as the browser client.

use crate::model::{SplitMix64, one_hot};
use crate::sampler::Schedule;
use futures_util::{SinkExt, StreamExt};
use rand_core::CryptoRng;
use shared::proto::{
    self, ClientMsg, Generate, Inputs, ModelInfo, PublicRequest, SamplerName, ServerMsg,
    VariantName,
};
use shared::share::{reconstruct, share_seeded};
use shared::{FixedPoint, PartyBundle, PartyShares};
use std::time::{Duration, Instant};
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::protocol::WebSocketConfig;

type Ws =
    tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

/// What to generate.
#[derive(Debug, Clone)]
pub struct Options {
    pub model: String,
    /// Dataset label of the class (conditional models); `None`: image i
    /// gets class i mod classes.
    pub class_label: Option<u32>,
    pub sampler: SamplerName,
    pub steps: u32,
    pub variant: VariantName,
    pub batch: u32,
    /// Seed of the Gaussian noise x_T (and DDPM's per-step noise), drawn as
    /// `bench-sample` draws it so that the two can be compared.
    pub seed: u64,
    pub preview: bool,
    /// Give up when no server says anything for this long.
    pub idle_timeout: Duration,
}

/// What the client reports while it waits.
#[derive(Debug)]
pub enum Event {
    /// Every server accepted (the public requests agree).
    Accepted,
    /// The slowest server has finished `step` of `total`.
    Progress { step: u32, total: u32 },
    /// Reconstructed x_t entering step `step` (only with `preview`), `[batch, C, H, W]`.
    Preview {
        step: u32,
        shape: Vec<usize>,
        image: Vec<f32>,
    },
}

/// A finished generation.
#[derive(Debug)]
pub struct Outcome {
    /// `[batch, C, H, W]`.
    pub shape: Vec<usize>,
    /// Pixel values, nominally in [-1, 1].
    pub images: Vec<f32>,
    pub seconds: f64,
    pub bytes_sent: u64,
    pub bytes_received: u64,
}

fn fail(m: impl std::fmt::Display) -> String {
    m.to_string()
}

async fn connect(url: &str) -> Result<Ws, String> {
    let mut cfg = WebSocketConfig::default();
    cfg.max_message_size = Some(proto::MAX_MESSAGE_BYTES);
    cfg.max_frame_size = Some(proto::MAX_MESSAGE_BYTES);
    let (ws, _) = tokio_tungstenite::connect_async_with_config(url, Some(cfg), true)
        .await
        .map_err(|e| format!("{url}: {e}"))?;
    Ok(ws)
}

async fn next_msg(ws: &mut Ws, url: &str, received: &mut u64) -> Result<ServerMsg, String> {
    loop {
        match ws.next().await {
            Some(Ok(Message::Binary(b))) => {
                *received += b.len() as u64;
                return proto::decode_server(&b).map_err(|e| format!("{url}: {e}"));
            }
            Some(Ok(Message::Close(_))) | None => {
                return Err(format!("{url}: connection closed"));
            }
            Some(Ok(_)) => continue,
            Some(Err(e)) => return Err(format!("{url}: {e}")),
        }
    }
}

/// Asks one server for its models.
pub async fn list_models(url: &str) -> Result<Vec<ModelInfo>, String> {
    let mut ws = connect(url).await?;
    ws.send(Message::Binary(
        proto::encode_client(&ClientMsg::ListModels).into(),
    ))
    .await
    .map_err(fail)?;
    let mut n = 0;
    match next_msg(&mut ws, url, &mut n).await? {
        ServerMsg::Models(m) => Ok(m),
        ServerMsg::Error { code, message } => Err(format!("{url}: {code:?}: {message}")),
        other => Err(format!("{url}: unexpected reply {other:?}")),
    }
}

/// A fresh random request id.
pub fn random_request_id() -> String {
    let mut b = [0u8; 12];
    getrandom::fill(&mut b).expect("OS randomness");
    b.iter().map(|x| format!("{x:02x}")).collect()
}

/// The plaintext inputs of a request, as `bench-sample` draws them.
pub struct PlainInputs {
    pub x_t: Vec<f32>,
    pub class: Option<Vec<f32>>,
    pub noise: Option<Vec<f32>>,
}

/// Draws x_T (and DDPM noise) from `opts.seed` and builds the one-hot classes.
pub fn plain_inputs(info: &ModelInfo, opts: &Options) -> Result<PlainInputs, String> {
    let n = opts.batch as usize;
    let numel = n * (info.in_channels * info.image_size * info.image_size) as usize;
    let mut rng = SplitMix64(opts.seed);
    let mut normal = |len: usize| (0..len).map(|_| rng.normal() as f32).collect::<Vec<f32>>();
    let x_t = normal(numel);
    let noise = match opts.sampler {
        SamplerName::Ddim => None,
        SamplerName::Ddpm => {
            let t = Schedule::default_linear().num_steps();
            Some((0..t - 1).flat_map(|_| normal(numel)).collect())
        }
    };
    let k = info.num_classes as usize;
    let class = if k == 0 {
        None
    } else {
        let idx = match opts.class_label {
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
        Some(one_hot(&idx, k))
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
        .map_err(fail)?;
    Ok(share_seeded(&enc, rng))
}

/// The three servers' `Generate` messages for a request.
pub fn requests<R: CryptoRng + ?Sized>(
    info: &ModelInfo,
    opts: &Options,
    request_id: String,
    rng: &mut R,
) -> Result<[Generate; 3], String> {
    let fx = FixedPoint::new(info.frac_bits).map_err(fail)?;
    let plain = plain_inputs(info, opts)?;
    let request = PublicRequest {
        request_id,
        model: opts.model.clone(),
        sampler: opts.sampler,
        steps: opts.steps,
        activation: info.activation.clone(),
        variant: opts.variant,
        batch: opts.batch,
        frac_bits: info.frac_bits,
        preview: opts.preview,
    };
    request.validate().map_err(fail)?;
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

/// Reconstructs from all three servers' shares, checking that the two
/// reconstructions agree (a server that returns wrong shares is detected).
pub fn open3(s: &[PartyShares; 3]) -> Result<Vec<u64>, String> {
    let a = reconstruct(&s[0], &s[1]).map_err(fail)?;
    let b = reconstruct(&s[1], &s[2]).map_err(fail)?;
    if a != b {
        return Err("the servers' result shares are inconsistent".into());
    }
    Ok(a)
}

/// Generates through the three servers at `urls` (P0, P1, P2).
pub async fn generate<R: CryptoRng + Send + ?Sized>(
    urls: &[String; 3],
    opts: &Options,
    rng: &mut R,
    on_event: &mut (dyn FnMut(Event) + Send),
) -> Result<Outcome, String> {
    let t0 = Instant::now();
    let mut received = 0u64;
    let infos = list_models(&urls[0]).await?;
    let info = infos
        .iter()
        .find(|m| m.name == opts.model)
        .ok_or_else(|| {
            format!(
                "{}: no model {:?}; available: {:?}",
                urls[0],
                opts.model,
                infos.iter().map(|m| &m.name).collect::<Vec<_>>()
            )
        })?
        .clone();
    let fx = FixedPoint::new(info.frac_bits).map_err(fail)?;
    let reqs = requests(&info, opts, random_request_id(), rng)?;
    let mut sent = 0u64;
    let mut conns = Vec::new();
    for (url, g) in urls.iter().zip(reqs) {
        let mut ws = connect(url).await?;
        let bytes = proto::encode_client(&ClientMsg::Generate(Box::new(g)));
        sent += bytes.len() as u64;
        ws.send(Message::Binary(bytes.into())).await.map_err(fail)?;
        conns.push(ws);
    }
    // One reader per server, merged into one channel.
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
    for (i, mut ws) in conns.into_iter().enumerate() {
        let (tx, url) = (tx.clone(), urls[i].clone());
        tokio::spawn(async move {
            let mut n = 0u64;
            loop {
                let m = next_msg(&mut ws, &url, &mut n).await;
                let end = !matches!(
                    m,
                    Ok(ServerMsg::Progress { .. }
                        | ServerMsg::Preview { .. }
                        | ServerMsg::Accepted { .. })
                );
                if tx.send((i, m, std::mem::take(&mut n))).is_err() || end {
                    return;
                }
            }
        });
    }
    drop(tx);
    let mut accepted = [false; 3];
    let mut steps = [0u32; 3];
    let mut previews: std::collections::BTreeMap<u32, Vec<PartyShares>> = Default::default();
    let mut results: [Option<(Vec<u32>, PartyShares)>; 3] = Default::default();
    while results.iter().any(Option::is_none) {
        let (i, m, n) = match tokio::time::timeout(opts.idle_timeout, rx.recv()).await {
            Ok(Some(x)) => x,
            Ok(None) => return Err("all servers closed their connections".into()),
            Err(_) => {
                return Err(format!(
                    "no message from any server for {:.0} s",
                    opts.idle_timeout.as_secs_f64()
                ));
            }
        };
        received += n;
        match m? {
            ServerMsg::Accepted { .. } => {
                accepted[i] = true;
                if accepted.iter().all(|&a| a) {
                    on_event(Event::Accepted);
                }
            }
            ServerMsg::Progress { step, total } => {
                steps[i] = step;
                let slowest = *steps.iter().min().expect("three");
                if steps[i] == slowest || i == 0 {
                    on_event(Event::Progress {
                        step: slowest,
                        total,
                    });
                }
            }
            ServerMsg::Preview { step, tensor } => {
                let got = previews.entry(step).or_default();
                got.push(tensor.shares);
                if got.len() == 2 {
                    let v = reconstruct(&got[0], &got[1]).map_err(fail)?;
                    on_event(Event::Preview {
                        step,
                        shape: tensor.shape.iter().map(|&d| d as usize).collect(),
                        image: fx.decode_slice(&v).into_iter().map(|x| x as f32).collect(),
                    });
                }
            }
            ServerMsg::Result(t) => {
                if t.shares.party.index() != i {
                    return Err(format!("{}: result shares for the wrong party", urls[i]));
                }
                results[i] = Some((t.shape, t.shares));
            }
            ServerMsg::Error { code, message } => {
                return Err(format!("{}: {code:?}: {message}", urls[i]));
            }
            ServerMsg::Models(_) => return Err(format!("{}: unexpected model list", urls[i])),
        }
    }
    let results = results.map(|r| r.expect("all present"));
    let shape = results[0].0.clone();
    if results.iter().any(|r| r.0 != shape) {
        return Err("the servers returned different shapes".into());
    }
    let shares = results.map(|r| r.1);
    let v = open3(&shares)?;
    Ok(Outcome {
        shape: shape.iter().map(|&d| d as usize).collect(),
        images: fx.decode_slice(&v).into_iter().map(|x| x as f32).collect(),
        seconds: t0.elapsed().as_secs_f64(),
        bytes_sent: sent,
        bytes_received: received,
    })
}

/// Writes `[batch, C, H, W]` images in [-1, 1] side by side as one PNG
/// (grey for one channel, RGB for three).
pub fn write_png(path: &std::path::Path, shape: &[usize], x: &[f32]) -> Result<(), String> {
    let [n, c, h, w] = shape else {
        return Err(format!("expected a [batch, C, H, W] shape, got {shape:?}"));
    };
    let (n, c, h, w) = (*n, *c, *h, *w);
    let color = match c {
        1 => png::ColorType::Grayscale,
        3 => png::ColorType::Rgb,
        _ => return Err(format!("cannot write {c}-channel images")),
    };
    let width = n * w;
    let mut px = vec![0u8; width * h * c];
    for b in 0..n {
        for ch in 0..c {
            for y in 0..h {
                for xx in 0..w {
                    let v = x[((b * c + ch) * h + y) * w + xx];
                    let byte = (((v + 1.0) * 0.5).clamp(0.0, 1.0) * 255.0).round() as u8;
                    px[(y * width + b * w + xx) * c + ch] = byte;
                }
            }
        }
    }
    let f = std::fs::File::create(path).map_err(|e| format!("{}: {e}", path.display()))?;
    let mut enc = png::Encoder::new(std::io::BufWriter::new(f), width as u32, h as u32);
    enc.set_color(color);
    enc.set_depth(png::BitDepth::Eight);
    let mut wr = enc.write_header().map_err(fail)?;
    wr.write_image_data(&px).map_err(fail)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn info() -> ModelInfo {
        ModelInfo {
            name: "m".into(),
            activation: "silu".into(),
            in_channels: 1,
            image_size: 4,
            num_classes: 2,
            class_labels: vec![3, 7],
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
            idle_timeout: Duration::from_secs(1),
        }
    }

    #[test]
    fn class_labels_map_to_indices_and_unknown_labels_are_refused() {
        let p = plain_inputs(&info(), &opts()).unwrap();
        assert_eq!(p.class.unwrap(), vec![0.0, 1.0, 0.0, 1.0]);
        assert_eq!(p.x_t.len(), 32);
        let mut o = opts();
        o.class_label = Some(5);
        assert!(plain_inputs(&info(), &o).err().unwrap().contains("[3, 7]"));
    }

    #[test]
    fn the_three_requests_reconstruct_the_inputs() {
        use rand::SeedableRng;
        let mut rng = rand::rngs::StdRng::seed_from_u64(5);
        let r = requests(&info(), &opts(), "abcdefgh".into(), &mut rng).unwrap();
        let s = r.clone().map(|g| g.inputs.x_t.expand().unwrap());
        let fx = FixedPoint::new(info().frac_bits).unwrap();
        let want: Vec<u64> = plain_inputs(&info(), &opts())
            .unwrap()
            .x_t
            .iter()
            .map(|&x| fx.encode(x as f64).unwrap())
            .collect();
        assert_eq!(open3(&s).unwrap(), want);
        assert!(r.iter().all(|g| g.request == r[0].request));
    }
}
