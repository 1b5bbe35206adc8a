//! The inter-party links: one connection to each neighbour, multiplexing the
//! logical streams of every session, and the engine's [`Transport`] on top
//! of them.
//!
//! Party `i` dials `P_{i+1}` and accepts `P_{i-1}`, so each pair of parties
//! shares one connection that carries both directions.  The connection is
//! authenticated by a TLS 1.3 handshake with pinned certificates (see
//! [`super::tls`]); the bulk data then travels in frames sealed with
//! AES-128-GCM under keys exported from that TLS session (RFC 8446 §7.5),
//! one key per direction and a counter nonce per frame.  That is the TLS
//! record protection with one record per message: it lets a sender encrypt
//! its message in place and hand it to the kernel, and a receiver decrypt in
//! the buffer it read into, which is what keeps the link above 1 GB/s on
//! loopback (rustls' stream API copies every byte twice more).
//!
//! Frame: `[kind, session, tag, words]` as four little-endian u64 (sent in
//! the clear and authenticated as associated data), the sealed words, and
//! the 16-byte tag.  A reader thread per connection opens each frame and
//! hands it to the channel of its `(session, tag)` stream; senders write
//! directly from the compute threads (a reader that only ever drains its
//! socket into unbounded channels means `send` never waits on the receiving
//! party's computation, as the trait requires).
//!
//! Failure is always an error, never a hang: a closed or tampered connection
//! disconnects every stream that uses it, a peer's abort frame disconnects
//! that session's streams, and `recv` gives up after the configured timeout.

use crate::mpc::transport::recv_polling;
use crate::mpc::{Dir, Transport, TransportError};
use ring::aead::{AES_128_GCM, Aad, LessSafeKey, NONCE_LEN, Nonce, UnboundKey};
use shared::Party;
use std::collections::{HashMap, HashSet, VecDeque};
use std::io::{Read, Write};
use std::net::{Shutdown, TcpStream};
use std::sync::mpsc::{Receiver, RecvTimeoutError, Sender, channel};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};

/// Version of the link protocol, checked in the hello exchange.
pub const LINK_VERSION: u64 = 2;
/// TLS exporter label of the frame keys.
const EXPORTER_LABEL: &[u8] = b"EXPORTER-cipherdm-link-frames-v2";
/// Bytes exported: two AES-128 keys and two 4-byte nonce prefixes.
pub const KEY_MATERIAL_LEN: usize = 40;
const TAG_LEN: usize = 16;
/// Largest message a peer may send (words): bounds what a reader allocates.
pub const MAX_FRAME_WORDS: u64 = 1 << 27;
/// How many finished sessions are remembered, so that their late frames are
/// dropped instead of creating state.
const CLOSED_MEMORY: usize = 4096;

const KIND_DATA: u64 = 0;
const KIND_ABORT: u64 = 1;
const KIND_HELLO: u64 = 2;

fn dir_index(d: Dir) -> usize {
    match d {
        Dir::Next => 0,
        Dir::Prev => 1,
    }
}

const DIRS: [Dir; 2] = [Dir::Next, Dir::Prev];

/// One direction's AEAD state: key, nonce prefix, frame counter.
struct Sealer {
    key: LessSafeKey,
    iv: [u8; 4],
    counter: u64,
}

impl Sealer {
    fn new(key: &[u8], iv: &[u8]) -> Sealer {
        Sealer {
            key: LessSafeKey::new(UnboundKey::new(&AES_128_GCM, key).expect("16-byte key")),
            iv: iv.try_into().expect("4-byte prefix"),
            counter: 0,
        }
    }

    /// The next frame's nonce: prefix ‖ counter (never reused: the counter
    /// only grows, and a connection lives far shorter than 2^64 frames).
    fn nonce(&mut self) -> Nonce {
        let mut n = [0u8; NONCE_LEN];
        n[..4].copy_from_slice(&self.iv);
        n[4..].copy_from_slice(&self.counter.to_be_bytes());
        self.counter += 1;
        Nonce::assume_unique_for_key(n)
    }
}

/// The frame keys of one connection, derived from its TLS session.
pub struct LinkKeys {
    send: Sealer,
    recv: Sealer,
}

