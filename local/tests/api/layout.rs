//! The house rules of docs/architecture.md that a reader would otherwise check by eye: the base of
//! `common` stays small, modules never import each other in a loop, handlers stay thin and no
//! line outgrows rustfmt's width.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

const MAX_COMMON_ROOT_ENTRIES: usize = 15;
const MAX_HANDLER_LINES: usize = 40;
/// rustfmt.toml's `max_width`: what rustfmt cannot wrap (attributes, long literals) must not pass it.
const MAX_LINE_WIDTH: usize = 140;

fn workspace() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).parent().expect("local/ sits in the workspace").to_path_buf()
}

/// Every `.rs` file below `dir`, sorted.
fn rust_files(dir: &Path) -> Vec<PathBuf> {
    let mut files = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(dir) = stack.pop() {
        for entry in std::fs::read_dir(&dir).unwrap_or_else(|e| panic!("{}: {e}", dir.display())) {
            let path = entry.unwrap().path();
            if path.is_dir() {
                if path.file_name().is_some_and(|n| n != "target" && n != "node_modules" && !n.to_string_lossy().starts_with('.')) {
                    stack.push(path);
                }
            } else if path.extension().is_some_and(|e| e == "rs") {
                files.push(path);
            }
        }
    }
    files.sort();
    files
}

/// The source trees of the workspace's crates: `common/src`, `local/src`, `functions/*/src`.
fn crate_sources() -> Vec<PathBuf> {
    let root = workspace();
    let mut dirs = vec![root.join("common/src"), root.join("local/src")];
    let mut functions: Vec<PathBuf> = std::fs::read_dir(root.join("functions")).unwrap().map(|e| e.unwrap().path().join("src")).collect();
    functions.sort();
    dirs.extend(functions);
    dirs
}

/// The identifiers that follow each `prefix` in `text` (`crate::store::X` -> `store`).
fn names_after<'a>(text: &'a str, prefix: &'a str) -> impl Iterator<Item = &'a str> + 'a {
    text.match_indices(prefix).filter_map(move |(at, _)| {
        let before = text[..at].chars().next_back();
        if before.is_some_and(|c| c.is_alphanumeric() || matches!(c, '_' | ':' | '$')) {
            return None;
        }
        let rest = &text[at + prefix.len()..];
        let end = rest.find(|c: char| !(c.is_alphanumeric() || c == '_')).unwrap_or(rest.len());
        (end > 0).then(|| &rest[..end])
    })
}

/// What the crate root re-exports, by name, mapped to the module it comes from
/// (`pub use offload::offload;` makes `crate::offload` mean the module `offload`).
fn root_reexports(src: &Path) -> BTreeMap<String, String> {
    let mut aliases = BTreeMap::new();
    for root in ["lib.rs", "main.rs"] {
        let Ok(text) = std::fs::read_to_string(src.join(root)) else { continue };
        for line in text.lines().map(str::trim).filter(|l| l.starts_with("pub use ")) {
            let path = line.trim_start_matches("pub use ").trim_end_matches(';');
            let module = path.split("::").next().unwrap_or_default().to_string();
            let items = path.rsplit("::").next().unwrap_or_default().trim_matches(|c| c == '{' || c == '}');
            for item in items.split(',').map(str::trim).filter(|i| !i.is_empty()) {
                aliases.insert(item.to_string(), module.clone());
            }
        }
    }
    aliases
}

/// The entries (files without `.rs`, and folders) directly inside `dir`, without `lib`, `main`
/// and `mod`, which are the folder itself.
fn entries(dir: &Path) -> BTreeSet<String> {
    std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.is_dir() || p.extension().is_some_and(|e| e == "rs"))
        .map(|p| p.file_stem().unwrap().to_string_lossy().into_owned())
        .filter(|n| !matches!(n.as_str(), "lib" | "main" | "mod"))
        .collect()
}

/// A cycle in `edges`, if there is one, as the list of nodes around it.
fn find_cycle(edges: &BTreeMap<String, BTreeSet<String>>) -> Option<Vec<String>> {
    fn visit(
        node: &str,
        edges: &BTreeMap<String, BTreeSet<String>>,
        path: &mut Vec<String>,
        done: &mut BTreeSet<String>,
    ) -> Option<Vec<String>> {
        if let Some(at) = path.iter().position(|n| n == node) {
            let mut cycle = path[at..].to_vec();
            cycle.push(node.to_string());
            return Some(cycle);
        }
        if done.contains(node) {
            return None;
        }
        path.push(node.to_string());
        for next in edges.get(node).into_iter().flatten() {
            if let Some(cycle) = visit(next, edges, path, done) {
                return Some(cycle);
            }
        }
        path.pop();
        done.insert(node.to_string());
        None
    }
    let mut done = BTreeSet::new();
    edges.keys().find_map(|node| visit(node, edges, &mut Vec::new(), &mut done))
}

