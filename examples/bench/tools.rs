//! The tools under test. Each keeps its store in its own directory under the work dir, made
//! fresh by `setup`. Setup (repository init) is not timed.

use crate::data::dir_size;
use crate::measure::{run, sh, Meas};
use anyhow::{Context, Result};
use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;

pub trait Tool {
    fn name(&self) -> &'static str;
    /// Creates a fresh, empty store (untimed).
    fn setup(&mut self) -> Result<()>;
    /// Where the tool needs the data to be (dvol snapshots its own live directory); the driver
    /// moves the data set there for the run. `None`: anywhere.
    fn live_dir(&self) -> Option<PathBuf> {
        None
    }
    fn first_snapshot(&mut self, src: &Path) -> Result<Meas>;
    fn incremental_snapshot(&mut self, src: &Path) -> Result<Meas>;
    /// Materializes the latest snapshot in full into the empty directory `dest`.
    fn restore(&mut self, dest: &Path) -> Result<Meas>;
    fn store_size(&self) -> Result<u64>;
}

fn fresh(dir: &Path) -> Result<()> {
    if dir.exists() {
        fs::remove_dir_all(dir).with_context(|| format!("removing {}", dir.display()))?;
    }
    fs::create_dir_all(dir)?;
    Ok(())
}

fn q(p: &Path) -> String {
    format!("'{}'", p.display().to_string().replace('\'', "'\\''"))
}

// ---------------------------------------------------------------- dvol

pub struct Dvol {
    pub bin: PathBuf,
    pub root: PathBuf,
    pub logs: PathBuf,
    restores: u32,
}

pub const VOLUME: &str = "bench";

impl Dvol {
    pub fn new(bin: PathBuf, work: &Path) -> Dvol {
        Dvol {
            bin,
            root: work.join("dvol-root"),
            logs: work.to_path_buf(),
            restores: 0,
        }
    }
    pub fn cmd(&self) -> Command {
        let mut c = Command::new(&self.bin);
        c.arg("-p")
            .arg(&self.root)
            .arg("--disable-docker-integration")
            .arg("-q");
        c
    }
    pub fn run(&self, args: &[&str]) -> Result<(Meas, String)> {
        run(self.cmd().args(args), &self.logs)
    }
}

impl Tool for Dvol {
    fn name(&self) -> &'static str {
        "dvol"
    }
    fn setup(&mut self) -> Result<()> {
        fresh(&self.root)?;
        self.run(&["init", VOLUME])?;
        self.restores = 0;
        Ok(())
    }
    fn live_dir(&self) -> Option<PathBuf> {
        Some(self.root.join(VOLUME).join("branches").join("master"))
    }
    fn first_snapshot(&mut self, _src: &Path) -> Result<Meas> {
        Ok(self.run(&["commit", "-m", "first"])?.0)
    }
    fn incremental_snapshot(&mut self, _src: &Path) -> Result<Meas> {
        Ok(self.run(&["commit", "-m", "second"])?.0)
    }
    fn restore(&mut self, _dest: &Path) -> Result<Meas> {
        // `checkout -b` materializes HEAD in full into a new branch directory (forced: a thin
        // clone, which `auto` picks where it can, is not a restore). Through the environment,
        // which builds older than the flag ignore (examples/bench-baseline.sh runs them).
        self.restores += 1;
        let name = format!("restored{}", self.restores);
        let m = run(
            self.cmd()
                .env("DVOL_CLONE_METHOD", "full")
                .args(["checkout", "-b", &name]),
            &self.logs,
        )?
        .0;
        self.run(&["checkout", "master"])?;
        Ok(m)
    }
    fn store_size(&self) -> Result<u64> {
        dir_size(&self.root.join(".dvol"))
    }
}

// ---------------------------------------------------------------- cp -a per commit

pub struct CpA {
    store: PathBuf,
    logs: PathBuf,
}

impl CpA {
    pub fn new(work: &Path) -> CpA {
        CpA {
            store: work.join("cp-store"),
            logs: work.to_path_buf(),
        }
    }
}

impl Tool for CpA {
    fn name(&self) -> &'static str {
        "cp -a"
    }
    fn setup(&mut self) -> Result<()> {
        fresh(&self.store)
    }
    fn first_snapshot(&mut self, src: &Path) -> Result<Meas> {
        let c = &mut Command::new("cp");
        Ok(run(c.arg("-a").arg(src).arg(self.store.join("1")), &self.logs)?.0)
    }
    fn incremental_snapshot(&mut self, src: &Path) -> Result<Meas> {
        let c = &mut Command::new("cp");
        Ok(run(c.arg("-a").arg(src).arg(self.store.join("2")), &self.logs)?.0)
    }
    /// `cp -a` then `sync -f` (syncfs of the destination's file system): dvol's restore ends
    /// with a syncfs too, so the peer's timing includes writing the data out.
    fn restore(&mut self, dest: &Path) -> Result<Meas> {
        let script = format!(
            "cp -a {} {} && sync -f {}",
            q(&self.store.join("2/.")),
            q(dest),
            q(dest)
        );
        Ok(run(&mut sh(&script), &self.logs)?.0)
    }
    fn store_size(&self) -> Result<u64> {
        dir_size(&self.store)
    }
}

// ---------------------------------------------------------------- tar | zstd -1 -T0

pub struct TarZstd {
    store: PathBuf,
    logs: PathBuf,
}

