//! The background keeper of held containers in a long-lived process (the plugin): a record
//! whose containers could not be let go (an unpause or start refused, or not answered) is
//! kept, locked by this process, and its containers are tried again with backoff until they
//! are back; and the records of dead dvol commands are rolled forward every 30 s, not only
//! when the plugin starts. Short-lived commands have no keeper: what they cannot let go is
//! left to the next dvol command. It never holds containers itself.

use super::release::{self, Failed};
use super::Engine;
use std::path::{Path, PathBuf};
use std::sync::{Mutex, OnceLock};
use std::time::{Duration, Instant};

/// How often dead records are rolled forward.
const RECOVER_EVERY: Duration = Duration::from_secs(30);
/// The first wait before a failed release is tried again; doubled after each failure…
const FIRST_BACKOFF: Duration = Duration::from_secs(1);
/// … up to this.
const MAX_BACKOFF: Duration = Duration::from_secs(30);
/// How often the keeper looks at what is due.
const TICK: Duration = Duration::from_millis(200);

/// A record waiting for its containers to be let go.
struct Pending {
    failed: Failed,
    tries: u32,
    next: Instant,
    backoff: Duration,
}

/// The keeper of this process's root.
struct Keeper {
    root: PathBuf,
    pending: Mutex<Vec<Pending>>,
}

static KEEPER: OnceLock<Keeper> = OnceLock::new();

/// Start keeping the held containers of the dvol root `root` in this process: roll the dead
/// records forward now (before returning), then in the background, and retry what fails.
/// Once per process (a second call does nothing).
pub fn start(root: &Path) {
    if KEEPER.get().is_some() {
        return;
    }
    let keeper = KEEPER.get_or_init(|| Keeper {
        root: root.to_path_buf(),
        pending: Mutex::new(Vec::new()),
    });
    let engine = super::held::anything_to_recover(root)
        .then(Engine::connect)
        .flatten();
    if let Some(engine) = &engine {
        keeper.recover(engine);
    }
    let spawned = std::thread::Builder::new()
        .name("dvol-held".into())
        .spawn(move || keeper.run(engine));
    if let Err(e) = spawned {
        tracing::error!("cannot start the keeper of held containers: {e}");
    }
}

/// Hand a record whose containers could not be let go to this process's keeper, if it has
/// one for `root`; it is given back when there is none.
pub fn hand_over(root: &Path, failed: Failed) -> Option<Failed> {
    match KEEPER.get() {
        Some(k) if k.root == root => {
            k.add(failed);
            None
        }
        _ => Some(failed),
    }
}

impl Keeper {
    fn add(&self, failed: Failed) {
        tracing::warn!(
            "containers not let go, retried in the background: {}",
            release::describe(&failed.errors)
        );
        self.pending().push(Pending {
            failed,
            tries: 1,
            next: Instant::now() + FIRST_BACKOFF,
            backoff: FIRST_BACKOFF,
        });
    }

    fn pending(&self) -> std::sync::MutexGuard<'_, Vec<Pending>> {
        self.pending.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The keeper's loop, for the life of the process.
    fn run(&self, mut engine: Option<Engine>) {
        let every = crate::failpoint::knob("DVOL_TEST_HELD_RECOVER_MS")
            .map_or(RECOVER_EVERY, Duration::from_millis);
        let mut recovered = Instant::now();
        loop {
            std::thread::sleep(TICK);
            let due = recovered.elapsed() >= every;
            let work = due && super::held::anything_to_recover(&self.root);
            if engine.is_none() && (work || !self.pending().is_empty()) {
                engine = Engine::connect();
            }
            let Some(e) = &engine else { continue };
            if due {
                self.recover(e);
                recovered = Instant::now();
            }
            self.retry_due(e);
        }
    }

    /// Roll the dead records forward; what fails is retried.
    fn recover(&self, engine: &Engine) {
        if !super::held::anything_to_recover(&self.root) {
            return;
        }
        let root = self.root.clone();
        let settled = move |volumes: &[String]| super::settled(&root, volumes);
        match release::recover(engine, &self.root, &settled) {
            Ok(r) => {
                if !r.let_go.is_empty() {
                    tracing::warn!(
                        "let go containers {} held by an interrupted dvol command",
                        r.let_go.join(",")
                    );
                }
                for failed in r.failed {
                    self.add(failed);
                }
            }
            Err(e) => tracing::warn!("containers held by an interrupted dvol command: {e}"),
        }
    }

    /// Try again the records whose wait is over.
    fn retry_due(&self, engine: &Engine) {
        let now = Instant::now();
        let due: Vec<Pending> = {
            let mut pending = self.pending();
            let (due, wait) = pending.drain(..).partition(|p| p.next <= now);
            *pending = wait;
            due
        };
        for p in due {
            let names = release::describe(&p.failed.errors);
            match release::let_go(engine, &self.root, p.failed.journal) {
                None => tracing::warn!("let go containers after {} tries: {names}", p.tries + 1),
                Some(failed) => {
                    let backoff = (p.backoff * 2).min(MAX_BACKOFF);
                    tracing::warn!(
                        "containers still not let go (try {}), again in {} s: {}",
                        p.tries + 1,
                        backoff.as_secs(),
                        release::describe(&failed.errors)
                    );
                    self.pending().push(Pending {
                        failed,
                        tries: p.tries + 1,
                        next: Instant::now() + backoff,
                        backoff,
                    });
                }
            }
        }
    }
}
