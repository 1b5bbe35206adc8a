//! Runs in headless Chromium (`wasm-pack test --headless --chrome`): the
//! client's sharing with the browser's CSPRNG, seed expansion, message
//! encoding, reconstruction, canvas drawing, and the JavaScript API's
//! errors when a server cannot be reached.
#![cfg(target_arch = "wasm32")]

use client_wasm::{Generation, draw, list_models};
use shared::proto::{
    self, ClientMsg, ModelInfo, SamplerName, ServerMsg, TensorShares, VariantName,
};
use shared::request::{self, Event, NoiseStream, Options, Tracker};
use shared::{FixedPoint, Prg, Seed};
use wasm_bindgen::{JsCast, JsValue};
use wasm_bindgen_futures::JsFuture;
use wasm_bindgen_test::*;

wasm_bindgen_test_configure!(run_in_browser);

fn browser_rng() -> rand_core::UnwrapErr<getrandom::SysRng> {
    rand_core::UnwrapErr(getrandom::SysRng)
}

fn info() -> ModelInfo {
    ModelInfo {
        name: "tiny".into(),
        activation: "silu".into(),
        in_channels: 1,
        image_size: 28,
        num_classes: 2,
        class_labels: vec![0, 1],
        class_names: vec!["0".into(), "1".into()],
        frac_bits: 14,
        schedule_steps: 1000,
    }
}

fn opts() -> Options {
    Options {
        model: "tiny".into(),
        class_label: Some(1),
        sampler: SamplerName::Ddim,
        steps: 2,
        variant: VariantName::Cipherdm,
        batch: 1,
        seed: 3,
        preview: true,
        idle_timeout_secs: 5,
    }
}

fn encoded_x_t() -> Vec<u64> {
    let fx = FixedPoint::new(info().frac_bits).unwrap();
    request::plain_inputs(&info(), &opts())
        .unwrap()
        .x_t
        .iter()
        .map(|&x| fx.encode(x as f64).unwrap())
        .collect()
}

#[wasm_bindgen_test]
fn seed_expansion_matches_the_reference_streams() {
    // AES-128 with the all-zero key on the all-zero block (the first CTR
    // block): 66e94bd4ef8a2c3b884cfa59ca342b2e.
    let words = Prg::new(Seed([0; 16])).u64_vec(2);
    assert_eq!(words, [0x3b2c_8aef_d44b_e966, 0x2e2b_34ca_59fa_4c88]);
    // SplitMix64 from state 0, and normals as the native client draws them.
    assert_eq!(NoiseStream::new(0).next_u64(), 0xe220_a839_7b1d_cdaf);
    let mut n = NoiseStream::new(42);
    let bits: Vec<u64> = (0..3).map(|_| n.normal().to_bits()).collect();
    assert_eq!(
        bits,
        [
            0x3fda_8ac4_b546_f509,
            0xbfec_8a54_f4e9_1a7c,
            0x3ffb_ac69_cd41_42bf
        ]
    );
}

#[wasm_bindgen_test]
fn browser_shares_reconstruct_to_the_input_and_differ_every_time() {
    let a = request::requests(&info(), &opts(), "abcdefgh".into(), &mut browser_rng()).unwrap();
    let b = request::requests(&info(), &opts(), "abcdefgh".into(), &mut browser_rng()).unwrap();
    let sa = a.clone().map(|g| g.inputs.x_t.expand().unwrap());
    assert_eq!(request::open3(&sa).unwrap(), encoded_x_t());
    for (i, j) in [(0, 1), (1, 2), (2, 0)] {
        let pair = shared::share::reconstruct(&sa[i], &sa[j]).unwrap();
        assert_eq!(pair, encoded_x_t());
    }
    // Fresh randomness: the same input gives different shares.
    let sb = b.map(|g| g.inputs.x_t.expand().unwrap());
    assert_ne!(sa[0].own, sb[0].own);
    // One party's shares alone are not the input.
    assert_ne!(sa[1].own, encoded_x_t());
    // The class input is shared too (one-hot of label 1).
    let c = a.map(|g| g.inputs.class.unwrap().expand().unwrap());
    let fx = FixedPoint::new(14).unwrap();
    assert_eq!(fx.decode_slice(&request::open3(&c).unwrap()), [0.0, 1.0]);
}

#[wasm_bindgen_test]
fn each_frame_carries_only_its_servers_bundle() {
    let g = request::requests(&info(), &opts(), "abcdefgh".into(), &mut browser_rng()).unwrap();
    for (i, gi) in g.iter().enumerate() {
        let frame = proto::encode_client(&ClientMsg::Generate(Box::new(gi.clone())));
        let back = match proto::decode_client(&frame).unwrap() {
            ClientMsg::Generate(back) => back,
            other => panic!("{other:?}"),
        };
        assert_eq!(back.as_ref(), gi);
        assert_eq!(back.inputs.x_t.party.index(), i);
        // P0 gets two seeds; P1 and P2 one seed and one explicit component.
        let explicit = back.inputs.x_t.explicit_len();
        assert_eq!(explicit, if i == 0 { 0 } else { 28 * 28 });
        assert!(frame.len() < 1024 + 8 * explicit * 2);
    }
    let cancel = proto::encode_client(&ClientMsg::Cancel);
    assert_eq!(proto::decode_client(&cancel), Ok(ClientMsg::Cancel));
    assert!(proto::decode_server(&cancel).is_err());
}