/// The module graph of one folder of a crate: which of its entries names which sibling, through
/// `crate::<folder path>::<sibling>` anywhere below the entry, or `super::<sibling>` in the file
/// that is the entry itself (`x.rs` or `x/mod.rs`).
fn sibling_graph(src: &Path, folder: &Path) -> BTreeMap<String, BTreeSet<String>> {
    let siblings = entries(folder);
    let relative = folder.strip_prefix(src).unwrap();
    let module_path: String = relative.components().map(|c| format!("{}::", c.as_os_str().to_string_lossy())).collect();
    let aliases = if relative.as_os_str().is_empty() { root_reexports(src) } else { BTreeMap::new() };
    let mut edges: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for entry in &siblings {
        let (dir, file) = (folder.join(entry), folder.join(format!("{entry}.rs")));
        let files = if dir.is_dir() { rust_files(&dir) } else { vec![file.clone()] };
        for path in files {
            let text = std::fs::read_to_string(&path).unwrap();
            let own_file = path == file || path == dir.join("mod.rs");
            let mut named: Vec<String> = Vec::new();
            for prefix in ["crate::", "$crate::"] {
                let full = format!("{prefix}{module_path}");
                named.extend(names_after(&text, &full).map(|n| aliases.get(n).cloned().unwrap_or_else(|| n.to_string())));
            }
            if own_file {
                named.extend(names_after(&text, "super::").map(str::to_string));
            }
            for name in named {
                if &name != entry && siblings.contains(&name) {
                    edges.entry(entry.clone()).or_default().insert(name);
                }
            }
        }
    }
    edges
}

#[test]
fn the_base_of_common_stays_small() {
    let root = workspace().join("common/src");
    let count = std::fs::read_dir(&root).unwrap().count();
    assert!(
        count <= MAX_COMMON_ROOT_ENTRIES,
        "common/src has {count} entries at its root (at most {MAX_COMMON_ROOT_ENTRIES}): \
         new code goes into a wing (web, queue, providers, flows, store, blob)"
    );
}

#[test]
fn no_module_imports_another_in_a_loop() {
    for src in crate_sources() {
        let mut folders = vec![src.clone()];
        folders.extend(rust_files(&src).iter().filter_map(|f| f.parent().map(Path::to_path_buf)));
        folders.sort();
        folders.dedup();
        for folder in folders {
            let edges = sibling_graph(&src, &folder);
            if let Some(cycle) = find_cycle(&edges) {
                panic!("modules of {} import each other in a loop: {}", folder.display(), cycle.join(" -> "));
            }
        }
    }
    // The graph is read: the HTTP edge sits above the store, the flows above the queue.
    let common = workspace().join("common/src");
    let edges = sibling_graph(&common, &common);
    assert!(edges["web"].contains("store") && edges["flows"].contains("queue"), "{edges:?}");
}

#[test]
fn the_graph_sees_a_loop() {
    let edges: BTreeMap<String, BTreeSet<String>> =
        [("web".to_string(), BTreeSet::from(["store".to_string()])), ("store".to_string(), BTreeSet::from(["web".to_string()]))].into();
    assert_eq!(find_cycle(&edges), Some(vec!["store".into(), "web".into(), "store".into()]));
    let text = "use crate::store::Store; use $crate::Services; x::crate::no; super::audio::TempDir";
    assert_eq!(names_after(text, "crate::").collect::<Vec<_>>(), ["store"]);
    assert_eq!(names_after(text, "$crate::").collect::<Vec<_>>(), ["Services"]);
    assert_eq!(names_after(text, "super::").collect::<Vec<_>>(), ["audio"]);
}

#[test]
fn handlers_stay_thin() {
    let mut too_long = Vec::new();
    let mut handlers = 0;
    for src in crate_sources() {
        for path in rust_files(&src) {
            let text = std::fs::read_to_string(&path).unwrap();
            let lines: Vec<&str> = text.lines().collect();
            let mut at = 0;
            while at < lines.len() {
                if !lines[at].trim_start().starts_with("#[utoipa::path") {
                    at += 1;
                    continue;
                }
                let start = (at..lines.len()).find(|&i| lines[i].contains("fn ") && !lines[i].trim_start().starts_with("//")).unwrap();
                let indent = lines[start].len() - lines[start].trim_start().len();
                let end =
                    (start + 1..lines.len()).find(|&i| lines[i].starts_with(&format!("{}}}", " ".repeat(indent)))).expect("a handler ends");
                handlers += 1;
                let length = end - start + 1;
                if length > MAX_HANDLER_LINES {
                    too_long.push(format!("{}:{} ({length} lines)", path.display(), start + 1));
                }
                at = end;
            }
        }
    }
    assert!(handlers >= 30, "only {handlers} handlers found");
    assert!(too_long.is_empty(), "handlers over {MAX_HANDLER_LINES} lines (move the workflow into a function): {too_long:#?}");
}

#[test]
fn no_line_outgrows_rustfmt() {
    let root = workspace();
    let mut long = Vec::new();
    for dir in ["common", "functions", "local"] {
        for path in rust_files(&root.join(dir)) {
            for (n, line) in std::fs::read_to_string(&path).unwrap().lines().enumerate() {
                if line.chars().count() > MAX_LINE_WIDTH {
                    long.push(format!("{}:{}", path.strip_prefix(&root).unwrap().display(), n + 1));
                }
            }
        }
    }
    assert!(long.is_empty(), "lines over {MAX_LINE_WIDTH} characters: {long:#?}");
}
