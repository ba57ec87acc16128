//! Imports run downward: the edges that once ran upward (the flow engine importing the API's
//! views, the configuration importing the flow engine, the shared services importing the bots,
//! the call starting its own bot or naming the registry) must not come back. Reads `src/` as
//! text.

use std::fs;
use std::path::{Path, PathBuf};

/// Every `.rs` file under `dir` (or `dir` itself when it is a file).
fn sources(dir: &str) -> Vec<PathBuf> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join(dir);
    let mut found = Vec::new();
    let mut todo = vec![root];
    while let Some(path) = todo.pop() {
        if path.is_dir() {
            for entry in fs::read_dir(&path).expect("readable src") {
                todo.push(entry.expect("dir entry").path());
            }
        } else if path.extension().is_some_and(|e| e == "rs") {
            found.push(path);
        }
    }
    assert!(!found.is_empty(), "no sources under {dir}");
    found
}

/// The `crate::…` paths named in code (not comments) of `file`, with their lines.
fn crate_paths(file: &Path) -> Vec<(usize, String)> {
    let text = fs::read_to_string(file).expect("readable source");
    let mut paths = Vec::new();
    for (n, line) in text.lines().enumerate() {
        let code = line.split("//").next().unwrap_or("");
        let mut rest = code;
        while let Some(at) = rest.find("crate::") {
            let tail = &rest[at + "crate::".len()..];
            let end = tail
                .find(|c: char| !(c.is_alphanumeric() || c == '_' || c == ':'))
                .unwrap_or(tail.len());
            paths.push((n + 1, tail[..end].trim_end_matches(':').to_owned()));
            rest = &tail[end..];
        }
    }
    paths
}

/// Fails with every place under `dir` whose `crate::` path is refused by `allowed`.
fn check(dir: &str, why: &str, allowed: impl Fn(&str) -> bool) {
    let mut bad = Vec::new();
    for file in sources(dir) {
        for (line, path) in crate_paths(&file) {
            if !allowed(&path) {
                bad.push(format!("{}:{line}: crate::{path}", file.display()));
            }
        }
    }
    assert!(bad.is_empty(), "{why}:\n{}", bad.join("\n"));
}

fn under(path: &str, module: &str) -> bool {
    path == module || path.starts_with(&format!("{module}::"))
}

#[test]
fn nothing_but_the_app_imports_the_api() {
    for dir in [
        "src/bots",
        "src/call",
        "src/room",
        "src/protocols",
        "src/media",
    ] {
        check(dir, "only `app` may import `api`", |p| !under(p, "api"));
    }
    for file in [
        "src/config.rs",
        "src/registry.rs",
        "src/services.rs",
        "src/actions.rs",
    ] {
        check(file, "only `app` may import `api`", |p| !under(p, "api"));
    }
}

#[test]
fn configuration_and_services_sit_below_the_bots() {
    for file in ["src/config.rs", "src/services.rs"] {
        check(
            file,
            "the configuration and services are below the bots",
            |p| !under(p, "bots") && !under(p, "registry"),
        );
    }
}

#[test]
fn the_call_does_not_start_its_bot() {
    check(
        "src/call",
        "the call talks to its bot through messages only",
        |p| !under(p, "bots"),
    );
}

#[test]
fn the_actions_schema_is_a_leaf() {
    check(
        "src/actions.rs",
        "the actions schema imports only the call's plain types and media",
        |p| under(p, "call::state") || under(p, "call::view") || under(p, "media"),
    );
}

#[test]
fn media_imports_nothing_of_the_switch() {
    check("src/media", "media is below everything", |p| {
        under(p, "media")
    });
}
