//! The S3 carrier (`s3://bucket/prefix`) through the `object_store` crate, configured by the
//! settings the caller passes (the CLI passes the usual `AWS_*` variables:
//! `AWS_ENDPOINT_URL`/`AWS_ENDPOINT`, `AWS_REGION`, keys, `AWS_ALLOW_HTTP`). Refs use conditional writes: `If-None-Match: *` to create and
//! `If-Match: <etag>` to update. Servers that ignore those headers are detected by a probe
//! before the first ref update, and dvol warns that concurrent pushes are then unsafe.

use super::{check_key, check_prefix, Backend, CasOutcome, RemoteError};
use crate::{Error, Result};
use object_store::path::Path as ObjPath;
use object_store::{ObjectStore, PutMode, PutOptions, PutPayload, UpdateVersion};
use std::sync::OnceLock;

/// Which conditional-write headers a server honoured in the probe.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CasSupport {
    pub if_none_match: bool,
    pub if_match: bool,
}

/// A remote in an S3 bucket under a prefix.
pub struct S3Backend {
    bucket: String,
    prefix: String,
    store: object_store::aws::AmazonS3,
    rt: tokio::runtime::Runtime,
    support: OnceLock<std::result::Result<CasSupport, String>>,
}

impl S3Backend {
    /// A client for `s3://bucket/prefix`; `config` holds object_store settings by key name
    /// (`aws_endpoint`, `aws_access_key_id`, ...): the CLI passes the `AWS_*` environment.
    /// `retry_timeout` bounds how long a failing request is retried.
    pub fn new(
        bucket: &str,
        prefix: &str,
        config: &[(String, String)],
        retry_timeout: Option<std::time::Duration>,
    ) -> Result<S3Backend> {
        let mut builder = object_store::aws::AmazonS3Builder::new();
        if let Some(retry_timeout) = retry_timeout {
            builder = builder.with_retry(object_store::RetryConfig {
                retry_timeout,
                ..Default::default()
            });
        }
        for (name, value) in config {
            // Like object_store's own from_env: settings it does not know are not for it.
            match name.to_ascii_lowercase().parse() {
                Ok(key) => builder = builder.with_config(key, value),
                Err(_) => tracing::debug!(setting = %name, "not an S3 client setting, ignored"),
            }
        }
        let store = builder
            .with_bucket_name(bucket)
            .with_conditional_put(object_store::aws::S3ConditionalPut::ETagMatch)
            .build()
            .map_err(|e| RemoteError::setup(format!("s3://{bucket}/{prefix}"), e))?;
        let rt = crate::runtime::client_runtime("the S3 client")?;
        Ok(S3Backend {
            bucket: bucket.to_string(),
            prefix: prefix.to_string(),
            store,
            rt,
            support: OnceLock::new(),
        })
    }

    fn path(&self, key: &str) -> ObjPath {
        if self.prefix.is_empty() {
            ObjPath::from(key)
        } else {
            ObjPath::from(format!("{}/{key}", self.prefix))
        }
    }

    fn err(&self, what: &str, key: &str, e: object_store::Error) -> Error {
        RemoteError::transport(format!("{} {what} {key}", self.describe()), e)
    }

    async fn get_with_etag(&self, key: &str) -> Result<Option<(Vec<u8>, Option<String>)>> {
        match self.store.get(&self.path(key)).await {
            Ok(r) => {
                let etag = r.meta.e_tag.clone();
                let bytes = r.bytes().await.map_err(|e| self.err("read", key, e))?;
                Ok(Some((bytes.to_vec(), etag)))
            }
            Err(object_store::Error::NotFound { .. }) => Ok(None),
            Err(e) => Err(self.err("read", key, e)),
        }
    }

    /// Probe which conditional-write headers the server honours (once per process).
    pub fn cas_support(&self) -> Result<CasSupport> {
        self.support
            .get_or_init(|| {
                let r = self.probe().map_err(|e| e.to_string());
                tracing::info!("{}: conditional writes honoured: {r:?}", self.describe());
                r
            })
            .clone()
            .map_err(|e| RemoteError::CasProbe(e).into())
    }

    fn probe(&self) -> Result<CasSupport> {
        let key = format!("probe/{}", hex::encode(rand::random::<[u8; 12]>()));
        let path = self.path(&key);
        self.rt.block_on(async {
            let create = |data: &'static [u8]| {
                PutOptions {
                    mode: PutMode::Create,
                    ..Default::default()
                }
                .with_payload(data)
            };
            let (opts, payload) = create(b"1");
            self.store
                .put_opts(&path, payload, opts)
                .await
                .map_err(|e| self.err("write", &key, e))?;
            let (opts, payload) = create(b"2");
            let if_none_match = match self.store.put_opts(&path, payload, opts).await {
                Ok(_) => {
                    tracing::info!("If-None-Match: * ignored: the second create succeeded");
                    false
                }
                Err(object_store::Error::AlreadyExists { .. })
                | Err(object_store::Error::Precondition { .. }) => true,
                Err(e) => {
                    tracing::info!("If-None-Match: * failed: {e}");
                    false
                }
            };
            let wrong = UpdateVersion {
                e_tag: Some("\"00000000000000000000000000000000\"".into()),
                version: None,
            };
            let if_match = match self
                .store
                .put_opts(
                    &path,
                    PutPayload::from_static(b"3"),
                    PutOptions {
                        mode: PutMode::Update(wrong),
                        ..Default::default()
                    },
                )
                .await
            {
                Ok(_) => {
                    tracing::info!("If-Match ignored: an update with a wrong ETag succeeded");
                    false
                }
                Err(object_store::Error::Precondition { .. })
                | Err(object_store::Error::AlreadyExists { .. }) => true,
                Err(e) => {
                    tracing::info!("If-Match failed: {e}");
                    false
                }
            };
            let _ = self.store.delete(&path).await;
            Ok(CasSupport {
                if_none_match,
                if_match,
            })
        })
    }
}

