//! Three real `party-server` processes on loopback: end-to-end generation
//! against the in-process engine, and the service's robustness — peers that
//! are not who they claim, malformed clients, disagreeing requests, a party
//! that dies mid-run, and concurrent sessions.
//!
//! Secure sampling is slow in debug builds, so every generation here runs one
//! or two DDIM steps.

mod common;

use common::{Cluster, MODEL, connect, recv, recv_final, rt, send, send_raw};
use party_server::client::{self, Options};
use party_server::fxp::Variant;
use party_server::model::{Backend, ModelError, UNet, load_cpu_model};
use party_server::mpc::AShare;
use party_server::mpc::local;
use party_server::net::{link, tls};
use party_server::nn::{SecureBackend, SecureConfig, SecureTensor};
use party_server::sampler::{self, SamplerKind, Schedule};
use party_server::service::store;
use rand::SeedableRng;
use rand::rngs::StdRng;
use shared::Party;
use shared::proto::{self, ClientMsg, ErrorCode, Generate, SamplerName, ServerMsg, VariantName};
use std::time::{Duration, Instant};
use tokio_tungstenite::tungstenite::Message;

const TIMEOUT: Duration = Duration::from_secs(120);

fn opts(steps: u32) -> Options {
    Options {
        model: MODEL.into(),
        class_label: Some(1),
        sampler: SamplerName::Ddim,
        steps,
        variant: VariantName::Cipherdm,
        batch: 1,
        seed: 3,
        preview: false,
        idle_timeout_secs: TIMEOUT.as_secs() as u32,
    }
}

fn code(m: Option<ServerMsg>) -> ErrorCode {
    match m {
        Some(ServerMsg::Error { code, .. }) => code,
        other => panic!("expected an error, got {other:?}"),
    }
}

/// The three parties' `Generate` messages for `opts`, under `id`.
async fn generates(c: &Cluster, o: &Options, id: &str, share_seed: u64) -> [Generate; 3] {
    let info = client::list_models(&c.url(0))
        .await
        .unwrap()
        .into_iter()
        .find(|m| m.name == MODEL)
        .unwrap();
    shared::request::requests(&info, o, id.into(), &mut StdRng::seed_from_u64(share_seed)).unwrap()
}

