//! The documentation's own checks: every relative link in the repository's Markdown resolves
//! (the file exists; a `#fragment` names a heading of it, by GitHub's slug rule), the README
//! stays a short front door, and every page under `docs/` is reachable from the README's map.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

/// The README is the front door: what a user needs first, details in `docs/`.
const README_BYTES_MAX: usize = 15 * 1024;

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// Every Markdown file of the repository (not build output or fuzz corpora).
fn markdown_files() -> Vec<PathBuf> {
    fn walk(dir: &Path, out: &mut Vec<PathBuf>) {
        for e in std::fs::read_dir(dir).unwrap().flatten() {
            let p = e.path();
            let name = e.file_name().to_string_lossy().into_owned();
            if p.is_dir() {
                if !name.starts_with('.') && !matches!(name.as_str(), "target" | "corpus" | "artifacts") {
                    walk(&p, out);
                }
            } else if name.ends_with(".md") {
                out.push(p);
            }
        }
    }
    let mut out = Vec::new();
    walk(&root(), &mut out);
    out.sort();
    out
}

/// GitHub's anchor for a heading: lower case, punctuation dropped, spaces to hyphens.
fn slug(heading: &str) -> String {
    heading
        .trim()
        .to_lowercase()
        .chars()
        .filter_map(|c| match c {
            ' ' => Some('-'),
            c if c.is_alphanumeric() || c == '-' || c == '_' => Some(c),
            _ => None,
        })
        .collect()
}

/// The text outside fenced code blocks; with `inline`, without inline code spans either.
fn prose(text: &str, inline: bool) -> String {
    let mut out = String::new();
    let mut fenced = false;
    for line in text.lines() {
        if line.trim_start().starts_with("```") {
            fenced = !fenced;
            continue;
        }
        if !fenced {
            if inline {
                // Inline code spans (odd-numbered pieces between backticks) are dropped.
                out.extend(line.split('`').step_by(2));
            } else {
                out.push_str(line);
            }
            out.push('\n');
        }
    }
    out
}

fn anchors(text: &str) -> BTreeSet<String> {
    let mut seen = BTreeSet::new();
    for line in prose(text, false).lines() {
        if let Some(h) = line.strip_prefix('#') {
            let base = slug(h.trim_start_matches('#'));
            // Repeated headings get -1, -2, … as on GitHub.
            let mut s = base.clone();
            let mut n = 0;
            while !seen.insert(s.clone()) {
                n += 1;
                s = format!("{base}-{n}");
            }
        }
    }
    seen
}

/// Targets of inline links `[text](target)` outside code.
fn links(text: &str) -> Vec<String> {
    let text = prose(text, true);
    let mut out = Vec::new();
    let mut rest = text.as_str();
    while let Some(i) = rest.find("](") {
        let after = &rest[i + 2..];
        match after.find(')') {
            Some(j) => {
                out.push(after[..j].trim().to_string());
                rest = &after[j..];
            }
            None => break,
        }
    }
    out
}

fn broken_links() -> Vec<String> {
    let mut bad = Vec::new();
    for file in markdown_files() {
        let text = std::fs::read_to_string(&file).unwrap();
        let rel = file.strip_prefix(root()).unwrap().display().to_string();
        for target in links(&text) {
            if target.contains("://") || target.starts_with("mailto:") || target.is_empty() {
                continue;
            }
            let (path, fragment) = match target.split_once('#') {
                Some((p, f)) => (p, Some(f)),
                None => (target.as_str(), None),
            };
            let dest = if path.is_empty() {
                file.clone()
            } else {
                file.parent().unwrap().join(path)
            };
            if !dest.exists() {
                bad.push(format!("{rel}: ({target}): no such file"));
                continue;
            }
            if let Some(f) = fragment {
                if dest.extension().is_some_and(|e| e == "md") {
                    let t = std::fs::read_to_string(&dest).unwrap();
                    if !anchors(&t).contains(f) {
                        bad.push(format!("{rel}: ({target}): no heading #{f} there"));
                    }
                }
            }
        }
    }
    bad
}

#[test]
fn every_relative_link_in_the_markdown_resolves() {
    let bad = broken_links();
    assert!(bad.is_empty(), "broken links:\n{}", bad.join("\n"));
}

#[test]
fn the_readme_is_a_short_front_door_whose_map_reaches_every_doc() {
    let readme = std::fs::read_to_string(root().join("README.md")).unwrap();
    assert!(
        readme.len() <= README_BYTES_MAX,
        "README.md is {} bytes, over {README_BYTES_MAX}: move details to docs/",
        readme.len()
    );
    let linked: BTreeSet<String> = links(&readme)
        .into_iter()
        .map(|l| l.split('#').next().unwrap().to_string())
        .collect();
    for page in std::fs::read_dir(root().join("docs")).unwrap().flatten() {
        let name = page.file_name().to_string_lossy().into_owned();
        if name.ends_with(".md") {
            assert!(
                linked.contains(&format!("docs/{name}")),
                "docs/{name} is not in the README's map"
            );
        }
    }
}

/// The checker itself: a slug, an anchor repeated, a link in code ignored.
#[test]
fn the_link_checker_reads_headings_and_links_as_github_does() {
    assert_eq!(slug(" Delivery: exactly once"), "delivery-exactly-once");
    assert_eq!(slug("S3 / Kinesis (KPL)"), "s3--kinesis-kpl");
    let a = anchors("# A\n## A\n```\n# not a heading\n```\n");
    assert_eq!(a, BTreeSet::from(["a".to_string(), "a-1".to_string()]));
    assert_eq!(
        links("see [x](a.md#b) and `[y](z)`\n```\n[c](d)\n```\n"),
        vec!["a.md#b"]
    );
}
