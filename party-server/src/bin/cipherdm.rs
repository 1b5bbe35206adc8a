//! `cipherdm`: the native client.  Generates an image privately through the
//! three party servers of a cluster: the servers see only shares of the
//! class and the noise, and only this client sees the image.
//!
//! `cipherdm generate --cluster cluster.toml --model cipherdm-tiny-silu --class 1 --sampler ddim --steps 50 --seed 1 --out one.png`
//! `cipherdm serve-page --cluster cluster.toml --web web --listen 127.0.0.1:8000`

use clap::{Parser, Subcommand, ValueEnum};
use indicatif::{ProgressBar, ProgressStyle};
use party_server::client::{self, Event, Options};
use party_server::page;
use party_server::service::config::ClusterConfig;
use shared::proto::{SamplerName, VariantName};
use std::path::{Path, PathBuf};
use std::time::Duration;

#[derive(Clone, Copy, ValueEnum)]
enum Sampler {
    Ddim,
    Ddpm,
}

#[derive(Clone, Copy, ValueEnum)]
enum Variant {
    Baseline,
    Cipherdm,
}

#[derive(Parser)]
#[command(about = "Private image generation through a three-party cluster")]
struct Cli {
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(Subcommand)]
enum Cmd {
    /// List the models of the cluster (as party 0 reports them).
    Models {
        #[arg(long)]
        cluster: PathBuf,
    },
    /// Generate images and write them side by side to a PNG.
    Generate {
        #[arg(long)]
        cluster: PathBuf,
        #[arg(long)]
        model: String,
        /// Dataset label of the class (default: image i gets class i).
        #[arg(long)]
        class: Option<u32>,
        #[arg(long, value_enum, default_value = "ddim")]
        sampler: Sampler,
        #[arg(long, default_value_t = 50)]
        steps: u32,
        #[arg(long, value_enum, default_value = "cipherdm")]
        variant: Variant,
        #[arg(long, default_value_t = 1)]
        batch: u32,
        /// Seed of the noise x_T (the sharing randomness is always fresh).
        #[arg(long, default_value_t = 1)]
        seed: u64,
        #[arg(long)]
        out: PathBuf,
        /// Ask for per-step shares and write the reconstructed x_t of every
        /// step next to the output (`OUT.stepK.png`).
        #[arg(long)]
        preview: bool,
        /// Print one JSON object (seconds, bytes) instead of a progress bar.
        #[arg(long)]
        json: bool,
        /// Give up when no server says anything for this many seconds.
        #[arg(long, default_value_t = 300)]
        idle_timeout: u32,
    },
    /// Serve the web page (the browser client) for the cluster.
    ServePage {
        #[arg(long)]
        cluster: PathBuf,
        /// The page's directory (`web/`, with the wasm package in `web/pkg`).
        #[arg(long, default_value = "web")]
        web: PathBuf,
        #[arg(long, default_value = "127.0.0.1:8000")]
        listen: String,
        /// INSECURE, tests only: the page shares every request with the same
        /// randomness, so that its result can be compared bit for bit with
        /// the native client's against servers in seeded test mode.
        #[arg(long)]
        insecure_share_seed: Option<u64>,
    },
}

fn urls(path: &Path) -> Result<[String; 3], String> {
    let cfg = ClusterConfig::load(path)?;
    Ok(std::array::from_fn(|i| cfg.party[i].client_url.clone()))
}

