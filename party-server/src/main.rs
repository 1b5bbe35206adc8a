//! `party-server`: run one party of a cluster, create its credentials, or
//! deal a model to the three parties.
//!
//! ```text
//! party-server gen-cert --party 0 --dir certs           # each operator, once
//! party-server init-local --dir cluster --base-port 7100 # a whole local cluster
//! party-server deal-model --model-dir models/cipherdm-tiny-silu --config cluster.toml
//! party-server serve --party 0 --config cluster.toml
//! ```

/// See [`party_server::alloc`].
#[global_allocator]
static ALLOC: party_server::alloc::MiMalloc = party_server::alloc::MiMalloc;

use clap::{Parser, Subcommand};
use party_server::net::tls;
use party_server::service::config::{ClusterConfig, local_cluster_toml};
use party_server::service::{server, store};
use shared::{FixedPoint, Party};
use std::path::{Path, PathBuf};

#[derive(Parser)]
#[command(about = "One party of a three-party private image generation cluster")]
struct Cli {
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(Subcommand)]
enum Cmd {
    /// Serve as one party: peer links, model store, client API.
    Serve {
        #[arg(long, value_parser = clap::value_parser!(u8).range(0..3))]
        party: u8,
        #[arg(long)]
        config: PathBuf,
        /// Allow `testing.deterministic_seed` in the config (tests only:
        /// every session then reuses the same randomness).
        #[arg(long)]
        insecure_deterministic_randomness: bool,
    },
    /// Create this party's TLS key and self-signed certificate
    /// (`partyN.key`, secret; `partyN.crt`, give it to the other operators).
    GenCert {
        #[arg(long, value_parser = clap::value_parser!(u8).range(0..3))]
        party: u8,
        #[arg(long)]
        dir: PathBuf,
    },
    /// Create a whole cluster on this host: three key pairs, and a
    /// cluster.toml on loopback.
    InitLocal {
        #[arg(long)]
        dir: PathBuf,
        /// Client ports base..base+2, peer ports base+10..base+12.
        #[arg(long, default_value_t = 7100)]
        base_port: u16,
        /// Explicit ports instead: six comma-separated (3 client, 3 peer).
        #[arg(long, value_delimiter = ',')]
        ports: Option<Vec<u16>>,
        /// Extra TOML appended verbatim (e.g. a [limits] table).
        #[arg(long, default_value = "")]
        extra: String,
        /// The parties' addresses (three, comma-separated), e.g. in network
        /// namespaces; default: all on 127.0.0.1.
        #[arg(long, value_delimiter = ',')]
        hosts: Option<Vec<String>>,
    },
    /// The model owner's tool: share a model's weights for the three parties.
    DealModel {
        /// Directory with config.json and model.safetensors.
        #[arg(long)]
        model_dir: PathBuf,
        /// Name clients ask for (default: the directory's name).
        #[arg(long)]
        name: Option<String>,
        /// Write into each party's `models` directory from this cluster config.
        #[arg(long, conflicts_with = "out_dir")]
        config: Option<PathBuf>,
        /// Or write `DIR/partyN/NAME.cdmshare` (to send to the operators).
        #[arg(long)]
        out_dir: Option<PathBuf>,
        #[arg(long, default_value_t = shared::fixed::DEFAULT_FRAC_BITS)]
        frac_bits: u32,
    },
}

fn write_secret(path: &Path, text: &str) -> Result<(), String> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)
        .map_err(|e| format!("{}: {e}", path.display()))?;
    f.write_all(text.as_bytes())
        .map_err(|e| format!("{}: {e}", path.display()))
}

