//! The party server as a service: cluster config, model store, sessions and
//! the client WebSocket API.
//!
//! * [`config`] — `cluster.toml`.
//! * [`store`] — model share bundles (`deal-model` writes, the server loads).
//! * [`session`] — one generation on this party: request agreement, then the
//!   secure sampler on its own thread.
//! * [`server`] — the axum app, admission and the per-connection protocol.

pub mod config;
pub mod server;
pub mod session;
pub mod store;
