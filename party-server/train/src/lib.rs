//! Training and evaluation for the project's diffusion models: the candle
//! back end of the U-Net builder, data loading, Adam with resumable state,
//! the evaluation classifier, FID and PNG grids.

pub mod adam;
pub mod args;
pub mod candle_backend;
pub mod classifier;
pub mod data;
pub mod fast_ops;
pub mod fid;
pub mod image;