impl LinkKeys {
    /// Splits exported key material: the dialer sends with the first key.
    pub fn from_material(m: &[u8; KEY_MATERIAL_LEN], dialer: bool) -> LinkKeys {
        let (k_dial, k_acc) = (&m[0..16], &m[16..32]);
        let (iv_dial, iv_acc) = (&m[32..36], &m[36..40]);
        let (a, b) = (Sealer::new(k_dial, iv_dial), Sealer::new(k_acc, iv_acc));
        if dialer {
            LinkKeys { send: a, recv: b }
        } else {
            LinkKeys { send: b, recv: a }
        }
    }

    /// Exports the frame keys from a finished TLS 1.3 session.
    pub fn export<D>(
        conn: &rustls::ConnectionCommon<D>,
        dialer: bool,
    ) -> Result<LinkKeys, rustls::Error> {
        let m = conn.export_keying_material([0u8; KEY_MATERIAL_LEN], EXPORTER_LABEL, None)?;
        Ok(LinkKeys::from_material(&m, dialer))
    }
}

/// A live connection to one neighbour: its socket and send state.
struct Conn {
    writer: Mutex<(TcpStream, Sealer)>,
    id: u64,
}

impl Conn {
    /// Seals and writes one frame.  The lock keeps frames whole and in
    /// counter order when several streams of a session send at once.
    fn send(&self, kind: u64, session: u64, tag: u64, mut msg: Vec<u64>) -> std::io::Result<()> {
        let h = header(kind, session, tag, msg.len() as u64);
        for x in &mut msg {
            *x = x.to_le();
        }
        let mut w = self.writer.lock().expect("writer lock");
        let (stream, sealer) = &mut *w;
        let nonce = sealer.nonce();
        let body: &mut [u8] = bytemuck::cast_slice_mut(&mut msg);
        let t = sealer
            .key
            .seal_in_place_separate_tag(nonce, Aad::from(&h), body)
            .map_err(|_| std::io::Error::other("frame too large to seal"))?;
        if body.len() <= 64 << 10 {
            // Small frames (most protocol rounds): one system call.
            let mut one = Vec::with_capacity(h.len() + body.len() + TAG_LEN);
            one.extend_from_slice(&h);
            one.extend_from_slice(body);
            one.extend_from_slice(t.as_ref());
            stream.write_all(&one)
        } else {
            stream.write_all(&h)?;
            stream.write_all(body)?;
            stream.write_all(t.as_ref())
        }
    }

    fn shutdown(&self) {
        if let Ok(w) = self.writer.lock() {
            let _ = w.0.shutdown(Shutdown::Both);
        }
    }
}

/// One direction of one logical stream: the reader keeps the sender, the
/// session's transport takes the receiver.
struct Slot {
    tx: Option<Sender<Vec<u64>>>,
    rx: Option<Receiver<Vec<u64>>>,
}

impl Slot {
    fn new(dead: bool) -> Slot {
        let (tx, rx) = channel();
        Slot {
            tx: (!dead).then_some(tx),
            rx: Some(rx),
        }
    }
}

#[derive(Default)]
struct SessionState {
    streams: HashMap<(u64, usize), Slot>,
    /// Opened by this party (frames can arrive before it is).
    opened: bool,
    /// Per direction: aborted by that peer or its link failed, so every
    /// stream from it is disconnected.  Only that direction: what the other
    /// peer sent is still delivered (it may say why the session failed).
    dead: [bool; 2],
    created: Option<Instant>,
}

impl SessionState {
    fn kill(&mut self, d: usize) {
        self.dead[d] = true;
        for ((_, dir), slot) in self.streams.iter_mut() {
            if *dir == d {
                slot.tx = None;
            }
        }
    }
}

#[derive(Default)]
struct Sessions {
    map: HashMap<u64, SessionState>,
    closed: HashSet<u64>,
    closed_order: VecDeque<u64>,
}

impl Sessions {
    /// The state of `session`, created if new; `None` if it has finished.
    fn get(&mut self, session: u64) -> Option<&mut SessionState> {
        if self.closed.contains(&session) {
            return None;
        }
        Some(self.map.entry(session).or_insert_with(|| SessionState {
            created: Some(Instant::now()),
            ..Default::default()
        }))
    }

