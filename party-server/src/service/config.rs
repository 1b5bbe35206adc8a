//! `cluster.toml`: the three parties' public addresses and certificates, each
//! operator's private paths, the limits, and the test-only switches.
//!
//! One file describes the whole cluster so that operators and clients can
//! share it; a party reads its own `key` and `models` and nobody else's.
//! Relative paths are relative to the file.

use serde::Deserialize;
use shared::Party;
use std::path::{Path, PathBuf};
use std::time::Duration;

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PartyConfig {
    /// Where this party's client API listens (`host:port`).
    pub client_listen: String,
    /// The URL clients connect to (`ws://…/ws`, or `wss://` behind a proxy).
    pub client_url: String,
    /// Where this party's peer listener binds.
    pub peer_listen: String,
    /// The address the previous party dials to reach this one.
    pub peer_addr: String,
    /// This party's certificate (public; pinned by its neighbours).
    pub cert: PathBuf,
    /// This party's private key (read only by this party's server).
    #[serde(default)]
    pub key: Option<PathBuf>,
    /// Directory of this party's model share bundles.
    #[serde(default)]
    pub models: Option<PathBuf>,
}

/// Resource limits; every party should use the same.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Limits {
    /// Generations computed at once; more are refused with `busy`.
    pub max_sessions: usize,
    /// How long a party waits for a peer's message inside a computation.
    pub peer_timeout_secs: u64,
    /// How long the parties wait for each other to receive the client's
    /// request before giving up on a session.
    pub start_timeout_secs: u64,
    /// Largest batch a request may ask for.
    pub max_batch: u32,
    /// Largest number of denoising steps a request may ask for.
    pub max_steps: u32,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_sessions: 4,
            peer_timeout_secs: 60,
            start_timeout_secs: 30,
            max_batch: 8,
            max_steps: 1000,
        }
    }
}

/// Switches that break security, for tests only.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Testing {
    /// Derive every session's correlated randomness from this seed, exactly
    /// as `mpc::local::run(fx, Some(seed), ..)` does, so that a networked run
    /// is bit-identical to an in-process one.  The server refuses to start
    /// with it unless `--insecure-deterministic-randomness` is also given.
    pub deterministic_seed: Option<u64>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ClusterConfig {
    /// Exactly three entries: P0, P1, P2.
    pub party: Vec<PartyConfig>,
    #[serde(default)]
    pub limits: Limits,
    #[serde(default)]
    pub testing: Testing,
    /// Directory of the file, for relative paths.
    #[serde(skip)]
    pub base: PathBuf,
}

impl ClusterConfig {
    pub fn load(path: &Path) -> Result<ClusterConfig, String> {
        let text = std::fs::read_to_string(path).map_err(|e| format!("{}: {e}", path.display()))?;
        let mut cfg: ClusterConfig =
            toml::from_str(&text).map_err(|e| format!("{}: {e}", path.display()))?;
        if cfg.party.len() != 3 {
            return Err(format!(
                "{}: expected 3 [[party]] entries, found {}",
                path.display(),
                cfg.party.len()
            ));
        }
        if cfg.limits.max_sessions == 0 || cfg.limits.max_batch == 0 {
            return Err("limits.max_sessions and limits.max_batch must be at least 1".into());
        }
        cfg.base = path
            .parent()
            .map(Path::to_path_buf)
            .unwrap_or_else(|| PathBuf::from("."));
        Ok(cfg)
    }

    pub fn party(&self, p: Party) -> &PartyConfig {
        &self.party[p.index()]
    }

    /// A path from the file, resolved against its directory.
    pub fn resolve(&self, p: &Path) -> PathBuf {
        if p.is_absolute() {
            p.to_path_buf()
        } else {
            self.base.join(p)
        }
    }

    pub fn peer_timeout(&self) -> Duration {
        Duration::from_secs(self.limits.peer_timeout_secs)
    }

    pub fn start_timeout(&self) -> Duration {
        Duration::from_secs(self.limits.start_timeout_secs)
    }
}

/// A cluster config for three parties on one host, with the given ports, as
/// `cluster.sh init` and the tests write it.
pub fn local_cluster_toml(client_ports: [u16; 3], peer_ports: [u16; 3], limits: &str) -> String {
    let mut s = String::from(
        "# Three parties on loopback.  Each operator reads only its own `key`\n\
         # and `models`; everything else in this file is public.\n",
    );
    for i in 0..3 {
        s += &format!(
            "\n[[party]]\nclient_listen = \"127.0.0.1:{c}\"\nclient_url = \"ws://127.0.0.1:{c}/ws\"\n\
             peer_listen = \"127.0.0.1:{p}\"\npeer_addr = \"127.0.0.1:{p}\"\n\
             cert = \"certs/party{i}.crt\"\nkey = \"certs/party{i}.key\"\nmodels = \"party{i}/models\"\n",
            c = client_ports[i],
            p = peer_ports[i],
        );
    }
    s + "\n" + limits
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_local_template_parses_with_defaults() {
        let dir = std::env::temp_dir().join(format!("cdm-cfg-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("cluster.toml");
        std::fs::write(
            &path,
            local_cluster_toml([1, 2, 3], [4, 5, 6], "[limits]\nmax_sessions = 2\n"),
        )
        .unwrap();
        let cfg = ClusterConfig::load(&path).unwrap();
        assert_eq!(cfg.limits.max_sessions, 2);
        assert_eq!(cfg.limits.peer_timeout_secs, 60);
        assert_eq!(cfg.party(Party::ALL[2]).peer_addr, "127.0.0.1:6");
        assert_eq!(
            cfg.resolve(&cfg.party[1].cert),
            dir.join("certs/party1.crt")
        );
        assert!(cfg.testing.deterministic_seed.is_none());
        std::fs::write(&path, "[[party]]\nclient_listen = \"x\"\n").unwrap();
        assert!(ClusterConfig::load(&path).is_err());
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
