//! Reaching Redis as it runs in production (docs/SYNC.md §6): `rediss://` with the
//! server's certificate verified against a CA file (and, optionally, a client certificate),
//! an ACL user whose password comes from the URL or from a file, a database number,
//! connect and read timeouts, and Sentinel discovery of the primary. The `redis` crate does
//! the work (rustls, its Sentinel client); this module only gathers the settings, reads
//! the files, and keeps every password out of what it prints.

use super::{redact_url, Result, SyncError};
use redis::sentinel::{SentinelClientBuilder, SentinelServerType};
use redis::{
    ClientTlsConfig, ConnectionAddr, IntoConnectionInfo, RedisError, RedisResult, TlsCertificates,
    TlsMode,
};
use std::path::PathBuf;
use std::time::Duration;

/// Where Redis is and how to talk to it. Build one with [`RedisConfig::new`], then set the
/// fields that apply.
#[derive(Clone, Debug)]
pub struct RedisConfig {
    /// `redis://[user[:password]@]host[:port][/db]`, or `rediss://` for TLS. With
    /// [`RedisConfig::sentinels`], the host part is the name of the primary as Sentinel
    /// knows it (`rediss://sync@mymaster/0`), and the rest applies to the primary.
    pub url: String,
    /// A file holding the user's password (its first line; a trailing newline is
    /// ignored). Read at every connection, so a rotated password is picked up on the next
    /// reconnect. Overrides a password in the URL.
    pub password_file: Option<PathBuf>,
    /// PEM file of the certificate authorities that sign the server's certificate. Without
    /// it, a `rediss://` connection trusts the system's roots. Verification is never off.
    pub ca_file: Option<PathBuf>,
    /// PEM file of a client certificate (chain) to present (mutual TLS); needs
    /// [`RedisConfig::client_key`].
    pub client_cert: Option<PathBuf>,
    /// PEM file of the private key of [`RedisConfig::client_cert`].
    pub client_key: Option<PathBuf>,
    /// Sentinel addresses (`host:port`, or `redis://` / `rediss://` URLs, which may carry
    /// the sentinels' own user and password). Empty: connect to the URL's host directly.
    pub sentinels: Vec<String>,
    /// Time allowed to establish a connection (TCP, TLS, AUTH, SELECT).
    pub connect_timeout: Duration,
    /// Time allowed for a reply (a blocking read adds its own block time to this).
    pub read_timeout: Duration,
}

impl RedisConfig {
    /// Settings for the Redis at `url`, with 5 s timeouts and nothing else set.
    pub fn new(url: impl Into<String>) -> RedisConfig {
        RedisConfig {
            url: url.into(),
            password_file: None,
            ca_file: None,
            client_cert: None,
            client_key: None,
            sentinels: Vec::new(),
            connect_timeout: Duration::from_secs(5),
            read_timeout: Duration::from_secs(5),
        }
    }

    /// What to print about this target: the URL with its password hidden, and the
    /// sentinels, if any.
    pub fn describe(&self) -> String {
        if self.sentinels.is_empty() {
            redact_url(&self.url)
        } else {
            let shown: Vec<String> = self.sentinels.iter().map(|s| redact_url(s)).collect();
            format!(
                "{} (primary discovered through sentinels {})",
                redact_url(&self.url),
                shown.join(", ")
            )
        }
    }

    /// Checks what can be checked without a network: the URL parses, TLS files go with
    /// `rediss://`, a client certificate comes with its key, the sentinels parse.
    pub fn validate(&self) -> Result<()> {
        let info = parse_url(&self.url)?;
        let tls = matches!(info.addr(), ConnectionAddr::TcpTls { .. });
        if let ConnectionAddr::TcpTls { insecure: true, .. } = info.addr() {
            return Err(config_error(
                "`#insecure` turns off the server's certificate verification, which \
                 revledger does not do; give the CA with a CA file instead",
            ));
        }
        if !tls && (self.ca_file.is_some() || self.client_cert.is_some()) {
            return Err(config_error(
                "a CA file or client certificate needs a rediss:// URL",
            ));
        }
        if self.client_cert.is_some() != self.client_key.is_some() {
            return Err(config_error("a client certificate and its key go together"));
        }
        if self.connect_timeout.is_zero() || self.read_timeout.is_zero() {
            return Err(config_error("timeouts must be positive"));
        }
        for s in &self.sentinels {
            sentinel_addr(s)?;
        }
        Ok(())
    }

