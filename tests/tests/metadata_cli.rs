//! Newer numbering data without a rebuild (`[numbering].metadata`, issue 19 item 7): a
//! directory of libphonenumber XML, checked by `check` and `serve` at start, and tried with
//! `tollgate numbers --metadata`. Run `cargo build --workspace --bins` first.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

use tollgate_tests::daemon::temp_dir;
use tollgate_tests::{repo_root, tollgate_bin};

const VENDORED: &str = "engine/data/libphonenumber";

/// A metadata directory holding the vendored XML, `phone` changed by `edit`.
fn metadata(tag: &str, edit: impl Fn(String) -> String) -> PathBuf {
    let dir = temp_dir(tag);
    let src = repo_root().join(VENDORED);
    let phone = std::fs::read_to_string(src.join("PhoneNumberMetadata.xml")).expect("xml");
    std::fs::write(dir.join("PhoneNumberMetadata.xml"), edit(phone)).expect("write");
    std::fs::copy(
        src.join("ShortNumberMetadata.xml"),
        dir.join("ShortNumberMetadata.xml"),
    )
    .expect("copy");
    dir
}

/// `PhoneNumberMetadata.xml` without Great Britain's territory.
fn without_gb(xml: String) -> String {
    let start = xml.find("<territory id=\"GB\"").expect("GB");
    let end = start + xml[start..].find("</territory>").expect("end") + "</territory>".len();
    format!("{}{}", &xml[..start], &xml[end..])
}

/// A `tollgate.toml` over the shipped directory with `[numbering].metadata = dir`.
fn config(tag: &str, dir: &Path) -> PathBuf {
    let at = temp_dir(tag);
    let path = at.join("tollgate.toml");
    let text = format!(
        "[directory]\npath = \"{}\"\n[ledger]\nenabled = false\n[numbering]\nmetadata = \"{}\"\n",
        repo_root().join("config").display(),
        dir.display()
    );
    std::fs::write(&path, text).expect("config");
    path
}

fn run(args: &[&str], config: Option<&Path>, stdin: &str) -> Output {
    let mut cmd = Command::new(tollgate_bin());
    cmd.args(args);
    if let Some(c) = config {
        cmd.arg("--config").arg(c);
    }
    let mut child = cmd
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn");
    // A command that fails at once may not read its input: a broken pipe here is no error.
    let _ = child
        .stdin
        .take()
        .expect("stdin")
        .write_all(stdin.as_bytes());
    child.wait_with_output().expect("wait")
}

#[test]
fn a_metadata_directory_is_used_and_checked_at_start() {
    // The same data as built in: accepted.
    let same = metadata("meta-same", |x| x);
    let out = run(&["check"], Some(&config("meta-same-cfg", &same)), "");
    assert!(out.status.success(), "{out:?}");
    // A region dropped (Great Britain): the directory has users licensed there.
    let no_gb = metadata("meta-nogb", without_gb);
    let cfg = config("meta-nogb-cfg", &no_gb);
    for cmd in [&["check"][..], &["serve"][..]] {
        let out = run(cmd, Some(&cfg), "");
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{cmd:?}: {err}");
        assert!(
            err.contains("tollgate.toml:6: [numbering].metadata: lacks regions")
                && err.contains("GB"),
            "{cmd:?}: {err}"
        );
    }
    // A file that does not parse: its name and line.
    let broken = metadata("meta-broken", |x| {
        x.replacen("<territory ", "<territory <", 1)
    });
    let out = run(&["check"], Some(&config("meta-broken-cfg", &broken)), "");
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{err}");
    assert!(err.contains("PhoneNumberMetadata.xml:"), "{err}");
    // A directory without the files.
    let empty = temp_dir("meta-empty");
    let out = run(&["check"], Some(&config("meta-empty-cfg", &empty)), "");
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{err}");
    assert!(
        err.contains("[numbering].metadata")
            && err.contains("PhoneNumberMetadata.xml: cannot read"),
        "{err}"
    );
}

#[test]
fn numbers_tries_a_metadata_directory() {
    // Metadata without GB: `numbers` reads the given directory, not the copy built in.
    let no_gb = metadata("meta-numbers", without_gb);
    let input = "+442079460000\n";
    let builtin = run(&["numbers", "--region", "US"], None, input);
    assert!(String::from_utf8_lossy(&builtin.stdout).contains("\"region\":\"GB\""));
    let dir = no_gb.display().to_string();
    let other = run(
        &["numbers", "--region", "US", "--metadata", &dir],
        None,
        input,
    );
    assert!(other.status.success(), "{other:?}");
    let out = String::from_utf8_lossy(&other.stdout);
    assert!(!out.contains("\"region\":\"GB\""), "{out}");
    let missing = run(
        &["numbers", "--region", "US", "--metadata", "/nonexistent"],
        None,
        input,
    );
    assert_eq!(missing.status.code(), Some(2), "{missing:?}");
}
