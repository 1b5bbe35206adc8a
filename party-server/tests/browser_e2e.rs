//! The web page end to end, as a person uses it: three real party servers,
//! the page served by `cipherdm serve-page`, and headless Chromium driven
//! through chromedriver's WebDriver HTTP API (clicks and key presses on the
//! page's controls, not calls into its script).
//!
//! With `--insecure-share-seed` (and the servers in their seeded test mode)
//! the browser's image must equal, bit for bit, what the native client
//! reconstructs for the same request: the browser and the native client then
//! build the same shares, so any difference is a bug in the wasm client, the
//! page or the drawing.  The page as deployed (fresh sharing randomness) must
//! produce the same image up to the servers' truncation noise; it is also
//! cancelled, and shown a server that has gone, and must recover each time.
//!
//! Needs Debian's `/usr/bin/chromium` and `/usr/bin/chromedriver` (skipped
//! with a message when they are missing, except under `CI=true`, where that
//! fails) and the wasm package in `web/pkg` (`scripts/build-web.sh`).
//!
//! Environment: `CDM_E2E_STEPS` (DDIM steps, default 5: the debug servers
//! are slow), `CDM_E2E_MODEL` (default `cipherdm-tiny-silu`), `UPDATE_SCREENSHOT=1` (write the screenshot to
//! `docs/images/web-page.png` instead of the target directory).  The README's
//! browser timings come from `CDM_E2E_STEPS=50 cargo test --release -p
//! party-server --test browser_e2e -- --nocapture`.

// The helpers are shared with cluster.rs; this test uses the cluster start.
#[allow(dead_code)]
mod common;

use base64::Engine;
use common::{Cluster, rt};
use party_server::client::{self, Event, Options};
use serde_json::{Value, json};
use shared::proto::{SamplerName, VariantName};
use shared::request;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

const CHROMIUM: &str = "/usr/bin/chromium";
const CHROMEDRIVER: &str = "/usr/bin/chromedriver";
const CIPHERDM: &str = env!("CARGO_BIN_EXE_cipherdm");
/// The model the page must find among the servers' models and select
/// (`CDM_E2E_MODEL`, a directory under `party-server/models`).
fn model() -> String {
    std::env::var("CDM_E2E_MODEL").unwrap_or_else(|_| "cipherdm-tiny-silu".into())
}
const SERVER_SEED: u64 = 21;
const SHARE_SEED: u64 = 5;
const NOISE_SEED: u64 = 7;
const CLASS: u32 = 1;
/// How long a debug-build generation of a few steps may take.
const GENERATION_TIMEOUT: Duration = Duration::from_secs(150);
/// The W3C WebDriver key of an element reference.
const ELEMENT: &str = "element-6066-11e4-a52e-4f735466cecf";

fn workspace() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("party-server is inside the workspace")
        .to_path_buf()
}

/// Whether the browser is installed; without it the test is skipped, except
/// in CI, where a missing browser must not turn into a silent pass.
fn browser_available() -> bool {
    let missing: Vec<&str> = [CHROMIUM, CHROMEDRIVER]
        .into_iter()
        .filter(|p| !Path::new(p).exists())
        .collect();
    if missing.is_empty() {
        return true;
    }
    let msg = format!(
        "{} missing (apt-get install chromium chromium-driver, or scripts/setup.sh)",
        missing.join(" and ")
    );
    assert!(
        std::env::var("CI").as_deref() != Ok("true"),
        "browser end-to-end test cannot run under CI: {msg}"
    );
    eprintln!("SKIPPED browser end-to-end test: {msg}");
    false
}

/// A child process that is killed when the test ends, however it ends.
struct Proc(Child);

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// `cipherdm serve-page` on an ephemeral port; returns it and the page's URL.
fn serve_page(cluster: &Path, share_seed: Option<u64>) -> (Proc, String) {
    let mut cmd = Command::new(CIPHERDM);
    cmd.args(["serve-page", "--listen", "127.0.0.1:0", "--cluster"])
        .arg(cluster)
        .arg("--web")
        .arg(workspace().join("web"))
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit());
    if let Some(s) = share_seed {
        cmd.args(["--insecure-share-seed", &s.to_string()]);
    }
    let mut child = Proc(cmd.spawn().expect("start cipherdm serve-page"));
    let mut line = String::new();
    BufReader::new(child.0.stdout.take().expect("piped"))
        .read_line(&mut line)
        .expect("read serve-page's output");
    let url = line
        .trim()
        .strip_prefix("serving the page at ")
        .unwrap_or_else(|| panic!("serve-page did not start: {line:?}"))
        .to_string();
    (child, url)
}

