//! `status` and `diff` output, written as the changes are found (one directory of the volume
//! is compared at a time): text goes straight to stdout; `status --json`, whose object groups
//! changes by kind, collects each kind's paths in a scratch file first and copies them out.
//! Nothing here holds a volume's list of changes.

use super::output::{escape, quote};
use dvol::error::IoContext;
use dvol::snapshot::{Change, ChangeKind};
use std::fs::File;
use std::io::{BufRead, BufWriter, Seek, Write};

/// Write to stdout (a closed pipe, as with `| head`, ends the command with an error).
pub struct Out(BufWriter<std::io::StdoutLock<'static>>);

impl Out {
    pub fn new() -> Out {
        Out(BufWriter::new(std::io::stdout().lock()))
    }

    pub fn line(&mut self, text: &str) -> dvol::Result<()> {
        writeln!(self.0, "{text}").at("write", "stdout")
    }

    pub fn flush(&mut self) -> dvol::Result<()> {
        self.0.flush().at("write", "stdout")
    }
}

/// The line `status` prints for a change.
pub fn status_line(c: &Change) -> String {
    let label = match c.kind {
        ChangeKind::Added => "added:   ",
        ChangeKind::Modified => "modified:",
        ChangeKind::Deleted => "deleted: ",
    };
    format!("\t{label} {}", quote(&c.path))
}

/// The line `diff` prints for a change (`--stat`: with its sizes).
pub fn diff_line(c: &Change, stat: bool) -> String {
    if stat {
        format!(
            " {} {} | {} -> {} bytes",
            letter(c),
            quote(&c.path),
            c.old_size,
            c.new_size
        )
    } else {
        format!("{}\t{}", letter(c), quote(&c.path))
    }
}

fn letter(c: &Change) -> char {
    match c.kind {
        ChangeKind::Added => 'A',
        ChangeKind::Modified => 'M',
        ChangeKind::Deleted => 'D',
    }
}

/// The totals `diff --stat` ends with, counted as changes go by.
#[derive(Default)]
pub struct Summary {
    added: u64,
    modified: u64,
    deleted: u64,
    grew: u64,
    shrank: u64,
}

impl Summary {
    pub fn add(&mut self, c: &Change) {
        match c.kind {
            ChangeKind::Added => self.added += 1,
            ChangeKind::Modified => self.modified += 1,
            ChangeKind::Deleted => self.deleted += 1,
        }
        self.grew += c.new_size.saturating_sub(c.old_size);
        self.shrank += c.old_size.saturating_sub(c.new_size);
    }

    pub fn line(&self) -> String {
        format!(
            " {} changed ({} added, {} modified, {} deleted), +{} -{} bytes",
            self.added + self.modified + self.deleted,
            self.added,
            self.modified,
            self.deleted,
            self.grew,
            self.shrank
        )
    }
}

/// The paths of `status --json`, one scratch file per kind (JSON strings, one a line).
pub struct JsonScratch {
    files: [(&'static str, BufWriter<File>, u64); 3],
}

impl JsonScratch {
    pub fn new() -> dvol::Result<JsonScratch> {
        let scratch = || -> dvol::Result<BufWriter<File>> {
            Ok(BufWriter::new(
                tempfile::tempfile().at("create", "a scratch file")?,
            ))
        };
        Ok(JsonScratch {
            files: [
                ("added", scratch()?, 0),
                ("modified", scratch()?, 0),
                ("deleted", scratch()?, 0),
            ],
        })
    }

    pub fn add(&mut self, c: &Change) -> dvol::Result<()> {
        let slot = &mut self.files[match c.kind {
            ChangeKind::Added => 0,
            ChangeKind::Modified => 1,
            ChangeKind::Deleted => 2,
        }];
        let json = serde_json::to_string(&c.path).expect("a string serializes");
        writeln!(slot.1, "{json}").at("write", "a scratch file")?;
        slot.2 += 1;
        Ok(())
    }

    /// Print the object: volume, branch, each kind's paths, then the skipped entries.
    pub fn print(self, volume: &str, branch: &str, skipped: &[String]) -> anyhow::Result<()> {
        let mut out = Out::new();
        let s = |v: &str| serde_json::to_string(v).expect("a string serializes");
        out.line(&format!(
            "{{\n  \"volume\": {},\n  \"branch\": {},",
            s(volume),
            s(branch)
        ))?;
        for (name, file, count) in self.files {
            let mut file = file.into_inner().map_err(|e| e.into_error())?;
            file.rewind()?;
            let mut lines = std::io::BufReader::new(file).lines();
            out.line(&format!("  \"{name}\": ["))?;
            for i in 0..count {
                let line = lines
                    .next()
                    .ok_or_else(|| anyhow::anyhow!("scratch file cut short"))??;
                let sep = if i + 1 < count { "," } else { "" };
                out.line(&format!("    {line}{sep}"))?;
            }
            out.line("  ],")?;
        }
        let skipped: Vec<String> = skipped.iter().map(|m| s(m)).collect();
        out.line(&format!("  \"unsupported\": [{}]\n}}", skipped.join(", ")))?;
        out.flush()?;
        Ok(())
    }
}

/// Print the skipped entries' messages as warnings.
pub fn warn_skipped(out: &mut Out, skipped: &[String]) -> dvol::Result<()> {
    for m in skipped {
        out.line(&format!("warning: {}", escape(m)))?;
    }
    Ok(())
}