#[test]
fn network_result_is_bit_identical_to_the_in_process_engine() {
    const SEED: u64 = 11;
    const SHARE_SEED: u64 = 5;
    let c = Cluster::start(
        "e2e",
        &format!("[testing]\ndeterministic_seed = {SEED}\n"),
        &["--insecure-deterministic-randomness"],
    );
    let rt = rt();
    let o = Options {
        preview: true,
        ..opts(2)
    };
    let mut previews = Vec::new();
    let mut progress = Vec::new();
    let got = rt
        .block_on(client::generate(
            &c.urls(),
            &o,
            &mut StdRng::seed_from_u64(SHARE_SEED),
            &mut |e| match e {
                client::Event::Preview { step, image } => previews.push((step, image)),
                client::Event::Progress { step, total } => progress.push((step, total)),
                client::Event::Accepted | client::Event::Done(_) => {}
            },
        ))
        .unwrap_or_else(|e| panic!("{e}\n{}", c.logs()));
    assert_eq!(got.image.shape, [1, 1, 28, 28]);
    assert_eq!(progress.last(), Some(&(2, 2)));
    assert_eq!(previews.len(), 2, "one preview per step");

    // The same shares, weights and setup seed through the in-process engine.
    let reqs = rt.block_on(generates(&c, &o, "reference", SHARE_SEED));
    let models: Vec<store::StoredModel> = Party::ALL
        .iter()
        .map(|&p| {
            let dir = c.dir.join(format!("party{}/models", p.index()));
            store::load_dir(&dir, p).unwrap().remove(MODEL).unwrap()
        })
        .collect();
    let fx = models[0].fx;
    let out = local::run(fx, Some(SEED), |ctx| {
        let i = ctx.index();
        let m = &models[i];
        let mut be =
            SecureBackend::new(ctx, m.weights.clone(), SecureConfig::new(Variant::CipherDm));
        let net = UNet::new(&m.config, &mut be).unwrap();
        let tensor = |b: &shared::PartyBundle, shape: &[usize]| {
            let s = b.expand().unwrap();
            SecureTensor::new(
                shape,
                AShare {
                    a: s.own,
                    b: s.next,
                },
            )
            .unwrap()
        };
        let x = tensor(&reqs[i].inputs.x_t, &[1, 1, 28, 28]);
        let class = tensor(reqs[i].inputs.class.as_ref().unwrap(), &[1, 2]);
        let y = sampler::sample(
            &mut be,
            &net,
            &Schedule::default_linear(),
            SamplerKind::Ddim { steps: 2 },
            &x,
            Some(&class),
            &mut |_, _| Err(ModelError::Backend("DDIM needs no noise".into())),
            &mut |_, _| {},
        )
        .unwrap()
        .x0;
        y.data
    });
    let want: Vec<f32> = fx
        .decode_slice(&local::open(&out))
        .into_iter()
        .map(|v| v as f32)
        .collect();
    assert_eq!(
        got.image.values, want,
        "network and in-process results differ"
    );
    assert!(got.image.values.iter().any(|&v| v != 0.0));

    // The plaintext model on the client's plaintext inputs: checks the
    // client's encoding and decoding end to end, independently of the engine.
    let info = rt
        .block_on(client::list_models(&c.url(0)))
        .unwrap()
        .remove(0);
    let plain = shared::request::plain_inputs(&info, &o).unwrap();
    let (net, mut cpu) = load_cpu_model(c.dir.join("model")).unwrap();
    let x = cpu.from_public(&plain.x_t, &[1, 1, 28, 28]).unwrap();
    let class = cpu
        .from_public(plain.class.as_ref().unwrap(), &[1, 2])
        .unwrap();
    let f32_sample = sampler::sample(
        &mut cpu,
        &net,
        &Schedule::default_linear(),
        SamplerKind::Ddim { steps: 2 },
        &x,
        Some(&class),
        &mut |_, _| Err(ModelError::Backend("DDIM needs no noise".into())),
        &mut |_, _| {},
    )
    .unwrap()
    .x0;
    let mse = got
        .image
        .values
        .iter()
        .zip(&f32_sample.data)
        .map(|(a, b)| ((a - b) as f64).powi(2))
        .sum::<f64>()
        / got.image.values.len() as f64;
    let psnr = 10.0 * (4.0 / mse).log10();
    eprintln!("networked 2-step DDIM sample vs the f32 model: PSNR {psnr:.1} dB");
    assert!(psnr > 30.0, "PSNR vs the f32 model {psnr:.1} dB");

    // No server logged a share value.
    let logs = c.logs();
    for s in &out {
        for w in s.a.iter().take(32) {
            assert!(
                !logs.contains(&w.to_string()),
                "a share word appears in the logs"
            );
        }
    }
}

#[test]
fn deterministic_randomness_is_refused_unless_explicitly_enabled() {
    let c = Cluster::init("det", "[testing]\ndeterministic_seed = 1\n");
    let out = std::process::Command::new(common::BIN)
        .args(["serve", "--party", "0", "--config"])
        .arg(c.config())
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("insecure"), "{err}");
}

#[test]
fn unknown_and_wrong_peers_are_refused_and_the_links_stay_up() {
    let c = Cluster::start("peers", "", &[]);
    let rt = rt();
    let p1_cert = tls::load_cert(&c.dir.join("certs/party1.crt")).unwrap();
    let addr = format!("127.0.0.1:{}", c.peer_ports[1]);
    let attempt = |id: tls::Identity, claim: Party| {
        let cfg = tls::client_config(&id, p1_cert.clone()).unwrap();
        let addr = addr.clone();
        rt.block_on(async move {
            let tcp = tokio::net::TcpStream::connect(&addr).await?;
            let name = rustls::pki_types::ServerName::try_from("party1").unwrap();
            let mut s = tokio_rustls::TlsConnector::from(cfg)
                .connect(name, tcp)
                .await?;
            link::hello(&mut s, claim, Party::ALL[1]).await
        })
    };
    // A stranger with its own key, claiming to be P0.
    let (cert, key) = tls::generate("party0").unwrap();
    let dir = c.dir.join("stranger");
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(dir.join("s.crt"), cert).unwrap();
    std::fs::write(dir.join("s.key"), key).unwrap();
    let stranger = tls::Identity::load(&dir.join("s.crt"), &dir.join("s.key")).unwrap();
    assert!(attempt(stranger, Party::ALL[0]).is_err());
    // A configured party that is not P1's previous neighbour.
    let p2 = tls::Identity::load(
        &c.dir.join("certs/party2.crt"),
        &c.dir.join("certs/party2.key"),
    )
    .unwrap();
    assert!(attempt(p2, Party::ALL[0]).is_err());
    // Plain garbage on the peer port: answered with at most an alert, then closed.
    {
        use std::io::{Read, Write};
        let mut s = std::net::TcpStream::connect(&addr).unwrap();
        s.set_read_timeout(Some(Duration::from_secs(15))).unwrap();
        let _ = s.write_all(&[0; 300]);
        let mut rest = Vec::new();
        match s.read_to_end(&mut rest) {
            Ok(_) => assert!(rest.len() < 64, "unexpected reply of {} bytes", rest.len()),
            Err(e) => assert!(
                !matches!(
                    e.kind(),
                    std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                ),
                "garbage connection left open"
            ),
        }
    }
    // The real links were not disturbed and the cluster still serves.
    std::thread::sleep(Duration::from_millis(200));
    c.wait_ready();
    assert!(rt.block_on(client::list_models(&c.url(1))).is_ok());
    assert!(c.logs().contains("refused peer connection"));
}

