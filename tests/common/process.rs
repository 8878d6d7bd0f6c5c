//! A child process whose stdin a test writes and whose stdout and stderr it reads while it runs.

use std::io::{self, Read, Write};
use std::process::{Child, ChildStdin, Command, ExitStatus, Stdio};
use std::sync::{Arc, Condvar, Mutex};
use std::thread;
use std::time::{Duration, Instant};

/// Everything one output stream of a child has written so far, filled by a reader thread.
#[derive(Debug, Default)]
pub struct Capture {
    state: Mutex<CaptureState>,
    grew: Condvar,
}

#[derive(Debug, Default)]
struct CaptureState {
    bytes: Vec<u8>,
    closed: bool,
}

/// Where a pattern was found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Match {
    /// The whole line the pattern is on (as far as it was written), without `\r` or `\n`.
    pub line: String,
    /// Offset just after the match: pass it to [`Capture::wait_for_from`] to find what follows.
    pub end: usize,
}

impl Capture {
    /// Reads `source` until end of file into a new capture, on a new thread.
    pub(super) fn start(source: impl Read + Send + 'static) -> Arc<Capture> {
        let capture = Arc::new(Capture::default());
        let sink = Arc::clone(&capture);
        thread::spawn(move || sink.fill(source));
        capture
    }

    fn fill(&self, mut source: impl Read) {
        let mut buf = [0u8; 8192];
        loop {
            let n = source.read(&mut buf).unwrap_or(0);
            let mut state = self.state.lock().expect("capture lock");
            if n == 0 {
                state.closed = true;
                self.grew.notify_all();
                return;
            }
            state.bytes.extend_from_slice(&buf[..n]);
            self.grew.notify_all();
        }
    }

    /// Everything so far, as text (invalid UTF-8 replaced).
    pub fn text(&self) -> String {
        self.text_from(0)
    }

    /// The lines captured so far that start with `prefix` (a guest's `GUEST-BLOCK `, say).
    pub fn lines_starting(&self, prefix: &str) -> Vec<String> {
        self.text()
            .lines()
            .filter(|l| l.starts_with(prefix))
            .map(str::to_owned)
            .collect()
    }

    /// What arrived at or after byte offset `from` (a mark from [`Capture::len`]), as text.
    pub fn text_from(&self, from: usize) -> String {
        let state = self.state.lock().expect("capture lock");
        String::from_utf8_lossy(state.bytes.get(from..).unwrap_or_default()).into_owned()
    }

    /// How many bytes so far: a mark for [`Capture::wait_for_from`].
    pub fn len(&self) -> usize {
        self.state.lock().expect("capture lock").bytes.len()
    }

    /// True once the writing end is closed (every process holding it is gone).
    pub fn is_closed(&self) -> bool {
        self.state.lock().expect("capture lock").closed
    }

    /// Waits up to `timeout` for the writing end to close; true if it did.
    pub fn wait_closed(&self, timeout: Duration) -> bool {
        self.wait(timeout, |state| state.closed.then_some(()))
            .is_some()
    }

    /// Waits up to `timeout` for `pattern` anywhere in the stream.
    pub fn wait_for(&self, pattern: &str, timeout: Duration) -> Option<Match> {
        self.wait_for_from(0, pattern, timeout)
    }

    /// Waits up to `timeout` for `pattern` at or after byte offset `from`. Returns `None` on
    /// timeout or when the stream closed without it.
    pub fn wait_for_from(&self, from: usize, pattern: &str, timeout: Duration) -> Option<Match> {
        let needle = pattern.as_bytes();
        self.wait(timeout, |state| {
            let found = find(&state.bytes, needle, from)?;
            Some(line_at(&state.bytes, found, found + needle.len()))
        })
    }

    /// Like [`Capture::wait_for`], but returns only once the line `pattern` is on is complete
    /// (a newline follows, or the stream closed): a line being written is not yet its [`Match`].
    pub fn wait_for_whole_line(&self, pattern: &str, timeout: Duration) -> Option<Match> {
        let needle = pattern.as_bytes();
        self.wait(timeout, |state| {
            let found = find(&state.bytes, needle, 0)?;
            let end = found + needle.len();
            let complete = state.closed || state.bytes[end..].contains(&b'\n');
            complete.then(|| line_at(&state.bytes, found, end))
        })
    }

    /// Waits up to `timeout` until `done` holds for the text at or after byte offset `from`;
    /// false on timeout or when the stream closed first.
    pub fn wait_until(&self, from: usize, timeout: Duration, done: impl Fn(&str) -> bool) -> bool {
        self.wait(timeout, |state| {
            let text = String::from_utf8_lossy(state.bytes.get(from..).unwrap_or_default());
            done(&text).then_some(())
        })
        .is_some()
    }

    /// Waits up to `timeout` for `check` to give an answer, looking again whenever the stream
    /// grows; `None` on timeout, or when the stream closed and `check` still has none.
    fn wait<T>(&self, timeout: Duration, check: impl Fn(&CaptureState) -> Option<T>) -> Option<T> {
        let deadline = Instant::now() + timeout;
        let mut state = self.state.lock().expect("capture lock");
        loop {
            if let Some(answer) = check(&state) {
                return Some(answer);
            }
            let now = Instant::now();
            if state.closed || now >= deadline {
                return None;
            }
            state = self
                .grew
                .wait_timeout(state, deadline - now)
                .expect("capture lock")
                .0;
        }
    }
}

