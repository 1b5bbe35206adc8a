//! Minimal `--key value` / `--flag` argument parsing for the binaries.

use std::collections::HashMap;
use std::str::FromStr;

/// Parsed arguments.
pub struct Args {
    map: HashMap<String, String>,
}

impl Args {
    /// Parse `--key value`, `--key=value` and bare `--flag` (value "true").
    pub fn parse(it: impl Iterator<Item = String>) -> Result<Self, String> {
        let v: Vec<String> = it.collect();
        let mut map = HashMap::new();
        let mut i = 0;
        while i < v.len() {
            let a = &v[i];
            let Some(k) = a.strip_prefix("--") else {
                return Err(format!("unexpected argument {a:?}"));
            };
            if let Some((k, val)) = k.split_once('=') {
                map.insert(k.to_string(), val.to_string());
                i += 1;
            } else if i + 1 < v.len() && !v[i + 1].starts_with("--") {
                map.insert(k.to_string(), v[i + 1].clone());
                i += 2;
            } else {
                map.insert(k.to_string(), "true".to_string());
                i += 1;
            }
        }
        Ok(Args { map })
    }
    /// Optional string value.
    pub fn get(&self, k: &str) -> Option<&str> {
        self.map.get(k).map(String::as_str)
    }
    /// Required string value.
    pub fn req(&self, k: &str) -> Result<String, String> {
        self.get(k)
            .map(str::to_string)
            .ok_or_else(|| format!("missing --{k}"))
    }
    /// Whether a flag is present.
    pub fn flag(&self, k: &str) -> bool {
        self.map.contains_key(k)
    }
    /// Numeric value with a default.
    pub fn num<T: FromStr>(&self, k: &str, default: T) -> Result<T, String> {
        match self.get(k) {
            Some(s) => s.parse().map_err(|_| format!("--{k}: cannot parse {s:?}")),
            None => Ok(default),
        }
    }
}