#[test]
fn malformed_and_out_of_order_client_messages_get_clear_errors() {
    let c = Cluster::start("malformed", "[limits]\nmax_connections = 3\n", &[]);
    let rt = rt();
    rt.block_on(async {
        let w = Duration::from_secs(30);
        let mut ws = connect(&c.url(0)).await;
        let good = proto::encode_client(&ClientMsg::ListModels);
        let reqs = generates(&c, &opts(1), "malformed-1", 1).await;
        let generate = proto::encode_client(&ClientMsg::Generate(Box::new(reqs[0].clone())));

        let mut cases: Vec<(&str, Vec<u8>, ErrorCode)> = vec![
            ("garbage", b"hello there".to_vec(), ErrorCode::Malformed),
            ("empty", vec![], ErrorCode::Malformed),
            (
                "truncated generate",
                generate[..generate.len() - 5].to_vec(),
                ErrorCode::Malformed,
            ),
            (
                "server message",
                proto::encode_server(&ServerMsg::Progress { step: 1, total: 1 }),
                ErrorCode::Malformed,
            ),
            (
                "cancel before generate",
                proto::encode_client(&ClientMsg::Cancel),
                ErrorCode::Unexpected,
            ),
        ];
        let mut v = good.clone();
        v[3] = 200;
        cases.push(("future version", v, ErrorCode::Malformed));
        let mut g = reqs[0].clone();
        g.request.model = "no-such-model".into();
        cases.push((
            "unknown model",
            proto::encode_client(&ClientMsg::Generate(Box::new(g))),
            ErrorCode::UnknownModel,
        ));
        let mut g = reqs[1].clone(); // P1's bundle sent to P0
        g.request.request_id = "malformed-2".into();
        cases.push((
            "bundle for another party",
            proto::encode_client(&ClientMsg::Generate(Box::new(g))),
            ErrorCode::InvalidRequest,
        ));
        let mut g = reqs[0].clone();
        g.inputs.class = None;
        cases.push((
            "missing class input",
            proto::encode_client(&ClientMsg::Generate(Box::new(g))),
            ErrorCode::InvalidRequest,
        ));
        let mut big = good.clone();
        big.resize(proto::MAX_MESSAGE_BYTES + 8, 0);
        cases.push(("oversized", big, ErrorCode::Malformed));
        for (what, bytes, want) in cases {
            send_raw(&mut ws, bytes).await;
            let got = recv(&mut ws, w).await;
            match &got {
                Some(ServerMsg::Error { code, message }) => {
                    assert_eq!(*code, want, "{what}: {message}");
                    assert!(!message.is_empty());
                }
                other => panic!("{what}: expected an error, got {other:?}"),
            }
            // Refused requests end the connection; anything else keeps it.
            if matches!(want, ErrorCode::UnknownModel | ErrorCode::InvalidRequest) {
                ws = connect(&c.url(0)).await;
            }
            send_raw(&mut ws, good.clone()).await;
            assert!(
                matches!(recv(&mut ws, w).await, Some(ServerMsg::Models(_))),
                "{what}: connection unusable afterwards"
            );
        }
        futures_util::SinkExt::send(&mut ws, Message::Text("{\"list\":true}".into()))
            .await
            .unwrap();
        assert_eq!(code(recv(&mut ws, w).await), ErrorCode::Malformed);
        // A frame above the WebSocket limit: the connection goes, the server stays.
        let mut huge = good.clone();
        huge.resize(proto::MAX_MESSAGE_BYTES + (2 << 20), 0);
        let _ = futures_util::SinkExt::send(&mut ws, Message::Binary(huge.into())).await;
        let _ = recv(&mut ws, w).await;
        assert_eq!(client::list_models(&c.url(0)).await.unwrap()[0].name, MODEL);
        drop(ws);
        // Connection limit (3 here): one more is refused at the HTTP level.
        let mut held = Vec::new();
        let t = Instant::now();
        while held.len() < 3 {
            match tokio_tungstenite::connect_async(c.url(0)).await {
                Ok((ws, _)) => held.push(ws),
                // Earlier connections may still be closing on the server.
                Err(_) if t.elapsed() < w => tokio::time::sleep(Duration::from_millis(20)).await,
                Err(e) => panic!("{e}"),
            }
        }
        match tokio_tungstenite::connect_async(c.url(0)).await {
            Err(tokio_tungstenite::tungstenite::Error::Http(r)) => assert_eq!(r.status(), 503),
            other => panic!("expected 503, got {:?}", other.map(|_| ())),
        }
    });
    assert_eq!(c.health(0).unwrap()["sessions_running"], 0);
}

