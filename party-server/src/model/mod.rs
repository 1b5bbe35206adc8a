//! Diffusion U-Net: public config, the back-end interface, the builder, the
//! plaintext f32 reference back end and safetensors weight I/O.
//!
//! ```text
//! UNetConfig (JSON) ──► UNet::new(cfg, &mut backend)   (architecture built once)
//!                        UNet::forward(&mut backend, x, t, class)
//! backends: CpuBackend (f32 reference), MetaBackend (shapes/counts only),
//!           candle (train crate), fixed-point emulation and 3PC (later)
//! ```

pub mod backend;
pub mod config;
pub mod cpu;
pub mod meta;
pub mod unet;
pub mod weights;

pub use backend::{Backend, Init, attention_composed};
pub use config::{Activation, ClassEmbedding, Prediction, UNetConfig};
pub use cpu::{CpuBackend, CpuTensor, SplitMix64};
pub use meta::MetaBackend;
pub use unet::{UNet, one_hot, timestep_embedding};

/// Errors of the model layer.
#[derive(Debug, thiserror::Error, PartialEq)]
pub enum ModelError {
    /// Invalid configuration.
    #[error("invalid model config: {0}")]
    Config(String),
    /// Incompatible tensor shapes.
    #[error("shape error: {0}")]
    Shape(String),
    /// A parameter the architecture needs is not in the weight source.
    #[error("missing weight: {0}")]
    MissingWeight(String),
    /// Malformed weight file.
    #[error("weights: {0}")]
    Weights(String),
    /// File system error.
    #[error("io: {0}")]
    Io(String),
    /// An error reported by a back end.
    #[error("backend: {0}")]
    Backend(String),
}

/// Result of the model layer.
pub type Result<T> = std::result::Result<T, ModelError>;

/// A model directory (`config.json` + `model.safetensors`) loaded for the f32 back end.
pub fn load_cpu_model(dir: impl AsRef<std::path::Path>) -> Result<(UNet<CpuBackend>, CpuBackend)> {
    let dir = dir.as_ref();
    let cfg = UNetConfig::from_file(dir.join("config.json"))?;
    let mut be = CpuBackend::from_safetensors(dir.join("model.safetensors"))?;
    let net = UNet::new(&cfg, &mut be)?;
    let unused = be.unused_weights();
    if !unused.is_empty() {
        return Err(ModelError::Weights(format!(
            "weights not used by the config: {unused:?}"
        )));
    }
    Ok((net, be))
}

#[cfg(test)]
mod tests;
