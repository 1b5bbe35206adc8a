//! Time the candle forward and backward of one training step, op family by op family.
use candle_core::{D, Device, Tensor, Var};
use std::time::Instant;

fn t<F: FnMut() -> candle_core::Result<Tensor>>(name: &str, mut f: F) {
    let s = Instant::now();
    let y = f().unwrap();
    let fw = s.elapsed();
    let s = Instant::now();
    let _g = y.sqr().unwrap().sum_all().unwrap().backward().unwrap();
    println!("{name}: fwd {:?} bwd {:?}", fw, s.elapsed());
}

fn main() {
    let b: usize = std::env::args()
        .nth(1)
        .map(|s| s.parse().unwrap())
        .unwrap_or(32);
    let d = Device::Cpu;
    let x = Var::from_tensor(&Tensor::randn(0f32, 1., (b, 4, 28, 28), &d).unwrap()).unwrap();
    let w = Var::from_tensor(&Tensor::randn(0f32, 1., (4, 4, 3, 3), &d).unwrap()).unwrap();
    t("conv 4->4 28x28", || {
        x.as_tensor().conv2d(w.as_tensor(), 1, 1, 1, 1)
    });
    let s = Var::from_tensor(&Tensor::randn(0f32, 1., (b, 196, 196), &d).unwrap()).unwrap();
    t("softmax b x196x196", || {
        candle_nn::ops::softmax(s.as_tensor(), D::Minus1)
    });
    let q = Var::from_tensor(&Tensor::randn(0f32, 1., (b, 196, 8), &d).unwrap()).unwrap();
    let k = Var::from_tensor(&Tensor::randn(0f32, 1., (b, 8, 196), &d).unwrap()).unwrap();
    t("matmul qk", || q.as_tensor().matmul(k.as_tensor()));
    t("silu", || {
        let x = x.as_tensor();
        x / (x.neg()?.exp()? + 1.0)?
    });
    t("gn", || {
        let xg = x.as_tensor().reshape((b, 2, ()))?;
        let m = xg.mean_keepdim(D::Minus1)?;
        xg.broadcast_sub(&m)
    });
}
