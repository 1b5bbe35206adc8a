//! The network side of a party: authenticated TLS links to its two
//! neighbours ([`tls`]) carrying the multiplexed sessions of [`link`].
//!
//! Raw TCP rather than WebSocket: the links carry nothing but the engine's
//! word vectors, so a 32-byte frame header is all the framing they need.
//! TLS authenticates each connection and provides its keys; the data path
//! is the link's own sealed frames (see [`link`] for why).

pub mod link;
pub mod shaped;
pub mod tls;

pub use link::{Hub, NetTransport, OpenError, SessionLinks};

use crate::mpc::Dir;
use link::LinkKeys;
use rustls::pki_types::ServerName;
use shared::Party;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll, ready};
use std::time::Duration;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio_rustls::{TlsAcceptor, TlsConnector};

/// How long a new connection may take to authenticate.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

/// Reads the socket one TLS record at a time, so that the handshake and the
/// hello never consume bytes past the peer's last TLS record: right after
/// them the same socket carries the link's sealed frames.
struct RecordReader {
    tcp: TcpStream,
    head: [u8; 5],
    head_got: usize,
    body_left: usize,
    scratch: Vec<u8>,
}

impl RecordReader {
    fn new(tcp: TcpStream) -> RecordReader {
        RecordReader {
            tcp,
            head: [0; 5],
            head_got: 0,
            body_left: 0,
            // A record header plus the largest TLS record body.
            scratch: vec![0; 5 + (1 << 14) + 256],
        }
    }

    /// The socket, for the sealed frames.
    fn into_std(self) -> std::io::Result<std::net::TcpStream> {
        let s = self.tcp.into_std()?;
        s.set_nonblocking(false)?;
        Ok(s)
    }
}

impl AsyncRead for RecordReader {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        let me = self.get_mut();
        let want = if me.body_left > 0 {
            me.body_left
        } else {
            5 - me.head_got
        };
        let want = want.min(buf.remaining()).min(me.scratch.len());
        let mut rb = ReadBuf::new(&mut me.scratch[..want]);
        ready!(Pin::new(&mut me.tcp).poll_read(cx, &mut rb))?;
        let n = rb.filled().len();
        if me.body_left > 0 {
            me.body_left -= n;
        } else {
            me.head[me.head_got..me.head_got + n].copy_from_slice(&me.scratch[..n]);
            me.head_got += n;
            if me.head_got == 5 {
                me.body_left = u16::from_be_bytes([me.head[3], me.head[4]]) as usize;
                me.head_got = 0;
            }
        }
        buf.put_slice(&me.scratch[..n]);
        Poll::Ready(Ok(()))
    }
}

impl AsyncWrite for RecordReader {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        Pin::new(&mut self.get_mut().tcp).poll_write(cx, buf)
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.get_mut().tcp).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.get_mut().tcp).poll_shutdown(cx)
    }
}

/// Runs an attached link until it ends, logging both.
async fn run_link(hub: &Arc<Hub>, d: Dir, peer: Party, tcp: std::net::TcpStream, keys: LinkKeys) {
    match hub.attach(d, tcp, keys) {
        Ok(done) => {
            tracing::info!(peer = %peer, "peer link up");
            let why = done.await.unwrap_or_else(|_| "reader gone".into());
            tracing::warn!(peer = %peer, "peer link down: {why}");
        }
        Err(e) => tracing::warn!(peer = %peer, "could not start the link: {e}"),
    }
}

/// Accepts connections from the previous party only, forever: anyone else
/// fails the TLS handshake (see [`tls`]) and is logged and dropped.
pub async fn accept_loop(hub: Arc<Hub>, listener: TcpListener, cfg: Arc<rustls::ServerConfig>) {
    let acceptor = TlsAcceptor::from(cfg);
    let prev = hub.party().prev();
    loop {
        let (tcp, addr) = match listener.accept().await {
            Ok(x) => x,
            Err(e) => {
                tracing::warn!("peer listener: {e}");
                tokio::time::sleep(Duration::from_millis(100)).await;
                continue;
            }
        };
        let (hub, acceptor) = (hub.clone(), acceptor.clone());
        tokio::spawn(async move {
            let _ = tcp.set_nodelay(true);
            let me = hub.party();
            let handshake = async {
                let mut s = acceptor.accept(RecordReader::new(tcp)).await?;
                link::hello(&mut s, me, prev).await?;
                let keys =
                    LinkKeys::export(&**s.get_ref().1, false).map_err(std::io::Error::other)?;
                std::io::Result::Ok((s.into_inner().0.into_std()?, keys))
            };
            match tokio::time::timeout(HANDSHAKE_TIMEOUT, handshake).await {
                Ok(Ok((tcp, keys))) => run_link(&hub, Dir::Prev, prev, tcp, keys).await,
                Ok(Err(e)) => tracing::warn!(%addr, "refused peer connection: {e}"),
                Err(_) => tracing::warn!(%addr, "refused peer connection: handshake timed out"),
            }
        });
    }
}

/// Keeps a connection to the next party, redialing with backoff whenever it
/// is down.
pub async fn dial_loop(hub: Arc<Hub>, addr: String, cfg: Arc<rustls::ClientConfig>) {
    let connector = TlsConnector::from(cfg);
    let next = hub.party().next();
    let name = ServerName::try_from(format!("party{}", next.index())).expect("valid DNS name");
    let mut backoff = Duration::from_millis(50);
    let mut reported = false;
    loop {
        let me = hub.party();
        let attempt = async {
            let tcp = TcpStream::connect(&addr).await?;
            tcp.set_nodelay(true)?;
            let mut s = connector
                .connect(name.clone(), RecordReader::new(tcp))
                .await?;
            link::hello(&mut s, me, next).await?;
            let keys = LinkKeys::export(&**s.get_ref().1, true).map_err(std::io::Error::other)?;
            std::io::Result::Ok((s.into_inner().0.into_std()?, keys))
        };
        match tokio::time::timeout(HANDSHAKE_TIMEOUT, attempt).await {
            Ok(Ok((tcp, keys))) => {
                backoff = Duration::from_millis(50);
                reported = false;
                run_link(&hub, Dir::Next, next, tcp, keys).await;
            }
            Ok(Err(e)) if !reported => {
                tracing::info!(peer = %next, %addr, "waiting for peer: {e}");
                reported = true;
            }
            Err(_) if !reported => {
                tracing::info!(peer = %next, %addr, "waiting for peer: handshake timed out");
                reported = true;
            }
            _ => {}
        }
        tokio::time::sleep(backoff).await;
        backoff = (backoff * 2).min(Duration::from_secs(2));
    }
}
