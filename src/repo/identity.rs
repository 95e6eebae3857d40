//! Author identity and user config (`dvol config`): `user.name` and `user.email` stored in the
//! root's metadata, else the user's git configuration (via git2), else `$USER@hostname`.

use super::{db, Repo};
use crate::{Error, Result};

/// The config keys dvol knows.
pub const CONFIG_KEYS: [&str; 2] = ["user.name", "user.email"];

impl Repo {
    /// Set a config value.
    pub fn config_set(&self, key: &str, value: &str) -> Result<()> {
        check_key(key)?;
        db::set_meta(&self.conn, &format!("config.{key}"), value)
    }

    /// A config value as stored in this root (no fallback).
    pub fn config_get(&self, key: &str) -> Result<Option<String>> {
        check_key(key)?;
        db::get_meta(&self.conn, &format!("config.{key}"))
    }

    /// Every key with its effective value and where it came from.
    pub fn config_list(&self) -> Result<Vec<(String, String)>> {
        let (name, email) = self.identity()?;
        Ok(vec![
            ("user.name".into(), name),
            ("user.email".into(), email),
        ])
    }

    /// The author as (name, email): dvol config, then git config, then a fallback.
    pub fn identity(&self) -> Result<(String, String)> {
        let git = git2::Config::open_default().ok();
        let from_git = |key: &str| git.as_ref().and_then(|c| c.get_string(key).ok());
        let user = std::env::var("USER").unwrap_or_else(|_| "dvol".into());
        let name = self
            .config_get("user.name")?
            .or_else(|| from_git("user.name"))
            .unwrap_or_else(|| user.clone());
        let email = self
            .config_get("user.email")?
            .or_else(|| from_git("user.email"))
            .unwrap_or_else(|| format!("{user}@{}", hostname()));
        Ok((name, email))
    }
}

fn check_key(key: &str) -> Result<()> {
    if CONFIG_KEYS.contains(&key) {
        Ok(())
    } else {
        Err(Error::UnknownConfigKey(key.to_string()))
    }
}

fn hostname() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|h| h.trim().to_string())
        .ok()
        .filter(|h| !h.is_empty())
        .unwrap_or_else(|| "localhost".into())
}
