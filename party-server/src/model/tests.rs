//! Unit tests of the model layer: config, builder, f32 reference ops, weights.

use std::collections::HashMap;

use super::*;

fn t(data: &[f32], shape: &[usize]) -> CpuTensor {
    CpuTensor::new(data.to_vec(), shape).unwrap()
}

fn close(a: &[f32], b: &[f32], tol: f32) {
    assert_eq!(a.len(), b.len(), "{a:?} vs {b:?}");
    for (x, y) in a.iter().zip(b) {
        assert!((x - y).abs() <= tol, "{a:?} vs {b:?}");
    }
}

// ------------------------------------------------------------------ config

#[test]
fn tiny_config_round_trips_through_json() {
    for act in [Activation::Relu, Activation::Silu, Activation::Mish] {
        let cfg = UNetConfig::cipherdm_tiny(act);
        let back = UNetConfig::from_json(&cfg.to_json()).unwrap();
        assert_eq!(cfg, back);
    }
}

#[test]
fn committed_tiny_configs_parse() {
    let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/models");
    for act in ["relu", "silu", "mish"] {
        let cfg = UNetConfig::from_file(format!("{dir}/cipherdm-tiny-{act}/config.json")).unwrap();
        assert_eq!(cfg.activation.name(), act);
        assert_eq!(cfg.num_classes, Some(2));
    }
}

