//! Throughput and latency of the inter-party links: three hubs in one
//! process joined by real TLS connections on loopback (the same code path as
//! the servers), driven through the engine's `Transport` trait.
//!
//! `cargo run --release --bin bench-link -- --mib 1024`

/// See [`party_server::alloc`].
#[global_allocator]
static ALLOC: party_server::alloc::MiMalloc = party_server::alloc::MiMalloc;

use clap::Parser;
use party_server::mpc::{Dir, Transport};
use party_server::net::{self, Hub, tls};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use shared::Party;
use std::time::{Duration, Instant};

#[derive(Parser)]
#[command(about = "Loopback throughput of the authenticated inter-party links")]
struct Args {
    /// Data each measured direction carries, in MiB.
    #[arg(long, default_value_t = 1024)]
    mib: usize,
    /// Message size in KiB (the engine sends one message per round and link).
    #[arg(long, default_value_t = 4096)]
    msg_kib: usize,
    /// Round trips for the latency measurement.
    #[arg(long, default_value_t = 2000)]
    pings: usize,
    #[arg(long)]
    json: bool,
}

fn identity(i: usize) -> tls::Identity {
    let (c, k) = tls::generate(&format!("party{i}")).expect("generate");
    tls::Identity {
        cert: CertificateDer::from_pem_slice(c.as_bytes()).expect("cert"),
        key: PrivateKeyDer::from_pem_slice(k.as_bytes()).expect("key"),
    }
}

fn main() {
    party_server::alloc::keep_freed_memory();
    let args = Args::parse();
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime");
    let ids: Vec<tls::Identity> = (0..3).map(identity).collect();
    let hubs = Party::ALL.map(|p| Hub::new(p, Duration::from_secs(60)));
    let listeners: Vec<tokio::net::TcpListener> = (0..3)
        .map(|_| {
            rt.block_on(tokio::net::TcpListener::bind("127.0.0.1:0"))
                .expect("bind")
        })
        .collect();
    let addrs: Vec<String> = listeners
        .iter()
        .map(|l| l.local_addr().expect("addr").to_string())
        .collect();
    for (i, l) in listeners.into_iter().enumerate() {
        let (next, prev) = ((i + 1) % 3, (i + 2) % 3);
        let server = tls::server_config(&ids[i], ids[prev].cert.clone()).expect("server tls");
        let client = tls::client_config(&ids[i], ids[next].cert.clone()).expect("client tls");
        rt.spawn(net::accept_loop(hubs[i].clone(), l, server));
        rt.spawn(net::dial_loop(hubs[i].clone(), addrs[next].clone(), client));
    }
    while !hubs
        .iter()
        .all(|h| h.is_up(Dir::Next) && h.is_up(Dir::Prev))
    {
        std::thread::sleep(Duration::from_millis(10));
    }
    let words = args.msg_kib * 1024 / 8;
    let count = (args.mib * 1024 / args.msg_kib).max(1);
    let bytes = (count * words * 8) as f64;

    // One direction: P0 → P1.
    let cpu0 = party_server::mpc::local::process_cpu_seconds();
    let (one_way, pair) = {
        let l0 = hubs[0].open(1).expect("open");
        let l1 = hubs[1].open(1).expect("open");
        let (mut t0, mut t1) = (l0.transport().expect("t"), l1.transport().expect("t"));
        let t = Instant::now();
        let rx = std::thread::spawn(move || {
            for _ in 0..count {
                assert_eq!(t1.recv(Dir::Prev).expect("recv").len(), words);
            }
            t1
        });
        for _ in 0..count {
            t0.send(Dir::Next, vec![7u64; words]).expect("send");
        }
        let t1 = rx.join().expect("receiver");
        let s = t.elapsed().as_secs_f64();
        l0.finish();
        l1.finish();
        (bytes / s, (t0, t1))
    };

    // Sender and receiver together: what one byte costs in CPU, independent
    // of how loaded the machine is.
    let one_way_cpu = party_server::mpc::local::process_cpu_seconds() - cpu0;
    let per_cpu_second = bytes / one_way_cpu;

    // Latency: ping-pong of one word.
    let (mut t0, mut t1) = pair;
    let t = Instant::now();
    let pong = std::thread::spawn(move || {
        for _ in 0..args.pings {
            let m = t1.recv(Dir::Prev).expect("ping");
            t1.send(Dir::Prev, m).expect("pong");
        }
    });
    for i in 0..args.pings {
        t0.send(Dir::Next, vec![i as u64]).expect("ping");
        t0.recv(Dir::Next).expect("pong");
    }
    pong.join().expect("pong thread");
    let rtt_us = t.elapsed().as_secs_f64() / args.pings as f64 * 1e6;

    // Protocol rounds: every party sends to both neighbours, then receives
    // from both (all six directions busy at once).
    let links: Vec<_> = hubs.iter().map(|h| h.open(2).expect("open")).collect();
    let t = Instant::now();
    std::thread::scope(|s| {
        for l in &links {
            s.spawn(move || {
                let mut tr = l.transport().expect("t");
                for _ in 0..count / 3 {
                    tr.send(Dir::Next, vec![1u64; words]).expect("send");
                    tr.send(Dir::Prev, vec![2u64; words]).expect("send");
                    tr.recv(Dir::Next).expect("recv");
                    tr.recv(Dir::Prev).expect("recv");
                }
            });
        }
    });
    let s = t.elapsed().as_secs_f64();
    let per_party = 2.0 * (count / 3 * words * 8) as f64 / s;
    for l in &links {
        l.finish();
    }
    let cores = std::thread::available_parallelism().map_or(0, |n| n.get());
    if args.json {
        println!(
            "{}",
            serde_json::json!({"one_way_gb_per_s": one_way / 1e9, "one_way_gb_per_cpu_second": per_cpu_second / 1e9,
                "rounds_sent_gb_per_s_per_party": per_party / 1e9,
                "rtt_us": rtt_us, "message_kib": args.msg_kib, "mib": args.mib, "cores": cores})
        );
    } else {
        println!(
            "one way P0→P1: {:.2} GB/s ({:.2} GB per CPU-second, sender and receiver together); \
             all six directions at once: {:.2} GB/s sent per party; \
             round trip (1 word): {rtt_us:.1} µs  ({} KiB messages, {} MiB, {cores} cores)",
            one_way / 1e9,
            per_cpu_second / 1e9,
            per_party / 1e9,
            args.msg_kib,
            args.mib
        );
    }
}
