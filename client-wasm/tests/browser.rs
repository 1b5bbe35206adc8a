//! Runs in headless Chromium (`wasm-pack test --headless --chrome`).
#![cfg(target_arch = "wasm32")]

use client_wasm::{reconstruct_js, reconstruct_values, share_js, share_values};
use shared::FixedPoint;
use wasm_bindgen::JsValue;
use wasm_bindgen_test::*;

wasm_bindgen_test_configure!(run_in_browser);

#[wasm_bindgen_test]
fn browser_shares_reconstruct_to_the_input() {
    let xs: Vec<f64> = (0..257).map(|i| (i as f64 - 128.0) * 0.37).collect();
    let bundles = share_values(&xs, 18).unwrap();
    for (i, j) in [(0, 1), (1, 2), (2, 0)] {
        let back = reconstruct_values(&bundles[i], &bundles[j], 18).unwrap();
        for (x, y) in xs.iter().zip(&back) {
            assert!((x - y).abs() <= 0.5 / (1u64 << 18) as f64);
        }
    }
}

#[wasm_bindgen_test]
fn browser_randomness_differs_between_calls() {
    let a = share_values(&[1.0; 8], 18).unwrap();
    let b = share_values(&[1.0; 8], 18).unwrap();
    assert_ne!(a[1].own, b[1].own);
}

#[wasm_bindgen_test]
fn fixed_point_round_trip_in_wasm() {
    for f in 16..=20 {
        let fx = FixedPoint::new(f).unwrap();
        for x in [-1234.5678, -1.0, 0.0, 1e-3, 3.0e6] {
            let back = fx.decode(fx.encode(x).unwrap());
            assert!((back - x).abs() <= 0.5 / fx.scale());
        }
    }
    assert!(FixedPoint::default().encode(1e20).is_err());
}

#[wasm_bindgen_test]
fn js_api_round_trips_through_js_values() {
    let bundles = share_js(&[0.5, -7.25, 3.0], 18).unwrap();
    let arr = js_sys::Array::from(&bundles);
    assert_eq!(arr.length(), 3);
    let back = reconstruct_js(arr.get(1), arr.get(0), 18).unwrap();
    assert_eq!(back, vec![0.5, -7.25, 3.0]);
    assert!(reconstruct_js(arr.get(1), JsValue::from_str("nope"), 18).is_err());
}
