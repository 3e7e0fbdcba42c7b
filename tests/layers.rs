//! The layer rule, checked from the source: every import points down the stack in [`LAYERS`]
//! and no two files import each other, directly or round a longer loop
//! (`docs/architecture.md`, "Layers").
//!
//! An import is any `crate::…`, `super::…` or `self::…` path outside comments and outside
//! `#[cfg(test)]` items and test files (tests may reach anywhere), resolved to the deepest file that defines
//! a module of it. A module may use its own submodules freely (it declares and composes them);
//! every other arrow counts.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

/// The library's top-level modules, lowest first: a module may import only modules before it.
/// The foundation (positions, time, randomness, TLS files, AWS client settings, the bearer
/// token check) is shared by all; then the record model and the settings; then the stages
/// from the store up to the sources; then the per-record path and the delivery contract that
/// recovers it; then the runtime, the admin endpoint and the engine that wires them.
const LAYERS: &[&str] = &[
    "clock",
    "rng",
    "tls",
    "bearer",
    "aws",
    "audit",
    "lineage",
    "coordination",
    "extract",
    "config",
    "telemetry",
    "store",
    "transform",
    "source",
    "buffer",
    "load",
    "pipeline",
    "delivery",
    "runtime",
    "admin",
    "engine",
];

/// A crate's files as module paths (`["source", "http", "server"]`) with their text.
fn modules(root: &Path) -> BTreeMap<Vec<String>, String> {
    fn walk(dir: &Path, out: &mut Vec<PathBuf>) {
        for e in std::fs::read_dir(dir).unwrap().flatten() {
            let p = e.path();
            if p.is_dir() {
                walk(&p, out);
            } else if p.extension().is_some_and(|x| x == "rs") {
                out.push(p);
            }
        }
    }
    let mut files = Vec::new();
    walk(root, &mut files);
    let mut out = BTreeMap::new();
    for f in files {
        let rel = f.strip_prefix(root).unwrap().with_extension("");
        let mut path: Vec<String> = rel.iter().map(|c| c.to_string_lossy().into_owned()).collect();
        if path.last().is_some_and(|l| l == "mod") {
            path.pop();
        }
        // Test modules in files of their own (`tests.rs`, `model_tests.rs`) reach anywhere.
        let test_file = path.last().is_some_and(|l| l == "tests" || l.ends_with("_tests"));
        if path == ["lib"] || path == ["main"] || path.is_empty() || test_file {
            continue;
        }
        out.insert(path, std::fs::read_to_string(&f).unwrap());
    }
    out
}

/// The text without comments and without the item after each `#[cfg(test)]`.
fn production_code(src: &str) -> String {
    let lines: Vec<&str> = src
        .lines()
        .map(|l| match l.find("//") {
            Some(i) => &l[..i],
            None => l,
        })
        .collect();
    let mut out = String::new();
    let mut i = 0;
    while i < lines.len() {
        if lines[i].trim() == "#[cfg(test)]" {
            // Skip the item: to its `;` or through its matching brace.
            let mut depth = 0i32;
            i += 1;
            while i < lines.len() {
                let l = lines[i];
                depth += l.matches('{').count() as i32 - l.matches('}').count() as i32;
                i += 1;
                if depth == 0 && (l.trim_end().ends_with(';') || l.trim_end().ends_with('}')) {
                    break;
                }
            }
            continue;
        }
        out.push_str(lines[i]);
        out.push('\n');
        i += 1;
    }
    out
}

