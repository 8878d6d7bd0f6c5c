//! Running helper commands (`ip`, `sh -c …`) and keeping their output as text.

use std::fmt;
use std::process::{Command, ExitStatus, Stdio};

/// What a finished command printed, as text, and how it ended.
#[derive(Debug, Clone)]
pub struct CmdOutput {
    /// The command line, for messages.
    pub command: String,
    pub status: ExitStatus,
    pub stdout: String,
    pub stderr: String,
}

impl CmdOutput {
    pub fn success(&self) -> bool {
        self.status.success()
    }
}

impl fmt::Display for CmdOutput {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "`{}` ended with {}\n--- stdout\n{}--- stderr\n{}",
            self.command, self.status, self.stdout, self.stderr
        )
    }
}

/// Runs `argv` to completion with stdin closed; panics only if it cannot be started.
pub fn run<S: AsRef<str>>(argv: &[S]) -> CmdOutput {
    let argv: Vec<&str> = argv.iter().map(AsRef::as_ref).collect();
    let output = Command::new(argv[0])
        .args(&argv[1..])
        .stdin(Stdio::null())
        .output()
        .unwrap_or_else(|e| panic!("cannot start {argv:?}: {e}"));
    CmdOutput {
        command: argv.join(" "),
        status: output.status,
        stdout: String::from_utf8_lossy(&output.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&output.stderr).into_owned(),
    }
}

/// Runs `argv` and returns its stdout; panics, showing everything, if it fails.
pub fn run_ok<S: AsRef<str>>(argv: &[S]) -> String {
    let out = run(argv);
    assert!(out.success(), "{out}");
    out.stdout
}
