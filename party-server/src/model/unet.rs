//! The U-Net builder: constructs the architecture once from a [`UNetConfig`]
//! over any [`Backend`], and runs the forward pass (ε prediction).
//!
//! Parameter names follow diffusers `UNet2DModel` (see [`UNetConfig`] for the
//! layout); the one addition is CipherDM's per-res-block class table
//! `...resnets.M.class_emb_proj.weight` (`[out_channels, num_classes]`, no
//! bias, applied to the one-hot class vector).

use super::backend::{Backend, Init};
use super::config::{ClassEmbedding, UNetConfig};
use super::{ModelError, Result};

/// Sinusoidal embedding of public timesteps, CipherDM/`PositionalEmbedding`
/// convention: `freq_i = exp(-ln(10000)·i/half)`, output `[sin(t·f), cos(t·f)]`.
/// Returns row-major `[timesteps.len(), dim]`.
pub fn timestep_embedding(timesteps: &[f32], dim: usize) -> Vec<f32> {
    let half = dim / 2;
    let scale = (10000f64).ln() / half as f64;
    let mut out = Vec::with_capacity(timesteps.len() * dim);
    for &t in timesteps {
        let base = out.len();
        out.resize(base + dim, 0.0);
        for i in 0..half {
            let arg = t as f64 * (-(i as f64) * scale).exp();
            out[base + i] = arg.sin() as f32;
            out[base + half + i] = arg.cos() as f32;
        }
    }
    out
}

/// Row-major `[labels.len(), num_classes]` one-hot matrix.
pub fn one_hot(labels: &[usize], num_classes: usize) -> Vec<f32> {
    let mut v = vec![0.0; labels.len() * num_classes];
    for (i, &l) in labels.iter().enumerate() {
        assert!(l < num_classes, "label {l} out of range {num_classes}");
        v[i * num_classes + l] = 1.0;
    }
    v
}

fn uniform_bound(fan_in: usize) -> Init {
    Init::Uniform(1.0 / (fan_in as f32).sqrt())
}

/// A convolution layer.
pub struct Conv<T> {
    w: T,
    b: Option<T>,
    stride: usize,
    padding: usize,
}

impl<T: Clone> Conv<T> {
    fn load<B: Backend<Tensor = T>>(
        be: &mut B,
        name: &str,
        cin: usize,
        cout: usize,
        k: usize,
        stride: usize,
    ) -> Result<Self> {
        let init = uniform_bound(cin * k * k);
        let w = be.param(&format!("{name}.weight"), &[cout, cin, k, k], init)?;
        let b = be.param(&format!("{name}.bias"), &[cout], init)?;
        Ok(Conv {
            w,
            b: Some(b),
            stride,
            padding: k / 2,
        })
    }
    fn forward<B: Backend<Tensor = T>>(&self, be: &mut B, x: &T) -> Result<T> {
        be.conv2d(x, &self.w, self.b.as_ref(), self.stride, self.padding)
    }
}

/// A dense layer on the last dimension.
pub struct Linear<T> {
    w: T,
    b: Option<T>,
}

impl<T: Clone> Linear<T> {
    fn load<B: Backend<Tensor = T>>(
        be: &mut B,
        name: &str,
        din: usize,
        dout: usize,
        bias: bool,
    ) -> Result<Self> {
        let init = uniform_bound(din);
        let w = be.param(&format!("{name}.weight"), &[dout, din], init)?;
        let b = if bias {
            Some(be.param(&format!("{name}.bias"), &[dout], init)?)
        } else {
            None
        };
        Ok(Linear { w, b })
    }
    fn forward<B: Backend<Tensor = T>>(&self, be: &mut B, x: &T) -> Result<T> {
        be.linear(x, &self.w, self.b.as_ref())
    }
}

/// GroupNorm with affine parameters.
pub struct Norm<T> {
    gamma: T,
    beta: T,
    groups: usize,
    eps: f32,
}