#[test]
fn disagreeing_or_incomplete_requests_are_refused_by_all_parties() {
    let c = Cluster::start("mismatch", "[limits]\nstart_timeout_secs = 2\n", &[]);
    let rt = rt();
    rt.block_on(async {
        // P2 is told a different step count.
        let mut reqs = generates(&c, &opts(1), "mismatch-1", 1).await;
        reqs[2].request.steps = 2;
        let mut conns = Vec::new();
        for (i, g) in reqs.into_iter().enumerate() {
            let mut ws = connect(&c.url(i)).await;
            send(&mut ws, &ClientMsg::Generate(Box::new(g))).await;
            conns.push(ws);
        }
        for ws in &mut conns {
            assert_eq!(code(recv_final(ws, TIMEOUT).await), ErrorCode::Mismatch);
        }
        // The client reaches only two parties: they give up after the start timeout.
        let reqs = generates(&c, &opts(1), "partial-1", 2).await;
        let t = Instant::now();
        let mut conns = Vec::new();
        for (i, g) in reqs.into_iter().take(2).enumerate() {
            let mut ws = connect(&c.url(i)).await;
            send(&mut ws, &ClientMsg::Generate(Box::new(g))).await;
            conns.push(ws);
        }
        for ws in &mut conns {
            assert_eq!(code(recv_final(ws, TIMEOUT).await), ErrorCode::Aborted);
        }
        assert!(t.elapsed() < Duration::from_secs(20));
        // A request id cannot be reused.
        let reqs = generates(&c, &opts(1), "mismatch-1", 1).await;
        let mut ws = connect(&c.url(0)).await;
        send(&mut ws, &ClientMsg::Generate(Box::new(reqs[0].clone()))).await;
        assert_eq!(
            code(recv_final(&mut ws, TIMEOUT).await),
            ErrorCode::InvalidRequest
        );
    });
    for i in 0..3 {
        assert_eq!(c.health(i).unwrap()["sessions_running"], 0);
    }
}

#[test]
fn a_party_killed_mid_run_makes_the_others_abort_promptly() {
    let mut c = Cluster::start("kill", "[limits]\npeer_timeout_secs = 20\n", &[]);
    let rt = rt();
    rt.block_on(async {
        let reqs = generates(&c, &opts(50), "kill-test-1", 1).await;
        let mut conns = Vec::new();
        for (i, g) in reqs.into_iter().enumerate() {
            let mut ws = connect(&c.url(i)).await;
            send(&mut ws, &ClientMsg::Generate(Box::new(g))).await;
            conns.push(ws);
        }
        // Wait until the first step is done, then kill P2.
        loop {
            match recv(&mut conns[0], TIMEOUT).await {
                Some(ServerMsg::Accepted { .. }) => continue,
                Some(ServerMsg::Progress { .. }) => break,
                other => panic!("expected acceptance, got {other:?}\n{}", c.logs()),
            }
        }
        // Out of order: only cancel is accepted while a generation runs.
        send(&mut conns[1], &ClientMsg::ListModels).await;
        assert_eq!(
            code(recv_final(&mut conns[1], TIMEOUT).await),
            ErrorCode::Unexpected
        );
        c.kill(2);
        let t = Instant::now();
        for ws in conns.iter_mut().take(2) {
            assert_eq!(code(recv_final(ws, TIMEOUT).await), ErrorCode::Aborted);
        }
        assert!(
            t.elapsed() < Duration::from_secs(10),
            "abort took {:?}",
            t.elapsed()
        );
        // While P2 is down, new requests are refused at once. P0 may have
        // aborted on P1's word before its own reader saw P2's socket close,
        // so wait (bounded) until P0 reports that link down.
        let t = Instant::now();
        while c.health(0).unwrap()["links"]["prev"] != false {
            assert!(t.elapsed() < Duration::from_secs(10), "P0 never saw P2 go");
            std::thread::sleep(Duration::from_millis(20));
        }
        let reqs = generates(&c, &opts(1), "kill-test-2", 2).await;
        let mut ws = connect(&c.url(0)).await;
        send(&mut ws, &ClientMsg::Generate(Box::new(reqs[0].clone()))).await;
        assert_eq!(
            code(recv_final(&mut ws, TIMEOUT).await),
            ErrorCode::PeerUnavailable
        );
    });
    // Resources freed: no session left on the survivors.
    let t = Instant::now();
    while (0..2).any(|i| c.health(i).unwrap()["sessions_running"] != 0) {
        assert!(t.elapsed() < Duration::from_secs(10), "sessions not freed");
        std::thread::sleep(Duration::from_millis(50));
    }
    // The restarted party rejoins and the cluster serves again.
    c.spawn(2, &[]);
    c.wait_ready();
}

