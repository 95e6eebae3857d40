//! dvol beside cp -a, tar|zstd, restic and borg on the same deterministic data (issue 4).
//!
//!     cargo run --release --example bench -- [--size-gib 1] [--runs 3] [--seed 42]
//!         [--work DIR] [--sets pg,mariadb,db,small,unchanged]
//!         [--tools dvol,cp,tar,restic,borg] [--pg-scale 64] [--db-secs 30]
//!         [--maria-tables 8] [--maria-rows 400000] [--insertion]
//!         [--scaling [--scale-sizes 0.25,1,4,16] [--scale-files 20000,200000,2000000]]
//!         [--out docs/benchmarks]
//!
//! The peers must be on PATH (Debian: restic, borgbackup, rsync, zstd). The real database
//! sets (`pg`, `mariadb`, see dbs.rs) install postgresql-15, mariadb-server and sysbench with
//! apt-get when they are missing and the bench runs as root.
//! All runs are warm-cache (dropping the page cache needs root and is not reliable on a
//! shared machine). Results: a table on stdout, and results.md / results.json / *.svg in --out.

mod chunking;
mod compression;
mod data;
mod dbs;
mod measure;
mod report;
mod tools;

use anyhow::{bail, Context, Result};
use clap::Parser;
use measure::{run, Meas};
use serde::{Deserialize, Serialize};
use std::collections::BTreeSet;
use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;
use tools::{Dvol, TarZstd, Tool};

#[derive(Parser, Debug, Clone)]
#[allow(clippy::struct_excessive_bools)] // command-line switches
struct Args {
    /// Size of the database-like set in GiB (rounded to 64 MiB segments).
    #[arg(long, default_value_t = 1.0)]
    size_gib: f64,
    /// Runs per tool and set (fresh stores each run); figures are medians.
    #[arg(long, default_value_t = 3)]
    runs: usize,
    #[arg(long, default_value_t = 42)]
    seed: u64,
    /// Scratch directory (data sets and stores; needs ~6x --size-gib; --scaling needs 2.3x its
    /// largest size: the data, its restore and the store, and 2 GB per 200k files).
    #[arg(long, default_value = "/tmp/dvol-bench")]
    work: PathBuf,
    #[arg(
        long,
        value_delimiter = ',',
        default_value = "pg,mariadb,db,small,unchanged"
    )]
    sets: Vec<String>,
    /// `pgbench -i -s N` for the PostgreSQL set (64: about 1 GiB of tables, 1.8 GB with WAL).
    #[arg(long, default_value_t = 64)]
    pg_scale: u32,
    /// Seconds of client traffic (pgbench, sysbench) between the two snapshots.
    #[arg(long, default_value_t = 30)]
    db_secs: u32,
    /// sysbench tables for the MariaDB set.
    #[arg(long, default_value_t = 8)]
    maria_tables: u32,
    /// sysbench rows per table for the MariaDB set.
    #[arg(long, default_value_t = 400_000)]
    maria_rows: u32,
    #[arg(long, value_delimiter = ',', default_value = "dvol,cp,tar,restic,borg")]
    tools: Vec<String>,
    /// Also measure dvol's scale curves: first commit, commit after a 1% change and full
    /// restore, time and peak memory, against volume size (`--scale-sizes`, the database-like
    /// set) and against file count (`--scale-files`, small text files).
    #[arg(long)]
    scaling: bool,
    /// Volume sizes of the size curve, GiB.
    #[arg(long, value_delimiter = ',', default_value = "0.25,1,4,16")]
    scale_sizes: Vec<f64>,
    /// File counts of the file-count curve.
    #[arg(long, value_delimiter = ',', default_value = "20000,200000,2000000")]
    scale_files: Vec<usize>,
    /// Skip the fixed-vs-content-defined chunking comparison.
    #[arg(long)]
    no_chunking: bool,
    /// Also compare chunkings on an insertion into a 64 MiB dump (in memory; `--sets ''`
    /// for only this).
    #[arg(long)]
    insertion: bool,
    /// Skip the compression-unit comparison on the real database sets.
    #[arg(long)]
    no_compression: bool,
    /// Only write the report and charts of an earlier run's results.json into --out.
    #[arg(long)]
    from_json: Option<PathBuf>,
    /// The dvol binary (default: `cargo build --release --bin dvol`, then target/release/dvol).
    #[arg(long)]
    dvol: Option<PathBuf>,
    #[arg(long, default_value = "docs/benchmarks")]
    out: PathBuf,
}

