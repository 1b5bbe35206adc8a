//! Adam / AdamW with state that can be saved and restored (exact resume).

use std::collections::HashMap;

use candle_core::{Tensor, Var};

/// Adam(W) over named variables.
pub struct Adam {
    /// Learning rate.
    pub lr: f64,
    /// β1.
    pub beta1: f64,
    /// β2.
    pub beta2: f64,
    /// ε.
    pub eps: f64,
    /// Decoupled weight decay (0 = Adam).
    pub weight_decay: f64,
    /// Steps taken.
    pub step: u64,
    vars: Vec<(String, Var)>,
    m: Vec<Tensor>,
    v: Vec<Tensor>,
}

impl Adam {
    /// New optimiser over `vars` with zero moments.
    pub fn new(vars: Vec<(String, Var)>, lr: f64, weight_decay: f64) -> candle_core::Result<Self> {
        let m = vars
            .iter()
            .map(|(_, v)| v.zeros_like())
            .collect::<candle_core::Result<Vec<_>>>()?;
        let v = m.clone();
        Ok(Adam {
            lr,
            beta1: 0.9,
            beta2: 0.999,
            eps: 1e-8,
            weight_decay,
            step: 0,
            vars,
            m,
            v,
        })
    }

    /// Backward pass of `loss` and one update.
    pub fn backward_step(&mut self, loss: &Tensor) -> candle_core::Result<()> {
        let grads = loss.backward()?;
        self.step += 1;
        let t = self.step as i32;
        let bc1 = 1.0 - self.beta1.powi(t);
        let bc2 = 1.0 - self.beta2.powi(t);
        for (i, (_, var)) in self.vars.iter().enumerate() {
            let Some(g) = grads.get(var.as_tensor()) else {
                continue;
            };
            // Detach everything: the optimiser must not extend the autograd graph.
            let g = g.detach();
            let m = ((&self.m[i] * self.beta1)? + (&g * (1.0 - self.beta1))?)?;
            let v = ((&self.v[i] * self.beta2)? + (g.sqr()? * (1.0 - self.beta2))?)?;
            let upd = ((&m / bc1)? / ((&v / bc2)?.sqrt()? + self.eps)?)?;
            let mut w = var.as_tensor().detach();
            if self.weight_decay > 0.0 {
                w = (&w * (1.0 - self.lr * self.weight_decay))?;
            }
            var.set(&(w - (upd * self.lr)?)?)?;
            self.m[i] = m;
            self.v[i] = v;
        }
        Ok(())
    }

    /// Moments as named tensors (`adam.m.<name>`, `adam.v.<name>`) for a checkpoint.
    pub fn state(&self) -> HashMap<String, Tensor> {
        let mut s = HashMap::new();
        for (i, (n, _)) in self.vars.iter().enumerate() {
            s.insert(format!("adam.m.{n}"), self.m[i].clone());
            s.insert(format!("adam.v.{n}"), self.v[i].clone());
        }
        s
    }

    /// Restore moments saved by [`Adam::state`] (missing entries stay zero).
    pub fn load_state(&mut self, s: &HashMap<String, Tensor>, step: u64) {
        for (i, (n, _)) in self.vars.iter().enumerate() {
            if let Some(m) = s.get(&format!("adam.m.{n}")) {
                self.m[i] = m.clone();
            }
            if let Some(v) = s.get(&format!("adam.v.{n}")) {
                self.v[i] = v.clone();
            }
        }
        self.step = step;
    }
}
