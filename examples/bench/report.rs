//! The report: one table of medians, every figure as a ratio to the peers, dvol's extras,
//! the targets, the chunking comparison, scaling; and two SVG charts.

use crate::measure::{median, Meas};
use crate::{Results, ScalePoint, ToolRuns};
use anyhow::Result;
use plotters::prelude::*;
use std::fmt::Write;
use std::path::Path;

const MIB: f64 = (1 << 20) as f64;

fn secs(v: &[Meas]) -> f64 {
    median(&mut v.iter().map(|m| m.secs).collect::<Vec<_>>())
}
fn bytes(v: &[u64]) -> f64 {
    median(&mut v.iter().map(|&b| b as f64).collect::<Vec<_>>())
}

/// Median figures of one tool on one set.
struct Row {
    first: f64,
    incr: f64,
    restore: f64,
    store_first: f64,
    store: f64,
    growth: f64,
    /// Median over runs of the largest maxrss of the run's three steps, MiB.
    peak: f64,
    /// Largest maxrss of any step of any run, MiB.
    peak_max: f64,
}

fn row(t: &ToolRuns) -> Row {
    let peaks: Vec<f64> = (0..t.first.len())
        .map(|i| {
            [t.first[i], t.incr[i], t.restore[i]]
                .iter()
                .map(|m| m.maxrss_kib)
                .max()
                .unwrap() as f64
                / 1024.0
        })
        .collect();
    let growth: Vec<u64> = t
        .store
        .iter()
        .zip(&t.store_after_first)
        .map(|(a, b)| a.saturating_sub(*b))
        .collect();
    Row {
        first: secs(&t.first),
        incr: secs(&t.incr),
        restore: secs(&t.restore),
        store_first: bytes(&t.store_after_first),
        store: bytes(&t.store),
        growth: bytes(&growth),
        peak: median(&mut peaks.clone()),
        peak_max: peaks.iter().copied().fold(0.0, f64::max),
    }
}

fn find<'a>(r: &'a Results, set: &str, tool: &str) -> Option<&'a ToolRuns> {
    r.tools
        .iter()
        .find(|t| t.set == set && t.tool == tool && !t.first.is_empty())
}

fn ratio(a: f64, b: f64) -> String {
    if b > 0.0 && a.is_finite() && b.is_finite() {
        format!("{:.2}", a / b)
    } else {
        "-".into()
    }
}

fn fmt_bytes(b: f64) -> String {
    if b >= 10.0 * MIB {
        format!("{:.0} MiB", b / MIB)
    } else if b >= MIB {
        format!("{:.2} MiB", b / MIB)
    } else {
        format!("{:.1} KiB", b / 1024.0)
    }
}

const PEERS: [&str; 4] = ["cp -a", "tar|zstd", "restic", "borg"];

/// One row of a targets table: the measured value, the goal, met or not.
fn target(s: &mut String, name: &str, v: Option<f64>, goal: &str, ok: fn(f64) -> bool, unit: &str) {
    let (m, met) = match v {
        Some(v) if v.is_finite() => (
            format!("{v:.3}{unit}"),
            if ok(v) { "yes" } else { "**no**" },
        ),
        _ => ("n/a".into(), "not measured"),
    };
    let _ = writeln!(s, "| {} | {m} | {goal} | {met} |", name.replace('|', "\\|"));
}

