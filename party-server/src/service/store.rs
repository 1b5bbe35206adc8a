//! Model share bundles: what the model owner's `deal-model` writes for each
//! party, and what a party's server loads at start.
//!
//! A bundle holds one party's two replicated components of every weight
//! tensor, seed-compressed exactly like a client's inputs (two of the three
//! components are PRG seeds), plus the public config.  A party's bundle alone
//! is uniformly random: only two bundles together reveal the weights.
//!
//! ```text
//! "CDMMODEL" u8 version  u32 LE header length   JSON header   u64 LE words
//! ```

use crate::model::weights::load_safetensors;
use crate::model::{CpuTensor, UNet, UNetConfig};
use crate::mpc::AShare;
use crate::nn::SecureTensor;
use crate::sampler::Schedule;
use serde::{Deserialize, Serialize};
use shared::share::share_seeded;
use shared::{Component, FixedPoint, Party, PartyBundle, Seed};
use std::collections::{BTreeMap, HashMap};
use std::path::Path;

const MAGIC: &[u8; 8] = b"CDMMODEL";
const VERSION: u8 = 1;
/// File name suffix of a bundle in a party's models directory.
pub const SUFFIX: &str = ".cdmshare";

#[derive(Serialize, Deserialize, Clone, Copy, PartialEq, Eq, Debug)]
#[serde(rename_all = "lowercase")]
enum Form {
    Seed,
    Explicit,
}

#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct TensorHeader {
    name: String,
    shape: Vec<usize>,
    own: Form,
    next: Form,
}

#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct Header {
    name: String,
    party: Party,
    frac_bits: u32,
    config: UNetConfig,
    tensors: Vec<TensorHeader>,
}

/// A model as one party holds it: public config, shares of the weights.
pub struct StoredModel {
    pub name: String,
    pub config: UNetConfig,
    pub fx: FixedPoint,
    pub weights: HashMap<String, SecureTensor>,
}

/// Weight shares are secret: print only the name and size.
impl std::fmt::Debug for StoredModel {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "StoredModel({}, {} tensors)",
            self.name,
            self.weights.len()
        )
    }
}

impl StoredModel {
    /// What the client API tells clients about this model.
    pub fn info(&self) -> shared::proto::ModelInfo {
        let c = &self.config;
        let classes = c.num_classes.unwrap_or(0);
        shared::proto::ModelInfo {
            name: self.name.clone(),
            activation: c.activation.name().into(),
            in_channels: c.in_channels as u32,
            image_size: c.image_size as u32,
            num_classes: classes as u32,
            class_labels: (0..classes).map(|k| c.class_label(k) as u32).collect(),
            class_names: (0..classes).map(|k| c.class_name(k)).collect(),
            frac_bits: self.fx.frac_bits(),
            schedule_steps: Schedule::default_linear().num_steps() as u32,
        }
    }
}

fn form(c: &Component) -> Form {
    match c {
        Component::Seed(_) => Form::Seed,
        Component::Explicit(_) => Form::Explicit,
    }
}

/// Deals a model: reads `dir/config.json` and `dir/model.safetensors` and
/// returns the three parties' bundles, serialised.  Every tensor the config
/// does not use is refused, so a bundle never carries stray data.
pub fn deal_model_dir(dir: &Path, name: &str, fx: FixedPoint) -> Result<[Vec<u8>; 3], String> {
    let cfg = UNetConfig::from_file(dir.join("config.json")).map_err(|e| e.to_string())?;
    let weights = load_safetensors(dir.join("model.safetensors")).map_err(|e| e.to_string())?;
    deal(name, &cfg, &weights, fx)
}

