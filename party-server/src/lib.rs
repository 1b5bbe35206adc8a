//! The three-party secure computation engine and the party server.
pub mod alloc;
pub mod fxp;
pub mod mpc;
pub mod nn;

pub mod gemm;
pub mod model;
pub mod sampler;

pub mod client;
pub mod net;
pub mod page;
pub mod service;