#[test]
fn config_errors_are_reported() {
    let good = UNetConfig::cipherdm_tiny(Activation::Silu);
    let bad = |f: &dyn Fn(&mut UNetConfig)| {
        let mut c = good.clone();
        f(&mut c);
        match UNetConfig::from_json(&c.to_json()) {
            Err(ModelError::Config(m)) => m,
            other => panic!("expected a config error, got {other:?}"),
        }
    };
    assert!(bad(&|c| c.norm_groups = 3).contains("norm_groups"));
    assert!(bad(&|c| c.attention_resolutions = vec![10]).contains("attention resolution"));
    assert!(bad(&|c| c.time_embedding_dim = 5).contains("time_embedding_dim"));
    assert!(bad(&|c| c.class_labels = Some(vec![0, 1, 2])).contains("class_labels"));
    assert!(bad(&|c| c.channel_mults = vec![]).contains("channel_mults"));
    assert!(bad(&|c| c.channel_mults = vec![1, 2, 2, 2]).contains("divisible"));
    assert!(bad(&|c| c.attention_heads = 3).contains("attention_heads"));
    // Unknown fields and wrong types are rejected by serde.
    let mut v: serde_json::Value = serde_json::from_str(&good.to_json()).unwrap();
    v["bogus"] = serde_json::json!(1);
    assert!(matches!(
        UNetConfig::from_json(&v.to_string()),
        Err(ModelError::Config(_))
    ));
    assert!(matches!(
        UNetConfig::from_json(r#"{"image_size": "28"}"#),
        Err(ModelError::Config(_))
    ));
    let mut v: serde_json::Value = serde_json::from_str(&good.to_json()).unwrap();
    v["activation"] = serde_json::json!("gelu");
    assert!(UNetConfig::from_json(&v.to_string()).is_err());
}

// ------------------------------------------------------------------ builder

#[test]
fn tiny_model_has_15881_parameters_and_six_attention_blocks() {
    let cfg = UNetConfig::cipherdm_tiny(Activation::Silu);
    let mut meta = MetaBackend::new();
    let net = UNet::new(&cfg, &mut meta).unwrap();
    assert_eq!(meta.param_count(), 15_881);
    let names: Vec<&str> = meta.params.iter().map(|(n, _)| n.as_str()).collect();
    for n in [
        "conv_in.weight",
        "time_embedding.linear_1.weight",
        "time_embedding.linear_2.bias",
        "down_blocks.0.resnets.0.norm1.weight",
        "down_blocks.0.resnets.1.class_emb_proj.weight",
        "down_blocks.0.downsamplers.0.conv.weight",
        "down_blocks.1.resnets.0.conv_shortcut.weight",
        "down_blocks.1.attentions.1.to_out.0.weight",
        "mid_block.attentions.0.to_q.weight",
        "mid_block.resnets.1.time_emb_proj.weight",
        "up_blocks.0.resnets.2.conv_shortcut.weight",
        "up_blocks.0.upsamplers.0.conv.weight",
        "up_blocks.1.resnets.2.conv2.bias",
        "conv_norm_out.weight",
        "conv_out.weight",
    ] {
        assert!(names.contains(&n), "missing {n}");
    }
    assert_eq!(
        names.iter().filter(|n| n.ends_with("to_q.weight")).count(),
        6
    );
    // Forward on shapes: output shape and the softmax size (6 × 196 × 196).
    let x = vec![1, 1, 28, 28];
    let c = vec![1, 2];
    let y = net.forward(&mut meta, &x, &[0.0], Some(&c)).unwrap();
    assert_eq!(y, vec![1, 1, 28, 28]);
    assert_eq!(meta.counts.softmax_elems, 6 * 196 * 196);
}

#[test]
fn forward_checks_inputs() {
    let cfg = UNetConfig::cipherdm_tiny(Activation::Relu);
    let mut be = CpuBackend::random(1);
    let net = UNet::new(&cfg, &mut be).unwrap();
    let x = be.from_public(&[0.0; 784], &[1, 1, 28, 28]).unwrap();
    let c = be.from_public(&[1.0, 0.0], &[1, 2]).unwrap();
    assert!(net.forward(&mut be, &x, &[0.0], None).is_err());
    assert!(net.forward(&mut be, &x, &[0.0, 1.0], Some(&c)).is_err());
    let x2 = be.from_public(&[0.0; 4 * 196], &[1, 4, 14, 14]).unwrap();
    assert!(net.forward(&mut be, &x2, &[0.0], Some(&c)).is_err());
    let y = net.forward(&mut be, &x, &[10.0], Some(&c)).unwrap();
    assert_eq!(y.shape, vec![1, 1, 28, 28]);
    assert!(y.data.iter().all(|v| v.is_finite()));
}

#[test]
fn multi_head_and_time_class_embedding_variants_build_and_run() {
    let mut cfg = UNetConfig::cipherdm_tiny(Activation::Mish);
    cfg.attention_heads = 2;
    cfg.class_embedding = ClassEmbedding::Time;
    cfg.channel_mults = vec![1, 2, 2];
    cfg.attention_resolutions = vec![7];
    let mut be = CpuBackend::random(3);
    let net = UNet::new(&cfg, &mut be).unwrap();
    assert!(
        be.loaded_params()
            .iter()
            .any(|(n, _)| n == "class_embedding.weight")
    );
    let x = be.from_public(&[0.5; 2 * 784], &[2, 1, 28, 28]).unwrap();
    let c = be.from_public(&one_hot(&[0, 1], 2), &[2, 2]).unwrap();
    let y = net.forward(&mut be, &x, &[3.0, 999.0], Some(&c)).unwrap();
    assert_eq!(y.shape, vec![2, 1, 28, 28]);
    // The two batch elements differ (different t and class).
    assert_ne!(y.data[..784], y.data[784..]);
}

#[test]
fn timestep_embedding_matches_formula() {
    let e = timestep_embedding(&[0.0, 10.0], 4);
    // half = 2, freqs = [1, 1e-2]
    close(
        &e,
        &[
            0.0,
            0.0,
            1.0,
            1.0,
            10f32.sin(),
            0.1f32.sin(),
            10f32.cos(),
            0.1f32.cos(),
        ],
        1e-6,
    );
}

/// Why the tiny configs scale t: with 4 dimensions of the raw t, t and
/// t + 628 (≈ 200π) get nearly the same embedding; with t/T every pair of
/// distinct timesteps stays apart.
#[test]
fn tiny_time_embedding_does_not_alias() {
    let dist = |a: &[f32], b: &[f32]| {
        a.iter()
            .zip(b)
            .map(|(x, y)| (x - y) * (x - y))
            .sum::<f32>()
            .sqrt()
    };
    let raw = timestep_embedding(&[100.0, 728.0], 4);
    assert!(dist(&raw[..4], &raw[4..]) < 0.35, "raw t aliases");
    let scale = UNetConfig::cipherdm_tiny(Activation::Silu).timestep_scale;
    let e = timestep_embedding(&[100.0 * scale, 728.0 * scale], 4);
    assert!(dist(&e[..4], &e[4..]) > 0.5);
    // Neighbouring steps remain distinguishable too.
    let n = timestep_embedding(&[500.0 * scale, 520.0 * scale], 4);
    assert!(dist(&n[..4], &n[4..]) > 0.015);
}

// ------------------------------------------------------------------ weights

#[test]
fn safetensors_round_trip_gives_the_same_network() {
    let cfg = UNetConfig::cipherdm_tiny(Activation::Silu);
    let mut be = CpuBackend::random(11);
    let net = UNet::new(&cfg, &mut be).unwrap();
    let created = be.created_params().clone();
    let bytes = weights::to_safetensors_bytes(&created).unwrap();
    let parsed = weights::parse_safetensors(&bytes).unwrap();
    assert_eq!(parsed, created);
    let mut be2 = CpuBackend::with_weights(parsed);
    let net2 = UNet::new(&cfg, &mut be2).unwrap();
    assert!(be2.unused_weights().is_empty());
    let x = be.from_public(&[0.3; 784], &[1, 1, 28, 28]).unwrap();
    let c = be.from_public(&[0.0, 1.0], &[1, 2]).unwrap();
    let y1 = net.forward(&mut be, &x, &[500.0], Some(&c)).unwrap();
    let y2 = net2.forward(&mut be2, &x, &[500.0], Some(&c)).unwrap();
    assert_eq!(y1, y2);
}

#[test]
fn missing_or_misshapen_weights_are_errors() {
    let cfg = UNetConfig::cipherdm_tiny(Activation::Silu);
    let mut be = CpuBackend::random(11);
    UNet::new(&cfg, &mut be).unwrap();
    let mut w = be.created_params().clone();
    w.remove("conv_out.bias");
    let mut be2 = CpuBackend::with_weights(w.clone());
    assert!(matches!(
        UNet::new(&cfg, &mut be2),
        Err(ModelError::MissingWeight(n)) if n == "conv_out.bias"
    ));
    w.insert("conv_out.bias".into(), t(&[0.0, 0.0], &[2]));
    let mut be3 = CpuBackend::with_weights(w);
    assert!(matches!(
        UNet::new(&cfg, &mut be3),
        Err(ModelError::Shape(_))
    ));
    assert!(weights::parse_safetensors(b"not a safetensors file").is_err());
}

// ------------------------------------------------------------------ f32 ops

#[test]
fn conv2d_matches_hand_computed_values() {
    let mut be = CpuBackend::with_weights(HashMap::new());
    // 3×3 input 1..9, 3×3 kernel of ones, padding 1: neighbourhood sums.
    let x = t(&[1., 2., 3., 4., 5., 6., 7., 8., 9.], &[1, 1, 3, 3]);
    let w = t(&[1.0; 9], &[1, 1, 3, 3]);
    let b = t(&[0.5], &[1]);
    let y = be.conv2d(&x, &w, Some(&b), 1, 1).unwrap();
    assert_eq!(y.shape, vec![1, 1, 3, 3]);
    close(
        &y.data,
        &[12.5, 21.5, 16.5, 27.5, 45.5, 33.5, 24.5, 39.5, 28.5],
        1e-6,
    );
    // Stride 2: corners of the sum map.
    let y = be.conv2d(&x, &w, None, 2, 1).unwrap();
    assert_eq!(y.shape, vec![1, 1, 2, 2]);
    close(&y.data, &[12.0, 16.0, 24.0, 28.0], 1e-6);
    // Two input channels, 1×1 kernel: weighted channel sum.
    let x = t(&[1., 2., 3., 4., 10., 20., 30., 40.], &[1, 2, 2, 2]);
    let w = t(&[1.0, 0.5], &[1, 2, 1, 1]);
    let y = be.conv2d(&x, &w, None, 1, 0).unwrap();
    close(&y.data, &[6., 12., 18., 24.], 1e-6);
}

#[test]
fn linear_matmul_and_layout_ops() {
    let mut be = CpuBackend::with_weights(HashMap::new());
    let x = t(&[1., 2., 3., 4., 5., 6.], &[2, 3]);
    let w = t(&[1., 0., -1., 2., 1., 0.], &[2, 3]);
    let b = t(&[0.5, -1.0], &[2]);
    let y = be.linear(&x, &w, Some(&b)).unwrap();
    close(&y.data, &[-1.5, 3.0, -1.5, 12.0], 1e-6);
    // Batched matmul [1,2,3]×[1,3,2].
    let a = t(&[1., 2., 3., 4., 5., 6.], &[1, 2, 3]);
    let bm = t(&[1., 2., 3., 4., 5., 6.], &[1, 3, 2]);
    let y = be.matmul(&a, &bm).unwrap();
    close(&y.data, &[22., 28., 49., 64.], 1e-6);
    // transpose / reshape / narrow
    let tt = be.transpose(&a, 1, 2).unwrap();
    assert_eq!(tt.shape, vec![1, 3, 2]);
    close(&tt.data, &[1., 4., 2., 5., 3., 6.], 0.0);
    let n = be.narrow(&a, 2, 1, 2).unwrap();
    close(&n.data, &[2., 3., 5., 6.], 0.0);
    assert!(be.reshape(&a, &[4]).is_err());
    // concat channels / upsample / channel vector
    let p = t(&[1., 2.], &[1, 1, 1, 2]);
    let q = t(&[3., 4.], &[1, 1, 1, 2]);
    let c = be.concat_channels(&p, &q).unwrap();
    assert_eq!(c.shape, vec![1, 2, 1, 2]);
    close(&c.data, &[1., 2., 3., 4.], 0.0);
    let u = be.upsample_nearest2x(&p).unwrap();
    assert_eq!(u.shape, vec![1, 1, 2, 4]);
    close(&u.data, &[1., 1., 2., 2., 1., 1., 2., 2.], 0.0);
    let v = t(&[10., 20.], &[1, 2]);
    let s = be.add_channel_vector(&c, &v).unwrap();
    close(&s.data, &[11., 12., 23., 24.], 0.0);
    // public-scalar ops
    close(&be.scale(&p, 3.0).unwrap().data, &[3., 6.], 0.0);
    close(
        &be.lincomb(2.0, &p, -1.0, &q).unwrap().data,
        &[-1., 0.],
        0.0,
    );
    close(
        &be.clamp(&t(&[-3., 0.5, 2.], &[3]), -1.0, 1.0).unwrap().data,
        &[-1., 0.5, 1.],
        0.0,
    );
    assert!(be.add(&p, &c).is_err());
}

#[test]
fn group_norm_softmax_and_activations() {
    let mut be = CpuBackend::with_weights(HashMap::new());
    // 1 batch, 2 channels of 2 values, 1 group: mean 2.5, var 1.25.
    let x = t(&[1., 2., 3., 4.], &[1, 2, 1, 2]);
    let g = t(&[1.0, 2.0], &[2]);
    let b = t(&[0.0, 1.0], &[2]);
    let y = be.group_norm(&x, 1, &g, &b, 0.0).unwrap();
    let s = 1.25f32.sqrt();
    close(
        &y.data,
        &[-1.5 / s, -0.5 / s, 2.0 * 0.5 / s + 1.0, 2.0 * 1.5 / s + 1.0],
        1e-5,
    );
    // Two groups: each channel normalised on its own.
    let y = be
        .group_norm(&x, 2, &t(&[1., 1.], &[2]), &t(&[0., 0.], &[2]), 0.0)
        .unwrap();
    close(&y.data, &[-1., 1., -1., 1.], 1e-5);
    let sm = be
        .softmax_last(&t(&[0., 0., (2f32).ln(), 1000., 1000., 1000.], &[2, 3]))
        .unwrap();
    close(
        &sm.data,
        &[0.25, 0.25, 0.5, 1. / 3., 1. / 3., 1. / 3.],
        1e-6,
    );
    let x = t(&[1.0, -2.0], &[2]);
    close(
        &be.activation(&x, Activation::Relu).unwrap().data,
        &[1.0, 0.0],
        0.0,
    );
    close(
        &be.activation(&x, Activation::Silu).unwrap().data,
        &[0.731_058_6, -0.238_405_84],
        1e-6,
    );
    close(
        &be.activation(&x, Activation::Mish).unwrap().data,
        &[0.865_098_4, -0.252_501_5],
        1e-6,
    );
    // Mish/SiLU stay finite far out.
    let big = t(&[-100.0, 100.0], &[2]);
    close(
        &be.activation(&big, Activation::Mish).unwrap().data,
        &[0.0, 100.0],
        1e-4,
    );
}

#[test]
fn class_names_follow_the_data_set() {
    let mut c = UNetConfig::cipherdm_tiny(Activation::Silu);
    assert_eq!((c.class_name(0), c.class_name(1)), ("0".into(), "1".into()));
    c.dataset = Some("fashion-mnist".into());
    c.class_labels = Some(vec![7, 9]);
    assert_eq!(c.class_name(0), "Sneaker");
    assert_eq!(c.class_name(1), "Ankle boot");
}