#[wasm_bindgen_test]
fn tracker_reconstructs_the_servers_result_shares() {
    let g = request::requests(&info(), &opts(), "abcdefgh".into(), &mut browser_rng()).unwrap();
    let s = g.map(|g| g.inputs.x_t.expand().unwrap());
    let mut t = Tracker::new(&info(), 1).unwrap();
    let mut last = None;
    for (i, si) in s.iter().enumerate() {
        let frame = proto::encode_server(&ServerMsg::Result(TensorShares {
            shape: vec![1, 1, 28, 28],
            shares: si.clone(),
        }));
        last = t
            .on_message(i, proto::decode_server(&frame).unwrap())
            .unwrap();
    }
    let Some(Event::Done(image)) = last else {
        panic!("no image: {last:?}")
    };
    let want = FixedPoint::new(14).unwrap().decode_slice(&encoded_x_t());
    assert!(image.values.iter().zip(&want).all(|(a, b)| *a == *b as f32));
    assert_eq!(image.rgba().len(), 28 * 28 * 4);
}

fn canvas() -> web_sys::HtmlCanvasElement {
    let doc = web_sys::window().unwrap().document().unwrap();
    doc.create_element("canvas").unwrap().dyn_into().unwrap()
}

#[wasm_bindgen_test]
fn draw_puts_exactly_the_pixels_on_the_canvas() {
    let (w, h) = (5u32, 3u32);
    let rgba: Vec<u8> = (0..w * h)
        .flat_map(|i| {
            let g = (i * 17) as u8;
            [g, g, g, 255]
        })
        .collect();
    let c = canvas();
    draw(&c, w, h, &rgba).unwrap();
    assert_eq!((c.width(), c.height()), (w, h));
    let ctx: web_sys::CanvasRenderingContext2d =
        c.get_context("2d").unwrap().unwrap().dyn_into().unwrap();
    let back = ctx.get_image_data(0.0, 0.0, w as f64, h as f64).unwrap();
    assert_eq!(back.data().0, rgba);
    assert!(draw(&c, w, h, &rgba[4..]).is_err());
    assert!(draw(&c, 0, h, &[]).is_err());
}

fn js_opts() -> JsValue {
    serde_wasm_bindgen::to_value(&opts()).unwrap()
}

fn unreachable_urls() -> Vec<String> {
    // Port 9 (discard) is closed on the test machine: connections are refused.
    (0..3).map(|i| format!("ws://127.0.0.1:9/ws{i}")).collect()
}

#[wasm_bindgen_test]
async fn an_unreachable_server_is_a_clear_final_error() {
    let mut on_event = None;
    let done = js_sys::Promise::new(&mut |resolve, _| on_event = Some(resolve));
    let events = js_sys::Array::new();
    let ev2 = events.clone();
    let resolve = on_event.unwrap();
    let cb = wasm_bindgen::closure::Closure::<dyn FnMut(JsValue)>::new(move |e: JsValue| {
        ev2.push(&e);
        resolve.call1(&JsValue::NULL, &e).unwrap();
    });
    let model = serde_wasm_bindgen::to_value(&info()).unwrap();
    let g = Generation::start(
        unreachable_urls(),
        model,
        js_opts(),
        cb.as_ref().unchecked_ref::<js_sys::Function>().clone(),
        None,
    )
    .unwrap();
    let e = JsFuture::from(done).await.unwrap();
    let get = |k: &str| js_sys::Reflect::get(&e, &k.into()).unwrap();
    assert_eq!(get("kind").as_string().unwrap(), "error");
    let msg = get("message").as_string().unwrap();
    assert!(msg.contains("cannot reach P"), "{msg}");
    assert!(g.finished());
    // Cancelling a finished generation does nothing: still one event.
    g.cancel();
    assert_eq!(events.length(), 1);
    drop(cb);
}

#[wasm_bindgen_test]
async fn listing_models_of_an_unreachable_cluster_rejects_with_the_reason() {
    let err = JsFuture::from(list_models(unreachable_urls(), 5).unwrap())
        .await
        .unwrap_err();
    let msg = err.dyn_into::<js_sys::Error>().unwrap().message();
    assert!(String::from(msg).contains("cannot reach P"));
}

#[wasm_bindgen_test]
fn bad_arguments_are_refused_before_anything_is_sent() {
    let f = js_sys::Function::new_no_args("");
    let model = serde_wasm_bindgen::to_value(&info()).unwrap();
    assert!(list_models(vec!["ws://a/ws".into()], 5).is_err());
    assert!(list_models(vec!["http://a".into(); 3], 5).is_err());
    let wrong_class = {
        let mut o = opts();
        o.class_label = Some(7);
        serde_wasm_bindgen::to_value(&o).unwrap()
    };
    assert!(
        Generation::start(
            unreachable_urls(),
            model.clone(),
            wrong_class,
            f.clone(),
            None
        )
        .is_err()
    );
    let not_options = JsValue::from_str("x");
    assert!(Generation::start(unreachable_urls(), model, not_options, f, None).is_err());
}