async fn run(cli: Cli) -> Result<(), String> {
    match cli.cmd {
        Cmd::ServePage {
            cluster,
            web,
            listen,
            insecure_share_seed,
        } => serve_page(&cluster, web, &listen, insecure_share_seed).await,
        Cmd::Models { cluster } => {
            let u = urls(&cluster)?;
            for m in client::list_models(&u[0]).await? {
                // `--class` takes the label; the name says what it shows.
                let classes: Vec<String> = m
                    .class_labels
                    .iter()
                    .zip(&m.class_names)
                    .map(|(l, n)| {
                        if *n == l.to_string() {
                            n.clone()
                        } else {
                            format!("{l} ({n})")
                        }
                    })
                    .collect();
                println!(
                    "{}: {} {}x{}x{}, classes [{}], {} fraction bits",
                    m.name,
                    m.activation,
                    m.in_channels,
                    m.image_size,
                    m.image_size,
                    classes.join(", "),
                    m.frac_bits
                );
            }
            Ok(())
        }
        Cmd::Generate {
            cluster,
            model,
            class,
            sampler,
            steps,
            variant,
            batch,
            seed,
            out,
            preview,
            json,
            idle_timeout,
        } => {
            let u = urls(&cluster)?;
            let opts = Options {
                model: model.clone(),
                class_label: class,
                sampler: match sampler {
                    Sampler::Ddim => SamplerName::Ddim,
                    Sampler::Ddpm => SamplerName::Ddpm,
                },
                steps,
                variant: match variant {
                    Variant::Baseline => VariantName::Baseline,
                    Variant::Cipherdm => VariantName::Cipherdm,
                },
                batch,
                seed,
                preview,
                idle_timeout_secs: idle_timeout,
            };
            let bar = if json {
                ProgressBar::hidden()
            } else {
                let b = ProgressBar::new(0);
                b.set_style(
                    ProgressStyle::with_template(
                        "{spinner} {msg} [{bar:40}] {pos}/{len} steps, {elapsed_precise} (eta {eta})",
                    )
                    .expect("valid template")
                    .progress_chars("=> "),
                );
                b.set_message("waiting for the servers to agree");
                b.enable_steady_tick(Duration::from_millis(200));
                b
            };
            let mut preview_err = None;
            let mut on_event = |e: Event| match e {
                Event::Accepted => bar.set_message("computing"),
                Event::Progress { step, total } => {
                    bar.set_length(total as u64);
                    bar.set_position(step as u64);
                }
                Event::Preview { step, image } => {
                    let p = out.with_extension(format!("step{step}.png"));
                    if let Err(err) = client::write_png(&p, &image) {
                        preview_err.get_or_insert(err);
                    }
                }
                Event::Done(_) => {}
            };
            let mut rng = rand_core::UnwrapErr(getrandom::SysRng);
            let r = client::generate(&u, &opts, &mut rng, &mut on_event).await;
            bar.finish_and_clear();
            let o = r?;
            if let Some(e) = preview_err {
                eprintln!("warning: preview images: {e}");
            }
            client::write_png(&out, &o.image)?;
            if json {
                println!(
                    "{}",
                    serde_json::json!({
                        "model": model, "sampler": format!("{:?}", opts.sampler).to_lowercase(),
                        "steps": steps, "batch": batch, "seed": seed, "seconds": o.seconds,
                        "bytes_received": o.bytes_received, "bytes_sent": o.bytes_sent,
                        "out": out,
                    })
                );
            } else {
                eprintln!(
                    "wrote {} in {:.2} s ({:.1} kB sent, {:.1} kB received)",
                    out.display(),
                    o.seconds,
                    o.bytes_sent as f64 / 1e3,
                    o.bytes_received as f64 / 1e3
                );
            }
            Ok(())
        }
    }
}

async fn serve_page(
    cluster: &Path,
    web: PathBuf,
    listen: &str,
    insecure_share_seed: Option<u64>,
) -> Result<(), String> {
    let servers = urls(cluster)?;
    if !web.join("pkg/client_wasm.js").is_file() {
        return Err(format!(
            "{}: no wasm package in pkg/; build it with scripts/build-web.sh",
            web.display()
        ));
    }
    if insecure_share_seed.is_some() {
        eprintln!("WARNING: --insecure-share-seed: the page's shares repeat; for tests only");
    }
    let app = page::router(
        web,
        page::PageConfig {
            servers,
            insecure_share_seed,
        },
    );
    let listener = tokio::net::TcpListener::bind(listen)
        .await
        .map_err(|e| format!("{listen}: {e}"))?;
    let addr = listener.local_addr().map_err(|e| e.to_string())?;
    // One line on stdout, read by scripts and tests to find the port.
    println!("serving the page at http://{addr}/");
    axum::serve(listener, app)
        .with_graceful_shutdown(async {
            let _ = tokio::signal::ctrl_c().await;
        })
        .await
        .map_err(|e| e.to_string())
}

fn main() {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("tokio runtime");
    if let Err(e) = rt.block_on(run(Cli::parse())) {
        eprintln!("error: {e}");
        std::process::exit(1);
    }
}
