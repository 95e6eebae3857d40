//! A minimal etcd v3 client over etcd's JSON gRPC gateway (`/v3/kv/range`, `/v3/kv/txn`,
//! `/v3/lease/*`), so dvol needs no protoc and no gRPC stack: keys and values are base64 in
//! JSON, 64-bit numbers come back as strings. Several endpoints (one per cluster member) are
//! tried in order; each request has a short timeout so a partitioned host sees errors quickly.
//! Owns only the wire protocol: what the keys mean is in [`super::lease`]. Blocking: each call
//! runs on a client runtime of its own (`crate::runtime::client_runtime`), so it is safe from
//! any thread that is not itself inside a runtime.

use super::ClusterError;
use crate::Result;
use base64::engine::general_purpose::STANDARD as B64;
use base64::Engine as _;
use serde_json::{json, Value};
use std::time::Duration;

/// How long one request to one endpoint may take.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(2);

/// Rounds over all endpoints before a call fails.
const ATTEMPTS: u32 = 3;

/// Pause between rounds (an etcd election takes about one election timeout, 1 s by default).
const RETRY_PAUSE: Duration = Duration::from_millis(500);

/// etcd refusals that a moment later (or another member) may not repeat.
const TRANSIENT: [&str; 4] = ["leader changed", "no leader", "timed out", "not capable"];

/// Where etcd answers: base URLs such as `http://10.0.0.1:2379`.
#[derive(Clone, Debug)]
pub struct Etcd {
    endpoints: Vec<String>,
}

/// One key as etcd reports it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Kv {
    pub key: String,
    pub value: Vec<u8>,
    pub create_revision: i64,
    pub mod_revision: i64,
}

