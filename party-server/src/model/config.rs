//! The public U-Net configuration (JSON, serde).
//!
//! The configuration is public in the protocol: every party and the client
//! know the architecture; only the weights (and the user's inputs) are secret.

use serde::{Deserialize, Serialize};

use super::{ModelError, Result};

/// Element-wise activation used throughout the network (res blocks, time MLP, output head).
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[serde(rename_all = "lowercase")]
pub enum Activation {
    /// max(0, x)
    Relu,
    /// x · sigmoid(x)
    Silu,
    /// x · tanh(softplus(x))
    Mish,
}

impl Activation {
    /// The activation on one f32 value (the plaintext reference definition).
    pub fn apply(self, x: f32) -> f32 {
        match self {
            Activation::Relu => x.max(0.0),
            Activation::Silu => x / (1.0 + (-x).exp()),
            Activation::Mish => {
                // Numerically stable softplus: max(x,0) + ln(1 + e^{-|x|}).
                let sp = x.max(0.0) + (-x.abs()).exp().ln_1p();
                x * sp.tanh()
            }
        }
    }

    /// Name as written in configs ("relu", "silu", "mish").
    pub fn name(self) -> &'static str {
        match self {
            Activation::Relu => "relu",
            Activation::Silu => "silu",
            Activation::Mish => "mish",
        }
    }
}

/// Where the class condition enters the network.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, Default)]
#[serde(rename_all = "snake_case")]
pub enum ClassEmbedding {
    /// CipherDM's released model: every res block has its own class table
    /// (`...resnets.M.class_emb_proj.weight`, shape `[out_channels, num_classes]`)
    /// whose row is added together with the time projection.
    #[default]
    PerBlock,
    /// diffusers `UNet2DModel` style: one table `class_embedding.weight`
    /// (`[time_hidden_dim, num_classes]`) added to the time embedding.
    Time,
}

/// What the network's output stands for (diffusers' `prediction_type`).
///
/// Both are trained with the same MSE recipe; the sampler turns the output
/// into x0 and ε with public per-step coefficients, so the choice costs
/// nothing under MPC. ε-prediction is the DDPM paper's and CipherDM's. With
/// it, the x0 implied at high noise is `(x_t − sqrt(1−ᾱ)·ε̂)/sqrt(ᾱ)`, which
/// multiplies the network's error by up to 1/sqrt(ᾱ_999) ≈ 157: the tiny
/// model at 2,400 iterations had ε-MSE 0.0225 at t ≥ 700 where copying x_t
/// would score 0.0003, so DDIM's clipped x0 was pure ±1 noise and its samples
/// never became digits. v-prediction (`v = sqrt(ᾱ)·ε − sqrt(1−ᾱ)·x0`,
/// Salimans & Ho 2022) bounds both conversions by 1.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, Default)]
#[serde(rename_all = "snake_case")]
pub enum Prediction {
    /// The network predicts the noise ε.
    #[default]
    Epsilon,
    /// The network predicts the velocity v = sqrt(ᾱ_t)·ε − sqrt(1−ᾱ_t)·x0.
    VPrediction,
}

impl Prediction {
    /// Name as written in configs.
    pub fn name(self) -> &'static str {
        match self {
            Prediction::Epsilon => "epsilon",
            Prediction::VPrediction => "v_prediction",
        }
    }
}

fn is_default<T: Default + PartialEq>(v: &T) -> bool {
    *v == T::default()
}

fn default_eps() -> f32 {
    1e-5
}
fn default_one() -> usize {
    1
}
fn default_timestep_scale() -> f32 {
    1.0
}
fn is_one(v: &f32) -> bool {
    *v == 1.0
}

