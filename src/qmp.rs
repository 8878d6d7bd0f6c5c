//! A minimal synchronous QMP client: a session of commands and their answers, with a file
//! descriptor passed along where a command needs one (`getfd`).

use std::io::{self, BufRead, BufReader, IoSlice, Write};
use std::os::fd::{AsRawFd, BorrowedFd};
use std::os::unix::net::UnixStream;
use std::path::Path;
use std::time::Duration;

use nix::sys::socket::{ControlMessage, MsgFlags, sendmsg};

/// Connects, negotiates capabilities, runs `command` (a command name without arguments)
/// and returns the answer line.
pub fn execute(socket: &Path, command: &str, timeout: Duration) -> io::Result<String> {
    Session::open(socket, timeout)?.run(&format!(r#"{{"execute":"{command}"}}"#))
}

/// One QMP connection, negotiated, for several commands in a row. A descriptor passed with
/// `getfd` is known to the later commands of the same connection only.
pub struct Session {
    reader: BufReader<UnixStream>,
    writer: UnixStream,
}

impl Session {
    /// Connects to `socket` and negotiates capabilities; every read and write then waits
    /// at most `timeout`.
    pub fn open(socket: &Path, timeout: Duration) -> io::Result<Session> {
        let stream = UnixStream::connect(socket)?;
        stream.set_read_timeout(Some(timeout))?;
        stream.set_write_timeout(Some(timeout))?;
        let mut session = Session {
            reader: BufReader::new(stream.try_clone()?),
            writer: stream,
        };
        let greeting = read_line(&mut session.reader)?;
        if !greeting.contains("\"QMP\"") {
            return Err(io::Error::new(
                io::ErrorKind::InvalidData,
                format!("not a QMP greeting: {greeting}"),
            ));
        }
        session.run(r#"{"execute":"qmp_capabilities"}"#)?;
        Ok(session)
    }

    /// Sends one command (a JSON object on one line) and returns its answer line; an error
    /// answer is an error. Events that arrive in between are skipped.
    pub fn run(&mut self, command: &str) -> io::Result<String> {
        // One write: QEMU acts on the closing brace, and after `quit` it may be gone before
        // a second write.
        self.writer.write_all(format!("{command}\n").as_bytes())?;
        self.answer(command)
    }

    /// Like `run`, with `fd` passed in the same message (SCM_RIGHTS), as `getfd` wants.
    pub fn run_with_fd(&mut self, command: &str, fd: BorrowedFd) -> io::Result<String> {
        let line = format!("{command}\n");
        let fds = [fd.as_raw_fd()];
        let sent = sendmsg::<()>(
            self.writer.as_raw_fd(),
            &[IoSlice::new(line.as_bytes())],
            &[ControlMessage::ScmRights(&fds)],
            MsgFlags::MSG_NOSIGNAL,
            None,
        )?;
        if sent != line.len() {
            return Err(io::Error::other(format!(
                "QMP: sent {sent} of {} bytes",
                line.len()
            )));
        }
        self.answer(command)
    }

    fn answer(&mut self, command: &str) -> io::Result<String> {
        loop {
            let line = read_line(&mut self.reader)?;
            if line.starts_with("{\"return\"") {
                return Ok(line);
            }
            if line.starts_with("{\"error\"") {
                return Err(io::Error::other(format!("QMP {command}: {line}")));
            }
        }
    }
}

fn read_line(reader: &mut impl BufRead) -> io::Result<String> {
    let mut line = String::new();
    if reader.read_line(&mut line)? == 0 {
        return Err(io::Error::new(
            io::ErrorKind::UnexpectedEof,
            "QMP closed the connection",
        ));
    }
    Ok(line.trim().to_string())
}

/// Whether a `query-status` answer says the guest is running.
pub fn is_running(answer: &str) -> bool {
    let compact: String = answer.chars().filter(|c| !c.is_whitespace()).collect();
    compact.contains("\"running\":true")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn query_status_answers_are_read_regardless_of_spacing() {
        assert!(is_running(
            r#"{"return": {"status": "running", "singlestep": false, "running": true}}"#
        ));
        assert!(!is_running(
            r#"{"return": {"status": "paused", "running": false}}"#
        ));
    }
}
