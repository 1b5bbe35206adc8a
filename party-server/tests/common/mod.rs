//! A real three-process cluster on loopback for the integration tests:
//! fresh credentials, ephemeral ports, a snapshot of the tiny model dealt to
//! the three parties, and the `party-server` binary under test.

use futures_util::{SinkExt, StreamExt};
use shared::proto::{self, ClientMsg, ServerMsg};
use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};
use tokio_tungstenite::tungstenite::Message;

pub const BIN: &str = env!("CARGO_BIN_EXE_party-server");
pub const MODEL: &str = "tiny";

pub struct Cluster {
    pub dir: PathBuf,
    pub client_ports: [u16; 3],
    pub peer_ports: [u16; 3],
    pub children: [Option<Child>; 3],
}

/// Ports the OS says are free now, never one already handed to another
/// cluster of this test process: the tests run in parallel, and the OS may
/// offer a port again once its probe listener is closed, before the cluster
/// that got it first has bound it.  (A small race with other processes is
/// accepted: the tests run on a private machine.)
fn free_ports<const N: usize>() -> [u16; N] {
    static TAKEN: std::sync::Mutex<Vec<u16>> = std::sync::Mutex::new(Vec::new());
    let mut taken = TAKEN.lock().unwrap();
    let mut probes = Vec::new();
    let mut ports = Vec::with_capacity(N);
    while ports.len() < N {
        // Probes stay open until all N are chosen, so the OS offers N
        // different ports; a port taken before is skipped.
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let p = l.local_addr().unwrap().port();
        if !taken.contains(&p) {
            taken.push(p);
            ports.push(p);
        }
        probes.push(l);
    }
    std::array::from_fn(|i| ports[i])
}

fn scratch(name: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("cdm-test-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).unwrap();
    d
}

fn run_ok(args: &[&str]) {
    let out = Command::new(BIN).args(args).output().unwrap();
    assert!(
        out.status.success(),
        "party-server {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

impl Cluster {
    /// Creates the cluster's files; `extra` is appended to cluster.toml.
    pub fn init(name: &str, extra: &str) -> Cluster {
        let dir = scratch(name);
        let client_ports = free_ports::<3>();
        let peer_ports = free_ports::<3>();
        let ports: Vec<String> = client_ports
            .iter()
            .chain(&peer_ports)
            .map(|p| p.to_string())
            .collect();
        run_ok(&[
            "init-local",
            "--dir",
            dir.to_str().unwrap(),
            "--ports",
            &ports.join(","),
            "--extra",
            extra,
        ]);
        // A snapshot: the model's weights may be rewritten by training.
        let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("models/cipherdm-tiny-silu");
        let m = dir.join("model");
        std::fs::create_dir_all(&m).unwrap();
        for f in ["config.json", "model.safetensors"] {
            std::fs::copy(src.join(f), m.join(f)).unwrap();
        }
        run_ok(&[
            "deal-model",
            "--model-dir",
            m.to_str().unwrap(),
            "--name",
            MODEL,
            "--config",
            dir.join("cluster.toml").to_str().unwrap(),
        ]);
        Cluster {
            dir,
            client_ports,
            peer_ports,
            children: [None, None, None],
        }
    }

    pub fn config(&self) -> PathBuf {
        self.dir.join("cluster.toml")
    }

    pub fn spawn(&mut self, i: usize, flags: &[&str]) {
        let log = std::fs::File::create(self.dir.join(format!("party{i}.log"))).unwrap();
        let child = Command::new(BIN)
            .args(["serve", "--party", &i.to_string(), "--config"])
            .arg(self.config())
            .args(flags)
            .env("RUST_LOG", "info")
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .unwrap();
        self.children[i] = Some(child);
    }

    /// Starts all three and waits until every link is up.
    pub fn start(name: &str, extra: &str, flags: &[&str]) -> Cluster {
        let mut c = Cluster::init(name, extra);
        for i in 0..3 {
            c.spawn(i, flags);
        }
        c.wait_ready();
        c
    }

    pub fn wait_ready(&self) {
        let t = Instant::now();
        while t.elapsed() < Duration::from_secs(30) {
            if (0..3).all(|i| {
                self.health(i)
                    .is_some_and(|h| h["links"]["next"] == true && h["links"]["prev"] == true)
            }) {
                return;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        panic!("cluster did not come up:\n{}", self.logs());
    }

    pub fn logs(&self) -> String {
        (0..3)
            .map(|i| {
                std::fs::read_to_string(self.dir.join(format!("party{i}.log"))).unwrap_or_default()
            })
            .collect::<Vec<_>>()
            .join("\n---\n")
    }

    pub fn url(&self, i: usize) -> String {
        format!("ws://127.0.0.1:{}/ws", self.client_ports[i])
    }

    pub fn urls(&self) -> [String; 3] {
        std::array::from_fn(|i| self.url(i))
    }

    /// `GET /health` of party `i`, parsed; `None` if it does not answer.
    pub fn health(&self, i: usize) -> Option<serde_json::Value> {
        let mut s = TcpStream::connect(("127.0.0.1", self.client_ports[i])).ok()?;
        s.set_read_timeout(Some(Duration::from_secs(5))).ok()?;
        s.write_all(b"GET /health HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n")
            .ok()?;
        let mut r = String::new();
        s.read_to_string(&mut r).ok()?;
        serde_json::from_str(r.split("\r\n\r\n").nth(1)?).ok()
    }

    pub fn kill(&mut self, i: usize) {
        if let Some(mut c) = self.children[i].take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// Resident memory of party `i`'s process, in KiB.
    pub fn rss_kib(&self, i: usize) -> u64 {
        let pid = self.children[i].as_ref().unwrap().id();
        let s = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
        s.lines()
            .find(|l| l.starts_with("VmRSS:"))
            .and_then(|l| l.split_whitespace().nth(1))
            .unwrap()
            .parse()
            .unwrap()
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        for i in 0..3 {
            self.kill(i);
        }
        if !std::thread::panicking() {
            let _ = std::fs::remove_dir_all(&self.dir);
        } else {
            eprintln!("cluster files kept in {}", self.dir.display());
        }
    }
}

pub type Ws =
    tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

pub async fn connect(url: &str) -> Ws {
    tokio_tungstenite::connect_async(url).await.unwrap().0
}

pub async fn send_raw(ws: &mut Ws, bytes: Vec<u8>) {
    ws.send(Message::Binary(bytes.into())).await.unwrap();
}

pub async fn send(ws: &mut Ws, m: &ClientMsg) {
    send_raw(ws, proto::encode_client(m)).await;
}

/// The next protocol message, `None` when the connection ends (or `wait` passes).
pub async fn recv(ws: &mut Ws, wait: Duration) -> Option<ServerMsg> {
    loop {
        match tokio::time::timeout(wait, ws.next()).await.ok()?? {
            Ok(Message::Binary(b)) => return Some(proto::decode_server(&b).unwrap()),
            Ok(Message::Close(_)) | Err(_) => return None,
            Ok(_) => continue,
        }
    }
}

/// Skips progress events; returns the first other message.
pub async fn recv_final(ws: &mut Ws, wait: Duration) -> Option<ServerMsg> {
    loop {
        match recv(ws, wait).await? {
            ServerMsg::Progress { .. } | ServerMsg::Accepted { .. } | ServerMsg::Preview { .. } => {
                continue;
            }
            m => return Some(m),
        }
    }
}

pub fn rt() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap()
}
