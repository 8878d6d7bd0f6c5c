//! The architecture, checked: the layout table of docs/architecture.md lists every source file
//! and says which are pure; no pure file imports an effectful one; no folder imports a folder
//! above it; the files' imports have no cycle. And the documentation's links lead somewhere.

use std::collections::{BTreeMap, BTreeSet};
use std::fs;
use std::path::{Path, PathBuf};

/// Module name (`plan`, `netlink::message`) → its source file.
fn source_files() -> BTreeMap<String, PathBuf> {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut out = BTreeMap::new();
    let mut dirs = vec![src.clone()];
    while let Some(dir) = dirs.pop() {
        for entry in fs::read_dir(&dir).expect("read src") {
            let path = entry.expect("dir entry").path();
            if path.is_dir() {
                dirs.push(path);
            } else if path.extension().is_some_and(|e| e == "rs") {
                out.insert(module_of(&src, &path), path);
            }
        }
    }
    out
}

/// `src/net/netlink/mod.rs` → `net::netlink`, `src/net/netlink/message.rs` →
/// `net::netlink::message`.
fn module_of(src: &Path, path: &Path) -> String {
    let rel = path
        .strip_prefix(src)
        .expect("under src")
        .with_extension("");
    let parts: Vec<String> = rel
        .components()
        .map(|c| c.as_os_str().to_string_lossy().into_owned())
        .filter(|c| c != "mod")
        .collect();
    parts.join("::")
}

fn docs_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("docs")
}

/// The rows of the layout table in docs/architecture.md: `src/`-relative file → kind
/// (`pure`, `effectful`, `index`, `test only`), and folder → its rank (the number its row
/// starts with; the crate-wide root has none).
fn layout_table() -> (BTreeMap<String, String>, BTreeMap<String, u32>) {
    let text =
        fs::read_to_string(docs_dir().join("architecture.md")).expect("read architecture.md");
    let section = text
        .split("\n## Layout")
        .nth(1)
        .expect("a Layout section")
        .split("\n## ")
        .next()
        .expect("section text");
    let mut files = BTreeMap::new();
    let mut ranks = BTreeMap::new();
    for line in section.lines() {
        let cells: Vec<&str> = line.split('|').map(str::trim).collect();
        let Some(first) = cells.get(1) else { continue };
        if let Some(folder) = first
            .strip_prefix("**`src/")
            .and_then(|f| f.strip_suffix("/`**"))
        {
            let rank = cells
                .get(3)
                .and_then(|what| what.split('.').next())
                .and_then(|n| n.parse().ok())
                .unwrap_or_else(|| panic!("folder {folder}: its row starts with its rank"));
            ranks.insert(folder.to_string(), rank);
        } else if let Some(file) = first
            .strip_prefix("`src/")
            .and_then(|f| f.strip_suffix('`'))
        {
            files.insert(file.to_string(), cells.get(2).expect("kind").to_string());
        }
    }
    (files, ranks)
}

/// The node a module counts as for the cycle check: its file, with a folder's nested module
/// (`net::netlink::message`) counted as its parent (`net::netlink`), which declares it.
fn node(module: &str) -> String {
    module.split("::").take(2).collect::<Vec<_>>().join("::")
}

/// The crate modules a source file refers to (`use crate::x`, `crate::x::y`, `use
/// crate::{x, y}`), as top-level or `netlink::message` names; itself excluded.
fn imports(module: &str, text: &str, known: &BTreeSet<String>) -> BTreeSet<String> {
    let mut out = BTreeSet::new();
    let code: String = text
        .lines()
        .filter(|l| !l.trim_start().starts_with("//"))
        .collect::<Vec<_>>()
        .join("\n");
    let mut rest = code.as_str();
    while let Some(at) = rest.find("crate::") {
        rest = &rest[at + "crate::".len()..];
        let names: Vec<String> = if let Some(group) = rest.strip_prefix('{') {
            let end = group.find('}').unwrap_or(group.len());
            group[..end]
                .split(',')
                .map(|s| s.trim().to_string())
                .collect()
        } else {
            let end = rest
                .find(|c: char| !(c.is_alphanumeric() || c == '_' || c == ':'))
                .unwrap_or(rest.len());
            vec![rest[..end].to_string()]
        };
        for name in names {
            let mut path: Vec<&str> = name.split("::").filter(|s| !s.is_empty()).collect();
            // The longest prefix that names a module.
            while !path.is_empty() && !known.contains(&path.join("::")) {
                path.pop();
            }
            let target = path.join("::");
            if !target.is_empty() && target != module {
                out.insert(target);
            }
        }
    }
    // A child module (`netlink::message`) is imported by its parent through `mod`.
    out
}

