//! The module graph's rules, checked against the tree (a test, run by CI
//! with the rest): no import cycle between files, and every import of one
//! top-level module by another goes down the layers drawn in
//! docs/ARCHITECTURE.md ("## Layers"), which must name every top-level
//! module once. Imports are what the source names: `crate::a::b` paths (in
//! `use` or inline, `crate::{a, b::c}` groups one level deep) and
//! `super::` paths, resolved to the longest module path that has a file;
//! test modules count too.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

type Module = Vec<String>;

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// Every module file under `src`, by module path (`a/mod.rs` and `a.rs`
/// are `a`; lib.rs and main.rs are the root).
fn module_files(src: &Path) -> BTreeMap<Module, PathBuf> {
    let mut out = BTreeMap::new();
    let mut dirs = vec![src.to_path_buf()];
    while let Some(dir) = dirs.pop() {
        for entry in std::fs::read_dir(&dir).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                dirs.push(path);
                continue;
            }
            if path.extension().is_none_or(|e| e != "rs") {
                continue;
            }
            let rel = path.strip_prefix(src).unwrap().with_extension("");
            let mut module: Module = rel
                .components()
                .map(|c| c.as_os_str().to_string_lossy().into_owned())
                .collect();
            if matches!(
                module.last().map(String::as_str),
                Some("mod" | "lib" | "main")
            ) {
                module.pop();
            }
            out.insert(module, path);
        }
    }
    out
}

fn is_ident(c: char) -> bool {
    c.is_ascii_alphanumeric() || c == '_'
}

/// The code of a Rust file with comments and the contents of string and
/// character literals blanked out (so that neither a doc comment naming a
/// module nor a `"{}"` in a format string counts), lines kept.
fn code_only(text: &str) -> String {
    let b: Vec<char> = text.chars().collect();
    let mut out = String::with_capacity(text.len());
    let blank = |out: &mut String, c: char| out.push(if c == '\n' { '\n' } else { ' ' });
    let mut i = 0;
    while i < b.len() {
        let c = b[i];
        let next = b.get(i + 1).copied();
        let prev_ident = i > 0 && is_ident(b[i - 1]);
        if c == '/' && next == Some('/') {
            while i < b.len() && b[i] != '\n' {
                i += 1;
            }
        } else if c == '/' && next == Some('*') {
            let mut depth = 0;
            while i < b.len() {
                if b[i] == '/' && b.get(i + 1) == Some(&'*') {
                    depth += 1;
                    i += 2;
                } else if b[i] == '*' && b.get(i + 1) == Some(&'/') {
                    depth -= 1;
                    i += 2;
                    if depth == 0 {
                        break;
                    }
                } else {
                    blank(&mut out, b[i]);
                    i += 1;
                }
            }
        } else if c == 'r' && !prev_ident && matches!(next, Some('"' | '#')) {
            // A raw string: r"..." or r#"..."#.
            let mut j = i + 1;
            while b.get(j) == Some(&'#') {
                j += 1;
            }
            if b.get(j) != Some(&'"') {
                out.push(c);
                i += 1;
                continue;
            }
            let hashes = j - i - 1;
            i = j + 1;
            while i < b.len() {
                if b[i] == '"' && (1..=hashes).all(|k| b.get(i + k) == Some(&'#')) {
                    i += 1 + hashes;
                    break;
                }
                blank(&mut out, b[i]);
                i += 1;
            }
        } else if c == '"' {
            i += 1;
            while i < b.len() && b[i] != '"' {
                if b[i] == '\\' {
                    i += 1;
                }
                if i < b.len() {
                    blank(&mut out, b[i]);
                }
                i += 1;
            }
            i += 1;
        } else if c == '\'' && (next == Some('\\') || b.get(i + 2) == Some(&'\'')) {
            // A character literal (a lifetime has no closing quote).
            i += 1;
            if b.get(i) == Some(&'\\') {
                i += 1;
            }
            while i < b.len() && b[i] != '\'' {
                i += 1;
            }
            i += 1;
        } else {
            out.push(c);
            i += 1;
            continue;
        }
        // Keep the width of what was removed roughly: one space.
        out.push(' ');
    }
    out
}

/// Byte ranges of the inline `mod name { ... }` blocks of `code`.
fn inline_modules(code: &str) -> Vec<std::ops::Range<usize>> {
    let bytes = code.as_bytes();
    let mut out = Vec::new();
    for rest_at in after(code, "mod ").map(|r| code.len() - r.len()) {
        let name = path_at(&code[rest_at..]);
        let Some(name) = name.first() else { continue };
        let brace = rest_at + name.len() + code[rest_at + name.len()..].len()
            - code[rest_at + name.len()..].trim_start().len();
        if bytes.get(brace) != Some(&b'{') {
            continue;
        }
        let mut depth = 0;
        for (k, &ch) in bytes.iter().enumerate().skip(brace) {
            match ch {
                b'{' => depth += 1,
                b'}' => {
                    depth -= 1;
                    if depth == 0 {
                        out.push(brace..k);
                        break;
                    }
                }
                _ => {}
            }
        }
    }
    out
}

