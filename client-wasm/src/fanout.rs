//! One conversation with the three servers: a WebSocket to each, an idle
//! timeout, and a clean end.  What is said is up to a [`Conversation`]; this
//! module only turns socket events into calls on it and turns failures into
//! messages a person can act on.
//!
//! Callbacks from JavaScript must not hold a `RefCell` borrow while they
//! call back into JavaScript (the page may cancel from inside an event
//! handler), so a conversation returns [`Effects`] that run after the borrow
//! is released.  Socket handlers are never dropped while one of them runs:
//! a finished conversation detaches them and frees them on a later tick.

use shared::proto::{self, ServerMsg};
use std::cell::RefCell;
use std::rc::Rc;
use wasm_bindgen::JsCast;
use wasm_bindgen::prelude::*;
use web_sys::{BinaryType, CloseEvent, MessageEvent, WebSocket};

/// Work to do once no borrow is held: calls into JavaScript.
pub(crate) type Effects = Vec<Box<dyn FnOnce()>>;

/// What a message did to the conversation with one server.
pub(crate) enum Reply {
    /// More messages are expected from this server.
    Continue,
    /// This server has said everything; it may close its connection now.
    PartyDone,
    /// The whole conversation is complete.
    AllDone,
}

/// The protocol-level side of a conversation with the three servers.
pub(crate) trait Conversation: 'static {
    /// The first frame for `party`, sent once its connection is open.
    fn hello(&mut self, party: usize) -> Vec<u8>;
    /// A decoded message from `party`; an error ends the conversation.
    fn on_message(
        &mut self,
        party: usize,
        msg: ServerMsg,
        effects: &mut Effects,
    ) -> Result<Reply, String>;
    /// The conversation failed; `message` says why, for a person.
    fn on_failure(&mut self, message: String, effects: &mut Effects);
}

enum SocketEvent {
    Open,
    Frame(Vec<u8>),
    Closed { code: u16, reason: String },
}

/// A WebSocket and its handlers; dropping it detaches them and closes it.
struct Socket {
    ws: WebSocket,
    opened: bool,
    _handlers: [Closure<dyn FnMut(JsValue)>; 3],
}

impl Drop for Socket {
    fn drop(&mut self) {
        self.ws.set_onopen(None);
        self.ws.set_onmessage(None);
        self.ws.set_onclose(None);
        let _ = self.ws.close();
    }
}

/// Runs `f` on a later tick of the event loop (or drops it if there is no
/// window to schedule on).
fn defer(f: impl FnOnce() + 'static) {
    let cb = Closure::once_into_js(f);
    if let Some(w) = web_sys::window() {
        let _ = w.set_timeout_with_callback_and_timeout_and_arguments_0(cb.unchecked_ref(), 0);
    }
}

/// The three connections and the state of the conversation on them.
pub(crate) struct Fanout<C> {
    urls: [String; 3],
    sockets: Vec<Socket>,
    party_done: [bool; 3],
    finished: bool,
    idle_ms: i32,
    timer: Option<i32>,
    timer_cb: Option<Closure<dyn FnMut()>>,
    /// The conversation itself, until it ends: handlers hold only weak
    /// references, so this keeps it alive whether or not the page keeps a
    /// handle to it, and it is freed once it ends.
    keepalive: Option<Shared<C>>,
    pub(crate) conv: C,
}

pub(crate) type Shared<C> = Rc<RefCell<Fanout<C>>>;

fn window() -> Result<web_sys::Window, String> {
    web_sys::window().ok_or_else(|| "no browser window".to_string())
}

/// Opens the three connections and starts the conversation.  Fails at once
/// only for URLs the browser refuses to open; everything later (refused
/// connections, timeouts) reaches the conversation as a failure.
pub(crate) fn start<C: Conversation>(
    urls: [String; 3],
    idle_secs: u32,
    conv: C,
) -> Result<Shared<C>, String> {
    let run = Rc::new(RefCell::new(Fanout {
        urls: urls.clone(),
        sockets: Vec::new(),
        party_done: [false; 3],
        finished: false,
        idle_ms: (idle_secs.min(i32::MAX as u32 / 1000) * 1000) as i32,
        timer: None,
        timer_cb: None,
        keepalive: None,
        conv,
    }));
    run.borrow_mut().keepalive = Some(run.clone());
    let weak = Rc::downgrade(&run);
    let timer_cb = Closure::<dyn FnMut()>::new(move || {
        if let Some(run) = weak.upgrade() {
            let secs = run.borrow().idle_ms / 1000;
            fail(
                &run,
                format!("no message from the servers for {secs} s; gave up"),
            );
        }
    });
    run.borrow_mut().timer_cb = Some(timer_cb);
    for (party, url) in urls.iter().enumerate() {
        let socket = match open(&run, party, url) {
            Ok(s) => s,
            Err(e) => {
                close(&run, false);
                return Err(e);
            }
        };
        run.borrow_mut().sockets.push(socket);
    }
    run.borrow_mut().arm_timer();
    Ok(run)
}