/// The targets of issue 11, for each real database set that ran.
fn real_db_targets(s: &mut String, r: &Results) {
    let get = |set: &str, tool: &str| find(r, set, tool).map(row);
    for set in ["pg", "mariadb"] {
        let Some(d) = get(set, "dvol") else {
            continue;
        };
        let _ = writeln!(s, "\n## Targets of issue 11 on `{set}`\n");
        let _ = writeln!(s, "| target | measured | goal | met |");
        let _ = writeln!(s, "| --- | ---: | ---: | --- |");
        let over = |peer: &str, f: fn(&Row) -> f64| get(set, peer).map(|p| f(&d) / f(&p));
        let under = |peer: &str, f: fn(&Row) -> f64| get(set, peer).map(|p| f(&p) / f(&d));
        type Goal = (&'static str, fn(f64) -> bool, &'static str);
        let rows: [(String, Option<f64>, Goal); 7] = [
            (
                "store after first snapshot, dvol/restic".into(),
                over("restic", |w| w.store_first),
                ("<= 1.0", |v| v <= 1.0, ""),
            ),
            (
                "store growth after the change, dvol/restic".into(),
                over("restic", |w| w.growth),
                ("<= 1.0", |v| v <= 1.0, ""),
            ),
            (
                "first commit, dvol/tar|zstd".into(),
                over("tar|zstd", |w| w.first),
                ("<= 0.8", |v| v <= 0.8, ""),
            ),
            (
                "first commit, restic/dvol".into(),
                under("restic", |w| w.first),
                (">= 3", |v| v >= 3.0, "x"),
            ),
            (
                "commit after the change, dvol/tar|zstd".into(),
                over("tar|zstd", |w| w.incr),
                ("<= 0.5", |v| v <= 0.5, ""),
            ),
            (
                "commit after the change, restic/dvol".into(),
                under("restic", |w| w.incr),
                (">= 5", |v| v >= 5.0, "x"),
            ),
            (
                "full restore, dvol/(cp -a + sync)".into(),
                over("cp -a", |w| w.restore),
                ("<= 1.0", |v| v <= 1.0, ""),
            ),
        ];
        for (name, v, (goal, ok, unit)) in rows {
            target(s, &name, v, goal, ok, unit);
        }
        target(
            s,
            "dvol peak memory (MiB)",
            Some(d.peak_max),
            "< 256",
            |v| v < 256.0,
            "",
        );
    }
}

fn compression_table(s: &mut String, r: &Results) {
    if r.compression.is_empty() {
        return;
    }
    let _ = writeln!(
        s,
        "\n## Compression unit (unique 8 KiB chunks; payload bytes only, no headers)\n"
    );
    let _ = writeln!(
        s,
        "| set | scheme | first snapshot | change | first / format 1 | compress s (1 core) |"
    );
    let _ = writeln!(s, "| --- | --- | ---: | ---: | ---: | ---: |");
    for c in &r.compression {
        let base = r
            .compression
            .iter()
            .find(|b| b.set == c.set)
            .map_or(f64::NAN, |b| b.first_bytes as f64);
        let _ = writeln!(
            s,
            "| {} | {} | {} | {} | {} | {:.2} |",
            c.set,
            c.scheme,
            fmt_bytes(c.first_bytes as f64),
            fmt_bytes(c.growth_bytes as f64),
            ratio(c.first_bytes as f64, base),
            c.secs
        );
    }
    if let Some(c) = r.compression.first() {
        let _ = writeln!(
            s,
            "\n{} unique chunks in the first snapshot, {} new after the change (`{}`).",
            c.unique_chunks, c.new_chunks, c.set
        );
    }
}

