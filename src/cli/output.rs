//! Output helpers shared by verbs: aligned tables and JSON.

use serde::Serialize;

/// Print rows as columns separated by at least three spaces, each row prefixed (e.g. `* `),
/// trailing spaces trimmed, like the original dvol's tabwriter output.
pub fn print_table(header: &[&str], rows: &[(String, Vec<String>)]) {
    let cols = header.len();
    let mut widths: Vec<usize> = header.iter().map(|h| h.len()).collect();
    for (_, cells) in rows {
        for (i, c) in cells.iter().enumerate().take(cols) {
            widths[i] = widths[i].max(c.len());
        }
    }
    let line = |prefix: &str, cells: Vec<&str>| {
        let mut s = prefix.to_string();
        for (i, c) in cells.iter().enumerate() {
            s.push_str(c);
            if i + 1 < cells.len() {
                s.push_str(&" ".repeat(widths[i] - c.len() + 3));
            }
        }
        println!("{}", s.trim_end());
    };
    line("  ", header.to_vec());
    for (prefix, cells) in rows {
        line(prefix, cells.iter().map(String::as_str).collect());
    }
}

/// Print a value as pretty JSON on stdout.
pub fn print_json<T: Serialize>(value: &T) -> anyhow::Result<()> {
    println!("{}", serde_json::to_string_pretty(value)?);
    Ok(())
}
