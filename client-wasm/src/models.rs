//! Which models the cluster offers: each server is asked, and only models
//! that all three hold with the same public description are offered (a
//! model dealt differently to one server could only produce garbage).

use crate::fanout::{self, Conversation, Effects, Reply};
use crate::js;
use shared::proto::{self, ClientMsg, ModelInfo, ServerMsg};
use shared::request;
use wasm_bindgen::prelude::*;

struct ListModels {
    lists: [Option<Vec<ModelInfo>>; 3],
    resolve: js_sys::Function,
    reject: js_sys::Function,
}

impl Conversation for ListModels {
    fn hello(&mut self, _party: usize) -> Vec<u8> {
        proto::encode_client(&ClientMsg::ListModels)
    }

    fn on_message(
        &mut self,
        party: usize,
        msg: ServerMsg,
        effects: &mut Effects,
    ) -> Result<Reply, String> {
        match msg {
            ServerMsg::Models(m) => self.lists[party] = Some(m),
            ServerMsg::Error { code, message } => {
                return Err(format!("P{party}: {} ({message})", code.explain()));
            }
            _ => return Err(format!("P{party} answered the model list out of order")),
        }
        if self.lists.iter().any(Option::is_none) {
            return Ok(Reply::PartyDone);
        }
        let lists = std::mem::take(&mut self.lists).map(|l| l.expect("all present"));
        let common = request::common_models(&lists);
        let value = js::to_js(&common).map_err(|_| "cannot convert the model list".to_string())?;
        let resolve = self.resolve.clone();
        effects.push(Box::new(move || {
            let _ = resolve.call1(&JsValue::NULL, &value);
        }));
        Ok(Reply::AllDone)
    }

    fn on_failure(&mut self, message: String, effects: &mut Effects) {
        let reject = self.reject.clone();
        effects.push(Box::new(move || {
            let _ = reject.call1(&JsValue::NULL, &js_sys::Error::new(&message));
        }));
    }
}

/// JS: `listModels(urls, timeoutSecs) -> Promise<ModelInfo[]>`, the models
/// all three servers offer identically; rejects with an `Error` whose
/// message says which server failed and how.
#[wasm_bindgen(js_name = listModels)]
pub fn list_models(
    urls: Vec<String>,
    #[wasm_bindgen(js_name = timeoutSecs)] timeout_secs: u32,
) -> Result<js_sys::Promise, JsError> {
    let urls = js::three_urls(urls)?;
    let mut started = Ok(());
    let promise = js_sys::Promise::new(&mut |resolve, reject| {
        let conv = ListModels {
            lists: Default::default(),
            resolve,
            reject,
        };
        // The conversation keeps itself alive until it ends.
        started = fanout::start(urls.clone(), timeout_secs, conv).map(drop);
    });
    started.map_err(|e| JsError::new(&e))?;
    Ok(promise)
}