/// Deals named f32 weights to the three parties.
pub fn deal(
    name: &str,
    cfg: &UNetConfig,
    weights: &HashMap<String, CpuTensor>,
    fx: FixedPoint,
) -> Result<[Vec<u8>; 3], String> {
    if !shared::proto::PublicRequest::model_name_ok(name) {
        return Err(format!(
            "model name {name:?}: use 1 to 64 of [A-Za-z0-9_.-]"
        ));
    }
    // Check the weights fit the architecture before dealing them.
    let mut cpu = crate::model::CpuBackend::with_weights(weights.clone());
    UNet::new(cfg, &mut cpu).map_err(|e| e.to_string())?;
    let unused = cpu.unused_weights();
    if !unused.is_empty() {
        return Err(format!("weights not used by the config: {unused:?}"));
    }
    let mut rng = rand_core::UnwrapErr(getrandom::SysRng);
    let sorted: BTreeMap<&String, &CpuTensor> = weights.iter().collect();
    let mut headers: [Vec<TensorHeader>; 3] = Default::default();
    let mut payloads: [Vec<u64>; 3] = Default::default();
    for (tname, t) in sorted {
        let enc: Vec<u64> = t
            .data
            .iter()
            .map(|&x| fx.encode(x as f64))
            .collect::<Result<_, _>>()
            .map_err(|e| format!("{tname}: {e}"))?;
        for b in share_seeded(&enc, &mut rng) {
            let p = b.party.index();
            headers[p].push(TensorHeader {
                name: tname.clone(),
                shape: t.shape.clone(),
                own: form(&b.own),
                next: form(&b.next),
            });
            for c in [&b.own, &b.next] {
                match c {
                    Component::Seed(s) => payloads[p].extend(seed_words(s)),
                    Component::Explicit(v) => payloads[p].extend_from_slice(v),
                }
            }
        }
    }
    let mut out: [Vec<u8>; 3] = Default::default();
    for p in Party::ALL {
        let i = p.index();
        let h = Header {
            name: name.to_string(),
            party: p,
            frac_bits: fx.frac_bits(),
            config: cfg.clone(),
            tensors: std::mem::take(&mut headers[i]),
        };
        let hb = serde_json::to_vec(&h).expect("header serialises");
        let o = &mut out[i];
        o.extend_from_slice(MAGIC);
        o.push(VERSION);
        o.extend_from_slice(&(hb.len() as u32).to_le_bytes());
        o.extend_from_slice(&hb);
        for w in &payloads[i] {
            o.extend_from_slice(&w.to_le_bytes());
        }
    }
    Ok(out)
}

fn seed_words(s: &Seed) -> [u64; 2] {
    [
        u64::from_le_bytes(s.0[..8].try_into().expect("8 bytes")),
        u64::from_le_bytes(s.0[8..].try_into().expect("8 bytes")),
    ]
}

/// Parses a bundle for party `me`, checking every length.
pub fn parse(bytes: &[u8], me: Party) -> Result<StoredModel, String> {
    let pre = MAGIC.len() + 5;
    if bytes.len() < pre || &bytes[..MAGIC.len()] != MAGIC {
        return Err("not a model share bundle".into());
    }
    if bytes[MAGIC.len()] != VERSION {
        return Err(format!("bundle version {} unsupported", bytes[MAGIC.len()]));
    }
    let hlen = u32::from_le_bytes(bytes[MAGIC.len() + 1..pre].try_into().expect("4")) as usize;
    if hlen > bytes.len() - pre {
        return Err("truncated header".into());
    }
    let h: Header =
        serde_json::from_slice(&bytes[pre..pre + hlen]).map_err(|e| format!("header: {e}"))?;
    if h.party != me {
        return Err(format!("bundle is for {}, this server is {me}", h.party));
    }
    h.config.validate().map_err(|e| e.to_string())?;
    let fx = FixedPoint::new(h.frac_bits).map_err(|e| e.to_string())?;
    let body = &bytes[pre + hlen..];
    if body.len() % 8 != 0 {
        return Err("payload is not whole words".into());
    }
    let words: Vec<u64> = body
        .chunks_exact(8)
        .map(|b| u64::from_le_bytes(b.try_into().expect("8")))
        .collect();
    let mut pos = 0usize;
    let mut take = |f: Form, len: usize| -> Result<Component, String> {
        let n = if f == Form::Seed { 2 } else { len };
        let end = pos
            .checked_add(n)
            .filter(|&e| e <= words.len())
            .ok_or("truncated payload")?;
        let w = &words[pos..end];
        pos = end;
        Ok(match f {
            Form::Seed => {
                let mut s = [0u8; 16];
                s[..8].copy_from_slice(&w[0].to_le_bytes());
                s[8..].copy_from_slice(&w[1].to_le_bytes());
                Component::Seed(Seed(s))
            }
            Form::Explicit => Component::Explicit(w.to_vec()),
        })
    };
    let mut weights = HashMap::new();
    for t in &h.tensors {
        let len = t
            .shape
            .iter()
            .try_fold(1usize, |a, &d| a.checked_mul(d))
            .filter(|&n| n <= words.len().max(1) << 20)
            .ok_or_else(|| format!("{}: shape {:?} too large", t.name, t.shape))?;
        let b = PartyBundle {
            party: me,
            len,
            own: take(t.own, len)?,
            next: take(t.next, len)?,
        };
        let s = b.expand().map_err(|e| format!("{}: {e}", t.name))?;
        let st = SecureTensor::new(
            &t.shape,
            AShare {
                a: s.own,
                b: s.next,
            },
        )
        .map_err(|e| format!("{}: {e}", t.name))?;
        if weights.insert(t.name.clone(), st).is_some() {
            return Err(format!("{}: listed twice", t.name));
        }
    }
    if pos != words.len() {
        return Err(format!("{} trailing words", words.len() - pos));
    }
    Ok(StoredModel {
        name: h.name,
        config: h.config,
        fx,
        weights,
    })
}