/// Every path a text names: each `use` tree expanded, and inline `crate::a::b` paths.
fn paths(code: &str) -> Vec<Vec<String>> {
    fn expand(prefix: &[String], tree: &str, out: &mut Vec<Vec<String>>) {
        let tree = tree.trim();
        match tree.find('{') {
            None => {
                let mut p = prefix.to_vec();
                let head = tree.split(" as ").next().unwrap();
                p.extend(head.split("::").map(|s| s.trim().to_string()).filter(|s| !s.is_empty()));
                out.push(p);
            }
            Some(open) => {
                let mut p = prefix.to_vec();
                p.extend(
                    tree[..open]
                        .split("::")
                        .map(|s| s.trim().to_string())
                        .filter(|s| !s.is_empty()),
                );
                let inner = &tree[open + 1..tree.rfind('}').unwrap()];
                let (mut depth, mut start) = (0, 0);
                for (i, c) in inner.char_indices() {
                    match c {
                        '{' => depth += 1,
                        '}' => depth -= 1,
                        ',' if depth == 0 => {
                            expand(&p, &inner[start..i], out);
                            start = i + 1;
                        }
                        _ => {}
                    }
                }
                if !inner[start..].trim().is_empty() {
                    expand(&p, &inner[start..], out);
                }
            }
        }
    }
    let mut out = Vec::new();
    let mut rest = code;
    while let Some(i) = rest.find("use ") {
        let boundary = i == 0 || !rest.as_bytes()[i - 1].is_ascii_alphanumeric() && rest.as_bytes()[i - 1] != b'_';
        let after = &rest[i + 4..];
        let end = after.find(';').unwrap_or(after.len());
        let tree = &after[..end];
        let first = tree.trim_start();
        if boundary && (first.starts_with("crate::") || first.starts_with("super::") || first.starts_with("self::")) {
            expand(&[], tree, &mut out);
            rest = &after[end..];
        } else {
            rest = after;
        }
    }
    // Paths used inline (`crate::a::b(…)`, `super::c::D`), not only in `use`.
    for prefix in ["crate::", "super::"] {
        for (i, _) in code.match_indices(prefix) {
            let before = i.checked_sub(1).map(|b| code.as_bytes()[b]);
            if before.is_some_and(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b':') {
                continue;
            }
            let tail: String = code[i..]
                .chars()
                .take_while(|c| c.is_ascii_alphanumeric() || *c == '_' || *c == ':')
                .collect();
            out.push(tail.split("::").filter(|s| !s.is_empty()).map(String::from).collect());
        }
    }
    out
}

/// The file-level import graph of a crate: module → modules it imports (not its own submodules).
fn graph(root: &Path) -> BTreeMap<Vec<String>, BTreeSet<Vec<String>>> {
    let mods = modules(root);
    let mut edges: BTreeMap<Vec<String>, BTreeSet<Vec<String>>> = BTreeMap::new();
    for (m, src) in &mods {
        let code = production_code(src);
        let set = edges.entry(m.clone()).or_default();
        for p in paths(&code) {
            let mut abs: Vec<String> = Vec::new();
            let mut it = p.iter().peekable();
            match it.peek().map(|s| s.as_str()) {
                Some("crate") => {
                    it.next();
                }
                Some("self") => {
                    it.next();
                    abs = m.clone();
                }
                Some("super") => {
                    abs = m.clone();
                    while it.peek().is_some_and(|s| *s == "super") {
                        it.next();
                        abs.pop();
                    }
                }
                _ => continue,
            }
            abs.extend(it.cloned());
            let target = (1..=abs.len())
                .rev()
                .map(|k| abs[..k].to_vec())
                .find(|k| mods.contains_key(k));
            if let Some(t) = target {
                if &t != m && !t.starts_with(m) {
                    set.insert(t);
                }
            }
        }
    }
    edges
}

/// Every cycle's files (strongly connected components of more than one file).
fn cycles(edges: &BTreeMap<Vec<String>, BTreeSet<Vec<String>>>) -> Vec<Vec<String>> {
    let reach = |from: &Vec<String>| {
        let mut seen = BTreeSet::new();
        let mut stack = vec![from.clone()];
        while let Some(n) = stack.pop() {
            for t in edges.get(&n).into_iter().flatten() {
                if seen.insert(t.clone()) {
                    stack.push(t.clone());
                }
            }
        }
        seen
    };
    let reaches: BTreeMap<_, _> = edges.keys().map(|k| (k.clone(), reach(k))).collect();
    let mut out: Vec<Vec<String>> = Vec::new();
    let mut placed = BTreeSet::new();
    for k in edges.keys() {
        if placed.contains(k) || !reaches[k].contains(k) {
            continue;
        }
        let scc: Vec<String> = edges
            .keys()
            .filter(|o| reaches[k].contains(*o) && reaches[*o].contains(k))
            .inspect(|o| {
                placed.insert((*o).clone());
            })
            .map(|o| o.join("::"))
            .collect();
        out.push(scc);
    }
    out
}