/// Public description of a class-conditional (or unconditional) U-Net.
///
/// Layout (diffusers `UNet2DModel` conventions): `conv_in`, then per level
/// `layers_per_block` res blocks (each followed by self-attention when the
/// level's resolution is listed in `attention_resolutions`) and a stride-2
/// conv downsampler except after the last level; a middle block
/// res → (attention) → res; per level in reverse `layers_per_block + 1`
/// res blocks on the concatenation `[h, skip]` (+ attention), a nearest-2x +
/// conv3x3 upsampler except after the first level; then GroupNorm → act →
/// `conv_out`. The sinusoidal time embedding of dimension
/// `time_embedding_dim` goes through Dense → act → Dense to
/// `time_hidden_dim`, and every res block adds `Dense(act(temb))`.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct UNetConfig {
    /// Height = width of the (square) input image, e.g. 28.
    pub image_size: usize,
    /// Image channels (1 for MNIST).
    pub in_channels: usize,
    /// Output channels (same as `in_channels`: the output is ε or v, see `prediction_type`).
    pub out_channels: usize,
    /// Channels of level 0.
    pub base_channels: usize,
    /// Channel multiplier of each level (its length is the number of levels).
    pub channel_mults: Vec<usize>,
    /// Res blocks per encoder level (the decoder has one more per level).
    pub layers_per_block: usize,
    /// Spatial resolutions (e.g. 14) whose res blocks are followed by self-attention.
    #[serde(default)]
    pub attention_resolutions: Vec<usize>,
    /// Self-attention in the middle block.
    #[serde(default)]
    pub mid_attention: bool,
    /// Attention heads (channels must divide evenly).
    #[serde(default = "default_one")]
    pub attention_heads: usize,
    /// GroupNorm groups (every channel count must be divisible by it).
    pub norm_groups: usize,
    /// GroupNorm epsilon.
    #[serde(default = "default_eps")]
    pub norm_eps: f32,
    /// Activation everywhere.
    pub activation: Activation,
    /// Dimension of the sinusoidal time embedding (even).
    pub time_embedding_dim: usize,
    /// The sinusoid sees `t · timestep_scale` (t = 0 … T−1). 1 is the usual
    /// convention; with only 4 dimensions (frequencies 1 and 0.01) it aliases
    /// t with t + 628 (`sin`/`cos` agree to 0.3 rad), which measurably made
    /// the tiny model blind to the noise level, so the tiny configs use
    /// 1e-3 (continuous time t/T, every frequency below one period).
    #[serde(default = "default_timestep_scale", skip_serializing_if = "is_one")]
    pub timestep_scale: f32,
    /// Output dimension of the time MLP.
    pub time_hidden_dim: usize,
    /// What the output predicts (`"epsilon"`, the default, or `"v_prediction"`).
    #[serde(default, skip_serializing_if = "is_default")]
    pub prediction_type: Prediction,
    /// Number of classes for a class-conditional model; `None` for unconditional.
    #[serde(default)]
    pub num_classes: Option<usize>,
    /// How the class condition enters the network.
    #[serde(default)]
    pub class_embedding: ClassEmbedding,
    /// Data-set labels that the class indices stand for (e.g. `[0, 1]` for the
    /// CipherDM tiny model trained on digits 0 and 1). `None`: the identity.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub class_labels: Option<Vec<usize>>,
    /// The data set the model was trained on ("mnist", "fashion-mnist"); informational.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dataset: Option<String>,
}

/// Fashion-MNIST's ten labels, in label order (Xiao et al., 2017).
const FASHION_MNIST_CLASSES: [&str; 10] = [
    "T-shirt/top",
    "Trouser",
    "Pullover",
    "Dress",
    "Coat",
    "Sandal",
    "Shirt",
    "Sneaker",
    "Bag",
    "Ankle boot",
];

impl UNetConfig {
    /// The paper's released tiny model (≈15.9k parameters) with the given activation.
    pub fn cipherdm_tiny(activation: Activation) -> Self {
        UNetConfig {
            image_size: 28,
            in_channels: 1,
            out_channels: 1,
            base_channels: 4,
            channel_mults: vec![1, 2],
            layers_per_block: 2,
            attention_resolutions: vec![14],
            mid_attention: true,
            attention_heads: 1,
            norm_groups: 2,
            norm_eps: 1e-5,
            activation,
            time_embedding_dim: 4,
            timestep_scale: 1e-3,
            time_hidden_dim: 8,
            prediction_type: Prediction::VPrediction,
            num_classes: Some(2),
            class_embedding: ClassEmbedding::PerBlock,
            class_labels: Some(vec![0, 1]),
            dataset: Some("mnist".into()),
        }
    }

    /// Parse and validate a JSON config.
    pub fn from_json(s: &str) -> Result<Self> {
        let cfg: UNetConfig =
            serde_json::from_str(s).map_err(|e| ModelError::Config(e.to_string()))?;
        cfg.validate()?;
        Ok(cfg)
    }