impl<T: Clone> Norm<T> {
    fn load<B: Backend<Tensor = T>>(
        be: &mut B,
        name: &str,
        c: usize,
        cfg: &UNetConfig,
    ) -> Result<Self> {
        Ok(Norm {
            gamma: be.param(&format!("{name}.weight"), &[c], Init::Ones)?,
            beta: be.param(&format!("{name}.bias"), &[c], Init::Zeros)?,
            groups: cfg.norm_groups,
            eps: cfg.norm_eps,
        })
    }
    fn forward<B: Backend<Tensor = T>>(&self, be: &mut B, x: &T) -> Result<T> {
        be.group_norm(x, self.groups, &self.gamma, &self.beta, self.eps)
    }
}

/// ResnetBlock2D with time (and optionally class) conditioning.
pub struct ResBlock<T> {
    norm1: Norm<T>,
    conv1: Conv<T>,
    time_emb_proj: Linear<T>,
    class_emb_proj: Option<Linear<T>>,
    norm2: Norm<T>,
    conv2: Conv<T>,
    conv_shortcut: Option<Conv<T>>,
}

impl<T: Clone> ResBlock<T> {
    fn load<B: Backend<Tensor = T>>(
        be: &mut B,
        name: &str,
        cin: usize,
        cout: usize,
        cfg: &UNetConfig,
    ) -> Result<Self> {
        let norm1 = Norm::load(be, &format!("{name}.norm1"), cin, cfg)?;
        let conv1 = Conv::load(be, &format!("{name}.conv1"), cin, cout, 3, 1)?;
        let time_emb_proj = Linear::load(
            be,
            &format!("{name}.time_emb_proj"),
            cfg.time_hidden_dim,
            cout,
            true,
        )?;
        let class_emb_proj = match (cfg.num_classes, cfg.class_embedding) {
            (Some(n), ClassEmbedding::PerBlock) => Some(Linear {
                // An embedding table: N(0,1)-like scale is what nn.Embed uses;
                // uniform(±1) is close enough and deterministic to describe.
                w: be.param(
                    &format!("{name}.class_emb_proj.weight"),
                    &[cout, n],
                    Init::Uniform(1.0),
                )?,
                b: None,
            }),
            _ => None,
        };
        let norm2 = Norm::load(be, &format!("{name}.norm2"), cout, cfg)?;
        let conv2 = Conv::load(be, &format!("{name}.conv2"), cout, cout, 3, 1)?;
        let conv_shortcut = if cin != cout {
            Some(Conv::load(
                be,
                &format!("{name}.conv_shortcut"),
                cin,
                cout,
                1,
                1,
            )?)
        } else {
            None
        };
        Ok(ResBlock {
            norm1,
            conv1,
            time_emb_proj,
            class_emb_proj,
            norm2,
            conv2,
            conv_shortcut,
        })
    }

    /// `act_temb` is `act(time embedding)` (shared by all blocks), `class` the one-hot `[N, classes]`.
    fn forward<B: Backend<Tensor = T>>(
        &self,
        be: &mut B,
        x: &T,
        act_temb: &T,
        class: Option<&T>,
        cfg: &UNetConfig,
    ) -> Result<T> {
        let h = self.norm1.forward(be, x)?;
        let h = be.activation(&h, cfg.activation)?;
        let h = self.conv1.forward(be, &h)?;
        let mut e = self.time_emb_proj.forward(be, act_temb)?;
        if let (Some(cp), Some(c)) = (&self.class_emb_proj, class) {
            let ce = cp.forward(be, c)?;
            e = be.add(&e, &ce)?;
        }
        let h = be.add_channel_vector(&h, &e)?;
        let h = self.norm2.forward(be, &h)?;
        let h = be.activation(&h, cfg.activation)?;
        let h = self.conv2.forward(be, &h)?;
        let s = match &self.conv_shortcut {
            Some(c) => c.forward(be, x)?,
            None => x.clone(),
        };
        be.add(&s, &h)
    }
}

/// Self-attention over the spatial positions (diffusers `Attention` with a residual).
pub struct AttnBlock<T> {
    group_norm: Norm<T>,
    to_q: Linear<T>,
    to_k: Linear<T>,
    to_v: Linear<T>,
    to_out: Linear<T>,
    heads: usize,
}

