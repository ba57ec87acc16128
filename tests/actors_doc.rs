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
