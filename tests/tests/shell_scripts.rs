//! Every shell script of the repository passes shellcheck: `*.sh` files anywhere (but build
//! output and caches), and the extension-less `.ci/run` and `.ci/tools`.

use std::path::{Path, PathBuf};
use std::process::Command;

use coredog_tests::{tool, workspace_root};

/// Directories that hold no script of the project's own.
const SKIPPED: &[&str] = &["target", ".cache", ".git", "node_modules"];

fn collect_scripts(dir: &Path, found: &mut Vec<PathBuf>) {
    let entries = std::fs::read_dir(dir).unwrap_or_else(|err| panic!("{}: {err}", dir.display()));
    for entry in entries {
        let entry = entry.expect("directory entry");
        let path = entry.path();
        let name = entry.file_name();
        let file_type = entry.file_type().expect("file type");
        if file_type.is_dir() {
            if !SKIPPED.iter().any(|skipped| name == *skipped) {
                collect_scripts(&path, found);
            }
        } else if file_type.is_file() && path.extension().is_some_and(|ext| ext == "sh") {
            found.push(path);
        }
    }
}

#[test]
fn every_shell_script_passes_shellcheck() {
    let root = workspace_root();
    let mut scripts = vec![root.join(".ci/run"), root.join(".ci/tools")];
    collect_scripts(&root, &mut scripts);
    scripts.sort();
    scripts.dedup();
    for required in ["krew/render.sh", "tests/e2e/run.sh"] {
        assert!(
            scripts.contains(&root.join(required)),
            "{required} is not among {scripts:?}"
        );
    }
    let output = Command::new(tool("shellcheck"))
        .args(["--external-sources", "--severity=style", "--format=gcc"])
        .args(&scripts)
        .current_dir(&root)
        .output()
        .expect("run shellcheck");
    assert!(
        output.status.success(),
        "shellcheck found problems in {} scripts:\n{}{}",
        scripts.len(),
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
}
