//! An in-memory [`Backend`] for in-process tests of transfer (push, fetch, verify) without a
//! carrier: a map behind a mutex, with the same key checks and compare-and-swap as the real
//! ones, and a hook to damage stored bytes the way a hostile remote would. Test-only.

use super::{check_key, check_prefix, Backend, CasOutcome, RemoteError};
use crate::Result;
use std::collections::BTreeMap;
use std::sync::Mutex;

#[derive(Default)]
pub struct MemBackend {
    keys: Mutex<BTreeMap<String, Vec<u8>>>,
}

impl MemBackend {
    /// Every key under `prefix`.
    pub fn keys(&self, prefix: &str) -> Vec<String> {
        let keys = self.keys.lock().unwrap();
        keys.keys()
            .filter(|k| k.starts_with(prefix))
            .cloned()
            .collect()
    }

    /// Change the stored value of `key` in place.
    pub fn tamper(&self, key: &str, change: impl FnOnce(&mut Vec<u8>)) {
        change(
            self.keys
                .lock()
                .unwrap()
                .get_mut(key)
                .expect("key to tamper with"),
        );
    }
}

impl Backend for MemBackend {
    fn describe(&self) -> String {
        "memory".into()
    }

    fn list(&self, prefix: &str) -> Result<Vec<String>> {
        check_prefix(prefix)?;
        Ok(self
            .keys(prefix)
            .into_iter()
            .filter(|k| !k[prefix.len()..].contains('/'))
            .collect())
    }

    fn get(&self, key: &str) -> Result<Option<Vec<u8>>> {
        check_key(key)?;
        Ok(self.keys.lock().unwrap().get(key).cloned())
    }

    fn get_range(&self, key: &str, offset: u64, len: u64) -> Result<Vec<u8>> {
        let value = self.get(key)?.ok_or_else(|| RemoteError::MissingKey {
            what: "a key".into(),
            key: key.to_string(),
        })?;
        let start = usize::try_from(offset).unwrap_or(usize::MAX);
        let end = start.saturating_add(usize::try_from(len).unwrap_or(usize::MAX));
        value.get(start..end).map(<[u8]>::to_vec).ok_or_else(|| {
            RemoteError::ShortRead {
                remote: self.describe(),
                key: key.to_string(),
                got: value.len().saturating_sub(start) as u64,
                want: len,
            }
            .into()
        })
    }

    fn put(&self, key: &str, data: Vec<u8>) -> Result<()> {
        check_key(key)?;
        self.keys.lock().unwrap().insert(key.to_string(), data);
        Ok(())
    }

    fn cas(&self, key: &str, expected: Option<&[u8]>, new: Vec<u8>) -> Result<CasOutcome> {
        check_key(key)?;
        let mut keys = self.keys.lock().unwrap();
        let current = keys.get(key).cloned();
        if current.as_deref() != expected {
            return Ok(CasOutcome::Conflict { current });
        }
        keys.insert(key.to_string(), new);
        Ok(CasOutcome::Updated)
    }

    fn delete(&self, key: &str) -> Result<()> {
        check_key(key)?;
        self.keys.lock().unwrap().remove(key);
        Ok(())
    }
}
