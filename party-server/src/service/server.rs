//! The party server: peer links, model store, and the client WebSocket API.
//!
//! A client connection is a small state machine: any number of `ListModels`,
//! then one `Generate`, during which only `Cancel` is accepted; the
//! connection ends with the result or an error.  Every refusal is an
//! `Error` message with a code and a reason, and the connection (and the
//! server) keep going wherever that makes sense.

use super::config::{ClusterConfig, Limits};
use super::session::{self, InputShares, Job};
use super::store::{self, StoredModel};
use crate::mpc::{Dir, local};
use crate::net::{self, Hub, OpenError, tls};
use crate::sampler::Schedule;
use axum::Router;
use axum::extract::State;
use axum::extract::ws::{Message, WebSocket, WebSocketUpgrade};
use axum::response::IntoResponse;
use axum::routing::get;
use shared::proto::{self, ClientMsg, ErrorCode, Generate, ModelInfo, SamplerName, ServerMsg};
use shared::{Party, PartyBundle};
use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};
use tokio::sync::Semaphore;

/// Frames above the protocol limit are cut off by the WebSocket layer a
/// little later, so that a slightly oversized frame still gets a readable
/// `Error` from the decoder rather than a dropped connection.
const WS_LIMIT: usize = proto::MAX_MESSAGE_BYTES + (1 << 20);

/// Shared state of one party's server.
pub struct Server {
    me: Party,
    hub: Arc<Hub>,
    models: BTreeMap<String, Arc<StoredModel>>,
    limits: Limits,
    slots: Arc<Semaphore>,
    connections: Arc<Semaphore>,
    start_timeout: Duration,
    /// Test-only fixed setup seed (see `Testing::deterministic_seed`).
    deterministic: Option<u64>,
}

fn error(code: ErrorCode, message: impl Into<String>) -> ServerMsg {
    ServerMsg::Error {
        code,
        message: message.into(),
    }
}

async fn send(ws: &mut WebSocket, m: &ServerMsg) -> bool {
    ws.send(Message::Binary(proto::encode_server(m).into()))
        .await
        .is_ok()
}

impl Server {
    fn model_infos(&self) -> Vec<ModelInfo> {
        self.models.values().map(|m| m.info()).collect()
    }

    /// Checks a request against the model and the limits and expands the
    /// inputs; the error is what the client is told.
    fn admit(&self, g: &Generate) -> Result<(Arc<StoredModel>, InputShares), ServerMsg> {
        let r = &g.request;
        let m = self.models.get(&r.model).ok_or_else(|| {
            error(
                ErrorCode::UnknownModel,
                format!(
                    "unknown model {:?}; this server has {:?}",
                    r.model,
                    self.models.keys().collect::<Vec<_>>()
                ),
            )
        })?;
        let invalid = |msg: String| error(ErrorCode::InvalidRequest, msg);
        let c = &m.config;
        if r.activation != c.activation.name() {
            return Err(invalid(format!(
                "model {} uses activation {}, the request says {}",
                m.name,
                c.activation.name(),
                r.activation
            )));
        }
        if r.frac_bits != m.fx.frac_bits() {
            return Err(invalid(format!(
                "model {} is dealt with {} fraction bits, the request says {}",
                m.name,
                m.fx.frac_bits(),
                r.frac_bits
            )));
        }
        if r.batch > self.limits.max_batch {
            return Err(invalid(format!(
                "batch {} exceeds this cluster's limit of {}",
                r.batch, self.limits.max_batch
            )));
        }
        let sched_steps = Schedule::default_linear().num_steps();
        let steps = match r.sampler {
            SamplerName::Ddim => r.steps as usize,
            SamplerName::Ddpm => sched_steps,
        };
        if steps > self.limits.max_steps as usize || steps > sched_steps {
            return Err(invalid(format!(
                "{steps} steps exceed this cluster's limit of {}",
                self.limits.max_steps.min(sched_steps as u32)
            )));
        }
        let n = r.batch as usize;
        let numel = n * c.in_channels * c.image_size * c.image_size;
        let expand = |name: &str, b: Option<&PartyBundle>, want: usize| match (b, want) {
            (None, 0) => Ok(None),
            (None, _) => Err(invalid(format!("input {name} is missing ({want} values)"))),
            (Some(_), 0) => Err(invalid(format!("input {name} is not used by this request"))),
            (Some(b), _) if b.len != want => Err(invalid(format!(
                "input {name} has {} values, the request needs {want}",
                b.len
            ))),
            (Some(b), _) if b.party != self.me => Err(invalid(format!(
                "input {name} is shared for {}, this server is {}",
                b.party, self.me
            ))),
            (Some(b), _) => b
                .expand()
                .map(Some)
                .map_err(|e| invalid(format!("input {name}: {e}"))),
        };
        let classes = c.num_classes.unwrap_or(0);
        let noise = match r.sampler {
            SamplerName::Ddpm => (sched_steps - 1) * numel,
            SamplerName::Ddim => 0,
        };
        let x_t = expand("x_t", Some(&g.inputs.x_t), numel)?.expect("x_t is required");
        let class = expand("class", g.inputs.class.as_ref(), n * classes)?;
        let noise = expand("noise", g.inputs.noise.as_ref(), noise)?;
        Ok((m.clone(), InputShares { x_t, class, noise }))
    }

