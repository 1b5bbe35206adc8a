//! Parameters and per-forward op counts (what the secure cost depends on)
//! of U-Net configs, from the shape-only back end, plus the f32 forward time:
//! `cargo run --release -p train --example arch_report -- CONFIG.json...`
use std::time::Instant;

use party_server::model::{Backend, CpuBackend, MetaBackend, UNet, UNetConfig};

fn main() {
    for path in std::env::args().skip(1) {
        let cfg = UNetConfig::from_file(&path).unwrap();
        let mut meta = MetaBackend::new();
        let net = UNet::new(&cfg, &mut meta).unwrap();
        let s = cfg.image_size;
        let c = cfg.num_classes.map(|k| vec![1, k]);
        net.forward(
            &mut meta,
            &vec![1, cfg.in_channels, s, s],
            &[0.0],
            c.as_ref(),
        )
        .unwrap();
        let mut cpu = CpuBackend::random(1);
        let net = UNet::new(&cfg, &mut cpu).unwrap();
        let x = cpu
            .from_public(
                &vec![0.1; cfg.in_channels * s * s],
                &[1, cfg.in_channels, s, s],
            )
            .unwrap();
        let oh = cfg.num_classes.map(|k| {
            let mut v = vec![0.0; k];
            v[0] = 1.0;
            cpu.from_public(&v, &[1, k]).unwrap()
        });
        let t0 = Instant::now();
        for _ in 0..5 {
            net.forward(&mut cpu, &x, &[500.0], oh.as_ref()).unwrap();
        }
        let ms = t0.elapsed().as_secs_f64() * 1000.0 / 5.0;
        println!(
            "{path}: params {} | per forward: activation elems {}, groupnorm elems {}, softmax elems {}, MACs {} | f32 forward {ms:.2} ms",
            meta.param_count(),
            meta.counts.activation_elems,
            meta.counts.group_norm_elems,
            meta.counts.softmax_elems,
            meta.counts.macs
        );
    }
}
