//! Output helpers shared by verbs: aligned tables, JSON, and terminal-safe text.
//!
//! Every name or message that reaches a terminal in human output goes through [`quote`]
//! (names: volumes, branches, tags, remotes, file paths, URLs) or [`escape`] (free text:
//! commit messages, authors, warnings, errors), so a name holding a newline or an escape
//! sequence cannot fake lines or drive the terminal. `--json` output is exact (serde escapes).

use serde::Serialize;
use std::borrow::Cow;
use std::fmt::Write as _;

/// Whether `c` must not reach a terminal raw: C0/C1 controls, DEL, and the Unicode bidi
/// overrides and isolates that reorder what is shown.
fn is_unsafe(c: char) -> bool {
    c.is_control()
        || matches!(c, '\u{200e}' | '\u{200f}' | '\u{202a}'..='\u{202e}' | '\u{2066}'..='\u{2069}')
}

/// Append `c` escaped the way C (and git's quotePath) writes it: `\n`, `\t`, `\"`, `\\`, or
/// `\ooo` octal for each byte of any other unsafe character.
fn push_escaped(out: &mut String, c: char) {
    let short = match c {
        '\u{7}' => Some('a'),
        '\u{8}' => Some('b'),
        '\t' => Some('t'),
        '\n' => Some('n'),
        '\u{b}' => Some('v'),
        '\u{c}' => Some('f'),
        '\r' => Some('r'),
        '"' => Some('"'),
        '\\' => Some('\\'),
        _ => None,
    };
    if let Some(s) = short {
        out.push('\\');
        out.push(s);
    } else if is_unsafe(c) {
        let mut buf = [0u8; 4];
        for b in c.encode_utf8(&mut buf).bytes() {
            let _ = write!(out, "\\{b:03o}");
        }
    } else {
        out.push(c);
    }
}

/// A name as human output shows it, like git's `core.quotePath`: unchanged unless it holds an
/// unsafe character, a `"` or a `\`; then in double quotes with C escapes (`"a\nb"`,
/// `"\033[2J"`). Printable non-ASCII text stays as it is.
pub fn quote(name: &str) -> Cow<'_, str> {
    if !name.chars().any(|c| is_unsafe(c) || c == '"' || c == '\\') {
        return Cow::Borrowed(name);
    }
    let mut out = String::with_capacity(name.len() + 8);
    out.push('"');
    for c in name.chars() {
        push_escaped(&mut out, c);
    }
    out.push('"');
    Cow::Owned(out)
}

/// One line of free text (a commit message line, a warning, an error) with its unsafe
/// characters escaped as in [`quote`] (a tab is kept), and no quotes added.
pub fn escape(text: &str) -> Cow<'_, str> {
    if !text.chars().any(|c| is_unsafe(c) && c != '\t') {
        return Cow::Borrowed(text);
    }
    let mut out = String::with_capacity(text.len() + 8);
    for c in text.chars() {
        match c {
            '\t' | '"' | '\\' => out.push(c),
            _ => push_escaped(&mut out, c),
        }
    }
    Cow::Owned(out)
}

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

/// A byte count for people: `512 B`, `1.5 KiB`, `3.2 GiB`.
pub fn human(bytes: u64) -> String {
    const UNITS: [&str; 5] = ["B", "KiB", "MiB", "GiB", "TiB"];
    let mut v = bytes as f64;
    let mut u = 0;
    while v >= 1024.0 && u + 1 < UNITS.len() {
        v /= 1024.0;
        u += 1;
    }
    if u == 0 {
        format!("{bytes} B")
    } else {
        format!("{v:.1} {}", UNITS[u])
    }
}

#[cfg(test)]
mod tests {
    use super::{escape, quote};

    #[test]
    fn quotes_like_git() {
        assert_eq!(quote("plain/name.txt"), "plain/name.txt");
        assert_eq!(quote("caf\u{e9}"), "caf\u{e9}");
        assert_eq!(quote("a\nb"), "\"a\\nb\"");
        assert_eq!(quote("\u{1b}[2J"), "\"\\033[2J\"");
        assert_eq!(quote("tab\there"), "\"tab\\there\"");
        assert_eq!(quote("q\"uote"), "\"q\\\"uote\"");
        assert_eq!(quote("\u{202e}x"), "\"\\342\\200\\256x\"");
        assert_eq!(quote("\u{7f}"), "\"\\177\"");
    }

    #[test]
    fn escapes_free_text_without_quotes() {
        assert_eq!(escape("fix \"x\"\tnow"), "fix \"x\"\tnow");
        assert_eq!(escape("a\rb\u{1b}]0;pwned\u{7}"), "a\\rb\\033]0;pwned\\a");
    }
}
