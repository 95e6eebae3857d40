//! Taking a hold on the containers that use some volumes, under the journal lock
//! ([`held::lock`]): which of them this hold pauses or stops, the record naming them written
//! (durable) before the first is touched, then all of them paused or stopped at once.
//!
//! A container already paused that a record names (live or dead) is held by another dvol
//! command: this hold shares it (names it, does not pause it again), and whichever hold lets
//! go last unpauses it (`docker::release`). One paused that no record names is the user's own
//! pause: left alone. Dead records of the same volumes or containers whose volumes are
//! settled are taken over (their containers let go with this hold's). Before a pause, a
//! `docker exec` still being started is given a few short waits to start (its process frozen
//! half-started would keep Docker's unpause waiting). It never lets containers go and never
//! decides which containers use a volume (the engine lists them).

use super::engine::State;
use super::held::{self, Entry, Journal, Record};
use super::{Action, Container, Engine, Quiesce};
use crate::{failpoint, Error, Result};
use std::path::Path;
use std::time::Duration;

/// How many times a pause waits for the `docker exec` sessions being started.
const EXEC_TRIES: u32 = 5;
/// The first wait for them (each next one is this much longer).
const EXEC_WAIT: Duration = Duration::from_millis(50);

/// A hold taken: its record and what happened to the containers.
pub struct Hold {
    /// The record naming every container this hold must let go (`None`: nothing held).
    pub journal: Option<Journal>,
    /// The containers this hold paused or stopped itself.
    pub acted: Vec<Container>,
    /// The first pause or stop that failed (the record names every container tried).
    pub error: Option<Error>,
}

/// Hold the containers of `using` (found using `volumes`) as `how` says, for `what`. Dead
/// records `settled` accepts that name any of `volumes` or of these containers are taken over.
pub fn take(
    engine: &Engine,
    root: &Path,
    using: &[Container],
    volumes: &[&str],
    how: Quiesce,
    what: &str,
    settled: &dyn Fn(&[String]) -> bool,
) -> Result<Hold> {
    let journal_lock = held::lock(root)?;
    let adopted: Vec<Journal> = journal_lock
        .dead()?
        .into_iter()
        .filter(|j| concerns(&j.record, volumes, using) && settled(&j.record.volumes))
        .collect();
    let named = journal_lock.named_elsewhere(&[])?;
    let mut entries = Vec::new();
    let mut acted = Vec::new();
    let mut with_execs = Vec::new();
    for c in using {
        let Some(status) = engine.status(&c.id)? else {
            continue;
        };
        let entry = Entry {
            id: c.id.clone(),
            name: c.name.clone(),
            paused: how == Quiesce::Pause,
            pid: status.pid,
        };
        match (how, status.state) {
            (Quiesce::Pause, State::Paused) if named.contains(&c.id) => entries.push(entry),
            (Quiesce::Pause, State::Running) | (Quiesce::Stop, State::Running | State::Paused) => {
                entries.push(entry);
                acted.push(c.clone());
                if status.execs {
                    with_execs.push(c.clone());
                }
            }
            _ => {}
        }
    }
    let Some(record) = record(what, volumes, entries, &adopted) else {
        return Ok(Hold {
            journal: None,
            acted,
            error: None,
        });
    };
    // Durable before the first container is held: a dvol killed from here on leaves a record
    // the next command rolls forward, never an app frozen for good.
    let journal = journal_lock.write(record)?;
    for old in adopted {
        old.finish(&journal_lock)?;
    }
    let results = match how {
        Quiesce::Pause => {
            wait_for_execs(engine, &with_execs);
            engine.each(Action::Pause, &acted)
        }
        Quiesce::Stop => engine.each(Action::Stop, &acted),
    };
    failpoint::hit("guard.after-hold");
    Ok(Hold {
        journal: Some(journal),
        acted,
        error: results.into_iter().find_map(|r| r.err()),
    })
}

/// Whether dead record `r` is about any of `volumes` or of the containers `using`.
fn concerns(r: &Record, volumes: &[&str], using: &[Container]) -> bool {
    r.volumes.iter().any(|v| volumes.contains(&v.as_str()))
        || r.containers
            .iter()
            .any(|e| using.iter().any(|c| c.id == e.id))
}

/// The record of this hold: its own `entries` and the containers of the `adopted` records
/// (each once); `None` when there is nothing to hold.
fn record(
    what: &str,
    volumes: &[&str],
    mut entries: Vec<Entry>,
    adopted: &[Journal],
) -> Option<Record> {
    if entries.is_empty() && adopted.is_empty() {
        return None;
    }
    let mut all_volumes: Vec<String> = volumes.iter().map(ToString::to_string).collect();
    for j in adopted {
        for e in &j.record.containers {
            if !entries.iter().any(|c| c.id == e.id) {
                entries.push(e.clone());
            }
        }
        all_volumes.extend(j.record.volumes.iter().cloned());
    }
    all_volumes.sort();
    all_volumes.dedup();
    Some(Record {
        what: what.to_string(),
        volumes: all_volumes,
        containers: entries,
    })
}

/// Give the `docker exec` sessions of `containers` being started a few short waits
/// ([`EXEC_TRIES`]) to start, before they are paused.
fn wait_for_execs(engine: &Engine, containers: &[Container]) {
    for attempt in 1..=EXEC_TRIES {
        let starting: Vec<&Container> = containers
            .iter()
            .filter(|c| engine.exec_starting(&c.id).unwrap_or(false))
            .collect();
        if starting.is_empty() {
            return;
        }
        if attempt == EXEC_TRIES {
            let names: Vec<&str> = starting.iter().map(|c| c.name.as_str()).collect();
            tracing::info!(
                "pausing {} with a docker exec still being started",
                names.join(",")
            );
            return;
        }
        std::thread::sleep(EXEC_WAIT * attempt);
    }
}

#[cfg(test)]
mod tests {
    use super::held::entry;
    use super::*;

    #[test]
    fn a_dead_record_of_a_shared_container_concerns_the_hold() {
        let r = Record {
            what: "commit".into(),
            volumes: vec!["b".into()],
            containers: vec![entry("c1")],
        };
        let c1 = Container {
            id: "c1".into(),
            name: "/c1".into(),
            paused: true,
        };
        assert!(concerns(&r, &["a"], std::slice::from_ref(&c1)));
        assert!(concerns(&r, &["b"], &[]));
        assert!(!concerns(&r, &["a"], &[]));
    }
}
