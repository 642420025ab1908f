//! The repository's documents agree with the code and stand alone: the README's model table
//! lists exactly the registered models, and no file points at material outside the repository
//! (the implementation notes a clone does not have) or links to a file that does not exist.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

fn read(rel: &str) -> String {
    let p = root().join(rel);
    std::fs::read_to_string(&p).unwrap_or_else(|e| panic!("{}: {e}", p.display()))
}

/// Every text file of the repository that a person reads: sources, docs, specs, examples.
fn text_files(dir: &Path, out: &mut Vec<PathBuf>) {
    for e in std::fs::read_dir(dir).unwrap() {
        let p = e.unwrap().path();
        let name = p.file_name().unwrap().to_string_lossy().to_string();
        if p.is_dir() {
            if !(name.starts_with('.') || name == "target" || name == "runs") {
                text_files(&p, out);
            }
        } else if ["rs", "md", "toml", "py", "sh"]
            .iter()
            .any(|x| p.extension().is_some_and(|e| e == *x))
        {
            out.push(p);
        }
    }
}

#[test]
fn readme_model_table_lists_the_registry() {
    let readme = read("README.md");
    let section = readme
        .split("\n## Models")
        .nth(1)
        .expect("README has a `## Models` section");
    let section = section.split("\n## ").next().unwrap();
    let mut listed = BTreeSet::new();
    for line in section.lines().filter(|l| l.starts_with("| `")) {
        let first = line.split('|').nth(1).unwrap();
        for name in first.split(',') {
            listed.insert(name.trim().trim_matches('`').to_string());
        }
    }
    let registered: BTreeSet<String> = mdrec_models::MODELS
        .iter()
        .map(|m| m.name().to_string())
        .collect();
    assert_eq!(
        listed, registered,
        "README `## Models` table vs `mdrec_models::MODELS`"
    );
}

#[test]
fn nothing_points_outside_the_repository() {
    let mut files = Vec::new();
    text_files(&root(), &mut files);
    assert!(files.len() > 50, "found only {} files", files.len());
    let this = Path::new(file!()).file_name().unwrap().to_owned();
    let mut bad = Vec::new();
    for f in &files {
        if f.file_name() == Some(&this) {
            continue;
        }
        let text = std::fs::read_to_string(f).unwrap();
        for (i, line) in text.lines().enumerate() {
            for needle in [
                "model-spec",
                "architecture guide",
                "architecture-guide",
                "../shared",
            ] {
                if line.contains(needle) {
                    bad.push(format!("{}:{}: `{needle}`", f.display(), i + 1));
                }
            }
        }
    }
    assert!(
        bad.is_empty(),
        "references to files outside the repository:\n{}",
        bad.join("\n")
    );
}

#[test]
fn markdown_links_resolve() {
    let mut files = Vec::new();
    text_files(&root(), &mut files);
    let mut bad = Vec::new();
    for f in files
        .iter()
        .filter(|f| f.extension().is_some_and(|e| e == "md"))
    {
        let text = std::fs::read_to_string(f).unwrap();
        for (i, line) in text.lines().enumerate() {
            for part in line.split("](").skip(1) {
                let target = part.split(')').next().unwrap().split('#').next().unwrap();
                if target.is_empty() || target.contains("://") || target.starts_with("mailto:") {
                    continue;
                }
                if !f.parent().unwrap().join(target).exists() {
                    bad.push(format!("{}:{}: {target}", f.display(), i + 1));
                }
            }
        }
    }
    assert!(bad.is_empty(), "broken links:\n{}", bad.join("\n"));
}

/// A mention of a repository path (under `crates/`, `benches/` or `docs/`, ending in a source or
/// text extension) names a file that exists: moving a file must update what points at it.
#[test]
fn repository_paths_in_text_exist() {
    let mut files = Vec::new();
    text_files(&root(), &mut files);
    let mut bad = Vec::new();
    for f in &files {
        let text = std::fs::read_to_string(f).unwrap();
        for (i, line) in text.lines().enumerate() {
            for start in ["crates/", "benches/", "docs/"] {
                for (pos, _) in line.match_indices(start) {
                    // a path is only one when it starts a word (not `foo/docs/…`)
                    if line[..pos].ends_with(|c: char| c.is_alphanumeric() || c == '/' || c == '_')
                    {
                        continue;
                    }
                    let path: String = line[pos..]
                        .chars()
                        .take_while(|c| c.is_alphanumeric() || "_-./".contains(*c))
                        .collect();
                    let path = path.trim_end_matches('.');
                    let is_file = [".rs", ".md", ".toml", ".sh", ".py"]
                        .iter()
                        .any(|x| path.ends_with(x));
                    if is_file && !root().join(path).exists() {
                        bad.push(format!("{}:{}: {path}", f.display(), i + 1));
                    }
                }
            }
        }
    }
    assert!(
        bad.is_empty(),
        "paths that do not exist:\n{}",
        bad.join("\n")
    );
}

#[test]
fn contributing_walks_through_models_and_datasets() {
    let c = read("CONTRIBUTING.md");
    for heading in ["## Adding a model", "## Adding a dataset"] {
        assert!(c.contains(heading), "CONTRIBUTING.md lacks `{heading}`");
    }
}