impl<T: Clone> AttnBlock<T> {
    fn load<B: Backend<Tensor = T>>(
        be: &mut B,
        name: &str,
        c: usize,
        cfg: &UNetConfig,
    ) -> Result<Self> {
        Ok(AttnBlock {
            group_norm: Norm::load(be, &format!("{name}.group_norm"), c, cfg)?,
            to_q: Linear::load(be, &format!("{name}.to_q"), c, c, true)?,
            to_k: Linear::load(be, &format!("{name}.to_k"), c, c, true)?,
            to_v: Linear::load(be, &format!("{name}.to_v"), c, c, true)?,
            to_out: Linear::load(be, &format!("{name}.to_out.0"), c, c, true)?,
            heads: cfg.attention_heads,
        })
    }

    /// `[N, L, C]` → `[N·heads, L, C/heads]`.
    fn split_heads<B: Backend<Tensor = T>>(&self, be: &mut B, x: &T) -> Result<T> {
        let d = be.dims(x);
        let (n, l, c) = (d[0], d[1], d[2]);
        let h = self.heads;
        if h == 1 {
            return Ok(x.clone());
        }
        let x = be.reshape(x, &[n, l, h, c / h])?;
        let x = be.transpose(&x, 1, 2)?;
        be.reshape(&x, &[n * h, l, c / h])
    }

    /// `[N·heads, L, C/heads]` → `[N, L, C]`.
    fn merge_heads<B: Backend<Tensor = T>>(&self, be: &mut B, x: &T, n: usize) -> Result<T> {
        let h = self.heads;
        if h == 1 {
            return Ok(x.clone());
        }
        let d = be.dims(x);
        let (l, dh) = (d[1], d[2]);
        let x = be.reshape(x, &[n, h, l, dh])?;
        let x = be.transpose(&x, 1, 2)?;
        be.reshape(&x, &[n, l, h * dh])
    }

    fn forward<B: Backend<Tensor = T>>(&self, be: &mut B, x: &T) -> Result<T> {
        let d = be.dims(x);
        let (n, c, hh, ww) = (d[0], d[1], d[2], d[3]);
        let l = hh * ww;
        let h = self.group_norm.forward(be, x)?;
        let h = be.reshape(&h, &[n, c, l])?;
        let h = be.transpose(&h, 1, 2)?; // [N, L, C]
        let q = self.to_q.forward(be, &h)?;
        let k = self.to_k.forward(be, &h)?;
        let v = self.to_v.forward(be, &h)?;
        let dh = c / self.heads;
        // Scale q (L·d elements) rather than the scores (L·L elements).
        let q = be.scale(&q, 1.0 / (dh as f32).sqrt())?;
        let q = self.split_heads(be, &q)?;
        let k = self.split_heads(be, &k)?;
        let v = self.split_heads(be, &v)?;
        let o = be.attention(&q, &k, &v)?; // [N·h, L, d]
        let o = self.merge_heads(be, &o, n)?;
        let o = self.to_out.forward(be, &o)?; // [N, L, C]
        let o = be.transpose(&o, 1, 2)?;
        let o = be.reshape(&o, &[n, c, hh, ww])?;
        be.add(&o, x)
    }
}

/// One encoder or decoder level.
pub struct Level<T> {
    resnets: Vec<ResBlock<T>>,
    attentions: Vec<AttnBlock<T>>,
    /// Downsampler (encoder) or the conv of the upsampler (decoder).
    resample: Option<Conv<T>>,
}

/// The U-Net, built once over a back end `B`.
pub struct UNet<B: Backend> {
    cfg: UNetConfig,
    conv_in: Conv<B::Tensor>,
    time_1: Linear<B::Tensor>,
    time_2: Linear<B::Tensor>,
    class_embedding: Option<Linear<B::Tensor>>,
    down: Vec<Level<B::Tensor>>,
    mid_res_0: ResBlock<B::Tensor>,
    mid_attn: Option<AttnBlock<B::Tensor>>,
    mid_res_1: ResBlock<B::Tensor>,
    up: Vec<Level<B::Tensor>>,
    conv_norm_out: Norm<B::Tensor>,
    conv_out: Conv<B::Tensor>,
}