#[test]
fn a_cancelled_generation_stops_on_all_parties() {
    let c = Cluster::start("cancel", "", &[]);
    let rt = rt();
    rt.block_on(async {
        let reqs = generates(&c, &opts(50), "cancel-test-1", 1).await;
        let mut conns = Vec::new();
        for (i, g) in reqs.into_iter().enumerate() {
            let mut ws = connect(&c.url(i)).await;
            send(&mut ws, &ClientMsg::Generate(Box::new(g))).await;
            conns.push(ws);
        }
        loop {
            match recv(&mut conns[0], TIMEOUT).await {
                Some(ServerMsg::Accepted { .. }) => continue,
                Some(ServerMsg::Progress { .. }) => break,
                other => panic!("expected progress, got {other:?}"),
            }
        }
        send(&mut conns[0], &ClientMsg::Cancel).await;
        assert_eq!(
            code(recv_final(&mut conns[0], TIMEOUT).await),
            ErrorCode::Cancelled
        );
        for ws in conns.iter_mut().skip(1) {
            assert_eq!(code(recv_final(ws, TIMEOUT).await), ErrorCode::Aborted);
        }
    });
    for i in 0..3 {
        assert_eq!(c.health(i).unwrap()["sessions_running"], 0);
    }
}

#[test]
fn concurrent_sessions_complete_and_excess_ones_are_refused() {
    const N: usize = 3;
    let c = Cluster::start(
        "concurrent",
        &format!("[limits]\nmax_sessions = {N}\n"),
        &[],
    );
    let rt = rt();
    let urls = c.urls();
    let tasks: Vec<_> = (0..N)
        .map(|k| {
            let urls = urls.clone();
            rt.spawn(async move {
                let o = Options {
                    seed: k as u64,
                    ..opts(1)
                };
                client::generate(&urls, &o, &mut StdRng::seed_from_u64(k as u64), &mut |_| {}).await
            })
        })
        .collect();
    // Once all N run, one more is refused with a clear message.
    let t = Instant::now();
    while c.health(0).unwrap()["sessions_running"] != N {
        assert!(
            t.elapsed() < TIMEOUT,
            "sessions did not start\n{}",
            c.logs()
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    rt.block_on(async {
        let reqs = generates(&c, &opts(1), "one-too-many", 9).await;
        let mut ws = connect(&c.url(0)).await;
        send(&mut ws, &ClientMsg::Generate(Box::new(reqs[0].clone()))).await;
        assert_eq!(code(recv_final(&mut ws, TIMEOUT).await), ErrorCode::Busy);
    });
    let results: Vec<_> = tasks
        .into_iter()
        .map(|t| {
            rt.block_on(t)
                .unwrap()
                .unwrap_or_else(|e| panic!("{e}\n{}", c.logs()))
        })
        .collect();
    for r in &results {
        assert_eq!(r.image.values.len(), 28 * 28);
    }
    assert_ne!(
        results[0].image.values, results[1].image.values,
        "different seeds, different images"
    );
    for i in 0..3 {
        assert_eq!(c.health(i).unwrap()["sessions_running"], 0);
        let rss = c.rss_kib(i);
        assert!(rss < 512 * 1024, "party {i} uses {rss} KiB");
    }
}