fn source_paths() -> BTreeMap<String, String> {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    source_files()
        .into_iter()
        .map(|(module, path)| {
            let rel = path.strip_prefix(&src).expect("under src");
            (module, rel.to_string_lossy().into_owned())
        })
        .collect()
}

#[test]
fn the_layout_table_lists_every_source_file_with_its_kind_and_every_folder_with_its_rank() {
    let (layout, ranks) = layout_table();
    let listed: BTreeSet<String> = layout.keys().cloned().collect();
    let present: BTreeSet<String> = source_paths().into_values().collect();
    assert_eq!(listed, present, "docs/architecture.md layout table vs src/");
    for (file, kind) in &layout {
        assert!(
            ["pure", "effectful", "index", "test only"].contains(&kind.as_str()),
            "{file}: kind {kind:?}"
        );
    }
    let folders: BTreeSet<String> = present
        .iter()
        .filter_map(|f| f.split_once('/').map(|(folder, _)| folder.to_string()))
        .collect();
    let ranked: BTreeSet<String> = ranks.keys().cloned().collect();
    assert_eq!(ranked, folders, "folders with a rank vs folders in src/");
}

#[test]
fn no_pure_file_imports_an_effectful_one_no_folder_imports_one_above_it_and_no_cycle() {
    let files = source_files();
    let known: BTreeSet<String> = files.keys().cloned().collect();
    let paths = source_paths();
    let (layout, ranks) = layout_table();
    let kind_of = |module: &str| layout.get(&paths[module]).cloned().unwrap_or_default();
    let folder_of = |module: &str| -> Option<String> {
        let (folder, _) = paths[module].split_once('/')?;
        Some(folder.to_string())
    };
    let mut graph: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for (module, path) in &files {
        let text = fs::read_to_string(path).expect("read source");
        // Test code may use anything.
        let code = text
            .split("#[cfg(test)]\nmod tests")
            .next()
            .unwrap_or(&text);
        graph.insert(module.clone(), imports(module, code, &known));
    }
    for (module, deps) in &graph {
        for dep in deps {
            if kind_of(module) == "pure" {
                assert_eq!(
                    kind_of(dep),
                    "pure",
                    "pure file {module} imports {dep}, which is {}",
                    kind_of(dep)
                );
            }
            if let (Some(from), Some(to)) = (folder_of(module), folder_of(dep))
                && from != to
            {
                assert!(
                    ranks[&to] < ranks[&from],
                    "{module} (folder {from}, rank {}) imports {dep} (folder {to}, rank {}): \
                     a folder imports only folders below it",
                    ranks[&from],
                    ranks[&to]
                );
            }
        }
    }
    let mut edges: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for (module, deps) in &graph {
        for dep in deps {
            if node(dep) != node(module) {
                edges.entry(node(module)).or_default().insert(node(dep));
            }
        }
    }
    fn visit(
        node: &str,
        edges: &BTreeMap<String, BTreeSet<String>>,
        stack: &mut Vec<String>,
        done: &mut BTreeSet<String>,
    ) {
        if let Some(at) = stack.iter().position(|n| n == node) {
            panic!("import cycle: {} -> {node}", stack[at..].join(" -> "));
        }
        if done.contains(node) {
            return;
        }
        stack.push(node.to_string());
        for next in edges.get(node).into_iter().flatten() {
            visit(next, edges, stack, done);
        }
        stack.pop();
        done.insert(node.to_string());
    }
    let mut done = BTreeSet::new();
    for node in edges.keys() {
        visit(node, &edges, &mut Vec::new(), &mut done);
    }
}