/// Loads every bundle in `dir` for party `me`, keyed by model name.
pub fn load_dir(dir: &Path, me: Party) -> Result<BTreeMap<String, StoredModel>, String> {
    let mut out = BTreeMap::new();
    let entries = std::fs::read_dir(dir).map_err(|e| format!("{}: {e}", dir.display()))?;
    for e in entries {
        let path = e.map_err(|e| e.to_string())?.path();
        if !path.to_string_lossy().ends_with(SUFFIX) {
            continue;
        }
        let bytes = std::fs::read(&path).map_err(|e| format!("{}: {e}", path.display()))?;
        let m = parse(&bytes, me).map_err(|e| format!("{}: {e}", path.display()))?;
        out.insert(m.name.clone(), m);
    }
    Ok(out)
}

/// Writes `bytes` as `dir/name.cdmshare`, readable by the owner only (a
/// bundle is a secret of its party).
pub fn write_bundle(dir: &Path, name: &str, bytes: &[u8]) -> Result<(), String> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    std::fs::create_dir_all(dir).map_err(|e| format!("{}: {e}", dir.display()))?;
    let path = dir.join(format!("{name}{SUFFIX}"));
    let tmp = dir.join(format!(".{name}{SUFFIX}.tmp"));
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(&tmp)
        .map_err(|e| format!("{}: {e}", tmp.display()))?;
    f.write_all(bytes)
        .and_then(|_| f.sync_all())
        .map_err(|e| format!("{}: {e}", tmp.display()))?;
    std::fs::rename(&tmp, &path).map_err(|e| format!("{}: {e}", path.display()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::{Activation, CpuBackend};
    use crate::mpc::local::open;

    fn tiny() -> (UNetConfig, HashMap<String, CpuTensor>) {
        let cfg = UNetConfig::cipherdm_tiny(Activation::Silu);
        let mut be = CpuBackend::random(3);
        UNet::new(&cfg, &mut be).unwrap();
        (cfg, be.created_params().clone())
    }

    #[test]
    fn two_bundles_reconstruct_the_weights_one_does_not_hold_them() {
        let (cfg, w) = tiny();
        let fx = FixedPoint::default();
        let b = deal("tiny", &cfg, &w, fx).unwrap();
        let m: Vec<StoredModel> = Party::ALL
            .iter()
            .map(|&p| parse(&b[p.index()], p).unwrap())
            .collect();
        for (name, t) in &w {
            let s = [0, 1, 2].map(|i| m[i].weights[name].data.clone());
            let got = fx.decode_slice(&open(&s));
            for (g, want) in got.iter().zip(&t.data) {
                assert!((g - *want as f64).abs() <= 0.5 / fx.scale(), "{name}");
            }
            let enc: Vec<u64> = t
                .data
                .iter()
                .map(|&x| fx.encode(x as f64).unwrap())
                .collect();
            assert_ne!(m[0].weights[name].data.a, enc);
        }
        assert_eq!(m[1].info().num_classes, cfg.num_classes.unwrap_or(0) as u32);
    }

    #[test]
    fn corrupt_or_foreign_bundles_are_refused() {
        let (cfg, w) = tiny();
        let b = deal("tiny", &cfg, &w, FixedPoint::default()).unwrap();
        assert!(
            parse(&b[0], Party::ALL[1])
                .unwrap_err()
                .contains("is for P0")
        );
        assert!(parse(&b[1][..b[1].len() - 8], Party::ALL[1]).is_err());
        let mut extra = b[2].clone();
        extra.extend_from_slice(&[0; 8]);
        assert!(
            parse(&extra, Party::ALL[2])
                .unwrap_err()
                .contains("trailing")
        );
        assert!(parse(b"garbage", Party::ALL[0]).is_err());
        let mut missing = w.clone();
        missing.insert("stray".into(), CpuTensor::new(vec![1.0], &[1]).unwrap());
        assert!(deal("tiny", &cfg, &missing, FixedPoint::default()).is_err());
    }
}