/// A condition of a transaction.
pub enum Compare<'a> {
    /// The key's create revision (0: the key is absent).
    Created(&'a str, i64),
    /// The key's last modification revision (0: the key is absent).
    Modified(&'a str, i64),
}

/// A write of a transaction.
pub enum Put<'a> {
    /// Set a key, attached to an etcd lease when the id is not 0.
    Set(&'a str, &'a [u8], i64),
    Delete(&'a str),
}

/// What a transaction did: whether the compares held, and at which store revision.
#[derive(Debug)]
pub struct TxnResult {
    pub succeeded: bool,
    pub revision: i64,
}

fn b64(s: &[u8]) -> String {
    B64.encode(s)
}

/// etcd's JSON writes int64 as a string; absent means 0.
fn int(v: &Value) -> i64 {
    match v {
        Value::String(s) => s.parse().unwrap_or(0),
        Value::Number(n) => n.as_i64().unwrap_or(0),
        _ => 0,
    }
}

fn unb64(what: &str, v: &Value) -> Result<Vec<u8>> {
    match v.as_str() {
        None => Ok(Vec::new()),
        Some(s) => B64.decode(s).map_err(|e| {
            ClusterError::Etcd(format!("answered a {what} that is not base64: {e}")).into()
        }),
    }
}

fn kv(v: &Value) -> Result<Kv> {
    let key = String::from_utf8(unb64("key", &v["key"])?)
        .map_err(|_| ClusterError::Etcd("answered a key that is not UTF-8".into()))?;
    Ok(Kv {
        key,
        value: unb64("value", &v["value"])?,
        create_revision: int(&v["create_revision"]),
        mod_revision: int(&v["mod_revision"]),
    })
}

/// The key just after every key starting with `prefix` (etcd's `range_end` of a prefix).
fn prefix_end(prefix: &str) -> Vec<u8> {
    let mut end = prefix.as_bytes().to_vec();
    while let Some(last) = end.pop() {
        if last < 0xff {
            end.push(last + 1);
            return end;
        }
    }
    vec![0]
}

impl Etcd {
    /// A client for a comma-separated list of endpoint URLs.
    pub fn new(endpoints: &str) -> Result<Etcd> {
        let endpoints: Vec<String> = endpoints
            .split(',')
            .map(|e| e.trim().trim_end_matches('/').to_string())
            .filter(|e| !e.is_empty())
            .collect();
        if endpoints.is_empty() {
            return Err(ClusterError::Etcd("endpoints: none given".into()).into());
        }
        for e in &endpoints {
            if !(e.starts_with("http://") || e.starts_with("https://")) {
                return Err(ClusterError::Etcd(format!(
                    "endpoint {e:?}: give an http:// or https:// URL"
                ))
                .into());
            }
        }
        Ok(Etcd { endpoints })
    }

    /// POST `body` to `path` on the first endpoint that answers. Unreachable members and
    /// etcd's transient refusals (a leader election under way) are retried on the next
    /// endpoint, for [`ATTEMPTS`] rounds; any other refusal is an error at once.
    fn call(&self, path: &str, body: &Value) -> Result<Value> {
        self.call_within(path, body, None)
    }

    /// [`Self::call`], giving up once `budget` (if any) has passed: each request's timeout
    /// is cut to what is left, and no round starts after it.
    fn call_within(&self, path: &str, body: &Value, budget: Option<Duration>) -> Result<Value> {
        let start = std::time::Instant::now();
        let left = || budget.map(|b| b.saturating_sub(start.elapsed()));
        let rt = crate::runtime::client_runtime("etcd")?;
        // etcd members are named directly by the operator: no HTTP proxy in between.
        let client = reqwest::Client::builder()
            .no_proxy()
            .timeout(REQUEST_TIMEOUT)
            .build()
            .map_err(|e| ClusterError::Etcd(format!("client: {e}")))?;
        let mut failures = Vec::new();
        for round in 0..ATTEMPTS {
            if round > 0 {
                std::thread::sleep(RETRY_PAUSE.min(left().unwrap_or(RETRY_PAUSE)));
            }
            if left().is_some_and(|l| l.is_zero()) {
                break;
            }
            failures.clear();
            for endpoint in &self.endpoints {
                let url = format!("{endpoint}{path}");
                let timeout = left().map_or(REQUEST_TIMEOUT, |l| l.min(REQUEST_TIMEOUT));
                if timeout.is_zero() {
                    failures.push(format!("{endpoint}: no time left"));
                    continue;
                }
                let answer = rt.block_on(async {
                    let resp = client.post(&url).timeout(timeout).json(body).send().await?;
                    resp.json::<Value>().await
                });
                match answer {
                    Ok(v) if v.get("error").is_some() || v.get("code").is_some() => {
                        let msg = v["error"].as_str().or(v["message"].as_str()).unwrap_or("?");
                        if !TRANSIENT.iter().any(|t| msg.contains(t)) {
                            return Err(ClusterError::Etcd(format!("{url}: {msg}")).into());
                        }
                        failures.push(format!("{endpoint}: {msg}"));
                    }
                    Ok(v) => return Ok(v),
                    Err(e) => failures.push(format!("{endpoint}: {e}")),
                }
            }
        }
        Err(ClusterError::Etcd(format!("unreachable ({})", failures.join("; "))).into())
    }

    /// The key, if present.
    pub fn get(&self, key: &str) -> Result<Option<Kv>> {
        self.get_within(key, None)
    }

    /// [`Self::get`] giving up after `budget`.
    pub fn get_within(&self, key: &str, budget: Option<Duration>) -> Result<Option<Kv>> {
        let v = self.call_within(
            "/v3/kv/range",
            &json!({ "key": b64(key.as_bytes()) }),
            budget,
        )?;
        match v["kvs"].as_array().and_then(|a| a.first()) {
            Some(k) => Ok(Some(kv(k)?)),
            None => Ok(None),
        }
    }

    /// Every key starting with `prefix`, sorted by key.
    pub fn list(&self, prefix: &str) -> Result<Vec<Kv>> {
        let v = self.call(
            "/v3/kv/range",
            &json!({ "key": b64(prefix.as_bytes()), "range_end": b64(&prefix_end(prefix)) }),
        )?;
        v["kvs"]
            .as_array()
            .map(|a| a.iter().map(kv).collect())
            .unwrap_or(Ok(Vec::new()))
    }

    /// Apply `then` if every compare holds, atomically.
    pub fn txn(&self, compares: &[Compare], then: &[Put]) -> Result<TxnResult> {
        let compare: Vec<Value> = compares
            .iter()
            .map(|c| match c {
                Compare::Created(k, rev) => json!({ "key": b64(k.as_bytes()),
                    "target": "CREATE", "result": "EQUAL", "create_revision": rev.to_string() }),
                Compare::Modified(k, rev) => json!({ "key": b64(k.as_bytes()),
                    "target": "MOD", "result": "EQUAL", "mod_revision": rev.to_string() }),
            })
            .collect();
        let success: Vec<Value> = then
            .iter()
            .map(|p| match p {
                Put::Set(k, v, lease) => json!({ "request_put": { "key": b64(k.as_bytes()),
                    "value": b64(v), "lease": lease.to_string() } }),
                Put::Delete(k) => json!({ "request_delete_range": { "key": b64(k.as_bytes()) } }),
            })
            .collect();
        let v = self.call(
            "/v3/kv/txn",
            &json!({ "compare": compare, "success": success }),
        )?;
        Ok(TxnResult {
            succeeded: v["succeeded"].as_bool().unwrap_or(false),
            revision: int(&v["header"]["revision"]),
        })
    }

    /// A new etcd lease of `ttl` seconds; its id.
    pub fn grant(&self, ttl: u64) -> Result<i64> {
        let v = self.call("/v3/lease/grant", &json!({ "TTL": ttl.to_string() }))?;
        match int(&v["ID"]) {
            0 => Err(ClusterError::Etcd("granted no lease".into()).into()),
            id => Ok(id),
        }
    }

    /// Renew a lease; `false` when it has already expired.
    pub fn keep_alive(&self, id: i64) -> Result<bool> {
        self.keep_alive_within(id, None)
    }

    /// [`Self::keep_alive`] giving up after `budget`, so a renewal never outlives the lease.
    pub fn keep_alive_within(&self, id: i64, budget: Option<Duration>) -> Result<bool> {
        let v = self.call_within(
            "/v3/lease/keepalive",
            &json!({ "ID": id.to_string() }),
            budget,
        )?;
        Ok(int(&v["result"]["TTL"]) > 0)
    }

    /// End a lease now, deleting the keys attached to it.
    pub fn revoke(&self, id: i64) -> Result<()> {
        self.call("/v3/lease/revoke", &json!({ "ID": id.to_string() }))
            .map(|_| ())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prefix_end_is_the_next_key() {
        assert_eq!(prefix_end("dvol/a/"), b"dvol/a0".to_vec());
        assert_eq!(int(&json!("42")), 42);
        assert_eq!(int(&Value::Null), 0);
    }
}
