//! Serves the web page (`web/` and the wasm package in `web/pkg/`) and
//! tells it where the three party servers are (`/cluster.json`).
//!
//! This is deliberately not part of a party server: whoever serves the page
//! serves the code that handles the user's secrets, so it should be the user
//! or someone they trust, not one of the three parties.  `cipherdm
//! serve-page` runs it next to a cluster on one machine; in deployment any
//! static web server with the same files and headers will do.

use axum::Router;
use axum::extract::{Path as UrlPath, State};
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use std::path::PathBuf;
use std::sync::Arc;

/// What the page needs to know about the cluster; public information.
#[derive(serde::Serialize, Clone, Debug)]
pub struct PageConfig {
    /// Client WebSocket URLs of P0, P1, P2.
    pub servers: [String; 3],
    /// Only for the servers' seeded test mode: the page then shares with a
    /// repeating randomness (and says so in red).  Never in deployment.
    #[serde(skip_serializing_if = "Option::is_none", serialize_with = "as_decimal")]
    pub insecure_share_seed: Option<u64>,
}

/// A u64 as a decimal string: JavaScript reads JSON numbers as doubles,
/// which lose the low bits of seeds above 2^53 (the page reads it with
/// `BigInt`).
fn as_decimal<S: serde::Serializer>(v: &Option<u64>, s: S) -> Result<S::Ok, S::Error> {
    match v {
        Some(x) => s.serialize_str(&x.to_string()),
        None => s.serialize_none(),
    }
}

struct Site {
    root: PathBuf,
    config: PageConfig,
    csp: String,
}

/// The Content-Security-Policy: scripts only from this origin (plus wasm
/// compilation), and connections only to this origin and the three servers,
/// so that even a compromised script cannot send shares elsewhere.
fn content_security_policy(servers: &[String; 3]) -> String {
    format!(
        "default-src 'self'; script-src 'self' 'wasm-unsafe-eval'; style-src 'self'; \
         img-src 'self' data: blob:; connect-src 'self' {}; base-uri 'none'; \
         form-action 'none'; frame-ancestors 'none'",
        servers.join(" ")
    )
}

/// The router: `/` (index.html), `/cluster.json`, and the page's files.
pub fn router(root: PathBuf, config: PageConfig) -> Router {
    let site = Arc::new(Site {
        root,
        csp: content_security_policy(&config.servers),
        config,
    });
    Router::new()
        .route("/", get(|s: State<Arc<Site>>| file(s, "index.html".into())))
        .route("/cluster.json", get(cluster))
        .route(
            "/{*path}",
            get(|s: State<Arc<Site>>, UrlPath(p): UrlPath<String>| file(s, p)),
        )
        .with_state(site)
}

async fn cluster(State(site): State<Arc<Site>>) -> Response {
    (
        [(header::CACHE_CONTROL, "no-store")],
        axum::Json(site.config.clone()),
    )
        .into_response()
}

/// Whether `path` names a file under the root: plain names only, no hidden
/// files, no `..`.
fn path_ok(path: &str) -> bool {
    !path.is_empty()
        && path.len() <= 200
        && path.split('/').all(|c| {
            !c.is_empty()
                && !c.starts_with('.')
                && c.chars()
                    .all(|ch| ch.is_ascii_alphanumeric() || "_.-".contains(ch))
        })
}

fn content_type(path: &str) -> Option<&'static str> {
    Some(match path.rsplit_once('.')?.1 {
        "html" => "text/html; charset=utf-8",
        "js" => "text/javascript; charset=utf-8",
        "css" => "text/css; charset=utf-8",
        "wasm" => "application/wasm",
        "json" => "application/json",
        "png" => "image/png",
        "svg" => "image/svg+xml",
        _ => return None,
    })
}

async fn file(State(site): State<Arc<Site>>, path: String) -> Response {
    let (true, Some(kind)) = (path_ok(&path), content_type(&path)) else {
        return (StatusCode::NOT_FOUND, "not found").into_response();
    };
    match tokio::fs::read(site.root.join(&path)).await {
        Ok(body) => (
            [
                (header::CONTENT_TYPE, kind),
                (header::CACHE_CONTROL, "no-cache"),
                (header::X_CONTENT_TYPE_OPTIONS, "nosniff"),
                (header::REFERRER_POLICY, "no-referrer"),
                (header::CONTENT_SECURITY_POLICY, site.csp.as_str()),
            ],
            body,
        )
            .into_response(),
        Err(_) => (StatusCode::NOT_FOUND, "not found").into_response(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_plain_paths_with_known_types_are_served() {
        for ok in ["index.html", "pkg/client_wasm_bg.wasm", "app.js"] {
            assert!(path_ok(ok) && content_type(ok).is_some(), "{ok}");
        }
        for bad in [
            "",
            "../etc/passwd",
            "pkg/../../x.js",
            ".git/config",
            "a//b.js",
            "a b.js",
        ] {
            assert!(!path_ok(bad), "{bad}");
        }
        assert_eq!(content_type("cluster.toml"), None);
        assert_eq!(content_type("party0.key"), None);
    }

    #[test]
    fn the_test_seed_is_sent_exactly_and_only_when_set() {
        let servers = ["ws://a:1/ws", "ws://b:2/ws", "ws://c:3/ws"].map(String::from);
        let json = |seed| {
            serde_json::to_value(PageConfig {
                servers: servers.clone(),
                insecure_share_seed: seed,
            })
            .unwrap()
        };
        assert_eq!(
            json(Some(u64::MAX))["insecure_share_seed"],
            "18446744073709551615"
        );
        assert!(json(None).get("insecure_share_seed").is_none());
        assert_eq!(json(None)["servers"][2], "ws://c:3/ws");
    }

    #[test]
    fn the_policy_allows_connections_to_the_three_servers_only() {
        let s = ["ws://a:1/ws", "ws://b:2/ws", "wss://c/ws"].map(String::from);
        let csp = content_security_policy(&s);
        assert!(csp.contains("connect-src 'self' ws://a:1/ws ws://b:2/ws wss://c/ws;"));
        assert!(csp.contains("script-src 'self' 'wasm-unsafe-eval';"));
    }
}