    fn close(&mut self, session: u64) {
        self.map.remove(&session);
        if self.closed.insert(session) {
            self.closed_order.push_back(session);
            if self.closed_order.len() > CLOSED_MEMORY {
                let old = self.closed_order.pop_front().expect("non-empty");
                self.closed.remove(&old);
            }
        }
    }
}

/// Why a session could not be opened.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum OpenError {
    #[error("the link to the {0:?} party is down")]
    LinkDown(Dir),
    #[error("this request id was already used")]
    InUse,
}

/// A party's two links and the sessions multiplexed over them.
pub struct Hub {
    me: Party,
    links: [Mutex<Option<Arc<Conn>>>; 2],
    sessions: Mutex<Sessions>,
    recv_timeout: Duration,
    next_conn_id: Mutex<u64>,
}

impl Hub {
    pub fn new(me: Party, recv_timeout: Duration) -> Arc<Hub> {
        Arc::new(Hub {
            me,
            links: Default::default(),
            sessions: Mutex::default(),
            recv_timeout,
            next_conn_id: Mutex::new(0),
        })
    }

    pub fn party(&self) -> Party {
        self.me
    }

    fn sessions(&self) -> MutexGuard<'_, Sessions> {
        self.sessions.lock().expect("sessions lock")
    }

    fn link(&self, d: Dir) -> Option<Arc<Conn>> {
        self.links[dir_index(d)].lock().expect("link lock").clone()
    }

    /// Whether the link to `d` is connected.
    pub fn is_up(&self, d: Dir) -> bool {
        self.link(d).is_some()
    }

    /// Opens a session: its streams can already hold frames that the peers
    /// sent before this party got the client's request.
    pub fn open(self: &Arc<Self>, session: u64) -> Result<SessionLinks, OpenError> {
        let next = self.link(Dir::Next).ok_or(OpenError::LinkDown(Dir::Next))?;
        let prev = self.link(Dir::Prev).ok_or(OpenError::LinkDown(Dir::Prev))?;
        let mut s = self.sessions();
        let st = s.get(session).ok_or(OpenError::InUse)?;
        if st.opened {
            return Err(OpenError::InUse);
        }
        // A session a peer already aborted still opens: what the peer sent
        // before (its digest of the request) is delivered, then the streams
        // report the disconnect, so this party learns why it failed.
        st.opened = true;
        Ok(SessionLinks {
            shared: Arc::new(SessionShared {
                hub: self.clone(),
                session,
                conns: [next, prev],
                finished: Mutex::new(false),
            }),
        })
    }

    /// Drops sessions that peers started but this party never opened (the
    /// client did not reach it), once they are older than `age`.
    pub fn sweep(&self, age: Duration) {
        let mut s = self.sessions();
        let stale: Vec<u64> = s
            .map
            .iter()
            .filter(|(_, st)| !st.opened && st.created.is_some_and(|c| c.elapsed() > age))
            .map(|(&k, _)| k)
            .collect();
        for k in stale {
            s.close(k);
        }
    }

    /// Number of sessions with state on this party (opened or pending).
    pub fn session_count(&self) -> usize {
        self.sessions().map.len()
    }

    fn deliver(&self, from: Dir, session: u64, tag: u64, msg: Vec<u64>) {
        let mut s = self.sessions();
        if let Some(st) = s.get(session) {
            let dead = st.dead[dir_index(from)];
            let slot = st
                .streams
                .entry((tag, dir_index(from)))
                .or_insert_with(|| Slot::new(dead));
            if let Some(tx) = &slot.tx {
                // The transport may be gone already: then nobody wants it.
                let _ = tx.send(msg);
            }
        }
    }

    fn abort_session(&self, from: Dir, session: u64) {
        if let Some(st) = self.sessions().get(session) {
            st.kill(dir_index(from));
        }
    }

    /// Takes over an authenticated connection to neighbour `d` (after the
    /// TLS handshake and hello) as the current link, and starts its reader
    /// thread.  The returned channel yields why the connection ended; then
    /// every session in progress has been aborted (its streams cannot be
    /// resumed on another connection).
    pub fn attach(
        self: &Arc<Self>,
        d: Dir,
        tcp: TcpStream,
        keys: LinkKeys,
    ) -> std::io::Result<tokio::sync::oneshot::Receiver<String>> {
        let (done_tx, done_rx) = tokio::sync::oneshot::channel();
        // A peer that stops reading must not block a sender forever.
        tcp.set_write_timeout(Some(self.recv_timeout))?;
        tcp.set_nodelay(true)?;
        let reader = tcp.try_clone()?;
        let id = {
            let mut n = self.next_conn_id.lock().expect("id lock");
            *n += 1;
            *n
        };
        let conn = Arc::new(Conn {
            writer: Mutex::new((tcp, keys.send)),
            id,
        });
        *self.links[dir_index(d)].lock().expect("link lock") = Some(conn.clone());
        let hub = self.clone();
        let mut recv = keys.recv;
        std::thread::Builder::new()
            .name(format!("link-{d:?}").to_lowercase())
            .spawn(move || {
                let why = read_loop(&hub, d, reader, &mut recv);
                conn.shutdown();
                {
                    let mut link = hub.links[dir_index(d)].lock().expect("link lock");
                    if link.as_ref().is_some_and(|c| c.id == id) {
                        *link = None;
                    }
                }
                for st in hub.sessions().map.values_mut() {
                    st.kill(dir_index(d));
                }
                let _ = done_tx.send(why.to_string());
            })?;
        Ok(done_rx)
    }
}

