//! End to end: the real `tollgate numbers` binary over stdin/stdout (DESIGN §5).

use std::io::Write;
use std::process::{Command, Stdio};

use serde_json::Value;
use tollgate_tests::tollgate_bin;

fn run(region: &str, input: &[u8]) -> (i32, Vec<Value>, String) {
    let mut child = Command::new(tollgate_bin())
        .args(["numbers", "--region", region])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start tollgate");
    // The binary may exit before reading (a bad --region): a broken pipe is its answer.
    if let Err(e) = child.stdin.take().expect("stdin").write_all(input) {
        assert_eq!(e.kind(), std::io::ErrorKind::BrokenPipe, "{e}");
    }
    let out = child.wait_with_output().expect("tollgate exits");
    let lines = String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(|l| serde_json::from_str(l).expect("each line is JSON"))
        .collect();
    (
        out.status.code().unwrap_or(-1),
        lines,
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn classifies_each_line() {
    let input = "+44 20 7946 0000\n020 7946 0000\n999\n0800 123 4567\n+1 212 555 0100\n";
    let (code, lines, _) = run("GB", input.as_bytes());
    assert_eq!(code, 0);
    assert_eq!(lines.len(), 5);
    assert_eq!(lines[0]["input"], "+44 20 7946 0000");
    assert_eq!(lines[0]["e164"], "+442079460000");
    assert_eq!(lines[0]["region"], "GB");
    assert_eq!(lines[0]["type"], "fixed_line");
    assert_eq!(lines[0]["error"], Value::Null);
    assert_eq!(lines[1]["e164"], "+442079460000");
    assert_eq!(lines[2]["type"], "emergency");
    assert_eq!(lines[3]["type"], "toll_free");
    assert_eq!(lines[4]["region"], "US");
    assert_eq!(lines[4]["type"], "fixed_line_or_mobile");
}

#[test]
fn garbage_gets_an_error_line_never_a_crash() {
    let mut input = b"\nhello\n+\n020 79\n".to_vec();
    input.extend_from_slice(&[0xff, 0xfe, b'\n']);
    input.extend_from_slice("١٢٣\n".as_bytes());
    input.extend_from_slice(&b"9".repeat(40));
    input.push(b'\n');
    let (code, lines, _) = run("GB", &input);
    assert_eq!(code, 0);
    assert_eq!(lines.len(), 7);
    for l in &lines {
        assert_eq!(l["e164"], Value::Null, "{l}");
        assert!(l["error"].as_str().is_some_and(|e| !e.is_empty()), "{l}");
    }
    assert!(lines[3]["error"]
        .as_str()
        .unwrap()
        .starts_with("incomplete"));
    assert!(lines[1]["error"].as_str().unwrap().starts_with("invalid"));
}

#[test]
fn bad_region_is_a_usage_error() {
    let (code, lines, stderr) = run("Great Britain", b"020 7946 0000\n");
    assert_eq!(code, 2);
    assert!(lines.is_empty());
    assert!(stderr.contains("--region"), "{stderr}");
}
