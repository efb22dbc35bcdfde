//! One Redis server (`redis://`) or a Redis Cluster (`redis+cluster://host:port,host:port`)
//! behind the same few calls. Every key a call touches carries one model's hash tag, so on a
//! Cluster each call goes to the one node that owns that model's slot (MOVED/ASK followed).

use std::time::Duration;

use redis::cluster::{ClusterClient, ClusterConnection};
use redis::{Connection, ConnectionLike, RedisResult};

use crate::error::{Error, Result};

/// Scheme of a Redis Cluster backend: `redis+cluster://[user:pass@]host:port[,host:port…]`.
pub const CLUSTER_SCHEME: &str = "redis+cluster://";
/// The same over TLS (`tls-cluster yes`): `rediss+cluster://…`, TLS options as for `rediss://`.
pub const TLS_CLUSTER_SCHEME: &str = "rediss+cluster://";

/// True for a `redis+cluster://` or `rediss+cluster://` URL.
pub(super) fn is_cluster(url: &str) -> bool {
    url.starts_with(CLUSTER_SCHEME) || url.starts_with(TLS_CLUSTER_SCHEME)
}

/// Redirections (MOVED/ASK), TRYAGAIN retries and reconnections a cluster call may take before
/// it fails; each attempt is bounded by the timeout, so a call never hangs. A slot migration
/// needs a few (tests/test_redis_cluster.py moves one under traffic).
const CLUSTER_RETRIES: u32 = 6;

pub(super) enum Client {
    Single(redis::Client),
    Cluster(ClusterClient),
}

pub(super) enum Conn {
    Single(Connection),
    /// Boxed: a cluster connection (its node map) is four times a single one.
    Cluster(Box<ClusterConnection>),
}

/// `redis+cluster://u:p@h1:1,h2:2` → `["redis://u:p@h1:1", "redis://u:p@h2:2"]`
/// (`rediss+cluster://` → `rediss://` nodes). TLS options must be split off first.
pub(super) fn cluster_nodes(url: &str) -> std::result::Result<Vec<String>, String> {
    let (rest, scheme) = match url.strip_prefix(TLS_CLUSTER_SCHEME) {
        Some(rest) => (rest, "rediss://"),
        None => (
            url.strip_prefix(CLUSTER_SCHEME)
                .ok_or_else(|| format!("expected {CLUSTER_SCHEME}host:port[,host:port...]"))?,
            "redis://",
        ),
    };
    let (cred, hosts) = match rest.rfind('@') {
        Some(at) => (&rest[..=at], &rest[at + 1..]),
        None => ("", rest),
    };
    let hosts = hosts.strip_suffix('/').unwrap_or(hosts);
    if hosts.contains(['/', '?']) {
        return Err("a cluster URL takes no database or options (only db 0 exists)".into());
    }
    let mut nodes = Vec::new();
    for node in hosts.split(',') {
        let (host, port) = node
            .rsplit_once(':')
            .ok_or_else(|| format!("node {node:?} is not host:port"))?;
        if host.is_empty() || port.parse::<u16>().map_or(true, |p| p == 0) {
            return Err(format!("node {node:?} is not host:port"));
        }
        nodes.push(format!("{scheme}{cred}{host}:{port}"));
    }
    Ok(nodes)
}

impl Client {
    /// `display_url` (credentials redacted) words the errors.
    pub(super) fn open(url: &str, timeout: Duration, display_url: &str) -> Result<Self> {
        let bad =
            |e: String| Error::invalid("backend", format!("cannot parse {display_url:?}: {e}"));
        if is_cluster(url) {
            let (url, tls) = super::tls::split_options(url).map_err(bad)?;
            let nodes = cluster_nodes(&url).map_err(bad)?;
            let mut builder = ClusterClient::builder(nodes)
                .connection_timeout(timeout)
                .response_timeout(timeout)
                .retries(CLUSTER_RETRIES);
            if url.starts_with(TLS_CLUSTER_SCHEME) {
                builder = super::tls::cluster(builder, &tls).map_err(bad)?;
            }
            let client = builder.build().map_err(|e| bad(e.to_string()))?;
            Ok(Client::Cluster(client))
        } else {
            let (url, tls) = super::tls::split_options(url).map_err(bad)?;
            let client = super::tls::client(&url, &tls).map_err(bad)?;
            Ok(Client::Single(client))
        }
    }

    /// A connection whose connect, read and write are bounded by `timeout`.
    pub(super) fn connect(&self, timeout: Duration) -> RedisResult<Conn> {
        match self {
            Client::Single(client) => {
                let con = client.get_connection_with_timeout(timeout)?;
                con.set_read_timeout(Some(timeout))?;
                con.set_write_timeout(Some(timeout))?;
                Ok(Conn::Single(con))
            }
            Client::Cluster(client) => {
                let con = client.get_connection()?;
                con.set_read_timeout(Some(timeout))?;
                con.set_write_timeout(Some(timeout))?;
                Ok(Conn::Cluster(Box::new(con)))
            }
        }
    }
}

impl Conn {
    pub(super) fn like(&mut self) -> &mut dyn ConnectionLike {
        match self {
            Conn::Single(con) => con,
            Conn::Cluster(con) => con.as_mut(),
        }
    }

    /// `ZREM key ids…` for each (key, ids): one pipeline on one server; on a Cluster, where the
    /// keys of one call share a hash tag, a cluster pipeline (routed per slot).
    pub(super) fn zrem_all(&mut self, removals: &[(String, Vec<&String>)]) -> RedisResult<()> {
        match self {
            Conn::Single(con) => {
                let mut pipe = redis::pipe();
                for (key, ids) in removals {
                    pipe.cmd("ZREM").arg(key).arg(ids).ignore();
                }
                pipe.query::<()>(con)
            }
            Conn::Cluster(con) => {
                let mut pipe = redis::cluster::cluster_pipe();
                for (key, ids) in removals {
                    pipe.cmd("ZREM").arg(key).arg(ids).ignore();
                }
                pipe.query::<()>(con.as_mut())
            }
        }
    }
}