/// Reads frames until the connection fails; returns why.
fn read_loop(hub: &Hub, from: Dir, mut r: TcpStream, keys: &mut Sealer) -> std::io::Error {
    loop {
        let mut h = [0u8; 32];
        if let Err(e) = r.read_exact(&mut h) {
            return e;
        }
        let word = |i: usize| u64::from_le_bytes(h[8 * i..8 * i + 8].try_into().expect("8"));
        let (kind, session, tag, len) = (word(0), word(1), word(2), word(3));
        if len > MAX_FRAME_WORDS || !(kind == KIND_DATA || kind == KIND_ABORT && len == 0) {
            return std::io::Error::other(format!("bad peer frame: kind {kind}, {len} words"));
        }
        // Payload and tag in one buffer, opened in place.
        let mut msg = vec![0u64; len as usize + TAG_LEN / 8];
        let bytes: &mut [u8] = bytemuck::cast_slice_mut(&mut msg);
        if let Err(e) = r.read_exact(bytes) {
            return e;
        }
        let nonce = keys.nonce();
        if keys.key.open_in_place(nonce, Aad::from(&h), bytes).is_err() {
            return std::io::Error::other("peer frame failed authentication");
        }
        msg.truncate(len as usize);
        for w in &mut msg {
            *w = u64::from_le(*w);
        }
        match kind {
            KIND_DATA => hub.deliver(from, session, tag, msg),
            _ => hub.abort_session(from, session),
        }
    }
}

fn header(kind: u64, session: u64, tag: u64, len: u64) -> [u8; 32] {
    let mut h = [0u8; 32];
    for (i, v) in [kind, session, tag, len].into_iter().enumerate() {
        h[8 * i..8 * i + 8].copy_from_slice(&v.to_le_bytes());
    }
    h
}

/// The hello both ends of a fresh connection exchange: the link protocol
/// version and the sender's index, which must be the one its certificate was
/// pinned for.
pub async fn hello<S: AsyncRead + AsyncWrite + Unpin>(
    stream: &mut S,
    me: Party,
    expect: Party,
) -> std::io::Result<()> {
    stream
        .write_all(&header(KIND_HELLO, LINK_VERSION, me.index() as u64, 0))
        .await?;
    stream.flush().await?;
    let mut h = [0u8; 32];
    stream.read_exact(&mut h).await?;
    let word = |i: usize| u64::from_le_bytes(h[8 * i..8 * i + 8].try_into().expect("8"));
    if word(0) != KIND_HELLO || word(1) != LINK_VERSION || word(2) != expect.index() as u64 {
        return Err(std::io::Error::other(format!(
            "bad hello from {expect}: kind {}, version {} (want {LINK_VERSION}), party {}",
            word(0),
            word(1),
            word(2)
        )));
    }
    Ok(())
}

/// State shared by all streams of one session on this party.
struct SessionShared {
    hub: Arc<Hub>,
    session: u64,
    conns: [Arc<Conn>; 2],
    finished: Mutex<bool>,
}

