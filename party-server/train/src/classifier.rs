//! The evaluation classifier: a small CNN over any [`Backend`]
//! (conv3×3 s2 1→8 → ReLU → conv3×3 s2 8→16 → ReLU → flatten 784 → Dense 128
//! → ReLU (the FID feature layer) → Dense 10). Trained by `train-classifier`.

use party_server::model::{Activation, Backend, Init, Result};

/// Width of the penultimate (feature) layer.
pub const FEATURE_DIM: usize = 128;

/// The classifier's layers, built over a back end.
pub struct Classifier<T> {
    c1: (T, T),
    c2: (T, T),
    l1: (T, T),
    l2: (T, T),
}

impl<T: Clone> Classifier<T> {
    /// Fetch (or create) the parameters by name.
    pub fn new<B: Backend<Tensor = T>>(be: &mut B) -> Result<Self> {
        let mut p = |n: &str, s: &[usize], fan: usize| -> Result<(T, T)> {
            let b = Init::Uniform(1.0 / (fan as f32).sqrt());
            Ok((
                be.param(&format!("{n}.weight"), s, b)?,
                be.param(&format!("{n}.bias"), &[s[0]], b)?,
            ))
        };
        Ok(Classifier {
            c1: p("conv1", &[8, 1, 3, 3], 9)?,
            c2: p("conv2", &[16, 8, 3, 3], 72)?,
            l1: p("fc1", &[FEATURE_DIM, 784], 784)?,
            l2: p("fc2", &[10, FEATURE_DIM], FEATURE_DIM)?,
        })
    }

    /// Penultimate features `[N, 128]` of images `[N, 1, 28, 28]` in [−1, 1].
    pub fn features<B: Backend<Tensor = T>>(&self, be: &mut B, x: &T) -> Result<T> {
        let n = be.dims(x)[0];
        let h = be.conv2d(x, &self.c1.0, Some(&self.c1.1), 2, 1)?;
        let h = be.activation(&h, Activation::Relu)?;
        let h = be.conv2d(&h, &self.c2.0, Some(&self.c2.1), 2, 1)?;
        let h = be.activation(&h, Activation::Relu)?;
        let h = be.reshape(&h, &[n, 784])?;
        let h = be.linear(&h, &self.l1.0, Some(&self.l1.1))?;
        be.activation(&h, Activation::Relu)
    }

    /// Logits `[N, 10]` from features.
    pub fn logits<B: Backend<Tensor = T>>(&self, be: &mut B, feats: &T) -> Result<T> {
        be.linear(feats, &self.l2.0, Some(&self.l2.1))
    }
}