    fn password(&self) -> Result<Option<String>> {
        let Some(path) = &self.password_file else {
            return Ok(None);
        };
        let text = std::fs::read_to_string(path)
            .map_err(|e| config_error(&format!("password file {}: {e}", path.display())))?;
        let line = text.lines().next().unwrap_or("");
        if line.is_empty() {
            return Err(config_error(&format!(
                "password file {} is empty",
                path.display()
            )));
        }
        Ok(Some(line.to_string()))
    }

    fn certificates(&self) -> Result<TlsCertificates> {
        let read = |what: &str, p: &PathBuf| {
            std::fs::read(p).map_err(|e| config_error(&format!("{what} {}: {e}", p.display())))
        };
        let root_cert = self
            .ca_file
            .as_ref()
            .map(|p| read("CA file", p))
            .transpose()?;
        let client_tls = match (&self.client_cert, &self.client_key) {
            (Some(c), Some(k)) => Some(ClientTlsConfig {
                client_cert: read("client certificate", c)?,
                client_key: read("client key", k)?,
            }),
            _ => None,
        };
        Ok(TlsCertificates {
            client_tls,
            root_cert,
        })
    }

    /// Opens a connection: to the URL's host, or to the primary the sentinels name (which
    /// follows a failover: every new connection asks them again). Returns it with the
    /// address reached, for logs.
    pub fn connect(&self) -> Result<(redis::Connection, String)> {
        let client = self.client()?;
        let reached = match client.get_connection_info().addr() {
            ConnectionAddr::Tcp(h, p)
            | ConnectionAddr::TcpTls {
                host: h, port: p, ..
            } => {
                format!("{h}:{p}")
            }
            other => other.to_string(),
        };
        let conn = client.get_connection_with_timeout(self.connect_timeout)?;
        conn.set_read_timeout(Some(self.read_timeout))?;
        conn.set_write_timeout(Some(self.read_timeout))?;
        Ok((conn, reached))
    }

    /// A client for the target (asking the sentinels for the primary's address).
    fn client(&self) -> Result<redis::Client> {
        self.validate()?;
        let info = parse_url(&self.url)?;
        let password = self.password()?;
        let tls = matches!(info.addr(), ConnectionAddr::TcpTls { .. });
        if self.sentinels.is_empty() {
            let mut settings = info.redis_settings().clone();
            if let Some(p) = &password {
                settings = settings.set_password(p);
            }
            let info = info.set_redis_settings(settings);
            return Ok(if tls {
                redis::Client::build_with_tls(info, self.certificates()?)?
            } else {
                redis::Client::open(info)?
            });
        }
        let master = match info.addr() {
            ConnectionAddr::Tcp(h, _) | ConnectionAddr::TcpTls { host: h, .. } => h.clone(),
            _ => {
                return Err(config_error(
                    "with sentinels, the URL's host names the primary",
                ))
            }
        };
        let mut addrs = Vec::new();
        let mut sentinel_auth: Option<(Option<String>, Option<String>)> = None;
        let mut sentinel_tls = None;
        for s in &self.sentinels {
            let si = sentinel_addr(s)?;
            let is_tls = matches!(si.addr(), ConnectionAddr::TcpTls { .. });
            if sentinel_tls.replace(is_tls).is_some_and(|t| t != is_tls) {
                return Err(config_error(
                    "the sentinels must all use TLS (rediss://) or none",
                ));
            }
            let r = si.redis_settings();
            if r.password().is_some() || r.username().is_some() {
                sentinel_auth.get_or_insert((
                    r.username().map(str::to_string),
                    r.password().map(str::to_string),
                ));
            }
            addrs.push(si.addr().clone());
        }
        let settings = info.redis_settings();
        let mut b = SentinelClientBuilder::new(addrs, master, SentinelServerType::Master)?
            .set_client_to_redis_db(settings.db());
        if let Some(u) = settings.username() {
            b = b.set_client_to_redis_username(u);
        }
        if let Some(p) = password.as_deref().or(settings.password()) {
            b = b.set_client_to_redis_password(p);
        }
        if tls {
            b = b
                .set_client_to_redis_tls_mode(TlsMode::Secure)
                .set_client_to_redis_certificates(self.certificates()?);
        }
        if let Some((user, pass)) = sentinel_auth {
            if let Some(u) = user {
                b = b.set_client_to_sentinel_username(u);
            }
            if let Some(p) = pass {
                b = b.set_client_to_sentinel_password(p);
            }
        }
        if sentinel_tls == Some(true) {
            b = b
                .set_client_to_sentinel_tls_mode(TlsMode::Secure)
                .set_client_to_sentinel_certificates(self.certificates()?);
        }
        Ok(b.build()?.get_client()?)
    }
}