/// One tool on one set: every run's figures.
#[derive(Serialize, Deserialize, Debug, Clone, Default)]
pub struct ToolRuns {
    pub set: String,
    pub tool: String,
    pub first: Vec<Meas>,
    pub incr: Vec<Meas>,
    pub restore: Vec<Meas>,
    pub store_after_first: Vec<u64>,
    pub store: Vec<u64>,
}

/// dvol-only figures of one set, one entry per run.
#[derive(Serialize, Deserialize, Debug, Clone, Default)]
pub struct DvolExtras {
    pub set: String,
    /// `reset --hard HEAD` after one small file changed (db set).
    pub reset: Vec<Meas>,
    /// Growth of the path remote for the incremental push; empty when push is unavailable.
    pub push_bytes: Vec<u64>,
    pub push_note: Option<String>,
    /// rsync -az --no-whole-file --stats "Total bytes sent" for the same change.
    pub rsync_bytes: Vec<u64>,
}

/// One point of a scale curve: a fresh store, its first commit, a commit after 1% of the
/// volume changed, and a full restore of that commit.
#[derive(Serialize, Deserialize, Debug, Clone)]
pub struct ScalePoint {
    /// `size` (database-like set) or `files` (small text files).
    pub curve: String,
    /// Bytes of data in the volume.
    pub bytes: u64,
    pub files: u64,
    pub first: Meas,
    pub incr: Meas,
    pub restore: Meas,
    /// Store size after the first commit.
    pub store: u64,
    /// Store growth by the commit after the change.
    pub store_growth: u64,
    /// `tar | zstd -1 -T0` on the same data at the same moments (restore: unpack + `sync -f`),
    /// so each point's time reads as a ratio to what the machine did then. Absent in runs made
    /// before it was measured.
    #[serde(default)]
    pub peer: Option<ScalePeer>,
}

/// The peer's seconds at one scale point.
#[derive(Serialize, Deserialize, Debug, Clone, Default)]
pub struct ScalePeer {
    pub first_secs: f64,
    pub incr_secs: f64,
    pub restore_secs: f64,
}

#[derive(Serialize, Deserialize, Debug, Clone, Default)]
pub struct Results {
    pub command: String,
    pub size_gib: f64,
    pub runs: usize,
    pub seed: u64,
    pub data_bytes: Vec<(String, u64)>,
    /// How each real database set was generated (set, description).
    #[serde(default)]
    pub loads: Vec<(String, String)>,
    pub zstd1_ratio: Option<f64>,
    pub tools: Vec<ToolRuns>,
    pub extras: Vec<DvolExtras>,
    pub chunking: Vec<chunking::ChunkRow>,
    #[serde(default)]
    pub insertion: Vec<chunking::InsertRow>,
    #[serde(default)]
    pub compression: Vec<compression::CompRow>,
    pub scaling: Vec<ScalePoint>,
}

struct Ctx {
    args: Args,
    dvol_bin: PathBuf,
    push_available: bool,
}

/// What changes between the two snapshots.
enum Change {
    Pages {
        segments: u64,
        pages: BTreeSet<u64>,
    },
    Files(BTreeSet<usize>),
    /// A real database set: version 1 replays the server's `after` state, 0 its `before`.
    Replay {
        before: PathBuf,
        after: PathBuf,
    },
    Nothing,
}

impl Change {
    fn apply(&self, dir: &Path, seed: u64, version: u64) -> Result<()> {
        match self {
            Change::Pages { pages, .. } => data::rewrite_pages(dir, seed, pages, version),
            Change::Files(files) => data::write_small_files(dir, seed, files, version),
            Change::Replay { before, after } => {
                dbs::replay(if version == 0 { before } else { after }, dir)
            }
            Change::Nothing => Ok(()),
        }
    }
}

