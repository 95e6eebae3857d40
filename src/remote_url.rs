//! The syntax of remote URLs: a path, `file://`, `ssh://`, `http(s)://` or `s3://`. Shared by
//! `repo` (which records remotes) and `remote` (which connects to them), so neither needs the
//! other for it. Must not connect to anything or touch the file system beyond making a
//! relative path absolute.

use crate::{Error, Result};
use std::path::PathBuf;

/// A parsed remote URL.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RemoteUrl {
    Path(PathBuf),
    Ssh {
        user: Option<String>,
        host: String,
        port: Option<u16>,
        path: String,
    },
    Http(String),
    S3 {
        bucket: String,
        prefix: String,
    },
}

impl RemoteUrl {
    /// Parse a remote URL: a path, `file://`, `ssh://`, `http(s)://` or `s3://`.
    pub fn parse(url: &str) -> Result<RemoteUrl> {
        let bad = |why: &str| Error::BadRemoteUrl {
            url: url.to_string(),
            why: why.to_string(),
        };
        if url.starts_with("http://") || url.starts_with("https://") {
            let u = url::Url::parse(url).map_err(|e| bad(&e.to_string()))?;
            if u.host_str().is_none() {
                return Err(bad("no host"));
            }
            return Ok(RemoteUrl::Http(url.trim_end_matches('/').to_string()));
        }
        if let Some(rest) = url.strip_prefix("s3://") {
            let (bucket, prefix) = rest.split_once('/').unwrap_or((rest, ""));
            if bucket.is_empty() {
                return Err(bad("no bucket"));
            }
            return Ok(RemoteUrl::S3 {
                bucket: bucket.to_string(),
                prefix: prefix.trim_matches('/').to_string(),
            });
        }
        if url.starts_with("ssh://") {
            let u = url::Url::parse(url).map_err(|e| bad(&e.to_string()))?;
            let host = u.host_str().ok_or_else(|| bad("no host"))?.to_string();
            let path = percent_decode(u.path());
            if path.is_empty() || path == "/" {
                return Err(bad("no path"));
            }
            // ssh://host/~/x means a path relative to the home directory.
            let path = path.strip_prefix("/~/").map(str::to_string).unwrap_or(path);
            return Ok(RemoteUrl::Ssh {
                user: (!u.username().is_empty()).then(|| u.username().to_string()),
                host,
                port: u.port(),
                path,
            });
        }
        if let Some(rest) = url.strip_prefix("file://") {
            if !rest.starts_with('/') {
                return Err(bad("file:// URLs need an absolute path"));
            }
            return Ok(RemoteUrl::Path(PathBuf::from(percent_decode(rest))));
        }
        if url.contains("://") {
            return Err(bad(
                "unknown scheme (use a path, file://, ssh://, http://, https:// or s3://)",
            ));
        }
        if url.is_empty() {
            return Err(bad("empty"));
        }
        Ok(RemoteUrl::Path(PathBuf::from(url)))
    }
}

fn percent_decode(s: &str) -> String {
    url::form_urlencoded::parse(format!("x={}", s.replace('+', "%2B")).as_bytes())
        .next()
        .map(|(_, v)| v.into_owned())
        .unwrap_or_else(|| s.to_string())
}

/// Turn a user-given URL into the form stored in the database (relative paths made absolute).
pub fn normalize(url: &str) -> Result<String> {
    match RemoteUrl::parse(url)? {
        RemoteUrl::Path(p) if !url.starts_with("file://") && p.is_relative() => {
            let abs = std::path::absolute(&p).map_err(|source| Error::Unresolvable {
                url: url.to_string(),
                source,
            })?;
            Ok(abs.to_string_lossy().into_owned())
        }
        _ => Ok(url.to_string()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls() {
        assert_eq!(
            RemoteUrl::parse("ssh://me@h:2222/srv/x").unwrap(),
            RemoteUrl::Ssh {
                user: Some("me".into()),
                host: "h".into(),
                port: Some(2222),
                path: "/srv/x".into()
            }
        );
        assert_eq!(
            RemoteUrl::parse("s3://b/p/q").unwrap(),
            RemoteUrl::S3 {
                bucket: "b".into(),
                prefix: "p/q".into()
            }
        );
        assert_eq!(
            RemoteUrl::parse("file:///tmp/r").unwrap(),
            RemoteUrl::Path("/tmp/r".into())
        );
        assert!(RemoteUrl::parse("ftp://x").is_err());
    }
}
