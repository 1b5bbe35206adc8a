//! A private generation from the browser: the request is shared here, each
//! server gets only its own bundle, and the three servers' replies become
//! events for the page (progress, previews, the image) — reconstructed only
//! in this tab.

use crate::fanout::{self, Conversation, Effects, Reply, Shared};
use crate::js::{self, image_event, object};
use shared::proto::{self, ClientMsg, ModelInfo, ServerMsg};
use shared::request::{self, Event, Options, Tracker};
use wasm_bindgen::prelude::*;

struct Generate {
    /// Each server's `Generate` frame, until its connection opens.  Only
    /// `hellos[i]` is ever sent to server `i`.
    hellos: [Option<Vec<u8>>; 3],
    tracker: Tracker,
    on_event: js_sys::Function,
}

fn emit(effects: &mut Effects, on_event: &js_sys::Function, event: JsValue) {
    let f = on_event.clone();
    effects.push(Box::new(move || {
        if let Err(e) = f.call1(&JsValue::NULL, &event) {
            web_sys::console::error_2(&"the page's event handler failed:".into(), &e);
        }
    }));
}

impl Conversation for Generate {
    fn hello(&mut self, party: usize) -> Vec<u8> {
        self.hellos[party].take().unwrap_or_default()
    }

    fn on_message(
        &mut self,
        party: usize,
        msg: ServerMsg,
        effects: &mut Effects,
    ) -> Result<Reply, String> {
        let party_done = matches!(msg, ServerMsg::Result(_));
        let event = match self.tracker.on_message(party, msg)? {
            None => None,
            Some(Event::Accepted) => Some(object(&[("kind", "accepted".into())])),
            Some(Event::Progress { step, total }) => Some(object(&[
                ("kind", "progress".into()),
                ("step", step.into()),
                ("total", total.into()),
            ])),
            Some(Event::Preview { step, image }) => {
                Some(image_event("preview", Some(step), &image))
            }
            Some(Event::Done(image)) => {
                emit(effects, &self.on_event, image_event("done", None, &image));
                return Ok(Reply::AllDone);
            }
        };
        if let Some(e) = event {
            emit(effects, &self.on_event, e);
        }
        Ok(if party_done {
            Reply::PartyDone
        } else {
            Reply::Continue
        })
    }

    fn on_failure(&mut self, message: String, effects: &mut Effects) {
        let e = object(&[("kind", "error".into()), ("message", message.into())]);
        emit(effects, &self.on_event, e);
    }
}

/// A running generation (JS: `Generation.start(...)`, `cancel()`).
#[wasm_bindgen]
pub struct Generation {
    run: Shared<Generate>,
}

#[wasm_bindgen]
impl Generation {
    /// Shares the request and sends each of the three servers (`urls`: P0,
    /// P1, P2) only its bundle.  `model` is a model as `listModels` returned
    /// it; `options` is a `shared::request::Options` object.  `onEvent`
    /// receives `{kind: "accepted" | "progress" | "preview" | "done" |
    /// "error" | "cancelled", ...}`; "done", "error" and "cancelled" are
    /// final.
    ///
    /// `insecureShareSeed` makes the sharing randomness repeat, for the
    /// servers' seeded test mode only: shares from a known seed hide nothing.
    pub fn start(
        urls: Vec<String>,
        model: JsValue,
        options: JsValue,
        #[wasm_bindgen(js_name = onEvent)] on_event: js_sys::Function,
        #[wasm_bindgen(js_name = insecureShareSeed)] insecure_share_seed: Option<u64>,
    ) -> Result<Generation, JsError> {
        let urls = js::three_urls(urls)?;
        let info: ModelInfo = js::from_js(model, "model")?;
        let opts: Options = js::from_js(options, "options")?;
        let id = request::random_request_id(&mut crate::system_rng());
        let reqs = match insecure_share_seed {
            Some(seed) => {
                request::requests(&info, &opts, id, &mut request::insecure_test_rng(seed))
            }
            None => request::requests(&info, &opts, id, &mut crate::system_rng()),
        }
        .map_err(|e| JsError::new(&e))?;
        let tracker = Tracker::new(&info, opts.batch).map_err(|e| JsError::new(&e))?;
        let hellos = reqs.map(|g| Some(proto::encode_client(&ClientMsg::Generate(Box::new(g)))));
        let conv = Generate {
            hellos,
            tracker,
            on_event,
        };
        let run =
            fanout::start(urls, opts.idle_timeout_secs, conv).map_err(|e| JsError::new(&e))?;
        Ok(Generation { run })
    }

    /// Stops the generation: the servers are asked to abort, and the page
    /// gets a final "cancelled" event (nothing if it had already ended).
    pub fn cancel(&self) {
        if self.run.borrow().is_finished() {
            return;
        }
        let on_event = self.run.borrow().conv.on_event.clone();
        fanout::close(&self.run, true);
        let e = object(&[("kind", "cancelled".into())]);
        let _ = on_event.call1(&JsValue::NULL, &e);
    }

    /// Whether the generation has ended (done, failed or cancelled).
    #[wasm_bindgen(getter)]
    pub fn finished(&self) -> bool {
        self.run.borrow().is_finished()
    }
}