    /// Read, parse and validate a JSON config file.
    pub fn from_file(path: impl AsRef<std::path::Path>) -> Result<Self> {
        let p = path.as_ref();
        let s = std::fs::read_to_string(p)
            .map_err(|e| ModelError::Io(format!("{}: {e}", p.display())))?;
        Self::from_json(&s)
    }

    /// Pretty JSON.
    pub fn to_json(&self) -> String {
        serde_json::to_string_pretty(self).expect("config serialises")
    }

    /// Number of levels.
    pub fn levels(&self) -> usize {
        self.channel_mults.len()
    }

    /// Channels of level `i`.
    pub fn level_channels(&self, i: usize) -> usize {
        self.base_channels * self.channel_mults[i]
    }

    /// Spatial resolution of level `i`.
    pub fn level_resolution(&self, i: usize) -> usize {
        self.image_size >> i
    }

    /// Whether res blocks of level `i` are followed by attention.
    pub fn level_has_attention(&self, i: usize) -> bool {
        self.attention_resolutions
            .contains(&self.level_resolution(i))
    }

    /// The data-set label that class index `c` stands for.
    pub fn class_label(&self, c: usize) -> usize {
        match &self.class_labels {
            Some(l) => l[c],
            None => c,
        }
    }

    /// What class index `c` shows, for people: the digit for MNIST models,
    /// the garment for Fashion-MNIST ones.
    pub fn class_name(&self, c: usize) -> String {
        let label = self.class_label(c);
        match self.dataset.as_deref() {
            Some("fashion-mnist") => FASHION_MNIST_CLASSES
                .get(label)
                .map_or_else(|| label.to_string(), |n| (*n).to_string()),
            _ => label.to_string(),
        }
    }

    /// Check the configuration for consistency.
    pub fn validate(&self) -> Result<()> {
        let err = |m: String| Err(ModelError::Config(m));
        if self.image_size == 0 || self.in_channels == 0 || self.out_channels == 0 {
            return err("image_size, in_channels and out_channels must be positive".into());
        }
        if self.base_channels == 0 {
            return err("base_channels must be positive".into());
        }
        if self.channel_mults.is_empty() || self.channel_mults.contains(&0) {
            return err("channel_mults must be non-empty and positive".into());
        }
        if self.layers_per_block == 0 {
            return err("layers_per_block must be at least 1".into());
        }
        let levels = self.levels();
        if self.image_size % (1 << (levels - 1)) != 0 {
            return err(format!(
                "image_size {} is not divisible by 2^{} (levels - 1)",
                self.image_size,
                levels - 1
            ));
        }
        if self.norm_groups == 0 {
            return err("norm_groups must be positive".into());
        }
        for i in 0..levels {
            let c = self.level_channels(i);
            if c % self.norm_groups != 0 {
                return err(format!(
                    "level {i} has {c} channels, not divisible by norm_groups {}",
                    self.norm_groups
                ));
            }
            if self.level_has_attention(i) && c % self.attention_heads.max(1) != 0 {
                return err(format!(
                    "level {i} has {c} channels, not divisible by attention_heads {}",
                    self.attention_heads
                ));
            }
        }
        if self.attention_heads == 0 {
            return err("attention_heads must be positive".into());
        }
        for r in &self.attention_resolutions {
            if !(0..levels).any(|i| self.level_resolution(i) == *r) {
                return err(format!(
                    "attention resolution {r} is not the resolution of any level ({:?})",
                    (0..levels)
                        .map(|i| self.level_resolution(i))
                        .collect::<Vec<_>>()
                ));
            }
        }
        if self.time_embedding_dim == 0 || self.time_embedding_dim % 2 != 0 {
            return err("time_embedding_dim must be even and positive".into());
        }
        if !(self.timestep_scale.is_finite() && self.timestep_scale > 0.0) {
            return err("timestep_scale must be finite and positive".into());
        }
        if self.time_hidden_dim == 0 {
            return err("time_hidden_dim must be positive".into());
        }
        if let Some(n) = self.num_classes {
            if n == 0 {
                return err("num_classes must be positive (or null)".into());
            }
            if let Some(l) = &self.class_labels
                && l.len() != n
            {
                return err(format!(
                    "class_labels has {} entries, num_classes is {n}",
                    l.len()
                ));
            }
        } else if self.class_labels.is_some() {
            return err("class_labels given for an unconditional model".into());
        }
        if self.norm_eps.is_nan() || self.norm_eps <= 0.0 {
            return err("norm_eps must be positive".into());
        }
        Ok(())
    }
}
