//! Running helper commands (`ip`, `sh -c …`, `docker …`) with a time limit, keeping their output
//! as text.
//!
//! Every command runs in a process group of its own; one that outlives its limit is killed with
//! its whole group (so a `sh -c` and what it started go together), and its output says so.

use std::fmt;
use std::os::unix::process::CommandExt;
use std::process::{Command, ExitStatus, Stdio};
use std::thread;
use std::time::{Duration, Instant};

use nix::sys::signal::{Signal, killpg};
use nix::unistd::Pid;

use super::process::Capture;

/// The time limit of [`run`] and [`run_ok`]: ample for `ip`, `ping`, `qemu-img` or one `docker`
/// CLI call on a loaded machine.
pub const COMMAND_TIMEOUT: Duration = Duration::from_secs(60);
/// A time limit for builds (an image, the test guest, a Debian package install).
pub const BUILD_TIMEOUT: Duration = Duration::from_secs(1200);
/// How long output is still read after the command ended: a process it left behind may hold the
/// pipes open, and is not waited for.
const LEFT_BEHIND: Duration = Duration::from_secs(2);

/// What a finished command printed, as text, and how it ended.
#[derive(Debug, Clone)]
pub struct CmdOutput {
    /// The command line, for messages.
    pub command: String,
    pub status: ExitStatus,
    /// The limit it ran into, when it was killed for that.
    pub timed_out: Option<Duration>,
    pub stdout: String,
    pub stderr: String,
}

impl CmdOutput {
    /// True when the command exited 0 within its limit.
    pub fn success(&self) -> bool {
        self.timed_out.is_none() && self.status.success()
    }
}

impl fmt::Display for CmdOutput {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.timed_out {
            Some(limit) => write!(
                f,
                "`{}` timed out after {limit:?}; its process group was killed",
                self.command
            )?,
            None => write!(f, "`{}` ended with {}", self.command, self.status)?,
        }
        write!(
            f,
            "\n--- stdout\n{}--- stderr\n{}",
            self.stdout, self.stderr
        )
    }
}

/// Runs `argv` to completion with stdin closed, for at most [`COMMAND_TIMEOUT`]; panics only if it
/// cannot be started.
pub fn run<S: AsRef<str>>(argv: &[S]) -> CmdOutput {
    run_for(argv, COMMAND_TIMEOUT)
}

/// Runs `argv` and returns its stdout; panics, showing everything, if it fails or times out.
pub fn run_ok<S: AsRef<str>>(argv: &[S]) -> String {
    run_ok_for(argv, COMMAND_TIMEOUT)
}

/// [`run_ok`] with the time limit `limit`.
pub fn run_ok_for<S: AsRef<str>>(argv: &[S], limit: Duration) -> String {
    let out = run_for(argv, limit);
    assert!(out.success(), "{out}");
    out.stdout
}

/// Runs `argv` with stdin closed for at most `limit`, then kills its whole process group (SIGKILL);
/// panics only if it cannot be started.
pub fn run_for<S: AsRef<str>>(argv: &[S], limit: Duration) -> CmdOutput {
    let argv: Vec<&str> = argv.iter().map(AsRef::as_ref).collect();
    let mut child = Command::new(argv[0])
        .args(&argv[1..])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .process_group(0)
        .spawn()
        .unwrap_or_else(|e| panic!("cannot start {argv:?}: {e}"));
    let stdout = Capture::start(child.stdout.take().expect("piped stdout"));
    let stderr = Capture::start(child.stderr.take().expect("piped stderr"));
    let deadline = Instant::now() + limit;
    let mut timed_out = None;
    let status = loop {
        if let Some(status) = child.try_wait().expect("waitpid on our child") {
            break status;
        }
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            timed_out = Some(limit);
            kill_group(child.id());
            break child.wait().expect("waitpid on our child");
        }
        // Most commands end by closing their output: wake up for that, else poll.
        if stdout.wait_closed(left.min(Duration::from_millis(20))) {
            thread::sleep(left.min(Duration::from_millis(2)));
        }
    };
    stdout.wait_closed(LEFT_BEHIND);
    stderr.wait_closed(LEFT_BEHIND);
    CmdOutput {
        command: argv.join(" "),
        status,
        timed_out,
        stdout: stdout.text(),
        stderr: stderr.text(),
    }
}

/// SIGKILL to every process of the group `pgid` (`kill -KILL -- -PGID`).
pub fn kill_group(pgid: u32) {
    let pgid = i32::try_from(pgid).expect("pid fits in i32");
    let _ = killpg(Pid::from_raw(pgid), Signal::SIGKILL);
}