fn main() -> Result<()> {
    let args = Args::parse();
    if let Some(json) = &args.from_json {
        let res: Results = serde_json::from_slice(&fs::read(json)?)?;
        fs::create_dir_all(&args.out)?;
        return write_report(&res, &args.out, true);
    }
    fs::create_dir_all(&args.work)?;
    fs::create_dir_all(&args.out)?;
    let work = args.work.canonicalize()?;
    let dvol_bin = match &args.dvol {
        Some(p) => p.canonicalize()?,
        None => build_dvol()?,
    };
    let push_available = Command::new(&dvol_bin)
        .args(["remote", "--help"])
        .output()
        .map(|o| o.status.success())
        .unwrap_or(false);
    if !push_available {
        eprintln!("note: this dvol has no `remote` command: push bytes will be n/a");
    }
    let ctx = Ctx {
        args: Args {
            work,
            ..args.clone()
        },
        dvol_bin,
        push_available,
    };
    let mut res = Results {
        command: format!(
            "cargo run --release --example bench --{}",
            std::env::args()
                .skip(1)
                .fold(String::new(), |s, a| s + " " + &a)
        ),
        size_gib: args.size_gib,
        runs: args.runs,
        seed: args.seed,
        ..Default::default()
    };

    let segments = data::segments_for(args.size_gib);
    for set in args.sets.iter().filter(|s| !s.is_empty()) {
        let (src, change) = prepare_set(&ctx, set, segments, &mut res)?;
        let mut extras = DvolExtras {
            set: set.clone(),
            ..Default::default()
        };
        let mut runs: Vec<ToolRuns> = Vec::new();
        for r in 0..args.runs {
            for name in &args.tools {
                let mut tool = tools::make(name, &ctx.args.work, &ctx.dvol_bin)?;
                eprintln!("[{set} run {}/{}] {}", r + 1, args.runs, tool.name());
                let idx = match runs.iter().position(|t| t.tool == tool.name()) {
                    Some(i) => i,
                    None => {
                        runs.push(ToolRuns {
                            set: set.clone(),
                            tool: tool.name().to_string(),
                            ..Default::default()
                        });
                        runs.len() - 1
                    }
                };
                let is_dvol = name == "dvol";
                let extras = if is_dvol { Some(&mut extras) } else { None };
                one_run(
                    &ctx,
                    tool.as_mut(),
                    &src,
                    &change,
                    set,
                    &mut runs[idx],
                    extras,
                )
                .with_context(|| format!("{} on {set}", tool.name()))?;
            }
        }
        res.tools.extend(runs);
        if args.tools.iter().any(|t| t == "dvol") {
            res.extras.push(extras);
        }
        if let Change::Replay { before, after } = &change {
            if !args.no_compression {
                res.compression
                    .extend(compression::compare(set, before, after)?);
            }
        }
        if set == "db" && !args.no_chunking {
            if let Change::Pages { segments, pages } = &change {
                eprintln!("[chunking] fixed vs FastCDC");
                res.chunking = chunking::compare(args.seed, *segments, pages);
            }
        }
    }

    if args.insertion {
        eprintln!("[insertion] fixed vs FastCDC on a dump");
        res.insertion = chunking::insertion(args.seed);
    }
    if args.scaling {
        scaling(&ctx, &mut res)?;
    }
    fs::write(
        args.out.join("results.json"),
        serde_json::to_string_pretty(&res)?,
    )?;
    write_report(&res, &args.out, ctx.push_available)
}

/// results.md (also printed) and the charts of `res` into `out`.
fn write_report(res: &Results, out: &Path, push_available: bool) -> Result<()> {
    let md = report::markdown(res, push_available);
    println!("{md}");
    fs::write(out.join("results.md"), &md)?;
    report::charts(res, out)?;
    eprintln!("wrote {}/results.md and charts", out.display());
    Ok(())
}