impl<B: Backend> UNet<B> {
    /// Build the network: validates the config and fetches every parameter
    /// from the back end by name, in a fixed order.
    pub fn new(cfg: &UNetConfig, be: &mut B) -> Result<Self> {
        cfg.validate()?;
        let cfg = cfg.clone();
        let c0 = cfg.base_channels;
        let conv_in = Conv::load(be, "conv_in", cfg.in_channels, c0, 3, 1)?;
        let time_1 = Linear::load(
            be,
            "time_embedding.linear_1",
            cfg.time_embedding_dim,
            cfg.time_hidden_dim,
            true,
        )?;
        let time_2 = Linear::load(
            be,
            "time_embedding.linear_2",
            cfg.time_hidden_dim,
            cfg.time_hidden_dim,
            true,
        )?;
        let class_embedding = match (cfg.num_classes, cfg.class_embedding) {
            (Some(n), ClassEmbedding::Time) => Some(Linear {
                w: be.param(
                    "class_embedding.weight",
                    &[cfg.time_hidden_dim, n],
                    Init::Uniform(1.0),
                )?,
                b: None,
            }),
            _ => None,
        };

        let levels = cfg.levels();
        let mut skip_channels = vec![c0];
        let mut ch = c0;
        let mut down = Vec::new();
        for i in 0..levels {
            let out = cfg.level_channels(i);
            let mut resnets = Vec::new();
            let mut attentions = Vec::new();
            for j in 0..cfg.layers_per_block {
                let name = format!("down_blocks.{i}.resnets.{j}");
                resnets.push(ResBlock::load(be, &name, ch, out, &cfg)?);
                ch = out;
                if cfg.level_has_attention(i) {
                    let name = format!("down_blocks.{i}.attentions.{j}");
                    attentions.push(AttnBlock::load(be, &name, ch, &cfg)?);
                }
                skip_channels.push(ch);
            }
            let resample = if i + 1 < levels {
                let name = format!("down_blocks.{i}.downsamplers.0.conv");
                skip_channels.push(ch);
                Some(Conv::load(be, &name, ch, ch, 3, 2)?)
            } else {
                None
            };
            down.push(Level {
                resnets,
                attentions,
                resample,
            });
        }

        let mid_res_0 = ResBlock::load(be, "mid_block.resnets.0", ch, ch, &cfg)?;
        let mid_attn = if cfg.mid_attention {
            Some(AttnBlock::load(be, "mid_block.attentions.0", ch, &cfg)?)
        } else {
            None
        };
        let mid_res_1 = ResBlock::load(be, "mid_block.resnets.1", ch, ch, &cfg)?;

        let mut up = Vec::new();
        for (k, i) in (0..levels).rev().enumerate() {
            let out = cfg.level_channels(i);
            let mut resnets = Vec::new();
            let mut attentions = Vec::new();
            for j in 0..=cfg.layers_per_block {
                let skip = skip_channels.pop().expect("skip channel bookkeeping");
                let name = format!("up_blocks.{k}.resnets.{j}");
                resnets.push(ResBlock::load(be, &name, ch + skip, out, &cfg)?);
                ch = out;
                if cfg.level_has_attention(i) {
                    let name = format!("up_blocks.{k}.attentions.{j}");
                    attentions.push(AttnBlock::load(be, &name, ch, &cfg)?);
                }
            }
            let resample = if i > 0 {
                let name = format!("up_blocks.{k}.upsamplers.0.conv");
                Some(Conv::load(be, &name, ch, ch, 3, 1)?)
            } else {
                None
            };
            up.push(Level {
                resnets,
                attentions,
                resample,
            });
        }
        debug_assert!(skip_channels.is_empty());
        let conv_norm_out = Norm::load(be, "conv_norm_out", ch, &cfg)?;
        let conv_out = Conv::load(be, "conv_out", ch, cfg.out_channels, 3, 1)?;
        Ok(UNet {
            cfg,
            conv_in,
            time_1,
            time_2,
            class_embedding,
            down,
            mid_res_0,
            mid_attn,
            mid_res_1,
            up,
            conv_norm_out,
            conv_out,
        })
    }