fn open<C: Conversation>(run: &Shared<C>, party: usize, url: &str) -> Result<Socket, String> {
    let ws = WebSocket::new(url).map_err(|e| {
        format!(
            "cannot open a WebSocket to {url}: {}",
            e.as_string().unwrap_or_else(|| format!("{e:?}"))
        )
    })?;
    ws.set_binary_type(BinaryType::Arraybuffer);
    let handler = |map: fn(JsValue) -> Option<SocketEvent>| {
        let weak = Rc::downgrade(run);
        Closure::<dyn FnMut(JsValue)>::new(move |ev: JsValue| {
            if let (Some(run), Some(ev)) = (weak.upgrade(), map(ev)) {
                on_socket(&run, party, ev);
            }
        })
    };
    let on_open = handler(|_| Some(SocketEvent::Open));
    let on_message = handler(|ev| {
        let data = ev.dyn_into::<MessageEvent>().ok()?.data();
        // Text frames are not part of the protocol: decoding an empty frame
        // reports them as malformed.
        Some(SocketEvent::Frame(
            match data.dyn_into::<js_sys::ArrayBuffer>() {
                Ok(buf) => js_sys::Uint8Array::new(&buf).to_vec(),
                Err(_) => Vec::new(),
            },
        ))
    });
    let on_close = handler(|ev| {
        let ev = ev.dyn_into::<CloseEvent>().ok()?;
        Some(SocketEvent::Closed {
            code: ev.code(),
            reason: ev.reason(),
        })
    });
    ws.set_onopen(Some(on_open.as_ref().unchecked_ref()));
    ws.set_onmessage(Some(on_message.as_ref().unchecked_ref()));
    ws.set_onclose(Some(on_close.as_ref().unchecked_ref()));
    Ok(Socket {
        ws,
        opened: false,
        _handlers: [on_open, on_message, on_close],
    })
}

fn run_effects(effects: Effects) {
    for f in effects {
        f();
    }
}

fn on_socket<C: Conversation>(run: &Shared<C>, party: usize, ev: SocketEvent) {
    let mut effects = Effects::new();
    let outcome = run.borrow_mut().on_socket(party, ev, &mut effects);
    run_effects(effects);
    match outcome {
        Ok(true) => close(run, false),
        Ok(false) => {}
        Err(message) => fail(run, message),
    }
}

/// Ends the conversation with a failure: the servers are told to stop, and
/// the conversation hears why.
pub(crate) fn fail<C: Conversation>(run: &Shared<C>, message: String) {
    let mut effects = Effects::new();
    {
        let mut r = run.borrow_mut();
        if r.finished {
            return;
        }
        r.conv.on_failure(message, &mut effects);
    }
    close(run, true);
    run_effects(effects);
}

/// Ends the conversation; with `cancel`, first asks every server that is
/// still connected to stop its computation.
pub(crate) fn close<C: Conversation>(run: &Shared<C>, cancel: bool) {
    let mut r = run.borrow_mut();
    if r.finished {
        return;
    }
    r.finished = true;
    if let (Some(h), Ok(w)) = (r.timer.take(), window()) {
        w.clear_timeout_with_handle(h);
    }
    if cancel {
        let bye = proto::encode_client(&proto::ClientMsg::Cancel);
        for s in r.sockets.iter().filter(|s| s.opened) {
            let _ = s.ws.send_with_u8_array(&bye);
        }
    }
    let sockets = std::mem::take(&mut r.sockets);
    let timer_cb = r.timer_cb.take();
    let keepalive = r.keepalive.take();
    defer(move || drop((sockets, timer_cb, keepalive)));
}

impl<C: Conversation> Fanout<C> {
    fn arm_timer(&mut self) {
        let Ok(w) = window() else { return };
        if let Some(h) = self.timer.take() {
            w.clear_timeout_with_handle(h);
        }
        if let Some(cb) = &self.timer_cb {
            self.timer = w
                .set_timeout_with_callback_and_timeout_and_arguments_0(
                    cb.as_ref().unchecked_ref(),
                    self.idle_ms,
                )
                .ok();
        }
    }

    pub(crate) fn is_finished(&self) -> bool {
        self.finished
    }

    /// `Ok(true)`: the conversation is complete.
    fn on_socket(
        &mut self,
        party: usize,
        ev: SocketEvent,
        effects: &mut Effects,
    ) -> Result<bool, String> {
        if self.finished {
            return Ok(false);
        }
        let url = self.urls[party].clone();
        match ev {
            SocketEvent::Open => {
                self.sockets[party].opened = true;
                let hello = self.conv.hello(party);
                self.sockets[party]
                    .ws
                    .send_with_u8_array(&hello)
                    .map_err(|_| format!("P{party} ({url}): could not send the request"))?;
                Ok(false)
            }
            SocketEvent::Frame(bytes) => {
                self.arm_timer();
                let msg = proto::decode_server(&bytes).map_err(|e| {
                    format!(
                        "P{party} ({url}) sent a message this page cannot read: {e} \
                         (are the page and the servers the same release?)"
                    )
                })?;
                match self.conv.on_message(party, msg, effects)? {
                    Reply::Continue => Ok(false),
                    Reply::PartyDone => {
                        self.party_done[party] = true;
                        Ok(false)
                    }
                    Reply::AllDone => Ok(true),
                }
            }
            SocketEvent::Closed { .. } if self.party_done[party] => Ok(false),
            SocketEvent::Closed { code, reason } => {
                let why = if reason.is_empty() {
                    format!("code {code}")
                } else {
                    format!("code {code}: {reason}")
                };
                Err(if self.sockets[party].opened {
                    format!("P{party} ({url}) closed the connection early ({why})")
                } else {
                    format!("cannot reach P{party} at {url}: is the server running? ({why})")
                })
            }
        }
    }
}