fn build_dvol() -> Result<PathBuf> {
    let manifest = Path::new(env!("CARGO_MANIFEST_DIR"));
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let st = Command::new(cargo)
        .current_dir(manifest)
        .args(["build", "--release", "--quiet", "--bin", "dvol"])
        .status()?;
    if !st.success() {
        bail!("building dvol failed");
    }
    let target = std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| manifest.join("target"));
    Ok(target.join("release").join("dvol"))
}

/// Generates the set's source directory (once per invocation) and its change.
fn prepare_set(
    ctx: &Ctx,
    set: &str,
    segments: u64,
    res: &mut Results,
) -> Result<(PathBuf, Change)> {
    let seed = ctx.args.seed;
    let work = &ctx.args.work;
    match set {
        "db" => {
            let src = work.join("src-db");
            regenerate(&src, || data::generate_db(&src, seed, segments))?;
            res.data_bytes.push(("db".into(), data::dir_size(&src)?));
            res.zstd1_ratio = zstd_ratio(&src.join(data::segment_name(0)), work).ok();
            let pages = data::dirty_pages(seed, segments, 0.01, 1);
            Ok((src, Change::Pages { segments, pages }))
        }
        "small" | "unchanged" => {
            let src = work.join("src-small");
            if !res.data_bytes.iter().any(|d| d.0 == "small") {
                regenerate(&src, || data::generate_small(&src, seed, data::SMALL_FILES))?;
                res.data_bytes.push(("small".into(), data::dir_size(&src)?));
            }
            let change = if set == "small" {
                Change::Files(data::edited_files(seed, data::SMALL_FILES, 0.01))
            } else {
                Change::Nothing
            };
            Ok((src, change))
        }
        "pg" | "mariadb" => {
            let args = &ctx.args;
            let (set_dirs, load) = if set == "pg" {
                dbs::postgres(work, args.pg_scale, args.db_secs)?
            } else {
                dbs::mariadb(work, args.maria_tables, args.maria_rows, args.db_secs)?
            };
            res.data_bytes
                .push((set.into(), data::dir_size(&set_dirs.src)?));
            res.loads.push((set.into(), load.description));
            Ok((
                set_dirs.src,
                Change::Replay {
                    before: set_dirs.before,
                    after: set_dirs.after,
                },
            ))
        }
        other => bail!("unknown set {other} (pg, mariadb, db, small, unchanged)"),
    }
}

fn regenerate(dir: &Path, gen: impl FnOnce() -> Result<()>) -> Result<()> {
    if dir.exists() {
        fs::remove_dir_all(dir)?;
    }
    fs::create_dir_all(dir)?;
    eprintln!("[generate] {}", dir.display());
    gen()
}

/// Compression ratio of one segment with the zstd CLI at level 1.
fn zstd_ratio(file: &Path, work: &Path) -> Result<f64> {
    let out = work.join("ratio.zst");
    run(
        Command::new("zstd")
            .args(["-1", "-q", "-f", "-o"])
            .arg(&out)
            .arg(file),
        work,
    )?;
    let r = fs::metadata(file)?.len() as f64 / fs::metadata(&out)?.len() as f64;
    fs::remove_file(out)?;
    Ok(r)
}

fn fresh_dir(d: &Path) -> Result<()> {
    if d.exists() {
        fs::remove_dir_all(d)?;
    }
    fs::create_dir_all(d)?;
    Ok(())
}