    /// The configuration this network was built from.
    pub fn config(&self) -> &UNetConfig {
        &self.cfg
    }

    /// Predict ε for `x: [N, C, H, W]` at public `timesteps` (one per batch
    /// element; 0-based, in `[0, T)`), with the class one-hot `[N, classes]`
    /// for a class-conditional model.
    pub fn forward(
        &self,
        be: &mut B,
        x: &B::Tensor,
        timesteps: &[f32],
        class_onehot: Option<&B::Tensor>,
    ) -> Result<B::Tensor> {
        let cfg = &self.cfg;
        let d = be.dims(x);
        if d.len() != 4
            || d[1] != cfg.in_channels
            || d[2] != cfg.image_size
            || d[3] != cfg.image_size
        {
            return Err(ModelError::Shape(format!(
                "input {d:?}, expected [N, {}, {}, {}]",
                cfg.in_channels, cfg.image_size, cfg.image_size
            )));
        }
        let n = d[0];
        if timesteps.len() != n {
            return Err(ModelError::Shape(format!(
                "{} timesteps for a batch of {n}",
                timesteps.len()
            )));
        }
        match (cfg.num_classes, class_onehot) {
            (Some(k), Some(c)) => {
                let cd = be.dims(c);
                if cd != [n, k] {
                    return Err(ModelError::Shape(format!(
                        "class one-hot {cd:?}, expected [{n}, {k}]"
                    )));
                }
            }
            (Some(_), None) => {
                return Err(ModelError::Shape(
                    "class-conditional model called without a class".into(),
                ));
            }
            (None, Some(_)) => {
                return Err(ModelError::Shape(
                    "unconditional model called with a class".into(),
                ));
            }
            (None, None) => {}
        }

        // Time embedding: sinusoid in the clear (timesteps are public), then the MLP.
        let scaled: Vec<f32> = timesteps.iter().map(|t| t * cfg.timestep_scale).collect();
        let temb = timestep_embedding(&scaled, cfg.time_embedding_dim);
        let temb = be.from_public(&temb, &[n, cfg.time_embedding_dim])?;
        let temb = self.time_1.forward(be, &temb)?;
        let temb = be.activation(&temb, cfg.activation)?;
        let mut temb = self.time_2.forward(be, &temb)?;
        if let (Some(ce), Some(c)) = (&self.class_embedding, class_onehot) {
            let e = ce.forward(be, c)?;
            temb = be.add(&temb, &e)?;
        }
        let act_temb = be.activation(&temb, cfg.activation)?;

        let mut h = self.conv_in.forward(be, x)?;
        let mut skips = vec![h.clone()];
        for lvl in &self.down {
            for (j, rb) in lvl.resnets.iter().enumerate() {
                h = rb.forward(be, &h, &act_temb, class_onehot, cfg)?;
                if let Some(at) = lvl.attentions.get(j) {
                    h = at.forward(be, &h)?;
                }
                skips.push(h.clone());
            }
            if let Some(ds) = &lvl.resample {
                h = ds.forward(be, &h)?;
                skips.push(h.clone());
            }
        }
        h = self
            .mid_res_0
            .forward(be, &h, &act_temb, class_onehot, cfg)?;
        if let Some(at) = &self.mid_attn {
            h = at.forward(be, &h)?;
        }
        h = self
            .mid_res_1
            .forward(be, &h, &act_temb, class_onehot, cfg)?;
        for lvl in &self.up {
            for (j, rb) in lvl.resnets.iter().enumerate() {
                let s = skips.pop().expect("skip bookkeeping");
                let cat = be.concat_channels(&h, &s)?;
                h = rb.forward(be, &cat, &act_temb, class_onehot, cfg)?;
                if let Some(at) = lvl.attentions.get(j) {
                    h = at.forward(be, &h)?;
                }
            }
            if let Some(us) = &lvl.resample {
                h = be.upsample_nearest2x(&h)?;
                h = us.forward(be, &h)?;
            }
        }
        let h = self.conv_norm_out.forward(be, &h)?;
        let h = be.activation(&h, cfg.activation)?;
        self.conv_out.forward(be, &h)
    }
}