/// The `::`-separated identifiers at the start of `s`.
fn path_at(s: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut rest = s;
    loop {
        let n = rest.find(|c| !is_ident(c)).unwrap_or(rest.len());
        if n == 0 {
            break;
        }
        out.push(rest[..n].to_string());
        rest = &rest[n..];
        match rest.strip_prefix("::") {
            Some(r) if r.starts_with(is_ident) => rest = r,
            _ => break,
        }
    }
    out
}

/// Every occurrence of `needle` that starts an identifier, with the text
/// after it.
fn after<'a>(text: &'a str, needle: &'a str) -> impl Iterator<Item = &'a str> + 'a {
    text.match_indices(needle).filter_map(move |(i, _)| {
        let before = text[..i].chars().next_back();
        (!before.is_some_and(|c| is_ident(c) || c == ':')).then(|| &text[i + needle.len()..])
    })
}

/// The module paths a file names (`crate::` from the root, `super::`
/// from `base`, the module whose children `super::` in the file's own
/// scope refers to; inside an inline `mod tests { }` the first `super::`
/// is the file's module itself, and names nothing outside the file).
fn named_paths(text: &str, base: &[String]) -> Vec<Module> {
    let code = code_only(text);
    let inline = inline_modules(&code);
    let mut out = Vec::new();
    for rest in after(&code, "crate::") {
        if let Some(group) = rest.strip_prefix('{') {
            let group = &group[..group.find('}').unwrap_or(group.len())];
            for item in group.split(',') {
                let p = path_at(item.trim().trim_start_matches('{'));
                if !p.is_empty() && p[0] != "self" {
                    out.push(p);
                }
            }
        } else {
            out.push(path_at(rest));
        }
    }
    for rest in after(&code, "super::") {
        let at = code.len() - rest.len();
        let mut ups = 1;
        let mut r = rest;
        while let Some(next) = r.strip_prefix("super::") {
            ups += 1;
            r = next;
        }
        let nested = inline.iter().filter(|m| m.contains(&at)).count();
        if ups <= nested {
            continue;
        }
        let ups = ups - nested;
        let keep = base.len().saturating_sub(ups - 1);
        let mut p: Module = base[..keep].to_vec();
        p.extend(path_at(r));
        out.push(p);
    }
    out
}

/// File-level import graph: module -> modules it names.
fn graph(files: &BTreeMap<Module, PathBuf>) -> BTreeMap<Module, BTreeSet<Module>> {
    let resolve = |p: &Module| {
        (1..=p.len())
            .rev()
            .map(|n| p[..n].to_vec())
            .find(|m| files.contains_key(m))
    };
    let mut edges = BTreeMap::new();
    for (module, path) in files {
        let text = std::fs::read_to_string(path).unwrap();
        let dir_module = matches!(
            path.file_name().and_then(|n| n.to_str()),
            Some("mod.rs" | "lib.rs" | "main.rs")
        );
        // `super::` in a/mod.rs means a's parent; in a/b.rs, a as well.
        let base: Module = if dir_module {
            module.clone()
        } else {
            module[..module.len().saturating_sub(1)].to_vec()
        };
        let targets: BTreeSet<Module> = named_paths(&text, &base)
            .iter()
            .filter_map(resolve)
            .filter(|t| t != module && !t.is_empty())
            .collect();
        edges.insert(module.clone(), targets);
    }
    edges
}

/// Strongly connected components with more than one module (cycles).
fn cycles(edges: &BTreeMap<Module, BTreeSet<Module>>) -> Vec<Vec<Module>> {
    // Kosaraju: finish order on the graph, then components on its reverse.
    fn visit<'a>(
        m: &'a Module,
        edges: &'a BTreeMap<Module, BTreeSet<Module>>,
        seen: &mut BTreeSet<&'a Module>,
        order: &mut Vec<&'a Module>,
    ) {
        if !seen.insert(m) {
            return;
        }
        for t in edges.get(m).into_iter().flatten() {
            visit(t, edges, seen, order);
        }
        order.push(m);
    }
    let mut seen = BTreeSet::new();
    let mut order = Vec::new();
    for m in edges.keys() {
        visit(m, edges, &mut seen, &mut order);
    }
    let mut reverse: BTreeMap<Module, BTreeSet<Module>> = BTreeMap::new();
    for (from, tos) in edges {
        for to in tos {
            reverse.entry(to.clone()).or_default().insert(from.clone());
        }
    }
    let mut assigned = BTreeSet::new();
    let mut out = Vec::new();
    for m in order.into_iter().rev() {
        let mut component = Vec::new();
        let mut stack = vec![m];
        while let Some(x) = stack.pop() {
            if !assigned.insert(x.clone()) {
                continue;
            }
            component.push(x.clone());
            stack.extend(reverse.get(x).into_iter().flatten());
        }
        if component.len() > 1 {
            out.push(component);
        }
    }
    out
}