/// One run of one tool on one set: fresh store, first snapshot, change, incremental snapshot,
/// sizes, dvol extras, full restore; the data set is always put back as it was.
fn one_run(
    ctx: &Ctx,
    tool: &mut dyn Tool,
    src: &Path,
    change: &Change,
    set: &str,
    out: &mut ToolRuns,
    extras: Option<&mut DvolExtras>,
) -> Result<()> {
    tool.setup()?;
    let dir = match tool.live_dir() {
        Some(live) => {
            fs::remove_dir(&live).with_context(|| format!("emptying {}", live.display()))?;
            fs::rename(src, &live)?;
            live
        }
        None => src.to_path_buf(),
    };
    let mut changed = false;
    let result = (|| -> Result<()> {
        let work = &ctx.args.work;
        let first = tool.first_snapshot(&dir)?;
        let store_after_first = tool.store_size()?;
        let mirror = work.join("rsync-mirror");
        let remote = work.join("dvol-remote");
        let dvol = Dvol::new(ctx.dvol_bin.clone(), work);
        let mut remote_before = 0;
        let mut push_err = None;
        if extras.is_some() {
            fresh_dir(&mirror)?;
            run(
                Command::new("cp").arg("-a").arg(dir.join(".")).arg(&mirror),
                work,
            )?;
            if ctx.push_available {
                fresh_dir(&remote)?;
                let r = dvol
                    .run(&["remote", "add", "origin", &remote.display().to_string()])
                    .and_then(|_| dvol.run(&["push"]));
                match r {
                    Ok(_) => remote_before = data::dir_size(&remote)?,
                    Err(e) => push_err = Some(format!("{e:#}")),
                }
            }
        }
        changed = true;
        change.apply(&dir, ctx.args.seed, 1)?;
        let incr = tool.incremental_snapshot(&dir)?;
        let store = tool.store_size()?;
        if let Some(x) = extras {
            let (_, stats) = run(
                Command::new("rsync")
                    .args(["-az", "--no-whole-file", "--stats"])
                    .arg(format!("{}/", dir.display()))
                    .arg(format!("{}/", mirror.display())),
                work,
            )?;
            x.rsync_bytes.push(parse_rsync_sent(&stats)?);
            fs::remove_dir_all(&mirror)?;
            if ctx.push_available {
                if push_err.is_none() {
                    match dvol.run(&["push"]) {
                        Ok(_) => x
                            .push_bytes
                            .push(data::dir_size(&remote)?.saturating_sub(remote_before)),
                        Err(e) => push_err = Some(format!("{e:#}")),
                    }
                }
                if let Some(e) = push_err {
                    eprintln!("push failed: {e}");
                    x.push_note = Some(format!("push failed: {}", e.lines().last().unwrap_or("")));
                }
            } else {
                x.push_note = Some("n/a (push not available in this build)".into());
            }
            if set == "db" {
                let f = dir.join(data::DB_SMALL_FILE);
                let mut text = fs::read(&f)?;
                text.extend_from_slice(b"work_mem = '64MB'\n");
                fs::write(&f, text)?;
                let (m, _) = dvol.run(&["reset", "--hard", "HEAD"])?;
                x.reset.push(m);
            }
        }
        let dest = work.join("restore");
        fresh_dir(&dest)?;
        let restore = tool.restore(&dest)?;
        fs::remove_dir_all(&dest)?;
        out.first.push(first);
        out.incr.push(incr);
        out.restore.push(restore);
        out.store_after_first.push(store_after_first);
        out.store.push(store);
        Ok(())
    })();
    if changed {
        change.apply(&dir, ctx.args.seed, 0)?;
    }
    if dir != src {
        fs::rename(&dir, src)?;
    }
    result
}

fn parse_rsync_sent(stats: &str) -> Result<u64> {
    for line in stats.lines() {
        if let Some(rest) = line.strip_prefix("Total bytes sent:") {
            return Ok(rest.trim().replace(',', "").parse()?);
        }
    }
    bail!("no 'Total bytes sent' in rsync output:\n{stats}")
}