pub fn markdown(r: &Results, push_available: bool) -> String {
    let mut s = String::new();
    let _ = writeln!(s, "Command: `{}`  ", r.command);
    let _ = writeln!(
        s,
        "Seed {}, {} run(s) per tool and set, medians; warm page cache.  ",
        r.seed, r.runs
    );
    for (set, b) in &r.data_bytes {
        let _ = write!(s, "Data set `{set}`: {}. ", fmt_bytes(*b as f64));
    }
    if let Some(z) = r.zstd1_ratio {
        let _ = write!(s, "A db segment compresses {z:.2}:1 with `zstd -1`.");
    }
    let _ = writeln!(s);
    for (set, how) in &r.loads {
        let _ = writeln!(s, "- `{set}`: {how}");
    }
    let _ = writeln!(s, "\n## Results (medians)\n");
    let _ = writeln!(s, "| set | tool | first snapshot s | incremental s | full restore s | store after first | store after both | store growth | peak MiB |");
    let _ = writeln!(
        s,
        "| --- | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: |"
    );
    for t in &r.tools {
        if t.first.is_empty() {
            continue;
        }
        let w = row(t);
        let _ = writeln!(
            s,
            "| {} | {} | {:.3} | {:.3} | {:.3} | {} | {} | {} | {:.0} |",
            t.set,
            t.tool.replace('|', "\\|"),
            w.first,
            w.incr,
            w.restore,
            fmt_bytes(w.store_first),
            fmt_bytes(w.store),
            fmt_bytes(w.growth),
            w.peak
        );
    }

    let _ = writeln!(
        s,
        "\n## dvol as a ratio to each peer (dvol / peer; below 1 = dvol faster or smaller)\n"
    );
    let sets: Vec<String> = {
        let mut v: Vec<String> = r.tools.iter().map(|t| t.set.clone()).collect();
        v.dedup();
        v
    };
    for set in &sets {
        let Some(d) = find(r, set, "dvol").map(row) else {
            continue;
        };
        let peers: Vec<(&str, Row)> = PEERS
            .iter()
            .filter_map(|p| find(r, set, p).map(|t| (*p, row(t))))
            .collect();
        if peers.is_empty() {
            continue;
        }
        let _ = write!(s, "**{set}**\n\n| figure |");
        for (p, _) in &peers {
            let _ = write!(s, " dvol/{} |", p.replace('|', "\\|"));
        }
        let _ = write!(s, "\n| --- |");
        for _ in &peers {
            let _ = write!(s, " ---: |");
        }
        let _ = writeln!(s);
        type Pick = fn(&Row) -> f64;
        let figures: [(&str, Pick); 7] = [
            ("first snapshot time", |w| w.first),
            ("incremental snapshot time", |w| w.incr),
            ("full restore time", |w| w.restore),
            ("store after first snapshot", |w| w.store_first),
            ("store after both", |w| w.store),
            ("store growth (incremental)", |w| w.growth),
            ("peak memory", |w| w.peak),
        ];
        for (name, f) in figures {
            let _ = write!(s, "| {name} |");
            for (_, w) in &peers {
                let _ = write!(s, " {} |", ratio(f(&d), f(w)));
            }
            let _ = writeln!(s);
        }
        let _ = writeln!(s);
    }

    let _ = writeln!(s, "## dvol extras\n");
    let _ = writeln!(s, "| set | reset --hard HEAD after a one-file change s | dvol push bytes (incremental) | rsync -az --no-whole-file bytes sent | push/rsync |");
    let _ = writeln!(s, "| --- | ---: | ---: | ---: | ---: |");
    for x in &r.extras {
        let reset = if x.reset.is_empty() {
            "-".to_string()
        } else {
            format!("{:.3}", secs(&x.reset))
        };
        let rs = bytes(&x.rsync_bytes);
        let (push, pr) = if x.push_bytes.is_empty() {
            (
                x.push_note
                    .clone()
                    .unwrap_or_else(|| "n/a (push not available in this build)".into()),
                "-".to_string(),
            )
        } else {
            let p = bytes(&x.push_bytes);
            (fmt_bytes(p), ratio(p, rs))
        };
        let _ = writeln!(
            s,
            "| {} | {reset} | {push} | {} | {pr} |",
            x.set,
            if x.rsync_bytes.is_empty() {
                "-".into()
            } else {
                fmt_bytes(rs)
            }
        );
    }

    let _ = writeln!(s, "\n## Targets of issue 4\n");
    let _ = writeln!(s, "| target | measured | goal | met |");
    let _ = writeln!(s, "| --- | ---: | ---: | --- |");
    let get = |set: &str, tool: &str| find(r, set, tool).map(row);
    let d = get("db", "dvol");
    let both = |a: Option<&Row>, b: Option<Row>, f: fn(&Row) -> f64| -> Option<f64> {
        Some(f(a?) / f(&b?))
    };
    target(
        &mut s,
        "db first commit, dvol/tar|zstd",
        both(d.as_ref(), get("db", "tar|zstd"), |w| w.first),
        "<= 1.0",
        |v| v <= 1.0,
        "",
    );
    target(
        &mut s,
        "db first commit, restic/dvol",
        both(get("db", "restic").as_ref(), get("db", "dvol"), |w| w.first),
        ">= 3",
        |v| v >= 3.0,
        "x",
    );
    target(
        &mut s,
        "db incremental commit, restic/dvol",
        both(get("db", "restic").as_ref(), get("db", "dvol"), |w| w.incr),
        ">= 8",
        |v| v >= 8.0,
        "x",
    );
    target(
        &mut s,
        "db store growth, dvol/restic",
        both(d.as_ref(), get("db", "restic"), |w| w.growth),
        "<= 0.2",
        |v| v <= 0.2,
        "",
    );
    target(
        &mut s,
        "commit with nothing changed, 20,000 files",
        get("unchanged", "dvol").map(|w| w.incr),
        "< 0.1 s",
        |v| v < 0.1,
        " s",
    );
    target(
        &mut s,
        "db full materialize, dvol/cp -a",
        both(d.as_ref(), get("db", "cp -a"), |w| w.restore),
        "<= 1.0",
        |v| v <= 1.0,
        "",
    );
    target(
        &mut s,
        "small full materialize, dvol/cp -a",
        both(get("small", "dvol").as_ref(), get("small", "cp -a"), |w| {
            w.restore
        }),
        "<= 1.0",
        |v| v <= 1.0,
        "",
    );
    let reset = r
        .extras
        .iter()
        .find(|x| x.set == "db" && !x.reset.is_empty())
        .map(|x| secs(&x.reset));
    target(
        &mut s,
        "reset --hard HEAD after one small file changed (db)",
        reset,
        "< 0.1 s",
        |v| v < 0.1,
        " s",
    );
    let push = r
        .extras
        .iter()
        .find(|x| x.set == "db" && !x.push_bytes.is_empty())
        .map(|x| bytes(&x.push_bytes) / bytes(&x.rsync_bytes));
    if push_available || push.is_some() {
        target(
            &mut s,
            "db incremental push bytes, dvol/rsync",
            push,
            "<= 2",
            |v| v <= 2.0,
            "x",
        );
    } else {
        let _ = writeln!(s, "| db incremental push bytes, dvol/rsync | n/a (push not available in this build) | <= 2 | not measured |");
    }
    let mut peak = r
        .tools
        .iter()
        .filter(|t| t.tool == "dvol" && !t.first.is_empty())
        .map(|t| row(t).peak_max)
        .fold(0.0, f64::max);
    for p in &r.scaling {
        for m in [&p.first, &p.incr, &p.restore] {
            peak = peak.max(m.maxrss_kib as f64 / 1024.0);
        }
    }
    target(
        &mut s,
        "dvol peak memory, every run (MiB)",
        Some(peak),
        "< 256",
        |v| v < 256.0,
        "",
    );

    real_db_targets(&mut s, r);
    compression_table(&mut s, r);

    if !r.chunking.is_empty() {
        let _ = writeln!(
            s,
            "\n## Fixed 8 KiB blocks vs content-defined chunking (db set, 1% of pages rewritten)\n"
        );
        let _ = writeln!(s, "| scheme | chunks after | new chunks | new chunk bytes | new bytes / rewritten bytes | cut time s (before files) |");
        let _ = writeln!(s, "| --- | ---: | ---: | ---: | ---: | ---: |");
        for c in &r.chunking {
            let _ = writeln!(
                s,
                "| {} | {} | {} | {} | {:.2} | {:.2} |",
                c.scheme,
                c.chunks_after,
                c.new_chunks,
                fmt_bytes(c.new_bytes as f64),
                c.new_bytes as f64 / c.rewritten_bytes as f64,
                c.cut_secs
            );
        }
    }

    if !r.insertion.is_empty() {
        let _ = writeln!(
            s,
            "\n## Chunking of non-page files (64 MiB dump, 100 KiB inserted in the middle; 64 MiB page file, 1% of pages rewritten)\n"
        );
        let _ = writeln!(s, "| scheme | dump chunks | dump stored (zstd -1, runs of 16) | regular rows stored | insertion: new chunk bytes | insertion: new list bytes | page rewrite: new chunk bytes | cut s/GiB |");
        let _ = writeln!(
            s,
            "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: |"
        );
        for c in &r.insertion {
            let _ = writeln!(
                s,
                "| {} | {} | {:.2} MiB | {:.2} MiB | {} | {} | {} | {:.2} |",
                c.scheme,
                c.chunks,
                c.stored as f64 / MIB,
                c.rows_stored as f64 / MIB,
                fmt_bytes(c.insert_chunk_bytes as f64),
                fmt_bytes(c.insert_list_bytes as f64),
                fmt_bytes(c.pages_chunk_bytes as f64),
                c.cut_secs_per_gib
            );
        }
    }

    for (curve, title, unit) in [
        ("size", "volume size (db set)", "per GiB, s"),
        ("files", "file count (small files)", "per file, µs"),
    ] {
        let pts: Vec<_> = r.scaling.iter().filter(|p| p.curve == curve).collect();
        if pts.is_empty() {
            continue;
        }
        let _ = writeln!(
            s,
            "\n## dvol scale curve: {title} (one fresh store per point; 1% = commit after 1% of the pages or files changed; restore = full `checkout -b`)\n"
        );
        let _ = writeln!(s, "| data | files | first commit | 1% commit | restore | first / 1% / restore {unit} | dvol / tar\\|zstd first / 1% / restore | peak MiB first / 1% / restore | store | growth |");
        let _ = writeln!(
            s,
            "| ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |"
        );
        for p in pts {
            let by = if curve == "size" {
                p.bytes as f64 / (1u64 << 30) as f64
            } else {
                p.files as f64 / 1e6
            };
            let _ = writeln!(
                s,
                "| {} | {} | {:.2} s | {:.2} s | {:.2} s | {:.2} / {:.2} / {:.2} | {} | {:.0} / {:.0} / {:.0} | {} | {} |",
                fmt_bytes(p.bytes as f64),
                p.files,
                p.first.secs,
                p.incr.secs,
                p.restore.secs,
                p.first.secs / by,
                p.incr.secs / by,
                p.restore.secs / by,
                scale_peer_ratios(p),
                p.first.maxrss_kib as f64 / 1024.0,
                p.incr.maxrss_kib as f64 / 1024.0,
                p.restore.maxrss_kib as f64 / 1024.0,
                fmt_bytes(p.store as f64),
                fmt_bytes(p.store_growth as f64)
            );
        }
    }
    s
}