fn find(haystack: &[u8], needle: &[u8], from: usize) -> Option<usize> {
    if from >= haystack.len() || needle.is_empty() {
        return None;
    }
    haystack[from..]
        .windows(needle.len())
        .position(|w| w == needle)
        .map(|p| p + from)
}

fn line_at(bytes: &[u8], start: usize, end: usize) -> Match {
    let begin = bytes[..start]
        .iter()
        .rposition(|&b| b == b'\n')
        .map_or(0, |p| p + 1);
    let finish = bytes[start..]
        .iter()
        .position(|&b| b == b'\n')
        .map_or(bytes.len(), |p| p + start);
    let line = String::from_utf8_lossy(&bytes[begin..finish])
        .trim_end_matches('\r')
        .to_owned();
    Match { line, end }
}

/// A spawned child with piped stdio. Dropping it kills the child (SIGKILL) and reaps it.
#[derive(Debug)]
pub struct Process {
    child: Mutex<Child>,
    stdin: Mutex<Option<ChildStdin>>,
    stdout: Arc<Capture>,
    stderr: Arc<Capture>,
    status: Mutex<Option<ExitStatus>>,
}

impl Process {
    /// Spawns `command` with stdin, stdout and stderr piped; panics if it cannot start.
    pub fn spawn(mut command: Command) -> Process {
        Process::try_spawn(&mut command).unwrap_or_else(|e| panic!("cannot start {command:?}: {e}"))
    }

    /// Spawns `command` with stdin, stdout and stderr piped.
    pub fn try_spawn(command: &mut Command) -> io::Result<Process> {
        Ok(Process::adopt(Process::spawn_child(command)?))
    }

    /// Only spawns `command` with stdin, stdout and stderr piped, for [`Process::adopt`] (which
    /// may have to run on another thread: it starts reader threads).
    pub fn spawn_child(command: &mut Command) -> io::Result<Child> {
        command
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
    }

    /// Takes over a child made by [`Process::spawn_child`] and starts reading its output.
    pub fn adopt(mut child: Child) -> Process {
        let stdin = child.stdin.take();
        let stdout = Capture::start(child.stdout.take().expect("piped stdout"));
        let stderr = Capture::start(child.stderr.take().expect("piped stderr"));
        Process {
            child: Mutex::new(child),
            stdin: Mutex::new(stdin),
            stdout,
            stderr,
            status: Mutex::new(None),
        }
    }

    /// The child's pid (in this test's pid namespace).
    pub fn pid(&self) -> i32 {
        let pid = self.child.lock().expect("child lock").id();
        i32::try_from(pid).expect("pid fits in i32")
    }

    /// What the child wrote to stdout.
    pub fn stdout(&self) -> &Capture {
        &self.stdout
    }

    /// What the child wrote to stderr.
    pub fn stderr(&self) -> &Capture {
        &self.stderr
    }

    /// Writes `text` to the child's stdin; panics if stdin was closed or the child stopped reading.
    pub fn write_stdin(&self, text: &str) {
        let mut stdin = self.stdin.lock().expect("stdin lock");
        let pipe = stdin.as_mut().expect("stdin is still open");
        pipe.write_all(text.as_bytes())
            .and_then(|()| pipe.flush())
            .expect("write to the child's stdin");
    }

    /// Closes the child's stdin (it reads end of file).
    pub fn close_stdin(&self) {
        self.stdin.lock().expect("stdin lock").take();
    }

    /// The exit status if the child has ended (it is reaped then), without waiting.
    pub fn try_status(&self) -> Option<ExitStatus> {
        let mut status = self.status.lock().expect("status lock");
        if status.is_none() {
            *status = self
                .child
                .lock()
                .expect("child lock")
                .try_wait()
                .expect("waitpid on our child");
        }
        *status
    }

    /// Waits up to `timeout` for the child to end; its exit status, or `None` if it still runs.
    pub fn wait_exit(&self, timeout: Duration) -> Option<ExitStatus> {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(status) = self.try_status() {
                return Some(status);
            }
            if Instant::now() >= deadline {
                return None;
            }
            thread::sleep(Duration::from_millis(20));
        }
    }

    /// Sends `signal` to the child itself.
    pub fn signal(&self, signal: nix::sys::signal::Signal) {
        if self.try_status().is_none() {
            let _ = nix::sys::signal::kill(nix::unistd::Pid::from_raw(self.pid()), signal);
        }
    }

    /// Both streams' last lines, for failure messages.
    pub fn tails(&self) -> String {
        format!(
            "--- stdout (last 40 lines)\n{}\n--- stderr (last 40 lines)\n{}",
            tail(&self.stdout.text(), 40),
            tail(&self.stderr.text(), 40)
        )
    }
}

impl Drop for Process {
    fn drop(&mut self) {
        self.close_stdin();
        let child = self.child.get_mut().expect("child lock");
        if self.status.get_mut().expect("status lock").is_none() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// The last `n` lines of `text`.
pub fn tail(text: &str, n: usize) -> String {
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(n)..].join("\n")
}
