//! The browser client.  The private input never leaves this module in the
//! clear: the class and the noise are drawn and fixed-point encoded here,
//! split into seed-compressed replicated shares with the browser's CSPRNG
//! (`crypto.getRandomValues` through `getrandom`), and each of the three
//! servers receives only its own bundle, over its own WebSocket.  Only this
//! tab reconstructs the previews and the image.
//!
//! JavaScript API (see `web/app.js`): `listModels(urls, timeoutSecs)`,
//! `Generation.start(urls, model, options, onEvent, insecureShareSeed)`,
//! `generation.cancel()`, `draw(canvas, width, height, rgba)`.  The request
//! building and the reconstruction are `shared::request`, the same code as
//! the native client.

mod canvas;
mod fanout;
mod generation;
mod js;
mod models;

pub use canvas::draw;
pub use generation::Generation;
pub use models::list_models;

/// The platform CSPRNG (the browser's `crypto.getRandomValues` on wasm).
pub(crate) fn system_rng() -> rand_core::UnwrapErr<getrandom::SysRng> {
    rand_core::UnwrapErr(getrandom::SysRng)
}