    /// Runs one generation for a client connection.
    async fn generate(self: &Arc<Self>, ws: &mut WebSocket, g: Generate) {
        let (model, inputs) = match self.admit(&g) {
            Ok(x) => x,
            Err(e) => {
                send(ws, &e).await;
                return;
            }
        };
        let Ok(permit) = self.slots.clone().try_acquire_owned() else {
            send(
                ws,
                &error(
                    ErrorCode::Busy,
                    format!(
                        "all {} session slots are busy; retry later",
                        self.limits.max_sessions
                    ),
                ),
            )
            .await;
            return;
        };
        let rid = g.request.request_id.clone();
        let links = match self.hub.open(session::session_key(&rid)) {
            Ok(l) => l,
            Err(e) => {
                drop(permit);
                let code = match e {
                    OpenError::LinkDown(_) => ErrorCode::PeerUnavailable,
                    OpenError::InUse => ErrorCode::InvalidRequest,
                };
                send(ws, &error(code, e.to_string())).await;
                return;
            }
        };
        let own_seed = match self.deterministic {
            Some(s) => local::derive_seeds(s)[self.me.index()],
            None => local::random_seed(),
        };
        let (events, mut rx) = tokio::sync::mpsc::unbounded_channel();
        let cancel = Arc::new(AtomicBool::new(false));
        let job = Job {
            me: self.me,
            model,
            request: g.request.clone(),
            inputs,
            links,
            own_seed,
            start_timeout: self.start_timeout,
            cancel: cancel.clone(),
            events: events.clone(),
        };
        let r = &g.request;
        tracing::info!(request = %rid, model = %r.model, sampler = ?r.sampler, steps = r.steps,
            variant = ?r.variant, batch = r.batch, "session started");
        let t0 = Instant::now();
        let spawned = std::thread::Builder::new()
            .name(format!("session-{rid}"))
            .spawn(move || {
                let msg = match session::run(job) {
                    Ok(y) => ServerMsg::Result(y),
                    Err(e) => e.to_msg(),
                };
                // The session's state is gone: free its slot before the
                // client hears the verdict.
                drop(permit);
                let _ = events.send(msg);
            });
        if spawned.is_err() {
            send(
                ws,
                &error(ErrorCode::Aborted, "could not start a session thread"),
            )
            .await;
            return;
        }
        let mut client_gone = false;
        loop {
            tokio::select! {
                ev = rx.recv() => {
                    let Some(ev) = ev else {
                        // The session thread ended without a verdict: it panicked.
                        tracing::error!(request = %rid, "session thread died");
                        if !client_gone {
                            send(ws, &error(ErrorCode::Aborted, "internal error; the session was aborted")).await;
                        }
                        break;
                    };
                    let last = matches!(ev, ServerMsg::Result(_) | ServerMsg::Error { .. });
                    if let ServerMsg::Error { code, message } = &ev {
                        tracing::warn!(request = %rid, ?code, "session failed after {:.1} s: {message}",
                            t0.elapsed().as_secs_f64());
                    } else if last {
                        tracing::info!(request = %rid, "session done in {:.2} s", t0.elapsed().as_secs_f64());
                    }
                    if !client_gone && !send(ws, &ev).await {
                        client_gone = true;
                        cancel.store(true, Ordering::Relaxed);
                    }
                    if last {
                        break;
                    }
                }
                m = ws.recv(), if !client_gone => match m {
                    Some(Ok(Message::Binary(b))) => match proto::decode_client(&b) {
                        Ok(ClientMsg::Cancel) => {
                            tracing::info!(request = %rid, "cancelled by the client");
                            cancel.store(true, Ordering::Relaxed);
                        }
                        Ok(_) => {
                            send(ws, &error(ErrorCode::Unexpected,
                                "a generation is running on this connection: only cancel is accepted")).await;
                        }
                        Err(e) => {
                            send(ws, &error(ErrorCode::Malformed, e.to_string())).await;
                        }
                    },
                    Some(Ok(Message::Text(_))) => {
                        send(ws, &error(ErrorCode::Malformed, "text frames are not part of the protocol")).await;
                    }
                    Some(Ok(_)) => {}
                    Some(Err(_)) | None => {
                        tracing::info!(request = %rid, "client disconnected; cancelling");
                        client_gone = true;
                        cancel.store(true, Ordering::Relaxed);
                    }
                },
            }
        }
    }
}

async fn client_api(
    State(s): State<Arc<Server>>,
    ws: WebSocketUpgrade,
) -> axum::response::Response {
    let Ok(permit) = s.connections.clone().try_acquire_owned() else {
        return (
            axum::http::StatusCode::SERVICE_UNAVAILABLE,
            "too many client connections; retry later",
        )
            .into_response();
    };
    ws.max_message_size(WS_LIMIT)
        .max_frame_size(WS_LIMIT)
        .on_upgrade(move |socket| async move {
            connection(s, socket).await;
            drop(permit);
        })
}

