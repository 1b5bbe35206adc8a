//! Small conversions between Rust values and the plain JavaScript objects
//! the page works with.

use serde::de::DeserializeOwned;
use shared::request::Image;
use wasm_bindgen::prelude::*;

/// A plain object `{k: v, ...}`.
pub(crate) fn object(fields: &[(&str, JsValue)]) -> JsValue {
    let o = js_sys::Object::new();
    for (k, v) in fields {
        // Setting a property on a fresh plain object cannot fail.
        let _ = js_sys::Reflect::set(&o, &JsValue::from_str(k), v);
    }
    o.into()
}

/// `{kind, step?, width, height, rgba: Uint8ClampedArray}`: what `draw` takes.
pub(crate) fn image_event(kind: &str, step: Option<u32>, image: &Image) -> JsValue {
    let rgba = image.rgba();
    let px = js_sys::Uint8ClampedArray::new_with_length(rgba.len() as u32);
    px.copy_from(&rgba);
    let mut fields = vec![
        ("kind", JsValue::from_str(kind)),
        ("width", JsValue::from(image.width() as u32)),
        ("height", JsValue::from(image.height() as u32)),
        ("rgba", px.into()),
    ];
    if let Some(s) = step {
        fields.push(("step", s.into()));
    }
    object(&fields)
}

/// Reads a serde value from JavaScript, naming `what` in the error.
pub(crate) fn from_js<T: DeserializeOwned>(v: JsValue, what: &str) -> Result<T, JsError> {
    serde_wasm_bindgen::from_value(v).map_err(|e| JsError::new(&format!("invalid {what}: {e}")))
}

/// Writes a serde value as plain JavaScript objects.
pub(crate) fn to_js<T: serde::Serialize>(v: &T) -> Result<JsValue, JsError> {
    serde_wasm_bindgen::to_value(v).map_err(|e| JsError::new(&e.to_string()))
}

/// The servers' URLs, P0, P1, P2: exactly three, `ws://` or `wss://`.
pub(crate) fn three_urls(urls: Vec<String>) -> Result<[String; 3], JsError> {
    let urls: [String; 3] = urls
        .try_into()
        .map_err(|u: Vec<String>| JsError::new(&format!("need 3 server URLs, got {}", u.len())))?;
    if let Some(bad) = urls
        .iter()
        .find(|u| !(u.starts_with("ws://") || u.starts_with("wss://")))
    {
        return Err(JsError::new(&format!(
            "server URL {bad:?} is not a ws:// or wss:// URL"
        )));
    }
    Ok(urls)
}