impl Drop for SessionShared {
    fn drop(&mut self) {
        if !*self.finished.lock().expect("finished lock") {
            // Tell the peers, so that they stop waiting for this party.
            for c in &self.conns {
                let _ = c.send(KIND_ABORT, self.session, 0, Vec::new());
            }
        }
        self.hub.sessions().close(self.session);
    }
}

/// A session's links on this party: makes its transports; dropping the last
/// transport and this handle closes the session (and aborts it at the peers
/// unless [`SessionLinks::finish`] was called).
pub struct SessionLinks {
    shared: Arc<SessionShared>,
}

impl SessionLinks {
    /// The session's root stream (tag 0).
    pub fn transport(&self) -> Result<NetTransport, TransportError> {
        NetTransport::open(self.shared.clone(), 0)
    }

    /// Marks the session as completed normally: closing it sends no abort.
    pub fn finish(&self) {
        *self.shared.finished.lock().expect("finished lock") = true;
    }
}

/// The engine's [`Transport`] over the network: one logical stream of one
/// session.
pub struct NetTransport {
    shared: Arc<SessionShared>,
    tag: u64,
    rx: [Receiver<Vec<u64>>; 2],
}

impl NetTransport {
    fn open(shared: Arc<SessionShared>, tag: u64) -> Result<NetTransport, TransportError> {
        let rx = {
            let mut s = shared.hub.sessions();
            let st = s.get(shared.session).ok_or(TransportError::Link {
                dir: Dir::Next,
                reason: "session already closed".into(),
            })?;
            let dead = st.dead;
            DIRS.map(|d| {
                st.streams
                    .entry((tag, dir_index(d)))
                    .or_insert_with(|| Slot::new(dead[dir_index(d)]))
                    .rx
                    .take()
            })
        };
        let [Some(a), Some(b)] = rx else {
            return Err(TransportError::Link {
                dir: Dir::Next,
                reason: format!("stream {tag} opened twice"),
            });
        };
        Ok(NetTransport {
            shared,
            tag,
            rx: [a, b],
        })
    }
}

impl NetTransport {
    /// Receives with a timeout other than the hub's: the start of a session
    /// waits for the client to reach every party, which can take longer
    /// than any one protocol round.
    pub fn recv_within(
        &mut self,
        from: Dir,
        timeout: Duration,
    ) -> Result<Vec<u64>, TransportError> {
        match recv_polling(&self.rx[dir_index(from)], Some(timeout)) {
            Ok(m) => Ok(m),
            Err(RecvTimeoutError::Disconnected) => Err(TransportError::Disconnected(from)),
            Err(RecvTimeoutError::Timeout) => Err(TransportError::Link {
                dir: from,
                reason: format!("no message within {:.1} s", timeout.as_secs_f64()),
            }),
        }
    }
}

impl Transport for NetTransport {
    fn send(&mut self, to: Dir, msg: Vec<u64>) -> Result<(), TransportError> {
        self.shared.conns[dir_index(to)]
            .send(KIND_DATA, self.shared.session, self.tag, msg)
            .map_err(|e| TransportError::Link {
                dir: to,
                reason: e.to_string(),
            })
    }

    fn recv(&mut self, from: Dir) -> Result<Vec<u64>, TransportError> {
        self.recv_within(from, self.shared.hub.recv_timeout)
    }