async fn connection(s: Arc<Server>, mut ws: WebSocket) {
    while let Some(m) = ws.recv().await {
        let reply = match m {
            Ok(Message::Binary(b)) => match proto::decode_client(&b) {
                Ok(ClientMsg::ListModels) => ServerMsg::Models(s.model_infos()),
                Ok(ClientMsg::Generate(g)) => {
                    s.generate(&mut ws, *g).await;
                    let _ = ws.send(Message::Close(None)).await;
                    return;
                }
                Ok(ClientMsg::Cancel) => error(ErrorCode::Unexpected, "no generation is running"),
                Err(e) => error(ErrorCode::Malformed, e.to_string()),
            },
            Ok(Message::Text(_)) => error(
                ErrorCode::Malformed,
                "text frames are not part of the protocol; send binary frames",
            ),
            Ok(Message::Close(_)) => return,
            Ok(_) => continue,
            Err(e) => {
                // The WebSocket layer refused the frame (e.g. over its size
                // limit); say why before the connection goes.
                let _ = send(&mut ws, &error(ErrorCode::Malformed, e.to_string())).await;
                return;
            }
        };
        if !send(&mut ws, &reply).await {
            return;
        }
    }
}

async fn health(State(s): State<Arc<Server>>) -> impl IntoResponse {
    axum::Json(serde_json::json!({
        "party": s.me.index(),
        "links": { "next": s.hub.is_up(Dir::Next), "prev": s.hub.is_up(Dir::Prev) },
        "sessions_running": s.limits.max_sessions - s.slots.available_permits(),
        "link_sessions": s.hub.session_count(),
        "max_sessions": s.limits.max_sessions,
        "models": s.models.keys().collect::<Vec<_>>(),
    }))
}

/// Loads everything for party `me` and serves until the process ends.
pub async fn serve(cfg: ClusterConfig, me: Party, allow_deterministic: bool) -> Result<(), String> {
    let deterministic = cfg.testing.deterministic_seed;
    if deterministic.is_some() && !allow_deterministic {
        return Err("the config sets testing.deterministic_seed, which makes every session reuse the \
             same randomness (insecure); refusing to start without --insecure-deterministic-randomness"
            .into());
    }
    if deterministic.is_some() {
        tracing::warn!("INSECURE: deterministic randomness for tests is enabled");
    }
    let pc = cfg.party(me);
    let key = pc
        .key
        .as_ref()
        .ok_or_else(|| format!("party {} has no `key` in the config", me.index()))?;
    let identity = tls::Identity::load(&cfg.resolve(&pc.cert), &cfg.resolve(key))
        .map_err(|e| e.to_string())?;
    let cert_of = |p: Party| tls::load_cert(&cfg.resolve(&cfg.party(p).cert));
    let client_tls = tls::client_config(&identity, cert_of(me.next()).map_err(|e| e.to_string())?)
        .map_err(|e| e.to_string())?;
    let server_tls = tls::server_config(&identity, cert_of(me.prev()).map_err(|e| e.to_string())?)
        .map_err(|e| e.to_string())?;
    let models = match &pc.models {
        Some(dir) => store::load_dir(&cfg.resolve(dir), me)?,
        None => BTreeMap::new(),
    };
    tracing::info!(party = %me, models = ?models.keys().collect::<Vec<_>>(), "models loaded");
    let hub = Hub::new(me, cfg.peer_timeout());
    let peer_listener = tokio::net::TcpListener::bind(&pc.peer_listen)
        .await
        .map_err(|e| format!("peer listener {}: {e}", pc.peer_listen))?;
    let client_listener = tokio::net::TcpListener::bind(&pc.client_listen)
        .await
        .map_err(|e| format!("client listener {}: {e}", pc.client_listen))?;
    tokio::spawn(net::accept_loop(hub.clone(), peer_listener, server_tls));
    tokio::spawn(net::dial_loop(
        hub.clone(),
        cfg.party(me.next()).peer_addr.clone(),
        client_tls,
    ));
    let sweep_age = cfg.start_timeout() * 2;
    let sweeper = hub.clone();
    tokio::spawn(async move {
        loop {
            tokio::time::sleep(Duration::from_secs(1)).await;
            sweeper.sweep(sweep_age);
        }
    });
    let server = Arc::new(Server {
        me,
        hub,
        models: models.into_iter().map(|(k, v)| (k, Arc::new(v))).collect(),
        slots: Arc::new(Semaphore::new(cfg.limits.max_sessions)),
        connections: Arc::new(Semaphore::new(cfg.limits.max_connections)),
        limits: cfg.limits.clone(),
        start_timeout: cfg.start_timeout(),
        deterministic,
    });
    let app = Router::new()
        .route("/ws", get(client_api))
        .route("/health", get(health))
        .with_state(server);
    tracing::info!(party = %me, client = %pc.client_listen, peer = %pc.peer_listen, "serving");
    axum::serve(client_listener, app)
        .await
        .map_err(|e| format!("client API: {e}"))
}
