//! Browser client.  The private input never leaves this module in the clear:
//! it is fixed-point encoded and split into seed-compressed replicated shares
//! with the browser's CSPRNG (`crypto.getRandomValues` through `getrandom`),
//! one bundle per party server.

use serde::Serialize;
use shared::share::{reconstruct, share_seeded};
use shared::{FixedPoint, PartyBundle};
use wasm_bindgen::prelude::*;

/// The platform CSPRNG (the browser's `crypto.getRandomValues` on wasm).
fn system_rng() -> rand_core::UnwrapErr<getrandom::SysRng> {
    rand_core::UnwrapErr(getrandom::SysRng)
}

/// Encodes `values` in fixed point and shares them for the three parties.
pub fn share_values(values: &[f64], frac_bits: u32) -> Result<[PartyBundle; 3], String> {
    let fx = FixedPoint::new(frac_bits).map_err(|e| e.to_string())?;
    let ring = fx.encode_slice(values).map_err(|e| e.to_string())?;
    Ok(share_seeded(&ring, &mut system_rng()))
}

/// Reconstructs fixed-point values from two different parties' bundles.
pub fn reconstruct_values(
    a: &PartyBundle,
    b: &PartyBundle,
    frac_bits: u32,
) -> Result<Vec<f64>, String> {
    let fx = FixedPoint::new(frac_bits).map_err(|e| e.to_string())?;
    let (sa, sb) = (
        a.expand().map_err(|e| e.to_string())?,
        b.expand().map_err(|e| e.to_string())?,
    );
    let ring = reconstruct(&sa, &sb).map_err(|e| e.to_string())?;
    Ok(fx.decode_slice(&ring))
}

fn to_js<T: Serialize>(v: &T) -> Result<JsValue, JsError> {
    let ser = serde_wasm_bindgen::Serializer::new().serialize_large_number_types_as_bigints(true);
    v.serialize(&ser).map_err(|e| JsError::new(&e.to_string()))
}

fn from_js(v: JsValue) -> Result<PartyBundle, JsError> {
    serde_wasm_bindgen::from_value(v).map_err(|e| JsError::new(&e.to_string()))
}

/// JS: `share(values: Float64Array, fracBits: number) -> [bundle0, bundle1, bundle2]`.
#[wasm_bindgen(js_name = share)]
pub fn share_js(values: &[f64], frac_bits: u32) -> Result<JsValue, JsError> {
    let bundles = share_values(values, frac_bits).map_err(|e| JsError::new(&e))?;
    to_js(&bundles)
}

/// JS: `reconstruct(bundleA, bundleB, fracBits) -> Float64Array`.
#[wasm_bindgen(js_name = reconstruct)]
pub fn reconstruct_js(a: JsValue, b: JsValue, frac_bits: u32) -> Result<Vec<f64>, JsError> {
    reconstruct_values(&from_js(a)?, &from_js(b)?, frac_bits).map_err(|e| JsError::new(&e))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shares_reconstruct_natively() {
        let xs = [0.0, 1.5, -2.25, 1000.125];
        let b = share_values(&xs, 18).unwrap();
        assert_eq!(reconstruct_values(&b[0], &b[2], 18).unwrap(), xs);
        assert!(share_values(&[f64::NAN], 18).is_err());
    }
}
