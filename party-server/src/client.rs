//! The native client: shares a request's inputs, sends each server its
//! bundle, follows the three progress streams and reconstructs the result.
//! The request building and the reconstruction are `shared::request`, the
//! same code the browser client runs; this module only does the sockets.

use futures_util::{SinkExt, StreamExt};
use rand_core::CryptoRng;
use shared::proto::{self, ClientMsg, ModelInfo, ServerMsg};
use shared::request::{self, Tracker};
use std::time::{Duration, Instant};
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::protocol::WebSocketConfig;

type Ws =
    tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

pub use shared::request::{Event, Image, Options};

/// A finished generation.
#[derive(Debug)]
pub struct Outcome {
    pub image: Image,
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
    let mut tracker = Tracker::new(&info, opts.batch)?;
    // The id comes from the OS: `rng` draws only the shares, so that a
    // seeded `rng` reproduces them exactly (tests against the engine).
    let id = request::random_request_id(&mut rand_core::UnwrapErr(getrandom::SysRng));
    let reqs = request::requests(&info, opts, id, rng)?;
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
    let idle = Duration::from_secs(opts.idle_timeout_secs.into());
    loop {
        let (i, m, n) = match tokio::time::timeout(idle, rx.recv()).await {
            Ok(Some(x)) => x,
            Ok(None) => return Err("all servers closed their connections".into()),
            Err(_) => {
                return Err(format!(
                    "no message from any server for {} s",
                    opts.idle_timeout_secs
                ));
            }
        };
        received += n;
        match tracker
            .on_message(i, m?)
            .map_err(|e| format!("{e} [{}]", urls[i]))?
        {
            Some(Event::Done(image)) => {
                return Ok(Outcome {
                    image,
                    seconds: t0.elapsed().as_secs_f64(),
                    bytes_sent: sent,
                    bytes_received: received,
                });
            }
            Some(e) => on_event(e),
            None => {}
        }
    }
}

/// Writes images side by side as one PNG (grey for one channel, RGB for three).
pub fn write_png(path: &std::path::Path, image: &Image) -> Result<(), String> {
    let color = match image.channels() {
        1 => png::ColorType::Grayscale,
        3 => png::ColorType::Rgb,
        c => return Err(format!("cannot write {c}-channel images")),
    };
    let f = std::fs::File::create(path).map_err(|e| format!("{}: {e}", path.display()))?;
    let mut enc = png::Encoder::new(
        std::io::BufWriter::new(f),
        image.width() as u32,
        image.height() as u32,
    );
    enc.set_color(color);
    enc.set_depth(png::BitDepth::Eight);
    let mut wr = enc.write_header().map_err(fail)?;
    wr.write_image_data(&image.pixels()).map_err(fail)
}

#[cfg(test)]
mod tests {
    use crate::model::SplitMix64;
    use shared::request::NoiseStream;

    /// The clients draw x_T with `shared`'s noise stream, the engine's
    /// benchmarks with `model::SplitMix64`: a seed must mean the same noise.
    #[test]
    fn client_noise_is_the_engines_noise_stream() {
        for seed in [0, 1, 3, u64::MAX] {
            let (mut a, mut b) = (NoiseStream::new(seed), SplitMix64(seed));
            for _ in 0..1000 {
                assert_eq!(a.normal().to_bits(), b.normal().to_bits());
            }
        }
    }
}