fn gen_cert(party: u8, dir: &Path) -> Result<(), String> {
    std::fs::create_dir_all(dir).map_err(|e| format!("{}: {e}", dir.display()))?;
    let (cert, key) = tls::generate(&format!("party{party}")).map_err(|e| e.to_string())?;
    write_secret(&dir.join(format!("party{party}.key")), &key)?;
    let crt = dir.join(format!("party{party}.crt"));
    std::fs::write(&crt, cert).map_err(|e| format!("{}: {e}", crt.display()))?;
    eprintln!(
        "wrote {} (share it) and party{party}.key (keep it secret)",
        crt.display()
    );
    Ok(())
}

fn run(cli: Cli) -> Result<(), String> {
    match cli.cmd {
        Cmd::Serve {
            party,
            config,
            insecure_deterministic_randomness,
        } => {
            let cfg = ClusterConfig::load(&config)?;
            let me = Party::new(party).map_err(|e| e.to_string())?;
            let rt = tokio::runtime::Builder::new_multi_thread()
                .worker_threads(2)
                .enable_all()
                .build()
                .map_err(|e| e.to_string())?;
            rt.block_on(server::serve(cfg, me, insecure_deterministic_randomness))
        }
        Cmd::GenCert { party, dir } => gen_cert(party, &dir),
        Cmd::InitLocal {
            dir,
            base_port,
            ports,
            extra,
            hosts,
        } => {
            let hosts = hosts.unwrap_or_else(|| vec!["127.0.0.1".into(); 3]);
            if hosts.len() != 3 {
                return Err(format!("--hosts needs 3 addresses, got {}", hosts.len()));
            }
            let (c, p) = match ports {
                Some(v) if v.len() != 6 => {
                    return Err(format!("--ports needs 6 ports, got {}", v.len()));
                }
                Some(v) => ([v[0], v[1], v[2]], [v[3], v[4], v[5]]),
                None => {
                    let b = base_port;
                    ([b, b + 1, b + 2], [b + 10, b + 11, b + 12])
                }
            };
            let path = dir.join("cluster.toml");
            if path.exists() {
                return Err(format!("{} exists; remove it first", path.display()));
            }
            for i in 0..3 {
                gen_cert(i, &dir.join("certs"))?;
            }
            std::fs::write(
                &path,
                local_cluster_toml([&hosts[0], &hosts[1], &hosts[2]], c, p, &extra),
            )
            .map_err(|e| format!("{}: {e}", path.display()))?;
            eprintln!("wrote {}", path.display());
            Ok(())
        }
        Cmd::DealModel {
            model_dir,
            name,
            config,
            out_dir,
            frac_bits,
        } => {
            let name = match name {
                Some(n) => n,
                None => model_dir
                    .canonicalize()
                    .ok()
                    .and_then(|p| p.file_name().map(|s| s.to_string_lossy().into_owned()))
                    .ok_or("cannot name the model from its directory; pass --name")?,
            };
            let fx = FixedPoint::new(frac_bits).map_err(|e| e.to_string())?;
            let bundles = store::deal_model_dir(&model_dir, &name, fx)?;
            let dirs: Vec<PathBuf> = match (config, out_dir) {
                (Some(c), _) => {
                    let cfg = ClusterConfig::load(&c)?;
                    Party::ALL
                        .iter()
                        .map(|&p| {
                            cfg.party(p)
                                .models
                                .as_ref()
                                .map(|m| cfg.resolve(m))
                                .ok_or(format!("{p} has no `models` directory in {}", c.display()))
                        })
                        .collect::<Result<_, _>>()?
                }
                (None, Some(d)) => (0..3).map(|i| d.join(format!("party{i}"))).collect(),
                (None, None) => return Err("pass --config or --out-dir".into()),
            };
            for (dir, b) in dirs.iter().zip(&bundles) {
                store::write_bundle(dir, &name, b)?;
                eprintln!("wrote {}/{name}{}", dir.display(), store::SUFFIX);
            }
            Ok(())
        }
    }
}

fn main() {
    party_server::alloc::keep_freed_memory();
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .init();
    if let Err(e) = run(Cli::parse()) {
        eprintln!("error: {e}");
        std::process::exit(1);
    }
}