/// dvol's time over the peer's at one scale point, or "n/a" for a run made without the peer.
fn scale_peer_ratios(p: &ScalePoint) -> String {
    match &p.peer {
        Some(t) => format!(
            "{:.2} / {:.2} / {:.2}",
            p.first.secs / t.first_secs,
            p.incr.secs / t.incr_secs,
            p.restore.secs / t.restore_secs
        ),
        None => "n/a".to_string(),
    }
}

type DynErr = Box<dyn std::error::Error + Send + Sync>;

pub fn charts(r: &Results, out: &Path) -> Result<()> {
    ratio_chart(r, &out.join("ratios.svg")).map_err(|e| anyhow::anyhow!("ratios.svg: {e}"))?;
    if !r.scaling.is_empty() {
        scaling_chart(r, &out.join("scaling.svg"))
            .map_err(|e| anyhow::anyhow!("scaling.svg: {e}"))?;
    }
    Ok(())
}

/// Bars of the headline ratios (log scale), with the goal of each as a mark.
fn ratio_chart(r: &Results, path: &Path) -> Result<(), DynErr> {
    let get = |set: &str, tool: &str| find(r, set, tool).map(row);
    let mut bars: Vec<(String, f64, f64)> = Vec::new(); // label, value, goal
    let mut add = |label: &str, a: Option<Row>, b: Option<Row>, f: fn(&Row) -> f64, goal: f64| {
        if let (Some(a), Some(b)) = (a, b) {
            bars.push((label.to_string(), f(&a) / f(&b), goal));
        }
    };
    add(
        "db first: dvol/tar",
        get("db", "dvol"),
        get("db", "tar|zstd"),
        |w| w.first,
        1.0,
    );
    add(
        "db first: dvol/restic",
        get("db", "dvol"),
        get("db", "restic"),
        |w| w.first,
        1.0 / 3.0,
    );
    add(
        "db first: dvol/borg",
        get("db", "dvol"),
        get("db", "borg"),
        |w| w.first,
        f64::NAN,
    );
    add(
        "db incr: dvol/restic",
        get("db", "dvol"),
        get("db", "restic"),
        |w| w.incr,
        1.0 / 8.0,
    );
    add(
        "db incr: dvol/borg",
        get("db", "dvol"),
        get("db", "borg"),
        |w| w.incr,
        f64::NAN,
    );
    add(
        "db growth: dvol/restic",
        get("db", "dvol"),
        get("db", "restic"),
        |w| w.growth,
        0.2,
    );
    add(
        "db restore: dvol/cp",
        get("db", "dvol"),
        get("db", "cp -a"),
        |w| w.restore,
        1.0,
    );
    add(
        "small restore: dvol/cp",
        get("small", "dvol"),
        get("small", "cp -a"),
        |w| w.restore,
        1.0,
    );
    add(
        "small incr: dvol/restic",
        get("small", "dvol"),
        get("small", "restic"),
        |w| w.incr,
        f64::NAN,
    );
    add(
        "unchanged: dvol/restic",
        get("unchanged", "dvol"),
        get("unchanged", "restic"),
        |w| w.incr,
        f64::NAN,
    );
    if let Some(x) = r
        .extras
        .iter()
        .find(|x| x.set == "db" && !x.push_bytes.is_empty())
    {
        bars.push((
            "db push: dvol/rsync".into(),
            bytes(&x.push_bytes) / bytes(&x.rsync_bytes),
            2.0,
        ));
    }
    if bars.is_empty() {
        return Ok(());
    }
    let n = bars.len();
    let root = SVGBackend::new(path, (1000, 560)).into_drawing_area();
    root.fill(&WHITE)?;
    let labels: Vec<String> = bars.iter().map(|b| b.0.clone()).collect();
    let mut chart = ChartBuilder::on(&root)
        .caption(
            "dvol / peer (log scale; below 1 = dvol faster or smaller; black tick = goal)",
            ("sans-serif", 18),
        )
        .margin(12)
        .x_label_area_size(150)
        .y_label_area_size(60)
        .build_cartesian_2d(0f64..n as f64, (0.001f64..10.0).log_scale())?;
    chart
        .configure_mesh()
        .disable_x_mesh()
        .x_labels(n * 2 + 1)
        .x_label_formatter(&|x| {
            let i = x.floor() as usize;
            if (x - x.floor() - 0.5).abs() < 0.01 && i < labels.len() {
                labels[i].clone()
            } else {
                String::new()
            }
        })
        .x_label_style(
            ("sans-serif", 12)
                .into_font()
                .transform(FontTransform::Rotate90),
        )
        .y_desc("ratio")
        .draw()?;
    chart.draw_series(bars.iter().enumerate().map(|(i, (_, v, goal))| {
        let color = if goal.is_nan() || v <= goal {
            GREEN.mix(0.8)
        } else {
            RED.mix(0.8)
        };
        Rectangle::new(
            [(i as f64 + 0.15, 0.001), (i as f64 + 0.85, v.max(0.0011))],
            color.filled(),
        )
    }))?;
    chart.draw_series(bars.iter().enumerate().filter(|b| !b.1 .2.is_nan()).map(
        |(i, (_, _, g))| {
            PathElement::new(
                vec![(i as f64 + 0.05, *g), (i as f64 + 0.95, *g)],
                BLACK.stroke_width(3),
            )
        },
    ))?;
    chart.draw_series(bars.iter().enumerate().map(|(i, (_, v, _))| {
        Text::new(
            format!("{v:.2}"),
            (i as f64 + 0.2, v.max(0.0011) * 1.3),
            ("sans-serif", 12),
        )
    }))?;
    chart.draw_series(LineSeries::new(
        vec![(0.0, 1.0), (n as f64, 1.0)],
        BLACK.mix(0.3),
    ))?;
    root.present()?;
    Ok(())
}

