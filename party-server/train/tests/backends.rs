//! The candle back end (fast fused kernels and candle's generic ops) agrees
//! with the f32 reference back end, forward and backward.

use std::collections::HashMap;

use candle_core::{Device, Tensor, Var};
use party_server::model::{
    Activation, Backend, CpuBackend, CpuTensor, SplitMix64, UNet, UNetConfig, one_hot,
};
use train::candle_backend::CandleBackend;

fn to_candle(w: &HashMap<String, CpuTensor>) -> HashMap<String, Tensor> {
    w.iter()
        .map(|(k, v)| {
            (
                k.clone(),
                Tensor::from_vec(v.data.clone(), v.shape.as_slice(), &Device::Cpu).unwrap(),
            )
        })
        .collect()
}

fn inputs(n: usize, seed: u64) -> (Vec<f32>, Vec<f32>, Vec<usize>) {
    let mut r = SplitMix64(seed);
    let x: Vec<f32> = (0..n * 28 * 28).map(|_| r.normal() as f32).collect();
    let t: Vec<f32> = (0..n).map(|i| (137 * i + 11) as f32 % 1000.0).collect();
    let c: Vec<usize> = (0..n).map(|i| i % 2).collect();
    (x, t, c)
}

fn max_abs_diff(a: &[f32], b: &[f32]) -> f32 {
    assert_eq!(a.len(), b.len());
    a.iter()
        .zip(b)
        .map(|(x, y)| (x - y).abs())
        .fold(0.0, f32::max)
}

#[test]
fn candle_matches_f32_reference_on_random_weights() {
    for act in [Activation::Relu, Activation::Silu, Activation::Mish] {
        let cfg = UNetConfig::cipherdm_tiny(act);
        let mut cpu = CpuBackend::random(7);
        let net = UNet::new(&cfg, &mut cpu).unwrap();
        let weights = cpu.created_params().clone();
        let (x, t, c) = inputs(2, 3);
        let xc = cpu.from_public(&x, &[2, 1, 28, 28]).unwrap();
        let cc = cpu.from_public(&one_hot(&c, 2), &[2, 2]).unwrap();
        let want = net.forward(&mut cpu, &xc, &t, Some(&cc)).unwrap().data;
        for fast in [true, false] {
            let mut cb = CandleBackend::fixed(to_candle(&weights));
            cb.fast = fast;
            let cnet = UNet::new(&cfg, &mut cb).unwrap();
            let xt = cb.from_public(&x, &[2, 1, 28, 28]).unwrap();
            let ct = cb.from_public(&one_hot(&c, 2), &[2, 2]).unwrap();
            let out = cnet.forward(&mut cb, &xt, &t, Some(&ct)).unwrap();
            let got = cb.read(&out).unwrap();
            let d = max_abs_diff(&want, &got);
            assert!(d < 1e-4, "{act:?} fast={fast}: max diff {d}");
        }
    }
}

#[test]
fn fused_kernels_have_the_same_gradients_as_candle() {
    // ReLU is left out: its derivative is a step, so pre-activations within
    // rounding of 0 (the fused and composed GroupNorm round differently) flip
    // gradients; SiLU and Mish exercise the same conv/GroupNorm/softmax kernels.
    for act in [Activation::Silu, Activation::Mish] {
        let cfg = UNetConfig::cipherdm_tiny(act);
        let (x, t, c) = inputs(2, 5);
        let mut grads: Vec<HashMap<String, Vec<f32>>> = Vec::new();
        for fast in [true, false] {
            let mut cb = CandleBackend::trainable(9, HashMap::new()).unwrap();
            cb.fast = fast;
            let net = UNet::new(&cfg, &mut cb).unwrap();
            let xv = Var::from_tensor(
                &Tensor::from_vec(x.clone(), (2, 1, 28, 28), &Device::Cpu).unwrap(),
            )
            .unwrap();
            let ct = Tensor::from_vec(one_hot(&c, 2), (2, 2), &Device::Cpu).unwrap();
            let out = net.forward(&mut cb, xv.as_tensor(), &t, Some(&ct)).unwrap();
            let loss = out.sqr().unwrap().mean_all().unwrap();
            let g = loss.backward().unwrap();
            let mut m = HashMap::new();
            for (n, v) in cb.vars() {
                m.insert(
                    n,
                    CandleBackend::values(g.get(v.as_tensor()).unwrap()).unwrap(),
                );
            }
            m.insert(
                "input".into(),
                CandleBackend::values(g.get(xv.as_tensor()).unwrap()).unwrap(),
            );
            grads.push(m);
        }
        for (n, a) in &grads[0] {
            let b = &grads[1][n];
            let scale = b.iter().map(|v| v.abs()).fold(0.0, f32::max);
            let d = max_abs_diff(a, b);
            // ReLU's kink makes gradients sensitive to float summation order.
            let tol = if act == Activation::Relu { 2e-2 } else { 1e-3 };
            assert!(
                d < 1e-5 + tol * scale,
                "{act:?} {n}: max diff {d} (scale {scale})"
            );
        }
    }
}

#[test]
fn committed_weights_give_the_same_output_in_candle_and_f32() {
    let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/../models");
    for name in [
        "cipherdm-tiny-silu",
        "cipherdm-tiny-relu",
        "cipherdm-tiny-mish",
    ] {
        let path = format!("{dir}/{name}");
        if !std::path::Path::new(&format!("{path}/model.safetensors")).exists() {
            continue;
        }
        let (net, mut cpu) = party_server::model::load_cpu_model(&path).unwrap();
        let cfg = net.config().clone();
        let w = party_server::model::weights::load_safetensors(format!("{path}/model.safetensors"))
            .unwrap();
        let mut cb = CandleBackend::fixed(to_candle(&w));
        let cnet = UNet::new(&cfg, &mut cb).unwrap();
        let (x, t, c) = inputs(2, 17);
        let xc = cpu.from_public(&x, &[2, 1, 28, 28]).unwrap();
        let cc = cpu.from_public(&one_hot(&c, 2), &[2, 2]).unwrap();
        let want = net.forward(&mut cpu, &xc, &t, Some(&cc)).unwrap().data;
        let xt = cb.from_public(&x, &[2, 1, 28, 28]).unwrap();
        let ct = cb.from_public(&one_hot(&c, 2), &[2, 2]).unwrap();
        let out = cnet.forward(&mut cb, &xt, &t, Some(&ct)).unwrap();
        let got = cb.read(&out).unwrap();
        let d = max_abs_diff(&want, &got);
        assert!(d < 1e-4, "{name}: max diff {d}");
    }
}
