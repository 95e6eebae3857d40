//! The library's layers hold: each top-level module of `src/` may name only the modules below
//! it (docs/architecture.md), and nothing outside the CLI prints. Reads the source, so a
//! forbidden `use crate::…` fails here before review.

use std::collections::BTreeSet;
use std::path::Path;

/// Which modules each library module may name through `crate::`. `Error` and `Result` are
/// the re-exports of `error`.
const ALLOWED: &[(&str, &[&str])] = &[
    ("failpoint", &[]),
    ("progress", &[]),
    ("runtime", &["error"]),
    ("names", &["error"]),
    ("lock", &["error"]),
    ("remote_url", &["error"]),
    ("store", &["error", "failpoint"]),
    ("live", &["error", "failpoint"]),
    ("overlay", &["error", "live"]),
    (
        "snapshot",
        &["error", "failpoint", "live", "progress", "store"],
    ),
    (
        "repo",
        &[
            "error",
            "failpoint",
            "live",
            "lock",
            "names",
            "overlay",
            "progress",
            "remote_url",
            "snapshot",
            "store",
        ],
    ),
    (
        "remote",
        &[
            "error",
            "failpoint",
            "lock",
            "names",
            "progress",
            "remote_url",
            "repo",
            "runtime",
            "snapshot",
            "store",
        ],
    ),
    (
        "cluster",
        &[
            "docker",
            "error",
            "failpoint",
            "names",
            "progress",
            "remote",
            "repo",
            "runtime",
            "store",
        ],
    ),
    (
        "docker",
        &["error", "failpoint", "lock", "names", "repo", "runtime"],
    ),
    (
        "plugin",
        &["cluster", "error", "docker", "live", "names", "repo"],
    ),
    // The upward edges: the library error wraps the remote, cluster and plugin layers' typed
    // errors.
    ("error", &["cluster", "plugin", "remote", "repo"]),
];

/// The top-level module a file under `src/` belongs to (`None` for the crate root and CLI).
fn module_of(rel: &Path) -> Option<String> {
    let first = rel.components().next()?.as_os_str().to_str()?;
    let name = first.strip_suffix(".rs").unwrap_or(first);
    (!matches!(name, "lib" | "main" | "cli")).then(|| name.to_string())
}

/// The modules a source text names as `crate::name` or inside `use crate::{a, b::c}`, test
/// modules excluded.
fn named_modules(source: &str) -> BTreeSet<String> {
    let code = source.split("#[cfg(test)]").next().unwrap_or(source);
    let mut found = BTreeSet::new();
    for (i, _) in code.match_indices("crate::") {
        let rest = &code[i + "crate::".len()..];
        if let Some(group) = rest.strip_prefix('{') {
            let group = &group[..group.find('}').unwrap_or(group.len())];
            for item in group.split(',') {
                found.insert(first_ident(item.trim()));
            }
        } else {
            found.insert(first_ident(rest));
        }
    }
    found
        .into_iter()
        .filter(|m| !m.is_empty())
        .map(|m| match m.as_str() {
            "Error" | "Result" => "error".to_string(),
            _ => m,
        })
        .collect()
}

fn first_ident(s: &str) -> String {
    s.chars()
        .take_while(|c| c.is_alphanumeric() || *c == '_')
        .collect()
}

fn library_sources() -> Vec<(String, std::path::PathBuf, String)> {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    walkdir::WalkDir::new(&src)
        .into_iter()
        .map(Result::unwrap)
        .filter(|e| e.path().extension().is_some_and(|x| x == "rs"))
        .filter_map(|e| {
            let rel = e.path().strip_prefix(&src).unwrap().to_path_buf();
            let module = module_of(&rel)?;
            let text = std::fs::read_to_string(e.path()).unwrap();
            Some((module, rel, text))
        })
        .collect()
}

#[test]
fn library_modules_name_only_the_layers_below_them() {
    let mut violations = Vec::new();
    for (module, rel, text) in library_sources() {
        let allowed = ALLOWED
            .iter()
            .find(|(m, _)| *m == module)
            .unwrap_or_else(|| panic!("src/{}: module {module} has no row in ALLOWED (and none in docs/architecture.md?)", rel.display()))
            .1;
        for named in named_modules(&text) {
            if named != module && !allowed.contains(&named.as_str()) {
                violations.push(format!("src/{} uses crate::{named}", rel.display()));
            }
        }
    }
    assert!(
        violations.is_empty(),
        "forbidden imports:\n{}",
        violations.join("\n")
    );
}

#[test]
fn the_library_never_prints() {
    let printing: Vec<String> = library_sources()
        .into_iter()
        .filter(|(_, _, text)| {
            let code = text.split("#[cfg(test)]").next().unwrap_or(text);
            ["println!", "eprintln!", "print!(", "eprint!(", "dbg!("]
                .iter()
                .any(|m| code.contains(m))
        })
        .map(|(_, rel, _)| format!("src/{}", rel.display()))
        .collect();
    assert!(printing.is_empty(), "the library prints in: {printing:?}");
}

#[test]
fn the_checker_sees_a_forbidden_import() {
    let named = named_modules("use crate::{remote::ops, Error};\nfn f() { crate::docker::x(); }");
    assert!(named.contains("remote") && named.contains("docker") && named.contains("error"));
}

/// SQL in `text` (string literals) that names the store's tables.
fn store_table_sql(text: &str) -> Vec<String> {
    const TABLES: [&str; 2] = ["objects", "packs"];
    const VERBS: [&str; 5] = ["from", "into", "join", "table", "update"];
    let mut found = Vec::new();
    for literal in text.split('"').skip(1).step_by(2) {
        let words: Vec<String> = literal
            .split(|c: char| !c.is_alphanumeric() && c != '_')
            .filter(|w| !w.is_empty())
            .map(str::to_lowercase)
            .collect();
        for w in words.windows(2) {
            if VERBS.contains(&w[0].as_str()) && TABLES.contains(&w[1].as_str()) {
                found.push(format!("{} {}", w[0], w[1]));
            }
        }
    }
    found
}

#[test]
fn only_the_store_names_its_tables() {
    let mut violations = Vec::new();
    for (module, rel, text) in library_sources() {
        // In-crate test fixtures may damage a row on purpose (a corruption test).
        if module == "store" || rel.file_name().is_some_and(|f| f == "tests.rs") {
            continue;
        }
        for sql in store_table_sql(&text) {
            violations.push(format!("src/{}: \"{sql}\"", rel.display()));
        }
    }
    assert!(
        violations.is_empty(),
        "SQL on the store's tables outside src/store:\n{}",
        violations.join("\n")
    );
    assert_eq!(
        store_table_sql(r#"x("DELETE FROM objects WHERE id = ?1")"#),
        ["from objects"]
    );
}