/// The layers drawn in docs/ARCHITECTURE.md, top first: the lines of the
/// first code block after "## Layers", each naming the modules of one
/// layer (words before a `:` or `#`).
fn layers(doc: &str) -> Vec<Vec<String>> {
    let section = &doc[doc
        .find("\n## Layers")
        .expect("ARCHITECTURE.md has a '## Layers' section")..];
    let block = section
        .split("```")
        .nth(1)
        .expect("a code block in '## Layers'");
    block
        .lines()
        .skip(1)
        .map(|l| l.split([':', '#']).next().unwrap_or(""))
        .map(|l| {
            l.split_whitespace()
                .filter(|w| w.chars().all(is_ident))
                .map(str::to_string)
                .collect::<Vec<_>>()
        })
        .filter(|l| !l.is_empty())
        .collect()
}

fn show(m: &[String]) -> String {
    m.join("::")
}

#[test]
fn no_import_cycle_between_files() {
    let files = module_files(&root().join("src"));
    let cycles = cycles(&graph(&files));
    let shown: Vec<String> = cycles
        .iter()
        .map(|c| c.iter().map(|m| show(m)).collect::<Vec<_>>().join(" <-> "))
        .collect();
    assert!(shown.is_empty(), "import cycles: {shown:#?}");
}

#[test]
fn imports_go_down_the_layers_of_architecture_md() {
    let doc = std::fs::read_to_string(root().join("docs/ARCHITECTURE.md")).unwrap();
    let layers = layers(&doc);
    let mut layer_of = BTreeMap::new();
    for (i, layer) in layers.iter().enumerate() {
        for m in layer {
            assert!(
                layer_of.insert(m.clone(), i).is_none(),
                "{m} is in two layers"
            );
        }
    }
    let files = module_files(&root().join("src"));
    let top: BTreeSet<String> = files.keys().filter_map(|m| m.first().cloned()).collect();
    let drawn: BTreeSet<String> = layer_of.keys().cloned().collect();
    assert_eq!(
        top, drawn,
        "the layers in ARCHITECTURE.md must name every top-level module, and only those"
    );
    let mut wrong = Vec::new();
    for (from, tos) in graph(&files) {
        let (Some(a), false) = (from.first(), from.is_empty()) else {
            continue;
        };
        for to in tos {
            let b = &to[0];
            if a != b && layer_of[a] >= layer_of[b] {
                wrong.push(format!("{} -> {}", show(&from), show(&to)));
            }
        }
    }
    assert!(
        wrong.is_empty(),
        "imports of a module not in a lower layer: {wrong:#?}"
    );
}

#[test]
fn the_module_map_has_a_row_for_every_top_level_module() {
    let doc = std::fs::read_to_string(root().join("docs/ARCHITECTURE.md")).unwrap();
    let map = &doc[doc
        .find("\n## Module map")
        .expect("a '## Module map' section")..];
    let rows: BTreeSet<&str> = map
        .lines()
        .take_while(|l| !l.starts_with("## ") || l.starts_with("## Module map"))
        .filter_map(|l| l.strip_prefix("| "))
        .filter_map(|l| l.split(" |").next())
        .collect();
    let files = module_files(&root().join("src"));
    let missing: Vec<String> = files
        .keys()
        .filter_map(|m| m.first().cloned())
        .collect::<BTreeSet<_>>()
        .into_iter()
        .filter(|m| !rows.contains(m.as_str()))
        .collect();
    assert!(
        missing.is_empty(),
        "the module map lacks rows for {missing:?}"
    );
}

#[test]
fn architecture_md_names_only_files_that_exist() {
    let doc = std::fs::read_to_string(root().join("docs/ARCHITECTURE.md")).unwrap();
    let missing: Vec<&str> = doc
        .split('`')
        .skip(1)
        .step_by(2)
        .filter(|s| {
            s.starts_with("src/") && s.ends_with(".rs") || s.ends_with('/') && s.starts_with("src/")
        })
        .filter(|s| !root().join(s).exists())
        .collect();
    assert!(
        missing.is_empty(),
        "ARCHITECTURE.md names missing files: {missing:?}"
    );
}

#[test]
fn the_parser_reads_paths_as_modgraph_does() {
    let base = vec!["pool".to_string()];
    let text = "use crate::{a, b::c};\nuse super::d::E; // crate::commented\n\
                let x = crate::f::g(\"crate::in_string {\");\n\
                mod tests {\n    use super::*;\n    use super::super::h;\n}\n";
    let got = named_paths(text, &base);
    let want: Vec<Module> = [
        vec!["a"],
        vec!["b", "c"],
        vec!["f", "g"],
        vec!["pool", "d", "E"],
        vec!["pool", "h"],
    ]
    .iter()
    .map(|p| p.iter().map(|s| s.to_string()).collect())
    .collect();
    assert_eq!(got, want);
}
