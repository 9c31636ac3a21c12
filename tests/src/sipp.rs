//! sipp (Debian `sip-tester`, installed by `scripts/test`) as a caller or a gateway, with the
//! scenarios of `tests/scenarios/`. Each run is a child process bounded by sipp's own global
//! `-timeout` (a run that hits it fails) and killed on drop.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

use crate::daemon::{free_port, temp_dir};
use crate::repo_root;

/// A scenario of `tests/scenarios/`.
pub fn scenario(name: &str) -> PathBuf {
    repo_root().join("tests/scenarios").join(name)
}

/// A running sipp.
pub struct Sipp {
    child: Option<Child>,
    dir: PathBuf,
    what: String,
    started: Instant,
}

/// How a sipp run ended.
#[derive(Debug)]
pub struct Finished {
    pub status: ExitStatus,
    /// How long it ran.
    pub elapsed: Duration,
    /// The end of its statistics screen and its errors, for messages.
    pub report: String,
}

impl Finished {
    /// Panics with the report unless every call of the run succeeded.
    pub fn assert_ok(&self) {
        assert!(
            self.status.success(),
            "sipp failed ({}):\n{}",
            self.status,
            self.report
        );
    }
}

impl Sipp {
    /// A gateway on `port` of loopback running `scenario` for `calls` calls, at most `limit`.
    pub fn gateway(scenario_name: &str, port: u16, calls: usize, limit: Duration) -> Sipp {
        let port = port.to_string();
        let calls = calls.to_string();
        Sipp::spawn(
            scenario_name,
            &["-p", &port, "-m", &calls],
            None,
            limit,
            &format!("gateway {scenario_name} on {port}"),
        )
    }

    /// A caller sending `calls` calls of `scenario` from `caller` to `dial` through `proxy` at
    /// `rate` calls/s, each with the Call-ID `{call_ids}-N@127.0.0.1` (N from 1), at most
    /// `limit`; `extra` goes to sipp as is (e.g. `-d 3000`, the hold of `uac_call.xml`).
    #[allow(clippy::too_many_arguments)]
    pub fn caller(
        scenario_name: &str,
        proxy: SocketAddr,
        caller: &str,
        dial: &str,
        call_ids: &str,
        calls: usize,
        rate: u32,
        extra: &[&str],
        limit: Duration,
    ) -> Sipp {
        let (calls, rate) = (calls.to_string(), rate.to_string());
        let port = free_port().to_string();
        let cid = format!("{call_ids}-%u@%s");
        let mut args = vec![
            "-key", "caller", caller, "-key", "dial", dial, "-m", &calls, "-r", &rate, "-l",
            "1000", "-p", &port, "-cid_str", &cid,
        ];
        args.extend_from_slice(extra);
        Sipp::spawn(
            scenario_name,
            &args,
            Some(proxy),
            limit,
            &format!("caller {scenario_name} {caller} -> {dial}"),
        )
    }

    fn spawn(
        scenario_name: &str,
        args: &[&str],
        remote: Option<SocketAddr>,
        limit: Duration,
        what: &str,
    ) -> Sipp {
        let dir = temp_dir("sipp");
        let out = std::fs::File::create(dir.join("stdout")).expect("sipp stdout file");
        let err = std::fs::File::create(dir.join("stderr")).expect("sipp stderr file");
        let mut cmd = Command::new("sipp");
        cmd.arg("-sf")
            .arg(scenario(scenario_name))
            .args(["-i", "127.0.0.1", "-t", "u1", "-nostdin"])
            .args(["-timeout", &format!("{}s", limit.as_secs().max(1))])
            .args(["-timeout_error", "-trace_err"])
            .args(args)
            .current_dir(&dir);
        if let Some(r) = remote {
            cmd.arg(r.to_string());
        }
        let child = cmd
            .stdin(Stdio::null())
            .stdout(out)
            .stderr(err)
            .spawn()
            .unwrap_or_else(|e| panic!("cannot run sipp ({e}): scripts/test installs it"));
        Sipp {
            child: Some(child),
            dir,
            what: what.to_string(),
            started: Instant::now(),
        }
    }

    /// Waits for the end of the run (sipp's own timeout bounds it; a few seconds more and it is
    /// killed and reported as such).
    pub fn wait(mut self, limit: Duration) -> Finished {
        let mut child = self.child.take().expect("running");
        let deadline = Instant::now() + limit + Duration::from_secs(5);
        let status = loop {
            if let Ok(Some(status)) = child.try_wait() {
                break status;
            }
            if Instant::now() > deadline {
                let _ = child.kill();
                let status = child.wait().expect("wait for sipp");
                let _ = std::fs::write(self.dir.join("killed"), "");
                break status;
            }
            std::thread::sleep(Duration::from_millis(20));
        };
        let read = |f: &str| std::fs::read_to_string(self.dir.join(f)).unwrap_or_default();
        let stdout = read("stdout");
        let tail: Vec<&str> = stdout.lines().rev().take(45).collect();
        let tail: Vec<&str> = tail.into_iter().rev().collect();
        // -trace_err: the messages sipp did not expect, in <scenario>_<pid>_errors.log.
        let errors: String = std::fs::read_dir(&self.dir)
            .map(|entries| {
                entries
                    .filter_map(|e| e.ok())
                    .filter(|e| e.file_name().to_string_lossy().ends_with("_errors.log"))
                    .map(|e| std::fs::read_to_string(e.path()).unwrap_or_default())
                    .collect()
            })
            .unwrap_or_default();
        let errors: String = errors.chars().take(4000).collect();
        let killed = if self.dir.join("killed").exists() {
            "killed: still running past its limit\n"
        } else {
            ""
        };
        Finished {
            status,
            elapsed: self.started.elapsed(),
            report: format!(
                "{}\n{killed}{}\n{}\n{errors}",
                self.what,
                tail.join("\n"),
                read("stderr")
            ),
        }
    }
}

impl Drop for Sipp {
    fn drop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}
