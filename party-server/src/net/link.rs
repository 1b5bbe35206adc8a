//! The inter-party links: one TLS connection to each neighbour, multiplexing
//! the logical streams of every session, and the engine's [`Transport`] on
//! top of them.
//!
//! Party `i` dials `P_{i+1}` and accepts `P_{i-1}`, so each pair of parties
//! shares one connection that carries both directions.  Every message is a
//! frame `[kind, session, tag, words]` (four little-endian u64) followed by
//! its words; a reader task per connection hands each frame to the channel
//! of its `(session, tag)` stream, and a writer task drains an unbounded
//! queue, so that `send` never blocks on the receiver as the trait requires.
//!
//! The MPC runs on ordinary threads and blocks on std channels; only the
//! socket I/O is async.  Failure is always an error, never a hang: a closed
//! connection disconnects every stream that uses it, a peer's abort frame
//! disconnects that session's streams, and `recv` gives up after the
//! configured timeout.

use crate::mpc::{Dir, Transport, TransportError};
use shared::Party;
use std::collections::{HashMap, HashSet, VecDeque};
use std::sync::mpsc::{Receiver, RecvTimeoutError, Sender, channel};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, BufReader, BufWriter};
use tokio::sync::mpsc::{UnboundedReceiver, UnboundedSender, unbounded_channel};

/// Version of the link protocol, checked in the hello exchange.
pub const LINK_VERSION: u64 = 1;
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

/// What a writer task sends.
enum Out {
    Data {
        session: u64,
        tag: u64,
        msg: Vec<u64>,
    },
    Abort {
        session: u64,
    },
}

/// A live connection to one neighbour (its writer queue).
struct Conn {
    tx: UnboundedSender<Out>,
    id: u64,
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
    /// Aborted by a peer or a failed link: every stream is disconnected.
    dead: bool,
    created: Option<Instant>,
}

impl SessionState {
    fn kill(&mut self) {
        self.dead = true;
        for slot in self.streams.values_mut() {
            slot.tx = None;
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
    #[error("a peer aborted this session before it started")]
    Aborted,
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
        if st.dead {
            s.close(session);
            return Err(OpenError::Aborted);
        }
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
            let dead = st.dead;
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

    fn abort_session(&self, session: u64) {
        if let Some(st) = self.sessions().get(session) {
            st.kill();
        }
    }

    /// Runs one authenticated connection to neighbour `d` until it fails.
    /// Installs it as the current link; on exit, every session in progress
    /// is aborted (its streams cannot be resumed on another connection).
    pub async fn run_connection<S>(self: Arc<Self>, d: Dir, stream: S) -> std::io::Result<()>
    where
        S: AsyncRead + AsyncWrite + Send + 'static,
    {
        let (tx, rx) = unbounded_channel();
        let id = {
            let mut n = self.next_conn_id.lock().expect("id lock");
            *n += 1;
            *n
        };
        *self.links[dir_index(d)].lock().expect("link lock") = Some(Arc::new(Conn { tx, id }));
        let (r, w) = tokio::io::split(stream);
        let result = tokio::select! {
            r = read_loop(&self, d, r) => r,
            w = write_loop(w, rx) => w,
        };
        {
            let mut link = self.links[dir_index(d)].lock().expect("link lock");
            if link.as_ref().is_some_and(|c| c.id == id) {
                *link = None;
            }
        }
        for st in self.sessions().map.values_mut() {
            st.kill();
        }
        result
    }
}

async fn read_loop<R: AsyncRead>(hub: &Hub, from: Dir, r: R) -> std::io::Result<()> {
    let mut r = std::pin::pin!(BufReader::with_capacity(256 << 10, r));
    loop {
        let mut h = [0u8; 32];
        r.read_exact(&mut h).await?;
        let word = |i: usize| u64::from_le_bytes(h[8 * i..8 * i + 8].try_into().expect("8"));
        let (kind, session, tag, len) = (word(0), word(1), word(2), word(3));
        if len > MAX_FRAME_WORDS {
            return Err(std::io::Error::other(format!(
                "peer frame of {len} words exceeds the limit"
            )));
        }
        match kind {
            KIND_DATA => {
                let mut msg = vec![0u64; len as usize];
                r.read_exact(bytemuck::cast_slice_mut(&mut msg)).await?;
                for w in &mut msg {
                    *w = u64::from_le(*w);
                }
                hub.deliver(from, session, tag, msg);
            }
            KIND_ABORT if len == 0 => hub.abort_session(session),
            _ => {
                return Err(std::io::Error::other(format!(
                    "unexpected peer frame kind {kind} (len {len})"
                )));
            }
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

async fn write_one<W: AsyncWrite + Unpin>(w: &mut W, out: Out) -> std::io::Result<()> {
    match out {
        Out::Data {
            session,
            tag,
            mut msg,
        } => {
            w.write_all(&header(KIND_DATA, session, tag, msg.len() as u64))
                .await?;
            for x in &mut msg {
                *x = x.to_le();
            }
            w.write_all(bytemuck::cast_slice(&msg)).await
        }
        Out::Abort { session } => w.write_all(&header(KIND_ABORT, session, 0, 0)).await,
    }
}

async fn write_loop<W: AsyncWrite>(w: W, mut rx: UnboundedReceiver<Out>) -> std::io::Result<()> {
    let mut w = std::pin::pin!(BufWriter::with_capacity(256 << 10, w));
    while let Some(out) = rx.recv().await {
        write_one(&mut w, out).await?;
        // Coalesce whatever else is queued into the same flush.
        while let Ok(out) = rx.try_recv() {
            write_one(&mut w, out).await?;
        }
        w.flush().await?;
    }
    Ok(())
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
                let _ = c.tx.send(Out::Abort {
                    session: self.session,
                });
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
                    .or_insert_with(|| Slot::new(dead))
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
        match self.rx[dir_index(from)].recv_timeout(timeout) {
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
            .tx
            .send(Out::Data {
                session: self.shared.session,
                tag: self.tag,
                msg,
            })
            .map_err(|_| TransportError::Disconnected(to))
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

    /// Three hubs joined by in-memory duplex pipes (no TLS): the framing,
    /// demultiplexing and failure handling without sockets.
    fn ring(rt: &tokio::runtime::Runtime, timeout: Duration) -> [Arc<Hub>; 3] {
        let hubs = Party::ALL.map(|p| Hub::new(p, timeout));
        for i in 0..3 {
            let (a, b) = tokio::io::duplex(1 << 20);
            let next = (i + 1) % 3;
            rt.spawn(hubs[i].clone().run_connection(Dir::Next, a));
            rt.spawn(hubs[next].clone().run_connection(Dir::Prev, b));
        }
        for _ in 0..200 {
            if hubs
                .iter()
                .all(|h| h.is_up(Dir::Next) && h.is_up(Dir::Prev))
            {
                break;
            }
            std::thread::sleep(Duration::from_millis(5));
        }
        hubs
    }

    #[test]
    fn streams_reach_the_right_neighbour_and_do_not_mix() {
        let rt = tokio::runtime::Runtime::new().unwrap();
        let hubs = ring(&rt, Duration::from_secs(5));
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
        let rt = tokio::runtime::Runtime::new().unwrap();
        let hubs = ring(&rt, Duration::from_secs(5));
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
        let rt = tokio::runtime::Runtime::new().unwrap();
        let hubs = ring(&rt, Duration::from_millis(100));
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
        let rt = tokio::runtime::Runtime::new().unwrap();
        let hubs = ring(&rt, Duration::from_secs(5));
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