    fn substream(&mut self, tag: u64) -> Result<Box<dyn Transport>, TransportError> {
        Ok(Box::new(NetTransport::open(self.shared.clone(), tag)?))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tcp_pair() -> (TcpStream, TcpStream) {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let a = TcpStream::connect(l.local_addr().unwrap()).unwrap();
        (a, l.accept().unwrap().0)
    }

    const MATERIAL: [u8; KEY_MATERIAL_LEN] = [7; KEY_MATERIAL_LEN];

    /// Three hubs joined by loopback TCP with fixed keys (no TLS handshake):
    /// the framing, sealing, demultiplexing and failure handling.
    fn ring(timeout: Duration) -> [Arc<Hub>; 3] {
        let hubs = Party::ALL.map(|p| Hub::new(p, timeout));
        for i in 0..3 {
            let (a, b) = tcp_pair();
            let next = (i + 1) % 3;
            hubs[i]
                .attach(Dir::Next, a, LinkKeys::from_material(&MATERIAL, true))
                .unwrap();
            hubs[next]
                .attach(Dir::Prev, b, LinkKeys::from_material(&MATERIAL, false))
                .unwrap();
        }
        hubs
    }

    #[test]
    fn a_tampered_frame_ends_the_link() {
        let hub = Hub::new(Party::ALL[0], Duration::from_secs(5));
        let (mut a, b) = tcp_pair();
        let done = hub
            .attach(Dir::Next, b, LinkKeys::from_material(&MATERIAL, false))
            .unwrap();
        let mut k = LinkKeys::from_material(&MATERIAL, true).send;
        let h = header(KIND_DATA, 1, 0, 1);
        let mut body = 5u64.to_le_bytes();
        let nonce = k.nonce();
        let t = k
            .key
            .seal_in_place_separate_tag(nonce, Aad::from(&h), &mut body)
            .unwrap();
        body[0] ^= 1;
        a.write_all(&h).unwrap();
        a.write_all(&body).unwrap();
        a.write_all(t.as_ref()).unwrap();
        let why = done.blocking_recv().unwrap();
        assert!(why.contains("authentication"), "{why}");
        assert!(!hub.is_up(Dir::Next));
    }

    #[test]
    fn streams_reach_the_right_neighbour_and_do_not_mix() {
        let hubs = ring(Duration::from_secs(5));
        let links: Vec<SessionLinks> = hubs.iter().map(|h| h.open(42).unwrap()).collect();
        let mut t: Vec<NetTransport> = links.iter().map(|l| l.transport().unwrap()).collect();
        let mut sub: Vec<Box<dyn Transport>> =
            t.iter_mut().map(|x| x.substream(7).unwrap()).collect();
        for i in 0..3 {
            sub[i].send(Dir::Next, vec![100 + i as u64]).unwrap();
            t[i].send(Dir::Next, vec![i as u64; 3]).unwrap();
            t[i].send(Dir::Prev, vec![10 + i as u64]).unwrap();
        }
        for i in 0..3 {
            let (next, prev) = ((i + 1) % 3, (i + 2) % 3);
            assert_eq!(t[i].recv(Dir::Prev).unwrap(), vec![prev as u64; 3]);
            assert_eq!(t[i].recv(Dir::Next).unwrap(), vec![10 + next as u64]);
            assert_eq!(sub[i].recv(Dir::Prev).unwrap(), vec![100 + prev as u64]);
        }
        for l in &links {
            l.finish();
        }
    }

    #[test]
    fn a_peer_abort_disconnects_the_session_and_reuse_is_refused() {
        let hubs = ring(Duration::from_secs(5));
        let l0 = hubs[0].open(5).unwrap();
        let mut t0 = l0.transport().unwrap();
        let l1 = hubs[1].open(5).unwrap();
        drop(l1); // not finished: P1 aborts, P0 must stop waiting for it
        assert!(matches!(
            t0.recv(Dir::Next),
            Err(TransportError::Disconnected(Dir::Next))
        ));
        assert_eq!(hubs[1].open(5).err(), Some(OpenError::InUse));
    }

    #[test]
    fn a_silent_peer_times_out() {
        let hubs = ring(Duration::from_millis(100));
        let l = hubs[0].open(9).unwrap();
        let mut t = l.transport().unwrap();
        let start = Instant::now();
        assert!(matches!(
            t.recv(Dir::Prev),
            Err(TransportError::Link { .. })
        ));
        assert!(start.elapsed() < Duration::from_secs(2));
    }

    #[test]
    fn unopened_sessions_are_swept() {
        let hubs = ring(Duration::from_secs(5));
        let l = hubs[0].open(77).unwrap();
        let mut t = l.transport().unwrap();
        t.send(Dir::Next, vec![1, 2, 3]).unwrap();
        for _ in 0..200 {
            if hubs[1].session_count() == 1 {
                break;
            }
            std::thread::sleep(Duration::from_millis(5));
        }
        assert_eq!(hubs[1].session_count(), 1);
        hubs[1].sweep(Duration::ZERO);
        assert_eq!(hubs[1].session_count(), 0);
    }
}
