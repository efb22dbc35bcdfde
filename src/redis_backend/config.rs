//! Settings of the Redis backend, validated, and the URL as shown in status and errors.

use std::sync::Arc;

use super::conn::{cluster_nodes, is_cluster, CLUSTER_SCHEME};
use super::tls::split_options;
use super::RedisBackend;
use crate::error::{Error, Result};
use crate::load::{FailMode, LoadTracker, SharedBackend, SharedClock};

/// Settings of a Redis backend, validated. Its `Debug` shows the URL with the password masked.
#[derive(Clone)]
pub struct RedisConfig {
    pub url: String,
    pub lease_ttl_s: f64,
    pub fail_mode: FailMode,
    /// Connect, read and write timeout of one round trip.
    pub timeout_s: f64,
}

/// Everything that builds a `LoadTracker`, validated as a whole — the lease and timeout
/// settings too when no backend is named, so a typo never passes silently. Its `Debug` shows
/// the backend URL with the password masked.
#[derive(Clone)]
pub struct TrackerSettings {
    pub stale_after_s: f64,
    /// `redis://…` or `redis+cluster://…`; None counts in process.
    pub backend: Option<String>,
    pub lease_ttl_s: f64,
    pub fail_mode: FailMode,
    pub timeout_s: f64,
}

impl std::fmt::Debug for RedisConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RedisConfig")
            .field("url", &redact(&self.url))
            .field("lease_ttl_s", &self.lease_ttl_s)
            .field("fail_mode", &self.fail_mode)
            .field("timeout_s", &self.timeout_s)
            .finish()
    }
}

impl std::fmt::Debug for TrackerSettings {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TrackerSettings")
            .field("stale_after_s", &self.stale_after_s)
            .field("backend", &self.backend.as_deref().map(redact))
            .field("lease_ttl_s", &self.lease_ttl_s)
            .field("fail_mode", &self.fail_mode)
            .field("timeout_s", &self.timeout_s)
            .finish()
    }
}

impl Default for TrackerSettings {
    fn default() -> Self {
        TrackerSettings {
            stale_after_s: 60.0,
            backend: None,
            lease_ttl_s: 30.0,
            fail_mode: FailMode::Open,
            timeout_s: 0.5,
        }
    }
}

impl TrackerSettings {
    /// Settings as a caller spells them (the fail mode by name); checked as a whole by `build`.
    pub fn new(
        stale_after_s: f64,
        backend: Option<&str>,
        lease_ttl_s: f64,
        fail_mode: &str,
        timeout_s: f64,
    ) -> Result<Self> {
        Ok(TrackerSettings {
            stale_after_s,
            backend: backend.map(str::to_string),
            lease_ttl_s,
            fail_mode: fail_mode.parse()?,
            timeout_s,
        })
    }

    /// A tracker on `clock`, sharing its counts through the backend when one is named.
    pub fn build(&self, clock: SharedClock) -> Result<LoadTracker> {
        check_timing(self.lease_ttl_s, self.timeout_s)?;
        let backend: Option<SharedBackend> = match &self.backend {
            None => None,
            Some(url) => {
                let config =
                    RedisConfig::new(url, self.lease_ttl_s, self.fail_mode, self.timeout_s)?;
                Some(Arc::new(RedisBackend::new(config)?))
            }
        };
        LoadTracker::with_backend(self.stale_after_s, clock, backend)
    }
}

fn check_timing(lease_ttl_s: f64, timeout_s: f64) -> Result<()> {
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
    Ok(())
}

impl RedisConfig {
    pub fn new(url: &str, lease_ttl_s: f64, fail_mode: FailMode, timeout_s: f64) -> Result<Self> {
        if is_cluster(url) {
            let checked = split_options(url).and_then(|(base, _)| cluster_nodes(&base));
            if let Err(e) = checked {
                let shown = redact(url);
                return Err(Error::invalid(
                    "backend",
                    format!("bad cluster URL {shown:?}: {e}"),
                ));
            }
        } else if !url.starts_with("redis://") && !url.starts_with("rediss://") {
            let scheme = url.split("://").next().unwrap_or(url);
            return Err(Error::invalid(
                "backend",
                format!(
                    "unsupported URL scheme {scheme:?}; expected redis://host:port/db, \
                     rediss://host:port/db (TLS), {CLUSTER_SCHEME}host:port[,host:port...] \
                     or rediss+cluster://… (TLS)"
                ),
            ));
        }
        check_timing(lease_ttl_s, timeout_s)?;
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