/// GitHub's anchor for a heading: lower case, punctuation but `-` and `_` dropped, spaces
/// become `-`.
fn anchor(heading: &str) -> String {
    heading
        .trim()
        .to_lowercase()
        .chars()
        .filter(|c| c.is_alphanumeric() || *c == '-' || *c == '_' || *c == ' ')
        .map(|c| if c == ' ' { '-' } else { c })
        .collect()
}

/// The relative links (`[text](target)`) of a Markdown text, outside code blocks.
fn links(text: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut in_code = false;
    for line in text.lines() {
        if line.trim_start().starts_with("```") {
            in_code = !in_code;
        }
        if in_code {
            continue;
        }
        let mut rest = line;
        while let Some(at) = rest.find("](") {
            rest = &rest[at + 2..];
            let end = rest.find(')').unwrap_or(rest.len());
            let target = &rest[..end];
            if !target.contains("://") && !target.starts_with("mailto:") {
                out.push(target.to_string());
            }
            rest = &rest[end..];
        }
    }
    out
}

fn headings(text: &str) -> BTreeSet<String> {
    let mut in_code = false;
    let mut out = BTreeSet::new();
    for line in text.lines() {
        if line.trim_start().starts_with("```") {
            in_code = !in_code;
        }
        if !in_code && line.starts_with('#') {
            out.insert(anchor(line.trim_start_matches('#')));
        }
    }
    out
}

#[test]
fn every_link_of_the_readme_and_the_docs_leads_to_a_file_and_heading_that_exist() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let mut pages = vec![root.join("README.md")];
    for entry in fs::read_dir(docs_dir()).expect("read docs") {
        let path = entry.expect("dir entry").path();
        if path.extension().is_some_and(|e| e == "md") {
            pages.push(path);
        }
    }
    let mut checked = 0;
    for page in &pages {
        let text = fs::read_to_string(page).expect("read page");
        for link in links(&text) {
            let (file, frag) = link.split_once('#').unwrap_or((&link, ""));
            let target = if file.is_empty() {
                page.clone()
            } else {
                page.parent().expect("page dir").join(file)
            };
            assert!(
                target.exists(),
                "{}: link {link:?}: no such file",
                page.display()
            );
            if !frag.is_empty() {
                let target_text = fs::read_to_string(&target).expect("read link target");
                assert!(
                    headings(&target_text).contains(frag),
                    "{}: link {link:?}: no such heading in {}",
                    page.display(),
                    target.display()
                );
            }
            checked += 1;
        }
    }
    assert!(
        checked > 20,
        "only {checked} links found: the reader is broken"
    );
}

#[test]
fn the_readme_is_a_front_door_and_links_every_page_of_the_docs() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let readme = fs::read_to_string(root.join("README.md")).expect("read README.md");
    let lines = readme.lines().count();
    assert!(
        lines <= 220,
        "README.md has {lines} lines; details belong in docs/"
    );
    for entry in fs::read_dir(docs_dir()).expect("read docs") {
        let path = entry.expect("dir entry").path();
        if path.extension().is_some_and(|e| e == "md") {
            let name = path.file_name().expect("name").to_string_lossy();
            assert!(
                readme.contains(&format!("(docs/{name})")),
                "README.md does not link docs/{name}"
            );
        }
    }
}

#[test]
fn the_link_reader_finds_relative_links_outside_code_and_the_anchors_of_headings() {
    let text =
        "See [a](docs/a.md#x-y) and [b](https://e.org).\n```\n[c](no.md)\n```\n# The `X`, y's\n";
    assert_eq!(links(text), vec!["docs/a.md#x-y".to_string()]);
    assert!(headings(text).contains("the-x-ys"));
}

#[test]
fn the_import_reader_sees_every_form_of_crate_path() {
    let known: BTreeSet<String> = ["plan", "step", "netlink", "netlink::message", "types"]
        .iter()
        .map(|s| s.to_string())
        .collect();
    let text = "use crate::plan::NicPlan;\nuse crate::{step, types::Mac};\n// crate::types\nlet x = crate::netlink::message::add_addr(1);\n";
    let found = imports("qemu", text, &known);
    let want: BTreeSet<String> = ["plan", "step", "types", "netlink::message"]
        .iter()
        .map(|s| s.to_string())
        .collect();
    assert_eq!(found, want);
}
