//! Records the git revision quench was built from as `QUENCH_GIT_REV` ("unknown" outside a git
//! checkout or without git), and asks cargo to rerun when HEAD or the checked-out branch moves.

use std::process::Command;

/// Runs git with `args`, returning its trimmed output when it succeeded and printed something.
fn git(args: &[&str]) -> Option<String> {
    let out = Command::new("git").args(args).output().ok()?;
    if !out.status.success() {
        return None;
    }
    let text = String::from_utf8(out.stdout).ok()?.trim().to_string();
    (!text.is_empty()).then_some(text)
}

fn main() {
    println!("cargo:rerun-if-changed=build.rs");
    let rev = git(&["rev-parse", "--short", "HEAD"]).unwrap_or_else(|| "unknown".into());
    // HEAD changes when another branch is checked out; the branch's ref (loose or packed)
    // changes on every commit. `--git-path` finds them in worktrees too. Only existing files
    // are watched: a missing one would make cargo rerun this script on every build.
    let branch = git(&["symbolic-ref", "-q", "HEAD"]);
    let watched = ["HEAD", "packed-refs"]
        .into_iter()
        .map(str::to_string)
        .chain(branch)
        .filter_map(|p| git(&["rev-parse", "--git-path", &p]));
    for path in watched {
        if std::path::Path::new(&path).exists() {
            println!("cargo:rerun-if-changed={path}");
        }
    }
    println!("cargo:rustc-env=QUENCH_GIT_REV={rev}");
}
