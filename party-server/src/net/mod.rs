//! The network side of a party: authenticated TLS links to its two
//! neighbours ([`tls`]) carrying the multiplexed sessions of [`link`].
//!
//! Raw TCP + TLS rather than WebSocket: the links carry nothing but the
//! engine's word vectors, so a 32-byte frame header is all the framing they
//! need, and it keeps the hot path to one copy through the TLS record layer.

pub mod link;
pub mod tls;

pub use link::{Hub, NetTransport, OpenError, SessionLinks};

use crate::mpc::Dir;
use rustls::pki_types::ServerName;
use std::sync::Arc;
use std::time::Duration;
use tokio::io::BufReader;
use tokio::net::{TcpListener, TcpStream};
use tokio_rustls::{TlsAcceptor, TlsConnector};

/// How long a new connection may take to authenticate.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

/// Socket-side read buffer under TLS: rustls reads the socket in small
/// pieces; a buffer below it turns that into few large system calls.
const SOCKET_BUFFER: usize = 1 << 20;

fn buffered(tcp: TcpStream) -> BufReader<TcpStream> {
    BufReader::with_capacity(SOCKET_BUFFER, tcp)
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
                let mut s = acceptor.accept(buffered(tcp)).await?;
                link::hello(&mut s, me, prev).await?;
                std::io::Result::Ok(s)
            };
            match tokio::time::timeout(HANDSHAKE_TIMEOUT, handshake).await {
                Ok(Ok(stream)) => {
                    tracing::info!(peer = %prev, %addr, "peer link up");
                    let r = hub.run_connection(Dir::Prev, stream).await;
                    tracing::warn!(peer = %prev, "peer link down: {}", describe(r));
                }
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
            let mut s = connector.connect(name.clone(), buffered(tcp)).await?;
            link::hello(&mut s, me, next).await?;
            std::io::Result::Ok(s)
        };
        match tokio::time::timeout(HANDSHAKE_TIMEOUT, attempt).await {
            Ok(Ok(stream)) => {
                tracing::info!(peer = %next, %addr, "peer link up");
                backoff = Duration::from_millis(50);
                reported = false;
                let r = hub.clone().run_connection(Dir::Next, stream).await;
                tracing::warn!(peer = %next, "peer link down: {}", describe(r));
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

fn describe(r: std::io::Result<()>) -> String {
    match r {
        Ok(()) => "closed".into(),
        Err(e) => e.to_string(),
    }
}
