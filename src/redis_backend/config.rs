//! Settings of the Redis backend, validated, and the URL as shown in status and errors.

use super::conn::{cluster_nodes, CLUSTER_SCHEME};
use crate::error::{Error, Result};
use crate::load::FailMode;

/// Settings of a Redis backend, validated.
#[derive(Debug, Clone)]
pub struct RedisConfig {
    pub url: String,
    pub lease_ttl_s: f64,
    pub fail_mode: FailMode,
    /// Connect, read and write timeout of one round trip.
    pub timeout_s: f64,
}

impl RedisConfig {
    pub fn new(url: &str, lease_ttl_s: f64, fail_mode: FailMode, timeout_s: f64) -> Result<Self> {
        if url.starts_with(CLUSTER_SCHEME) {
            if let Err(e) = cluster_nodes(url) {
                let shown = redact(url);
                return Err(Error::invalid(
                    "backend",
                    format!("bad cluster URL {shown:?}: {e}"),
                ));
            }
        } else if !url.starts_with("redis://") {
            let scheme = url.split("://").next().unwrap_or(url);
            return Err(Error::invalid(
                "backend",
                format!(
                    "unsupported URL scheme {scheme:?}; expected redis://host:port/db or \
                     {CLUSTER_SCHEME}host:port[,host:port...]"
                ),
            ));
        }
        if !(lease_ttl_s.is_finite() && (0.1..=86_400.0).contains(&lease_ttl_s)) {
            return Err(Error::invalid(
                "lease_ttl_s",
                format!("must be between 0.1 and 86400 seconds, got {lease_ttl_s}"),
            ));
        }
        if !(timeout_s.is_finite() && timeout_s > 0.0 && timeout_s <= 60.0) {
            return Err(Error::invalid(
                "timeout_s",
                format!("must be in (0, 60] seconds, got {timeout_s}"),
            ));
        }
        Ok(RedisConfig {
            url: url.to_string(),
            lease_ttl_s,
            fail_mode,
            timeout_s,
        })
    }
}

/// `redis://user:secret@host` → `redis://user:***@host`, for status and errors.
pub(super) fn redact(url: &str) -> String {
    match (url.find("://"), url.rfind('@')) {
        (Some(s), Some(at)) if at > s => {
            let cred = &url[s + 3..at];
            match cred.find(':') {
                Some(c) => format!("{}{}:***{}", &url[..s + 3], &cred[..c], &url[at..]),
                None => url.to_string(),
            }
        }
        _ => url.to_string(),
    }
}
