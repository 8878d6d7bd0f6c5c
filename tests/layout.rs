//! The architecture, checked: the README's layout table lists every source file and says
//! which modules are pure; no pure module imports an effectful one; the modules' imports
//! have no cycle.

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

/// `src/netlink/mod.rs` → `netlink`, `src/netlink/message.rs` → `netlink::message`.
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

/// The README's layout table: file → kind (`pure`, `effectful`, `test only`).
fn readme_layout() -> BTreeMap<String, String> {
    let readme = fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("README.md"))
        .expect("read README.md");
    let section = readme
        .split("\n## Layout")
        .nth(1)
        .expect("a Layout section")
        .split("\n## ")
        .next()
        .expect("section text");
    section
        .lines()
        .filter_map(|line| {
            let cells: Vec<&str> = line.split('|').map(str::trim).collect();
            let file = cells.get(1)?.strip_prefix("`src/")?.strip_suffix('`')?;
            Some((file.to_string(), cells.get(2)?.to_string()))
        })
        .collect()
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

#[test]
fn the_readme_layout_lists_every_source_file_with_its_kind() {
    let files = source_files();
    let layout = readme_layout();
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let listed: BTreeSet<String> = layout.keys().cloned().collect();
    let present: BTreeSet<String> = files
        .values()
        .map(|p| {
            p.strip_prefix(&src)
                .expect("under src")
                .to_string_lossy()
                .into_owned()
        })
        .collect();
    assert_eq!(listed, present, "README layout table vs src/");
    for (file, kind) in &layout {
        assert!(
            ["pure", "effectful", "test only"].contains(&kind.as_str()),
            "{file}: kind {kind:?}"
        );
    }
}

#[test]
fn no_pure_module_imports_an_effectful_one_and_imports_have_no_cycle() {
    let files = source_files();
    let known: BTreeSet<String> = files.keys().cloned().collect();
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let layout = readme_layout();
    let kind_of = |module: &str| -> String {
        let path = &files[module];
        let rel = path.strip_prefix(&src).expect("under src");
        layout
            .get(&rel.to_string_lossy().into_owned())
            .cloned()
            .unwrap_or_default()
    };
    let mut graph: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for (module, path) in &files {
        let text = fs::read_to_string(path).expect("read source");
        // Test code may use anything.
        let code = text
            .split("#[cfg(test)]\nmod tests")
            .next()
            .unwrap_or(&text);
        let deps = imports(module, code, &known);
        graph.insert(module.clone(), deps);
    }
    for (module, deps) in &graph {
        if kind_of(module) != "pure" {
            continue;
        }
        for dep in deps {
            assert_eq!(
                kind_of(dep),
                "pure",
                "pure module {module} imports {dep}, which is {}",
                kind_of(dep)
            );
        }
    }
    // Depth-first search for a cycle; a parent module and its child count as one.
    let top = |m: &str| m.split("::").next().unwrap_or(m).to_string();
    let mut edges: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for (module, deps) in &graph {
        for dep in deps {
            if top(dep) != top(module) {
                edges.entry(top(module)).or_default().insert(top(dep));
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