/// One HTTP/1.1 exchange with chromedriver (JSON in, JSON out).  A small
/// client of its own: the WebDriver protocol needs nothing more, and the
/// test pulls in no HTTP stack.
fn http(port: u16, method: &str, path: &str, body: Option<&Value>) -> Result<Value, String> {
    let mut s = TcpStream::connect(("127.0.0.1", port)).map_err(|e| e.to_string())?;
    s.set_read_timeout(Some(Duration::from_secs(60)))
        .map_err(|e| e.to_string())?;
    let body = body.map(Value::to_string).unwrap_or_default();
    let req = format!(
        "{method} {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nContent-Type: application/json\r\n\
         Content-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    );
    s.write_all(req.as_bytes()).map_err(|e| e.to_string())?;
    let mut r = BufReader::new(s);
    let mut status = String::new();
    r.read_line(&mut status).map_err(|e| e.to_string())?;
    let mut len = None;
    loop {
        let mut h = String::new();
        r.read_line(&mut h).map_err(|e| e.to_string())?;
        let h = h.trim_end();
        if h.is_empty() {
            break;
        }
        if let Some((k, v)) = h.split_once(':')
            && k.eq_ignore_ascii_case("content-length")
        {
            len = v.trim().parse::<usize>().ok();
        }
    }
    let mut buf = Vec::new();
    match len {
        Some(n) => {
            buf.resize(n, 0);
            r.read_exact(&mut buf).map_err(|e| e.to_string())?;
        }
        None => {
            r.read_to_end(&mut buf).map_err(|e| e.to_string())?;
        }
    }
    let v: Value = serde_json::from_slice(&buf)
        .map_err(|e| format!("{method} {path}: {status}: not JSON: {e}"))?;
    if !status.contains(" 200 ") {
        return Err(format!(
            "{method} {path}: {}: {}",
            status.trim(),
            v["value"]
        ));
    }
    Ok(v["value"].clone())
}

/// A headless Chromium session through chromedriver.
struct Browser {
    port: u16,
    session: String,
    _driver: Proc,
}

impl Browser {
    fn start() -> Browser {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .expect("a free port")
            .port();
        let driver = Proc(
            Command::new(CHROMEDRIVER)
                .arg(format!("--port={port}"))
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .spawn()
                .expect("start chromedriver"),
        );
        let t = Instant::now();
        while !http(port, "GET", "/status", None).is_ok_and(|v| v["ready"] == true) {
            assert!(
                t.elapsed() < Duration::from_secs(20),
                "chromedriver did not start"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
        let caps = json!({"capabilities": {"alwaysMatch": {
            "browserName": "chrome",
            "goog:chromeOptions": {
                "binary": CHROMIUM,
                "args": ["--headless=new", "--no-sandbox", "--disable-gpu",
                    "--disable-dev-shm-usage", "--disable-quic", "--no-first-run",
                    "--disable-background-networking", "--disable-component-update",
                    "--disable-sync", "--window-size=1100,1180", "--hide-scrollbars"]
            }
        }}});
        let v = http(port, "POST", "/session", Some(&caps)).expect("a browser session");
        Browser {
            port,
            session: v["sessionId"].as_str().expect("a session id").to_string(),
            _driver: driver,
        }
    }

    fn call(&self, method: &str, path: &str, body: Option<Value>) -> Value {
        let p = format!("/session/{}{path}", self.session);
        http(self.port, method, &p, body.as_ref()).unwrap_or_else(|e| panic!("{e}"))
    }

    fn open(&self, url: &str) {
        self.call("POST", "/url", Some(json!({ "url": url })));
    }

    fn find(&self, css: &str) -> String {
        let v = self.call(
            "POST",
            "/element",
            Some(json!({"using": "css selector", "value": css})),
        );
        v[ELEMENT].as_str().expect("an element").to_string()
    }

    fn click(&self, css: &str) {
        let e = self.find(css);
        self.call("POST", &format!("/element/{e}/click"), Some(json!({})));
    }

    /// Replaces the text of an input field, as typed.
    fn type_into(&self, css: &str, text: &str) {
        let e = self.find(css);
        self.call("POST", &format!("/element/{e}/clear"), Some(json!({})));
        self.call(
            "POST",
            &format!("/element/{e}/value"),
            Some(json!({ "text": text })),
        );
    }

    fn js(&self, script: &str) -> Value {
        self.call(
            "POST",
            "/execute/sync",
            Some(json!({"script": script, "args": []})),
        )
    }

    /// The page's state (`window.cdm`).
    fn state(&self) -> Value {
        self.js("return window.cdm ?? null;")
    }

    /// Waits until the page's status is one of `until`; returns the state.
    fn wait_for(&self, until: &[&str], timeout: Duration) -> Value {
        let t = Instant::now();
        loop {
            let s = self.state();
            if until.iter().any(|u| s["status"] == *u) {
                return s;
            }
            assert!(
                t.elapsed() < timeout,
                "page status stayed {} (waiting for {until:?}); error: {}",
                s["status"],
                s["error"]
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    fn enabled(&self, css: &str) -> bool {
        let e = self.find(css);
        self.call("GET", &format!("/element/{e}/enabled"), None) == true
    }

    fn text(&self, css: &str) -> String {
        let e = self.find(css);
        let v = self.call("GET", &format!("/element/{e}/text"), None);
        v.as_str().unwrap_or_default().to_string()
    }

    /// The canvas's pixels: `(width, height, rgba)`.
    fn canvas(&self) -> (u64, u64, Vec<u8>) {
        let v = self.js("const c = document.getElementById('image');
             const d = c.getContext('2d').getImageData(0, 0, c.width, c.height).data;
             return [c.width, c.height, Array.from(d)];");
        let px = v[2]
            .as_array()
            .expect("pixel array")
            .iter()
            .map(|b| u8::try_from(b.as_u64().expect("a byte")).expect("a byte"))
            .collect();
        (v[0].as_u64().unwrap(), v[1].as_u64().unwrap(), px)
    }

    fn screenshot(&self) -> Vec<u8> {
        let v = self.call("GET", "/screenshot", None);
        base64::engine::general_purpose::STANDARD
            .decode(v.as_str().expect("base64 PNG"))
            .expect("valid base64")
    }

    /// Picks the model, class, DDIM with `steps` and the seed, as a person
    /// would, and presses Generate.
    fn request(&self, steps: u32) {
        self.click(&format!("#model option[value='{}']", model()));
        self.click(&format!("#class option[value='{CLASS}']"));
        self.click("input[name='sampler'][value='ddim']");
        self.type_into("#steps", &steps.to_string());
        self.type_into("#seed", &NOISE_SEED.to_string());
        self.click("#generate");
    }
}

impl Drop for Browser {
    fn drop(&mut self) {
        let _ = http(
            self.port,
            "DELETE",
            &format!("/session/{}", self.session),
            None,
        );
    }
}

fn steps() -> u32 {
    std::env::var("CDM_E2E_STEPS")
        .ok()
        .map(|s| s.parse().expect("CDM_E2E_STEPS: a number of steps"))
        .unwrap_or(5)
}

/// The native client's image for the page's request, and its preview count.
fn native(c: &Cluster, steps: u32) -> (Vec<u8>, usize) {
    let t = Instant::now();
    let opts = Options {
        model: model(),
        class_label: Some(CLASS),
        sampler: SamplerName::Ddim,
        steps,
        variant: VariantName::Cipherdm,
        batch: 1,
        seed: NOISE_SEED,
        preview: true,
        idle_timeout_secs: GENERATION_TIMEOUT.as_secs() as u32,
    };
    let mut previews = 0;
    let out = rt()
        .block_on(client::generate(
            &c.urls(),
            &opts,
            &mut request::insecure_test_rng(SHARE_SEED),
            &mut |e| previews += usize::from(matches!(e, Event::Preview { .. })),
        ))
        .unwrap_or_else(|e| panic!("native client: {e}\n{}", c.logs()));
    println!(
        "native client, DDIM-{steps}: image after {:.0} ms",
        t.elapsed().as_secs_f64() * 1e3
    );
    (out.image.rgba(), previews)
}

#[test]
fn the_page_draws_what_the_native_client_reconstructs() {
    if !browser_available() {
        return;
    }
    let web = workspace().join("web");
    assert!(
        web.join("pkg/client_wasm.js").is_file(),
        "{}/pkg has no wasm package: run scripts/build-web.sh first",
        web.display()
    );
    let steps = steps();
    let t0 = Instant::now();

    // Two models, so that the page has to pick the right one.
    let mut c = Cluster::init(
        "browser",
        &format!("[testing]\ndeterministic_seed = {SERVER_SEED}\n"),
    );
    let model_dir = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("models")
        .join(model());
    let dealt = Command::new(common::BIN)
        .args(["deal-model", "--name", &model(), "--model-dir"])
        .arg(model_dir)
        .arg("--config")
        .arg(c.config())
        .output()
        .expect("run deal-model");
    assert!(dealt.status.success(), "{dealt:?}");
    for i in 0..3 {
        c.spawn(i, &["--insecure-deterministic-randomness"]);
    }
    c.wait_ready();
    let (_test_page, test_url) = serve_page(&c.config(), Some(SHARE_SEED));
    let (_page, url) = serve_page(&c.config(), None);
    let b = Browser::start();

    // 1. Test mode: the same shares as the native client, the same image.
    b.open(&test_url);
    b.wait_for(&["ready"], Duration::from_secs(30));
    assert!(
        b.text("#insecure").contains("Insecure test mode"),
        "the test-mode banner must show"
    );
    b.request(steps);
    let s = b.wait_for(&["done", "error"], GENERATION_TIMEOUT);
    assert_eq!(s["status"], "done", "{}\n{}", s["error"], c.logs());
    let (w, h, page_px) = b.canvas();
    let (want, native_previews) = native(&c, steps);
    assert_eq!((w, h), (28, 28));
    assert!(
        page_px == want,
        "the page's canvas differs from the native client's image"
    );
    assert_eq!(s["previews"], native_previews as u64);
    assert_eq!(native_previews, steps as usize, "one preview per step");
    assert_eq!(s["timings"]["steps"], steps);

    // 2. As deployed: fresh sharing randomness, the same picture up to the
    //    servers' probabilistic truncation (a few ulps of 2^-14 per value).
    b.open(&url);
    b.wait_for(&["ready"], Duration::from_secs(30));
    assert!(
        b.text("#insecure").is_empty(),
        "no banner outside test mode"
    );
    b.request(steps);
    let s = b.wait_for(&["done", "error"], GENERATION_TIMEOUT);
    assert_eq!(s["status"], "done", "{}\n{}", s["error"], c.logs());
    let (_, _, px) = b.canvas();
    let worst = px.iter().zip(&want).map(|(a, b)| a.abs_diff(*b)).max();
    assert!(
        worst <= Some(2),
        "fresh shares moved a pixel by {worst:?}/255"
    );
    let t = &s["timings"];
    let (first, last) = (t["firstProgressMs"].as_f64(), t["finalMs"].as_f64());
    assert!(first.is_some() && first <= last, "timings: {t}");
    println!(
        "browser, DDIM-{steps}: first progress after {:.0} ms, image after {:.0} ms",
        first.unwrap(),
        last.unwrap()
    );
    assert!(
        b.text("#progress-text")
            .starts_with(&format!("step {steps} / {steps}"))
    );
    assert!(b.enabled("#generate"), "Generate is offered again");
    let shot = b.screenshot();
    assert!(shot.starts_with(b"\x89PNG"), "the screenshot is a PNG");
    let path = if std::env::var("UPDATE_SCREENSHOT").as_deref() == Ok("1") {
        workspace().join("docs/images/web-page.png")
    } else {
        Path::new(env!("CARGO_TARGET_TMPDIR")).join("web-page.png")
    };
    std::fs::write(&path, &shot).expect("write the screenshot");
    println!("screenshot: {}", path.display());

    // 3. Cancel after the first step: the servers stop, the page recovers.
    b.request(50);
    let t = Instant::now();
    while b.state()["timings"]["firstProgressMs"].is_null() {
        assert!(t.elapsed() < GENERATION_TIMEOUT, "no progress");
        std::thread::sleep(Duration::from_millis(50));
    }
    b.click("#cancel");
    b.wait_for(&["cancelled"], Duration::from_secs(5));
    assert!(b.enabled("#generate") && !b.enabled("#cancel"));

    // 4. A server that has gone: a clear message, and the page recovers.
    c.kill(2);
    b.request(steps);
    let s = b.wait_for(&["error"], Duration::from_secs(60));
    let msg = s["error"].as_str().unwrap_or_default();
    assert!(msg.contains("cannot reach"), "unclear error: {msg}");
    assert_eq!(b.text("#error"), msg, "the error is shown on the page");
    assert!(b.enabled("#generate") && b.enabled("#model"));
    println!(
        "browser end-to-end test: {:.1} s",
        t0.elapsed().as_secs_f64()
    );
}
