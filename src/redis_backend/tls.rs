//! `rediss://` (TLS) options of the backend URL, named as in redis-py:
//!
//! - `ssl_ca_certs=/path/ca.pem`: trust these CA certificates (PEM) instead of the system's;
//! - `ssl_certfile=/path/cert.pem` and `ssl_keyfile=/path/key.pem`: client certificate (mTLS);
//! - `ssl_cert_reqs=required` (default) or `none`: `none` skips verifying the server's
//!   certificate (encrypted but not authenticated: for tests only).
//!
//! The same options go with `rediss+cluster://host:port,host:port` (every node over TLS).
//! Without options a `rediss://` URL verifies the server against the system's CA store.
//! ACL users and passwords go in the URL as always: `rediss://user:password@host:port/db`.

use redis::cluster::ClusterClientBuilder;
use redis::{ClientTlsConfig, TlsCertificates, TlsMode};

/// The URL without our options (what the redis crate parses) and the TLS material they name.
#[derive(Debug, Default)]
pub(super) struct TlsOptions {
    pub(super) ca_certs: Option<String>,
    pub(super) certfile: Option<String>,
    pub(super) keyfile: Option<String>,
    pub(super) insecure: bool,
}

impl TlsOptions {
    fn any(&self) -> bool {
        self.ca_certs.is_some() || self.certfile.is_some() || self.insecure
    }
}

/// Splits `ssl_*` options off the query string; other query parameters stay in the URL.
pub(super) fn split_options(url: &str) -> Result<(String, TlsOptions), String> {
    let (base, query) = match url.split_once('?') {
        Some((b, q)) => (b, q),
        None => return Ok((url.to_string(), TlsOptions::default())),
    };
    let mut opts = TlsOptions::default();
    let mut kept = Vec::new();
    for pair in query.split('&').filter(|p| !p.is_empty()) {
        let (key, value) = pair.split_once('=').unwrap_or((pair, ""));
        let value = percent_decode(value);
        match key {
            "ssl_ca_certs" => opts.ca_certs = Some(value),
            "ssl_certfile" => opts.certfile = Some(value),
            "ssl_keyfile" => opts.keyfile = Some(value),
            "ssl_cert_reqs" => match value.as_str() {
                "required" => opts.insecure = false,
                "none" => opts.insecure = true,
                other => {
                    return Err(format!(
                        "ssl_cert_reqs must be \"required\" or \"none\", got {other:?}"
                    ))
                }
            },
            k if k.starts_with("ssl_") => {
                return Err(format!(
                    "unknown TLS option {k:?}; expected ssl_ca_certs, ssl_certfile, \
                     ssl_keyfile or ssl_cert_reqs"
                ))
            }
            _ => kept.push(pair),
        }
    }
    if opts.certfile.is_some() != opts.keyfile.is_some() {
        return Err("ssl_certfile and ssl_keyfile go together".into());
    }
    let any = opts.any() || opts.keyfile.is_some();
    if any && !url.starts_with("rediss://") && !url.starts_with("rediss+cluster://") {
        return Err("ssl_* options need a rediss:// or rediss+cluster:// URL".into());
    }
    let base = if kept.is_empty() {
        base.to_string()
    } else {
        format!("{base}?{}", kept.join("&"))
    };
    Ok((base, opts))
}

fn percent_decode(s: &str) -> String {
    let hex = |b: u8| (b as char).to_digit(16);
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' && i + 2 < bytes.len() {
            if let (Some(h), Some(l)) = (hex(bytes[i + 1]), hex(bytes[i + 2])) {
                out.push((h * 16 + l) as u8);
                i += 3;
                continue;
            }
        }
        out.push(bytes[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// The TLS material of `opts` as the redis crate takes it.
fn certificates(opts: &TlsOptions) -> Result<TlsCertificates, String> {
    let root_cert = match &opts.ca_certs {
        Some(path) => Some(read("ssl_ca_certs", path)?),
        None => None,
    };
    let client_tls = match (&opts.certfile, &opts.keyfile) {
        (Some(cert), Some(key)) => Some(ClientTlsConfig {
            client_cert: read("ssl_certfile", cert)?,
            client_key: read("ssl_keyfile", key)?,
        }),
        _ => None,
    };
    Ok(TlsCertificates {
        client_tls,
        root_cert,
    })
}

/// A `rediss+cluster://` client: every node over TLS, verified unless `ssl_cert_reqs=none`.
pub(super) fn cluster(
    builder: ClusterClientBuilder,
    opts: &TlsOptions,
) -> Result<ClusterClientBuilder, String> {
    let mode = if opts.insecure {
        TlsMode::Insecure
    } else {
        TlsMode::Secure
    };
    let builder = builder.tls(mode);
    if opts.ca_certs.is_some() || opts.certfile.is_some() {
        // (`certs` also sets TlsMode::Secure: set the mode after it)
        return Ok(builder.certs(certificates(opts)?).tls(mode));
    }
    Ok(builder)
}

fn read(what: &str, path: &str) -> Result<Vec<u8>, String> {
    std::fs::read(path).map_err(|e| format!("cannot read {what} {path:?}: {e}"))
}

/// A single-server client for `url` (already stripped of our options).
pub(super) fn client(url: &str, opts: &TlsOptions) -> Result<redis::Client, String> {
    if !opts.any() {
        return redis::Client::open(url).map_err(|e| e.to_string());
    }
    let mut url = url.to_string();
    if opts.insecure {
        url.push_str("#insecure"); // the redis crate's switch for skipping verification
    }
    redis::Client::build_with_tls(url.as_str(), certificates(opts)?).map_err(|e| e.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn options_are_split_off_and_checked() {
        let (base, o) =
            split_options("rediss://u:p@h:1/0?ssl_ca_certs=%2Ftmp%2Fca.pem&protocol=resp2")
                .unwrap();
        assert_eq!(base, "rediss://u:p@h:1/0?protocol=resp2");
        assert_eq!(o.ca_certs.as_deref(), Some("/tmp/ca.pem"));
        assert!(!o.insecure);
        let (base, o) = split_options("rediss://h:1/0?ssl_cert_reqs=none").unwrap();
        assert_eq!(base, "rediss://h:1/0");
        assert!(o.insecure);
        assert!(split_options("redis://h:1/0?ssl_ca_certs=x")
            .unwrap_err()
            .contains("rediss://"));
        assert!(split_options("rediss://h/0?ssl_certfile=x")
            .unwrap_err()
            .contains("together"));
        assert!(split_options("rediss://h/0?ssl_verify=1")
            .unwrap_err()
            .contains("unknown TLS option"));
        assert!(split_options("rediss://h/0?ssl_cert_reqs=maybe").is_err());
        let (base, o) = split_options("redis://h:1/0").unwrap();
        assert_eq!(base, "redis://h:1/0");
        assert!(!o.any());
    }

    #[test]
    fn a_missing_ca_file_is_named() {
        let (base, o) = split_options("rediss://h:1/0?ssl_ca_certs=/nonexistent/ca.pem").unwrap();
        let err = client(&base, &o).unwrap_err();
        assert!(
            err.contains("ssl_ca_certs") && err.contains("/nonexistent/ca.pem"),
            "{err}"
        );
    }
}
