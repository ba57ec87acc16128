//! Keeps `actors.md` in step with the code: every actor and every message type defined under
//! `src/` must be named in it.

use std::path::Path;

fn rust_files(dir: &Path, out: &mut Vec<std::path::PathBuf>) {
    for entry in std::fs::read_dir(dir).expect("src readable") {
        let path = entry.expect("dir entry").path();
        if path.is_dir() {
            rust_files(&path, out);
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path);
        }
    }
}

/// Names of actor types and message types defined in `text`.
fn defined_names(text: &str) -> Vec<String> {
    let mut names = Vec::new();
    let lines: Vec<&str> = text.lines().collect();
    for (i, line) in lines.iter().enumerate() {
        let line = line.trim();
        if let Some(rest) = line.strip_prefix("impl Actor for ") {
            names.push(rest.trim_end_matches(" {").trim().to_owned());
        }
        if line.starts_with("#[derive(") && line.contains("Message") && !line.contains("prost") {
            // The type follows the derive and any further attributes.
            for next in &lines[i + 1..] {
                let next = next.trim();
                if next.starts_with("#[") || next.starts_with("///") {
                    continue;
                }
                let name = next
                    .trim_start_matches("pub ")
                    .trim_start_matches("struct ")
                    .trim_start_matches("enum ")
                    .split(|c: char| !c.is_alphanumeric() && c != '_')
                    .next()
                    .unwrap_or("")
                    .to_owned();
                names.push(name);
                break;
            }
        }
    }
    names
}

#[test]
fn every_actor_and_message_is_documented() {
    let doc = std::fs::read_to_string("actors.md").expect("actors.md exists");
    let mut files = Vec::new();
    rust_files(Path::new("src"), &mut files);
    let mut missing = Vec::new();
    let mut seen = 0;
    for file in files {
        let text = std::fs::read_to_string(&file).expect("source readable");
        for name in defined_names(&text) {
            seen += 1;
            if !doc.contains(&format!("`{name}"))
                && !doc.contains(&format!("{name}`"))
                && !doc.contains(&format!("### {name}"))
            {
                missing.push(format!("{name} ({})", file.display()));
            }
        }
    }
    assert!(seen > 10, "the scan found the actors and messages");
    assert!(missing.is_empty(), "not in actors.md: {missing:?}");
}

/// `(actor, message)` for every `impl Handler<M> for A` under `src/`.
fn handlers() -> std::collections::BTreeSet<(String, String)> {
    let mut files = Vec::new();
    rust_files(Path::new("src"), &mut files);
    let mut found = std::collections::BTreeSet::new();
    for file in files {
        let text = std::fs::read_to_string(&file).expect("source readable");
        for line in text.lines() {
            let Some(rest) = line.trim().strip_prefix("impl Handler<") else {
                continue;
            };
            let Some((message, actor)) = rest.split_once("> for ") else {
                continue;
            };
            let actor = actor.trim_end_matches(" {").trim();
            found.insert((actor.to_owned(), message.trim().to_owned()));
        }
    }
    found
}

/// The message type a `Receives` table row or line names first: `` `Name { … }` ``,
/// `` `Name::{…}` `` or `` `Name` ``.
fn type_names(cell: &str) -> Vec<String> {
    cell.split('`')
        .skip(1)
        .step_by(2)
        .map(|code| {
            code.split(|c: char| !c.is_alphanumeric() && c != '_')
                .next()
                .unwrap_or("")
                .to_owned()
        })
        .filter(|n| n.chars().next().is_some_and(|c| c.is_ascii_uppercase()))
        .collect()
}

/// For each `### Actor (…)` section of actors.md: the message types its `Receives` table rows
/// (first column) and `Receives` lines name.
fn documented_receives(doc: &str) -> Vec<(String, Vec<String>)> {
    let mut sections: Vec<(String, Vec<String>)> = Vec::new();
    for line in doc.lines() {
        if let Some(title) = line.strip_prefix("### ") {
            let name = title.split_whitespace().next().unwrap_or("").to_owned();
            sections.push((name, Vec::new()));
            continue;
        }
        if line.starts_with("## ") {
            sections.push((String::new(), Vec::new()));
            continue;
        }
        let Some((_, names)) = sections.last_mut() else {
            continue;
        };
        if let Some(row) = line.strip_prefix("| `") {
            let first = row.split(" | ").next().unwrap_or("");
            names.extend(type_names(&format!("`{first}")).into_iter().take(1));
        } else if let Some(rest) = line.strip_prefix("Receives") {
            // `Receives: frames (stream items), `LegCommand`. Sends: …`: the names before
            // `sends`, outside parentheses (which describe, not list).
            let lower = rest.to_lowercase();
            let receives = &rest[..lower.find("sends").unwrap_or(rest.len())];
            let mut outside = String::new();
            let mut depth = 0usize;
            for c in receives.chars() {
                match c {
                    '(' => depth += 1,
                    ')' => depth = depth.saturating_sub(1),
                    _ if depth == 0 => outside.push(c),
                    _ => {}
                }
            }
            names.extend(type_names(&outside));
        }
    }
    sections
}

#[test]
fn every_documented_message_is_handled_by_its_actor_and_back() {
    let doc = std::fs::read_to_string("actors.md").expect("actors.md exists");
    let handled = handlers();
    let actors: std::collections::BTreeSet<&str> =
        handled.iter().map(|(a, _)| a.as_str()).collect();
    let mut wrong = Vec::new();
    let mut checked = 0;
    let mut documented = std::collections::BTreeSet::new();
    for (actor, names) in documented_receives(&doc) {
        if !actors.contains(actor.as_str()) {
            continue;
        }
        for name in names {
            checked += 1;
            if !handled.contains(&(actor.clone(), name.clone())) {
                wrong.push(format!(
                    "{actor} is documented to receive {name}, but does not handle it"
                ));
            }
            documented.insert((actor.clone(), name));
        }
    }
    for pair in &handled {
        if !documented.contains(pair) {
            wrong.push(format!(
                "{} handles {}, but its section does not say so",
                pair.0, pair.1
            ));
        }
    }
    assert!(
        checked > 30,
        "the doc's Receives rows were read ({checked})"
    );
    assert!(
        wrong.is_empty(),
        "actors.md disagrees with the code:\n{}",
        wrong.join("\n")
    );
}