trait WithPayload {
    fn with_payload(self, data: &'static [u8]) -> (PutOptions, PutPayload);
}

impl WithPayload for PutOptions {
    fn with_payload(self, data: &'static [u8]) -> (PutOptions, PutPayload) {
        (self, PutPayload::from_static(data))
    }
}

impl S3Backend {
    /// The valid `what` names directly under `top/` of the remote.
    fn list_names(&self, top: &str, what: &'static str) -> Result<Vec<String>> {
        let dir = self.path(top);
        self.rt.block_on(async {
            let listing = self
                .store
                .list_with_delimiter(Some(&dir))
                .await
                .map_err(|e| self.err("list", &format!("{top}/"), e))?;
            Ok(listing
                .common_prefixes
                .iter()
                .filter_map(|p| p.filename().map(str::to_string))
                .filter(|v| crate::names::validate(what, v).is_ok())
                .collect())
        })
    }
}

impl Backend for S3Backend {
    fn describe(&self) -> String {
        if self.prefix.is_empty() {
            format!("s3://{}", self.bucket)
        } else {
            format!("s3://{}/{}", self.bucket, self.prefix)
        }
    }

    fn list(&self, prefix: &str) -> Result<Vec<String>> {
        check_prefix(prefix)?;
        let dir = self.path(prefix.trim_end_matches('/'));
        let base = if self.prefix.is_empty() {
            String::new()
        } else {
            format!("{}/", self.prefix)
        };
        self.rt.block_on(async {
            let listing = self
                .store
                .list_with_delimiter(Some(&dir))
                .await
                .map_err(|e| self.err("list", prefix, e))?;
            Ok(listing
                .objects
                .into_iter()
                .filter_map(|o| o.location.as_ref().strip_prefix(&base).map(str::to_string))
                .filter(|k| k.starts_with(prefix) && check_key(k).is_ok())
                .collect())
        })
    }

    fn list_volumes(&self) -> Result<Vec<String>> {
        self.list_names("refs", "volume")
    }

    fn list_groups(&self) -> Result<Vec<String>> {
        self.list_names("groups", "group")
    }

    fn get(&self, key: &str) -> Result<Option<Vec<u8>>> {
        check_key(key)?;
        self.rt
            .block_on(self.get_with_etag(key))
            .map(|o| o.map(|(b, _)| b))
    }

    fn get_range(&self, key: &str, offset: u64, len: u64) -> Result<Vec<u8>> {
        check_key(key)?;
        let bytes = self
            .rt
            .block_on(self.store.get_range(&self.path(key), offset..offset + len))
            .map_err(|e| self.err("read", key, e))?;
        if bytes.len() as u64 != len {
            return Err(RemoteError::ShortRead {
                remote: self.describe(),
                key: key.to_string(),
                got: bytes.len() as u64,
                want: len,
            }
            .into());
        }
        Ok(bytes.to_vec())
    }

    fn put(&self, key: &str, data: Vec<u8>) -> Result<()> {
        check_key(key)?;
        self.rt
            .block_on(self.store.put(&self.path(key), PutPayload::from(data)))
            .map(|_| ())
            .map_err(|e| self.err("write", key, e))
    }

    fn cas(&self, key: &str, expected: Option<&[u8]>, new: Vec<u8>) -> Result<CasOutcome> {
        check_key(key)?;
        let path = self.path(key);
        self.rt.block_on(async {
            let mode = match expected {
                None => PutMode::Create,
                Some(exp) => match self.get_with_etag(key).await? {
                    None => return Ok(CasOutcome::Conflict { current: None }),
                    Some((cur, _)) if cur != exp => {
                        return Ok(CasOutcome::Conflict { current: Some(cur) })
                    }
                    Some((_, etag)) => PutMode::Update(UpdateVersion {
                        e_tag: etag,
                        version: None,
                    }),
                },
            };
            let opts = PutOptions {
                mode,
                ..Default::default()
            };
            match self
                .store
                .put_opts(&path, PutPayload::from(new), opts)
                .await
            {
                Ok(_) => Ok(CasOutcome::Updated),
                Err(object_store::Error::AlreadyExists { .. })
                | Err(object_store::Error::Precondition { .. }) => {
                    let current = self.get_with_etag(key).await?.map(|(b, _)| b);
                    Ok(CasOutcome::Conflict { current })
                }
                Err(e) => Err(self.err("write", key, e)),
            }
        })
    }

    fn delete(&self, key: &str) -> Result<()> {
        check_key(key)?;
        match self.rt.block_on(self.store.delete(&self.path(key))) {
            Ok(()) | Err(object_store::Error::NotFound { .. }) => Ok(()),
            Err(e) => Err(self.err("delete", key, e)),
        }
    }

    fn cas_warning(&self) -> Option<String> {
        let missing = match self.cas_support() {
            Ok(CasSupport {
                if_none_match: true,
                if_match: true,
            }) => return None,
            Ok(s) => {
                let mut m = Vec::new();
                if !s.if_none_match {
                    m.push("If-None-Match");
                }
                if !s.if_match {
                    m.push("If-Match");
                }
                m.join(" and ")
            }
            Err(e) => format!("conditional writes (probe failed: {e})"),
        };
        Some(format!(
            "{} does not honour {missing} on PUT: ref updates cannot be made atomic, so concurrent pushes to this remote are NOT safe (push from one place at a time)",
            self.describe()
        ))
    }
}
