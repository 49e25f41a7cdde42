//! The house's map: which top-level modules (rooms) of `src/` may use which. Every
//! `crate::` path in `src/`, in `use` lines and inline alike, is read and checked against the
//! allowed edges below; a path that crosses a forbidden edge fails the test, naming the file
//! and line. Dependencies point one way (DESIGN.md, STYLE.md): `server` and `cli` at the
//! top, `fhir` at the bottom, no circles.
//!
//! `KNOWN` lists edges that break the map and are being taken out (empty now). It must only
//! shrink: an edge in it that no longer occurs fails the test too, so the list never goes
//! stale. Unit-test code may cross rooms; the map is for production code.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

/// Each room and the rooms it may use (besides itself and the crate root's helpers such as
/// `crate::hex`), in production code. Rooms not listed (but [`TOP`]'s) may use nothing.
const ALLOWED: &[(&str, &[&str])] = &[
    ("fhir", &[]),
    ("telemetry", &[]),
    ("config", &["fhir"]),
    ("store", &["fhir"]),
    ("profiles", &["fhir"]),
    ("policy", &["fhir"]),
    ("audit", &["fhir", "store"]),
    ("auth", &["fhir", "config"]),
    // `store`: a `kind = "store"` source keeps its records in the gateway's own store
    // (STYLE.md: everything may use `fhir` and `store`).
    ("sources", &["fhir", "config", "store", "telemetry"]),
    (
        "federation",
        &[
            "fhir",
            "config",
            "store",
            "profiles",
            "policy",
            "sources",
            "telemetry",
        ],
    ),
    (
        "disclose",
        &[
            "fhir",
            "store",
            "policy",
            "audit",
            "auth",
            "sources",
            "federation",
        ],
    ),
    (
        "console",
        &[
            "fhir",
            "config",
            "store",
            "policy",
            "audit",
            "auth",
            "sources",
            "telemetry",
        ],
    ),
    (
        "server",
        &[
            "console",
            "fhir",
            "config",
            "store",
            "profiles",
            "policy",
            "sources",
            "telemetry",
            "audit",
            "auth",
            "federation",
            "disclose",
        ],
    ),
];

/// The top: the command line and the test helpers may use every room but `cli`.
const TOP: &[&str] = &["cli", "testing"];

/// Items of the crate root (`src/lib.rs`) every room may use.
const ROOT_ITEMS: &[&str] = &["hex"];

/// Edges that break the map today, each to be taken out: (from, to). Empty since issue 14
/// took out the last circles; keep it so.
const KNOWN: &[(&str, &str)] = &[];

/// One `crate::` path crossing from one room into another: (from, to, file, line).
type Use = (String, String, String, usize);

/// The room a file under `src/` belongs to: `src/foo.rs` and `src/foo/**` are `foo`; the
/// crate root (`lib.rs`, `main.rs`) is none.
fn room(relative: &str) -> Option<String> {
    let first = relative.split('/').next()?;
    let name = first.strip_suffix(".rs").unwrap_or(first);
    (!matches!(name, "lib" | "main")).then(|| name.to_owned())
}

/// The rooms named by every `crate::` path in `source`, with their line numbers. Comments
/// (doc links included) are no dependency and are skipped; `crate::{a, b::c}` names `a`
/// and `b`.
fn crate_paths(source: &str) -> Vec<(String, usize)> {
    let mut found = Vec::new();
    for (number, line) in source.lines().enumerate() {
        let code = line.split("//").next().unwrap_or_default();
        let mut rest = code;
        while let Some(at) = rest.find("crate::") {
            // Not the tail of a longer name (`my_crate::`).
            let before = rest[..at].chars().last();
            rest = &rest[at + "crate::".len()..];
            if before.is_some_and(|c| c.is_alphanumeric() || c == '_') {
                continue;
            }
            if let Some(group) = rest.strip_prefix('{') {
                let mut depth = 0_usize;
                let mut item = String::new();
                for c in group.chars() {
                    match c {
                        '{' => depth += 1,
                        '}' if depth == 0 => break,
                        '}' => depth -= 1,
                        ',' if depth == 0 => {
                            found.push((first_segment(&item), number + 1));
                            item.clear();
                            continue;
                        }
                        _ => {}
                    }
                    item.push(c);
                }
                found.push((first_segment(&item), number + 1));
            } else {
                found.push((first_segment(rest), number + 1));
            }
        }
    }
    found.retain(|(name, _)| !name.is_empty());
    found
}

fn first_segment(path: &str) -> String {
    path.trim()
        .chars()
        .take_while(|c| c.is_alphanumeric() || *c == '_')
        .collect()
}

/// Every edge from one room to another in the files given as (path under `src/`, text).
fn uses(files: &[(String, String)]) -> Vec<Use> {
    let mut out = Vec::new();
    for (path, text) in files {
        let Some(from) = room(path) else { continue };
        for (to, line) in crate_paths(text) {
            if to != from && to != "self" && to != "super" && !ROOT_ITEMS.contains(&to.as_str()) {
                out.push((from.clone(), to, path.clone(), line));
            }
        }
    }
    out
}

/// True for unit-test code (`tests.rs`, `*_tests.rs`, anything under a `tests/` folder):
/// tests may exercise other rooms (the store's tests run the audit log on both backends),
/// so the map is for production code.
fn test_code(path: &str) -> bool {
    path.ends_with("tests.rs") || path.contains("/tests/")
}