/// dvol's scale curves (see `--scaling`). Each point's data set is generated, moved into a
/// fresh store's volume and deleted with it; results.json is rewritten after every point, so
/// a run stopped early keeps the points it finished.
fn scaling(ctx: &Ctx, res: &mut Results) -> Result<()> {
    let work = &ctx.args.work;
    let seed = ctx.args.seed;
    let src = work.join("src-scale");
    for &size in &ctx.args.scale_sizes {
        let segments = data::segments_for(size);
        regenerate(&src, || data::generate_db(&src, seed, segments))?;
        let pages = data::dirty_pages(seed, segments, 0.01, 1);
        eprintln!("[scaling {size} GiB] dvol");
        let point = scale_point(ctx, &src, "size", |live| {
            data::rewrite_pages(live, seed, &pages, 1)
        })?;
        res.scaling.push(point);
        save(ctx, res)?;
    }
    for &n in &ctx.args.scale_files {
        regenerate(&src, || data::generate_small(&src, seed, n))?;
        let edited = data::edited_files(seed, n, 0.01);
        eprintln!("[scaling {n} files] dvol");
        let point = scale_point(ctx, &src, "files", |live| {
            data::write_small_files(live, seed, &edited, 1)
        })?;
        res.scaling.push(point);
        save(ctx, res)?;
    }
    Ok(())
}

fn save(ctx: &Ctx, res: &Results) -> Result<()> {
    fs::write(
        ctx.args.out.join("results.json"),
        serde_json::to_string_pretty(res)?,
    )?;
    Ok(())
}

/// One scale point on the data set in `src` (consumed): first commit, `change`, commit,
/// full restore, each timed with its peak memory, and `tar | zstd -1 -T0` of the same data
/// just before each (the peer runs first, so dvol meets a page cache at least as warm).
fn scale_point(
    ctx: &Ctx,
    src: &Path,
    curve: &str,
    change: impl FnOnce(&Path) -> Result<()>,
) -> Result<ScalePoint> {
    let (bytes, files) = data::dir_stats(src)?;
    let mut dvol = Dvol::new(ctx.dvol_bin.clone(), &ctx.args.work);
    let mut tar = TarZstd::new(&ctx.args.work);
    dvol.setup()?;
    tar.setup()?;
    let live = dvol.live_dir().expect("dvol has a live directory");
    fs::remove_dir(&live)?;
    fs::rename(src, &live)?;
    let result = (|| -> Result<ScalePoint> {
        let mut peer = ScalePeer {
            first_secs: tar.first_snapshot(&live)?.secs,
            ..ScalePeer::default()
        };
        let first = dvol.first_snapshot(&live)?;
        let store = dvol.store_size()?;
        change(&live)?;
        peer.incr_secs = tar.incremental_snapshot(&live)?.secs;
        let incr = dvol.incremental_snapshot(&live)?;
        let store_growth = dvol.store_size()?.saturating_sub(store);
        peer.restore_secs = tar_restore_synced(&mut tar, &ctx.args.work)?;
        let restore = dvol.restore(&ctx.args.work)?;
        eprintln!(
            "  first {:.1} s {} MiB, 1% {:.1} s {} MiB, restore {:.1} s {} MiB; tar|zstd {:.1} / {:.1} / {:.1} s",
            first.secs,
            first.maxrss_kib / 1024,
            incr.secs,
            incr.maxrss_kib / 1024,
            restore.secs,
            restore.maxrss_kib / 1024,
            peer.first_secs,
            peer.incr_secs,
            peer.restore_secs
        );
        Ok(ScalePoint {
            curve: curve.into(),
            bytes,
            files,
            first,
            incr,
            restore,
            store,
            store_growth,
            peer: Some(peer),
        })
    })();
    fs::remove_dir_all(&dvol.root)?;
    fs::remove_dir_all(ctx.args.work.join("tar-store"))?;
    result
}

/// The peer's full restore at a scale point: unpack the second archive into a fresh directory
/// and `sync -f` it (dvol's restore ends with a syncfs too); the directory is deleted after.
fn tar_restore_synced(tar: &mut TarZstd, work: &Path) -> Result<f64> {
    let dest = work.join("tar-restore");
    fs::create_dir_all(&dest)?;
    let unpack = tar.restore(&dest)?.secs;
    let t = std::time::Instant::now();
    let status = Command::new("sync").arg("-f").arg(&dest).status()?;
    if !status.success() {
        bail!("sync -f {} failed: {status}", dest.display());
    }
    let secs = unpack + t.elapsed().as_secs_f64();
    fs::remove_dir_all(&dest)?;
    Ok(secs)
}