/// Arrows between top-level modules that do not point down [`LAYERS`].
fn upward(edges: &BTreeMap<Vec<String>, BTreeSet<Vec<String>>>) -> Vec<String> {
    let rank = |m: &str| LAYERS.iter().position(|l| *l == m);
    let mut out = Vec::new();
    for (from, tos) in edges {
        for to in tos {
            let (a, b) = (&from[0], &to[0]);
            if a == b {
                continue;
            }
            match (rank(a), rank(b)) {
                (Some(ra), Some(rb)) if rb < ra => {}
                (Some(_), Some(_)) => out.push(format!("{} → {} (up the stack)", from.join("::"), to.join("::"))),
                _ => out.push(format!(
                    "{} → {}: add the module to LAYERS",
                    from.join("::"),
                    to.join("::")
                )),
            }
        }
    }
    out
}

fn crate_root(rel: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join(rel)
}

#[test]
fn the_library_imports_point_down_the_layers_without_cycles() {
    let edges = graph(&crate_root("src"));
    assert!(edges.len() > 50, "the walk found the library's files");
    let cycles = cycles(&edges);
    assert!(cycles.is_empty(), "import cycles between files:\n{cycles:#?}");
    let up = upward(&edges);
    assert!(up.is_empty(), "imports that point up the layers:\n{}", up.join("\n"));
}

#[test]
fn loadgen_has_no_import_cycle() {
    let edges = graph(&crate_root("loadgen/src"));
    let cycles = cycles(&edges);
    assert!(cycles.is_empty(), "import cycles between loadgen's files:\n{cycles:#?}");
}

/// The checker finds what it is for: a two-file cycle, a longer one, an upward arrow, and
/// skips comments, test code and a module's own submodules.
#[test]
fn the_checker_sees_cycles_and_upward_arrows() {
    let dir = std::env::temp_dir().join(format!("sluicegate-layers-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let write = |p: &str, text: &str| {
        let path = dir.join(p);
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(path, text).unwrap();
    };
    write("lib.rs", "pub mod store; pub mod source; pub mod engine;");
    write(
        "store/mod.rs",
        "mod a;\nmod b;\npub use a::A;\n// crate::engine::Engine in a comment\n",
    );
    write("store/a.rs", "use super::b::B;\npub struct A;");
    write("store/b.rs", "use super::{a::A, c};\npub struct B;");
    write("store/c.rs", "use crate::store::b::B;");
    write(
        "source/mod.rs",
        "use crate::store::A;\n#[cfg(test)]\nmod tests {\n    use crate::engine::Engine;\n}\n",
    );
    write(
        "engine.rs",
        "use crate::{source, store::A};\npub fn f() { crate::source::g(); }",
    );
    write("engine2.rs", "");
    let edges = graph(&dir);
    let found = cycles(&edges);
    assert_eq!(
        found,
        vec![vec!["store::a".to_string(), "store::b".into(), "store::c".into()]]
    );
    let mut up = upward(&edges);
    up.sort();
    // store/mod.rs's comment and source's test module name the engine: no arrow.
    assert!(
        up.iter()
            .all(|u| !u.starts_with("store →") && !u.starts_with("source →")),
        "{up:?}"
    );
    write("store/mod.rs", "mod a;\nmod b;\nuse crate::source::X;\n");
    let up = upward(&graph(&dir));
    assert!(up.iter().any(|u| u == "store → source (up the stack)"), "{up:?}");
    std::fs::remove_dir_all(&dir).unwrap();
}