/// The uses in production code that cross a forbidden edge.
fn forbidden(uses: &[Use]) -> Vec<Use> {
    let allowed: BTreeMap<&str, &[&str]> = ALLOWED.iter().copied().collect();
    uses.iter()
        .filter(|(from, to, path, _)| {
            if test_code(path) {
                return false;
            }
            if TOP.contains(&from.as_str()) {
                return to == "cli";
            }
            !allowed
                .get(from.as_str())
                .is_some_and(|rooms| rooms.contains(&to.as_str()))
        })
        .cloned()
        .collect()
}

fn read_src() -> Vec<(String, String)> {
    fn walk(dir: &Path, base: &Path, out: &mut Vec<(String, String)>) {
        for entry in std::fs::read_dir(dir).expect("src/ is readable") {
            let path = entry.expect("entry").path();
            if path.is_dir() {
                walk(&path, base, out);
            } else if path.extension().is_some_and(|e| e == "rs") {
                let relative = path
                    .strip_prefix(base)
                    .expect("under src/")
                    .to_string_lossy()
                    .replace('\\', "/");
                out.push((relative, std::fs::read_to_string(&path).expect("utf-8")));
            }
        }
    }
    let base = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut out = Vec::new();
    walk(&base, &base, &mut out);
    out
}

#[test]
fn no_module_uses_a_room_it_may_not() {
    let files = read_src();
    assert!(files.len() > 20, "read {} files", files.len());
    let bad = forbidden(&uses(&files));
    let known: BTreeSet<(&str, &str)> = KNOWN.iter().copied().collect();
    let new: Vec<String> = bad
        .iter()
        .filter(|(from, to, _, _)| !known.contains(&(from.as_str(), to.as_str())))
        .map(|(from, to, path, line)| format!("src/{path}:{line}: `{from}` uses `{to}`"))
        .collect();
    assert!(
        new.is_empty(),
        "forbidden imports (see ALLOWED in tests/architecture.rs):\n{}",
        new.join("\n")
    );
    let seen: BTreeSet<(&str, &str)> = bad
        .iter()
        .map(|(from, to, _, _)| (from.as_str(), to.as_str()))
        .collect();
    let stale: Vec<_> = known.difference(&seen).collect();
    assert!(
        stale.is_empty(),
        "KNOWN lists edges that no longer occur; take them out: {stale:?}"
    );
}

#[test]
fn the_check_catches_inline_and_grouped_paths() {
    let files = vec![
        (
            "policy/engine.rs".to_owned(),
            "fn f() {\n    let c = crate::store::Store::default();\n}\n".to_owned(),
        ),
        (
            "fhir/bundle.rs".to_owned(),
            "use crate::{fhir::X, server::{a, b}};\n// crate::cli in a comment is no use\n"
                .to_owned(),
        ),
        (
            "federation/merge.rs".to_owned(),
            "use crate::policy::Decision;\nuse my_crate::server::X;\n".to_owned(),
        ),
    ];
    let bad: Vec<(String, String, usize)> = forbidden(&uses(&files))
        .into_iter()
        .map(|(from, to, _, line)| (from, to, line))
        .collect();
    assert_eq!(
        bad,
        [
            ("policy".to_owned(), "store".to_owned(), 2),
            ("fhir".to_owned(), "server".to_owned(), 1),
        ]
    );
}

/// Every place the clinical safety case names as a control, "`src/….rs` `name`" in
/// `docs/safety/hazard-log.md`, exists: the named file holds a `fn` of that name (the last
/// segment of `Type::name`). A refactor that moves a control must move the log's pointer too.
#[test]
fn the_hazard_log_names_only_code_that_exists() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let log = std::fs::read_to_string(root.join("docs/safety/hazard-log.md")).expect("the log");
    let mut missing = Vec::new();
    let mut checked = 0;
    for (file, name) in named_controls(&log) {
        let Ok(source) = std::fs::read_to_string(root.join(&file)) else {
            missing.push(format!("{file} (no such file)"));
            continue;
        };
        let short = name.rsplit("::").next().unwrap_or(&name);
        let defined = source.match_indices(&format!("fn {short}")).any(|(at, m)| {
            !source[at + m.len()..].starts_with(|c: char| c.is_alphanumeric() || c == '_')
        });
        if !defined {
            missing.push(format!("{file} {name}"));
        }
        checked += 1;
    }
    assert!(
        checked > 50,
        "the log names {checked} controls; the parser missed them"
    );
    assert!(
        missing.is_empty(),
        "the hazard log names code that does not exist:\n{}",
        missing.join("\n")
    );
}

/// Each "`src/….rs` `name`" or "`tests/….rs` `name`" pair in a text.
fn named_controls(text: &str) -> Vec<(String, String)> {
    let spans: Vec<&str> = text.split('`').collect();
    let mut out = Vec::new();
    // A file span, a single space, then a name span (code blocks' triple backticks upset
    // which spans are inside backticks, so every position is tried).
    for i in 0..spans.len().saturating_sub(2) {
        let (file, between, name) = (spans[i], spans[i + 1], spans[i + 2]);
        let is_file =
            (file.starts_with("src/") || file.starts_with("tests/")) && file.ends_with(".rs");
        let is_name = !name.is_empty()
            && name
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == ':');
        if is_file && between == " " && is_name {
            out.push((file.to_owned(), name.to_owned()));
        }
    }
    out
}

#[test]
fn the_log_reader_finds_file_and_name_pairs() {
    let text =
        "| x | `src/a.rs` `Scope::new`; `src/b.rs` `f`, `not/a.rs` `g` | `tests/t.rs` `case` |";
    assert_eq!(
        named_controls(text),
        [
            ("src/a.rs".to_owned(), "Scope::new".to_owned()),
            ("src/b.rs".to_owned(), "f".to_owned()),
            ("tests/t.rs".to_owned(), "case".to_owned()),
        ]
    );
}