/// A scale curve: its name, x axis label, time unit factor, and x of a point.
type Curve = (&'static str, &'static str, f64, fn(&ScalePoint) -> f64);
/// A measured step of a scale point: label, colour, and its measurement.
type Step = (&'static str, RGBColor, fn(&ScalePoint) -> Meas);

fn scaling_chart(r: &Results, path: &Path) -> Result<(), DynErr> {
    let root = SVGBackend::new(path, (1200, 800)).into_drawing_area();
    root.fill(&WHITE)?;
    let panels = root.split_evenly((2, 2));
    let gib = |p: &ScalePoint| p.bytes as f64 / (1u64 << 30) as f64;
    let curves: [Curve; 2] = [
        ("size", "volume size, GiB (log)", 1.0, |p| {
            p.bytes as f64 / (1u64 << 30) as f64
        }),
        ("files", "files (log)", 1e6, |p| p.files as f64),
    ];
    for (row, (curve, xdesc, scale, x)) in curves.into_iter().enumerate() {
        let pts: Vec<_> = r.scaling.iter().filter(|p| p.curve == curve).collect();
        if pts.is_empty() {
            continue;
        }
        let xs: Vec<f64> = pts.iter().map(|p| x(p)).collect();
        let (xmin, xmax) = (
            xs.iter().copied().fold(f64::MAX, f64::min) / 1.5,
            xs.iter().copied().fold(0.0, f64::max) * 1.5,
        );
        let steps: [Step; 3] = [
            ("first commit", BLUE, |p| p.first),
            ("commit after 1% change", RED, |p| p.incr),
            ("full restore", GREEN, |p| p.restore),
        ];
        // Time per unit: per GiB for the size curve, per file (µs) for the file curve.
        let unit = |p: &ScalePoint, m: &Meas| {
            m.secs * scale
                / if curve == "size" {
                    gib(p)
                } else {
                    p.files as f64
                }
        };
        let tmax = pts
            .iter()
            .flat_map(|p| steps.iter().map(move |s| unit(p, &(s.2)(p))))
            .fold(0.01, f64::max)
            * 1.2;
        let ydesc = if curve == "size" {
            "seconds per GiB"
        } else {
            "µs per file"
        };
        let mut c = ChartBuilder::on(&panels[row * 2])
            .caption(format!("dvol time per unit vs {curve}"), ("sans-serif", 16))
            .margin(10)
            .x_label_area_size(35)
            .y_label_area_size(55)
            .build_cartesian_2d((xmin..xmax).log_scale(), 0f64..tmax)?;
        c.configure_mesh().x_desc(xdesc).y_desc(ydesc).draw()?;
        for (label, color, get) in steps {
            let line: Vec<(f64, f64)> = pts.iter().map(|p| (x(p), unit(p, &get(p)))).collect();
            c.draw_series(LineSeries::new(line.clone(), color.stroke_width(2)))?
                .label(label)
                .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 15, y)], color));
            c.draw_series(line.iter().map(|p| Circle::new(*p, 4, color.filled())))?;
        }
        c.configure_series_labels()
            .border_style(BLACK)
            .background_style(WHITE)
            .draw()?;
        let mem = |m: &Meas| m.maxrss_kib as f64 / 1024.0;
        let mmax = pts
            .iter()
            .flat_map(|p| steps.iter().map(move |s| mem(&(s.2)(p))))
            .fold(256.0, f64::max)
            * 1.15;
        let mut c = ChartBuilder::on(&panels[row * 2 + 1])
            .caption(format!("dvol peak memory vs {curve}"), ("sans-serif", 16))
            .margin(10)
            .x_label_area_size(35)
            .y_label_area_size(55)
            .build_cartesian_2d((xmin..xmax).log_scale(), 0f64..mmax)?;
        c.configure_mesh()
            .x_desc(xdesc)
            .y_desc("peak RSS, MiB")
            .draw()?;
        for (label, color, get) in steps {
            let line: Vec<(f64, f64)> = pts.iter().map(|p| (x(p), mem(&get(p)))).collect();
            c.draw_series(LineSeries::new(line.clone(), color.stroke_width(2)))?
                .label(label)
                .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 15, y)], color));
            c.draw_series(line.iter().map(|p| Circle::new(*p, 4, color.filled())))?;
        }
        c.draw_series(LineSeries::new(
            vec![(xmin, 256.0), (xmax, 256.0)],
            BLACK.mix(0.5),
        ))?
        .label("256 MiB goal")
        .legend(|(x, y)| PathElement::new(vec![(x, y), (x + 15, y)], BLACK.mix(0.5)));
        c.configure_series_labels()
            .border_style(BLACK)
            .background_style(WHITE)
            .draw()?;
    }
    root.present()?;
    Ok(())
}
