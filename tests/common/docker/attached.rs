//! A docker client attached to a container's stdio, whose input the test types and whose output it
//! reads.

use std::os::unix::process::CommandExt;
use std::process::Command;
use std::thread;
use std::time::Duration;

use super::super::cmd::kill_group;
use super::super::process::Process;

/// `docker attach` or `docker start --attach --interactive`, in a process group of its own that is
/// killed when this is dropped. Every wait on it has a time limit.
#[derive(Debug)]
pub struct Attached {
    process: Process,
}

impl Attached {
    /// `docker attach NAME` on a pseudo-terminal (`script`), as a user at a terminal runs it:
    /// the container has a TTY, and Docker's detach keys work only then.
    pub(super) fn terminal(name: &str) -> Attached {
        let mut command = Command::new("script");
        command.args([
            "--quiet",
            "--flush",
            "--command",
            &format!("docker attach {name}"),
            "/dev/null",
        ]);
        Attached::spawn(command)
    }

    /// `docker start --attach --interactive NAME`: starts the container with its stdin ours.
    pub(super) fn start(name: &str) -> Attached {
        let mut command = Command::new("docker");
        command.args(["start", "--attach", "--interactive", name]);
        Attached::spawn(command)
    }

    fn spawn(mut command: Command) -> Attached {
        command.process_group(0);
        Attached {
            process: Process::spawn(command),
        }
    }

    /// Types `text` (control characters too: `"\x03"` is Ctrl-C).
    pub fn write(&self, text: &str) {
        self.process.write_stdin(text);
    }

    /// Everything the client printed so far.
    pub fn text(&self) -> String {
        self.process.stdout().text()
    }

    /// A mark: how much the client printed so far.
    pub fn len(&self) -> usize {
        self.process.stdout().len()
    }

    /// Waits up to `timeout` for `pattern` in the output after `mark`.
    pub fn wait_for_from(&self, mark: usize, pattern: &str, timeout: Duration) -> bool {
        self.process
            .stdout()
            .wait_for_from(mark, pattern, timeout)
            .is_some()
    }

    /// Waits up to `timeout` for a line that is `line` (surrounding blanks aside) after `mark`.
    pub fn wait_for_line(&self, mark: usize, line: &str, timeout: Duration) -> bool {
        self.process
            .stdout()
            .wait_until(mark, timeout, |t| t.lines().any(|l| l.trim() == line))
    }

    /// Presses Enter (up to 15 times, 2 s apart) until `prompt` shows: proves the attach is live.
    pub fn wait_for_prompt(&self, prompt: &str) -> bool {
        (0..15).any(|_| {
            let mark = self.len();
            self.write("\r");
            self.wait_for_from(mark, prompt, Duration::from_secs(2))
        })
    }

    /// Types `keys`, then gives the other side `settle` to act on them.
    pub fn press(&self, keys: &str, settle: Duration) {
        self.write(keys);
        thread::sleep(settle);
    }

    /// Waits up to `timeout` for the client to end; true if it did.
    pub fn wait_exit(&self, timeout: Duration) -> bool {
        self.process.wait_exit(timeout).is_some()
    }
}

impl Drop for Attached {
    fn drop(&mut self) {
        self.process.close_stdin();
        if self.process.try_status().is_none() {
            let pid = u32::try_from(self.process.pid()).expect("a pid is positive");
            kill_group(pid);
        }
        // Process's own drop reaps it.
    }
}