impl TarZstd {
    pub fn new(work: &Path) -> TarZstd {
        TarZstd {
            store: work.join("tar-store"),
            logs: work.to_path_buf(),
        }
    }
    fn snapshot(&self, src: &Path, n: u32) -> Result<Meas> {
        let out = self.store.join(format!("{n}.tar.zst"));
        let script = format!("tar -C {} -cf - . | zstd -1 -T0 -q -o {}", q(src), q(&out));
        Ok(run(&mut sh(&script), &self.logs)?.0)
    }
}

impl Tool for TarZstd {
    fn name(&self) -> &'static str {
        "tar|zstd"
    }
    fn setup(&mut self) -> Result<()> {
        fresh(&self.store)
    }
    fn first_snapshot(&mut self, src: &Path) -> Result<Meas> {
        self.snapshot(src, 1)
    }
    fn incremental_snapshot(&mut self, src: &Path) -> Result<Meas> {
        self.snapshot(src, 2)
    }
    fn restore(&mut self, dest: &Path) -> Result<Meas> {
        let script = format!(
            "zstd -dc -q {} | tar -C {} -xf -",
            q(&self.store.join("2.tar.zst")),
            q(dest)
        );
        Ok(run(&mut sh(&script), &self.logs)?.0)
    }
    fn store_size(&self) -> Result<u64> {
        dir_size(&self.store)
    }
}

// ---------------------------------------------------------------- restic

pub struct Restic {
    store: PathBuf,
    cache: PathBuf,
    logs: PathBuf,
}

impl Restic {
    pub fn new(work: &Path) -> Restic {
        Restic {
            store: work.join("restic-store"),
            cache: work.join("restic-cache"),
            logs: work.to_path_buf(),
        }
    }
    fn cmd(&self) -> Command {
        let mut c = Command::new("restic");
        c.env("RESTIC_REPOSITORY", &self.store)
            .env("RESTIC_PASSWORD", "bench")
            .env("RESTIC_CACHE_DIR", &self.cache)
            .arg("--quiet");
        c
    }
}

impl Tool for Restic {
    fn name(&self) -> &'static str {
        "restic"
    }
    fn setup(&mut self) -> Result<()> {
        fresh(&self.cache)?;
        if self.store.exists() {
            fs::remove_dir_all(&self.store)?;
        }
        run(self.cmd().arg("init"), &self.logs)?;
        Ok(())
    }
    fn first_snapshot(&mut self, src: &Path) -> Result<Meas> {
        Ok(run(
            self.cmd().args(["backup", "--host", "bench"]).arg(src),
            &self.logs,
        )?
        .0)
    }
    fn incremental_snapshot(&mut self, src: &Path) -> Result<Meas> {
        self.first_snapshot(src)
    }
    fn restore(&mut self, dest: &Path) -> Result<Meas> {
        let c = &mut self.cmd();
        Ok(run(
            c.args(["restore", "latest", "--target"]).arg(dest),
            &self.logs,
        )?
        .0)
    }
    fn store_size(&self) -> Result<u64> {
        dir_size(&self.store)
    }
}

// ---------------------------------------------------------------- borg

pub struct Borg {
    store: PathBuf,
    base: PathBuf,
    logs: PathBuf,
}

impl Borg {
    pub fn new(work: &Path) -> Borg {
        Borg {
            store: work.join("borg-store"),
            base: work.join("borg-base"),
            logs: work.to_path_buf(),
        }
    }
    fn cmd(&self) -> Command {
        let mut c = Command::new("borg");
        c.env("BORG_REPO", &self.store)
            .env("BORG_BASE_DIR", &self.base)
            .env("BORG_UNKNOWN_UNENCRYPTED_REPO_ACCESS_IS_OK", "yes")
            .env("BORG_RELOCATED_REPO_ACCESS_IS_OK", "yes");
        c
    }
    fn create(&self, src: &Path, name: &str) -> Result<Meas> {
        let c = &mut self.cmd();
        c.current_dir(src)
            .args(["create", "--compression", "zstd"])
            .arg(format!("::{name}"))
            .arg(".");
        Ok(run(c, &self.logs)?.0)
    }
}

impl Tool for Borg {
    fn name(&self) -> &'static str {
        "borg"
    }
    fn setup(&mut self) -> Result<()> {
        fresh(&self.base)?;
        if self.store.exists() {
            fs::remove_dir_all(&self.store)?;
        }
        run(self.cmd().args(["init", "-e", "none"]), &self.logs)?;
        Ok(())
    }
    fn first_snapshot(&mut self, src: &Path) -> Result<Meas> {
        self.create(src, "s1")
    }
    fn incremental_snapshot(&mut self, src: &Path) -> Result<Meas> {
        self.create(src, "s2")
    }
    fn restore(&mut self, dest: &Path) -> Result<Meas> {
        let c = &mut self.cmd();
        Ok(run(c.current_dir(dest).args(["extract", "::s2"]), &self.logs)?.0)
    }
    fn store_size(&self) -> Result<u64> {
        dir_size(&self.store)
    }
}

pub fn make(name: &str, work: &Path, dvol_bin: &Path) -> Result<Box<dyn Tool>> {
    Ok(match name {
        "dvol" => Box::new(Dvol::new(dvol_bin.to_path_buf(), work)),
        "cp" => Box::new(CpA::new(work)),
        "tar" => Box::new(TarZstd::new(work)),
        "restic" => Box::new(Restic::new(work)),
        "borg" => Box::new(Borg::new(work)),
        other => anyhow::bail!("unknown tool {other} (dvol, cp, tar, restic, borg)"),
    })
}