fn config_error(what: &str) -> SyncError {
    SyncError::Redis(RedisError::from((
        redis::ErrorKind::InvalidClientConfig,
        "redis settings",
        what.to_string(),
    )))
}

fn parse_url(url: &str) -> Result<redis::ConnectionInfo> {
    url.into_connection_info().map_err(|e| {
        config_error(&format!(
            "{} is not a redis:// or rediss:// URL ({e})",
            redact_url(url)
        ))
    })
}

/// A sentinel's address: `host:port` or a URL.
fn sentinel_addr(s: &str) -> Result<redis::ConnectionInfo> {
    let url = if s.contains("://") {
        s.to_string()
    } else {
        format!("redis://{s}")
    };
    let parsed: RedisResult<redis::ConnectionInfo> = url.as_str().into_connection_info();
    parsed.map_err(|e| {
        config_error(&format!(
            "sentinel {} is not host:port or a redis:// URL ({e})",
            redact_url(s)
        ))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn settings_that_cannot_work_are_refused_before_connecting() {
        let mut c = RedisConfig::new("redis://127.0.0.1:1/");
        assert!(c.validate().is_ok());
        c.ca_file = Some("ca.pem".into());
        assert!(c.validate().unwrap_err().to_string().contains("rediss://"));
        c.url = "rediss://127.0.0.1:1/#insecure".into();
        assert!(c
            .validate()
            .unwrap_err()
            .to_string()
            .contains("verification"));
        c.url = "rediss://127.0.0.1:1/".into();
        c.client_cert = Some("c.pem".into());
        assert!(c.validate().unwrap_err().to_string().contains("key"));
        c.client_key = Some("k.pem".into());
        assert!(c.validate().is_ok());
        c.url = "http://x/".into();
        assert!(c.validate().is_err());
        let mut s = RedisConfig::new("redis://u:secret@mymaster/2");
        s.sentinels = vec![
            "127.0.0.1:26379".into(),
            "redis://:pw@127.0.0.1:26380".into(),
        ];
        assert!(s.validate().is_ok());
        let shown = s.describe();
        assert!(
            !shown.contains("secret") && !shown.contains("pw"),
            "{shown}"
        );
        assert!(
            shown.contains("mymaster") && shown.contains("26380"),
            "{shown}"
        );
    }

    #[test]
    fn the_password_file_is_read_at_connection_time_and_never_shown() {
        let dir = tempfile::tempdir().unwrap();
        let f = dir.path().join("pw");
        std::fs::write(&f, "hunter2\n").unwrap();
        let mut c = RedisConfig::new("redis://app@127.0.0.1:1/");
        c.password_file = Some(f.clone());
        assert_eq!(c.password().unwrap().as_deref(), Some("hunter2"));
        std::fs::write(&f, "").unwrap();
        assert!(c.password().unwrap_err().to_string().contains("empty"));
        c.password_file = Some(dir.path().join("missing"));
        let e = c.connect().err().expect("no password file").to_string();
        assert!(e.contains("password file"), "{e}");
        assert!(!format!("{c:?}").contains("hunter2"));
    }
}
