//! A minimal synchronous QMP client: handshake, commands, their answers (a descriptor passed
//! along where a command needs one) — all within one deadline, so that a QEMU that does not
//! accept, answer or read never holds up PID 1.

use std::io::{self, IoSlice, Read, Write};
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd};
use std::os::unix::net::UnixStream;
use std::path::Path;
use std::time::{Duration, Instant};

use nix::errno::Errno;
use nix::poll::{PollFd, PollFlags, PollTimeout, poll};
use nix::sys::socket::{
    AddressFamily, ControlMessage, MsgFlags, SockFlag, SockType, UnixAddr, connect, sendmsg,
    setsockopt, socket, sockopt,
};
use nix::sys::time::{TimeVal, TimeValLike};

/// Connects, negotiates capabilities, runs `command` (a command name without arguments)
/// and returns the answer line, all within `timeout`.
pub fn execute(socket: &Path, command: &str, timeout: Duration) -> io::Result<String> {
    Session::open(socket, timeout)?.run(&format!(r#"{{"execute":"{command}"}}"#))
}

/// One QMP connection, negotiated, for several commands in a row, all within one deadline.
/// A descriptor passed with `getfd` is known to the later commands of the same connection
/// only.
pub struct Session {
    conn: Conn,
}

impl Session {
    /// Connects to `socket` and negotiates capabilities; this and every command after it
    /// must be done within `timeout`.
    pub fn open(socket: &Path, timeout: Duration) -> io::Result<Session> {
        let mut conn = Conn::open(socket, Instant::now() + timeout)?;
        let greeting = conn.read_line()?;
        if !greeting.contains("\"QMP\"") {
            return Err(io::Error::new(
                io::ErrorKind::InvalidData,
                format!("not a QMP greeting: {greeting}"),
            ));
        }
        let mut session = Session { conn };
        session.run(r#"{"execute":"qmp_capabilities"}"#)?;
        Ok(session)
    }

    /// Sends one command (a JSON object on one line) and returns its answer line; an error
    /// answer is an error. Events that arrive in between are skipped.
    pub fn run(&mut self, command: &str) -> io::Result<String> {
        // One write: QEMU acts on the closing brace, and after `quit` it may be gone
        // before a second one.
        self.conn.write_all(format!("{command}\n").as_bytes())?;
        self.answer(command)
    }

    /// Like `run`, with `fd` passed in the same message (SCM_RIGHTS), as `getfd` wants.
    pub fn run_with_fd(&mut self, command: &str, fd: BorrowedFd) -> io::Result<String> {
        let line = format!("{command}\n");
        let fds = [fd.as_raw_fd()];
        loop {
            match sendmsg::<()>(
                self.conn.stream.as_raw_fd(),
                &[IoSlice::new(line.as_bytes())],
                &[ControlMessage::ScmRights(&fds)],
                MsgFlags::MSG_NOSIGNAL,
                None,
            ) {
                Ok(n) if n == line.len() => break,
                Ok(n) => {
                    // The descriptor went with the first byte; the rest follows plainly.
                    self.conn.write_all(&line.as_bytes()[n..])?;
                    break;
                }
                Err(Errno::EAGAIN) => self.conn.wait(PollFlags::POLLOUT)?,
                Err(Errno::EINTR) => {}
                Err(e) => return Err(e.into()),
            }
        }
        self.answer(command)
    }

    fn answer(&mut self, command: &str) -> io::Result<String> {
        loop {
            let line = self.conn.read_line()?;
            if line.starts_with("{\"return\"") {
                return Ok(line);
            }
            if line.starts_with("{\"error\"") {
                return Err(io::Error::other(format!("QMP {command}: {line}")));
            }
        }
    }
}

/// One QMP connection with its deadline.
struct Conn {
    stream: UnixStream,
    deadline: Instant,
    buf: Vec<u8>,
}

impl Conn {
    /// Connects before `deadline`. On a Unix socket a non-blocking connect() does not wait
    /// for room in a full listen queue (QEMU listens with a backlog of 1 and stops
    /// accepting while, for instance, a `-serial tcp:...,server=on` waits for its client):
    /// it fails with EAGAIN at once and nothing signals when room appears. A blocking
    /// connect() waits in the kernel, for at most SO_SNDTIMEO: set to the time left.
    fn open(socket: &Path, deadline: Instant) -> io::Result<Conn> {
        let fd: OwnedFd = socket_fd()?;
        let left = remaining(deadline)?;
        setsockopt(&fd, sockopt::SendTimeout, &send_timeout(left))?;
        let addr = UnixAddr::new(socket)?;
        match connect(std::os::fd::AsRawFd::as_raw_fd(&fd), &addr) {
            Ok(()) => {}
            Err(Errno::EAGAIN) | Err(Errno::EINPROGRESS) => {
                return Err(io::Error::new(
                    io::ErrorKind::TimedOut,
                    "QEMU does not accept QMP connections",
                ));
            }
            Err(e) => return Err(e.into()),
        }
        let stream = UnixStream::from(fd);
        stream.set_nonblocking(true)?;
        Ok(Conn {
            stream,
            deadline,
            buf: Vec::new(),
        })
    }

    /// Waits until the socket is ready for `flags`, or the deadline.
    fn wait(&self, flags: PollFlags) -> io::Result<()> {
        loop {
            let left = remaining(self.deadline)?;
            let ms = u16::try_from(left.as_millis().max(1)).unwrap_or(u16::MAX);
            let mut fds = [PollFd::new(self.stream.as_fd(), flags)];
            match poll(&mut fds, PollTimeout::from(ms)) {
                Ok(0) | Err(Errno::EINTR) => continue,
                Ok(_) => return Ok(()),
                Err(e) => return Err(e.into()),
            }
        }
    }

    fn write_all(&mut self, mut bytes: &[u8]) -> io::Result<()> {
        while !bytes.is_empty() {
            match self.stream.write(bytes) {
                Ok(n) => bytes = &bytes[n..],
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => self.wait(PollFlags::POLLOUT)?,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(e),
            }
        }
        Ok(())
    }

    /// The next line, without its line end.
    fn read_line(&mut self) -> io::Result<String> {
        loop {
            if let Some(end) = self.buf.iter().position(|&b| b == b'\n') {
                let line: Vec<u8> = self.buf.drain(..=end).collect();
                return Ok(String::from_utf8_lossy(&line).trim().to_string());
            }
            let mut chunk = [0u8; 4096];
            match self.stream.read(&mut chunk) {
                Ok(0) => {
                    return Err(io::Error::new(
                        io::ErrorKind::UnexpectedEof,
                        "QMP closed the connection",
                    ));
                }
                Ok(n) => self.buf.extend_from_slice(&chunk[..n]),
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => self.wait(PollFlags::POLLIN)?,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(e),
            }
        }
    }
}

fn socket_fd() -> io::Result<OwnedFd> {
    Ok(socket(
        AddressFamily::Unix,
        SockType::Stream,
        SockFlag::SOCK_CLOEXEC,
        None,
    )?)
}

/// The time left before `deadline`; an error once it has passed.
fn remaining(deadline: Instant) -> io::Result<Duration> {
    let left = deadline.saturating_duration_since(Instant::now());
    if left.is_zero() {
        return Err(io::Error::new(
            io::ErrorKind::TimedOut,
            "QEMU did not answer on QMP in time",
        ));
    }
    Ok(left)
}

fn send_timeout(d: Duration) -> TimeVal {
    // A zero SO_SNDTIMEO would mean "wait forever": at least one microsecond.
    let micros = d.as_micros().clamp(1, i64::MAX as u128) as i64;
    TimeVal::microseconds(micros)
}

/// Whether a `query-status` answer says the guest is running.
pub fn is_running(answer: &str) -> bool {
    let compact: String = answer.chars().filter(|c| !c.is_whitespace()).collect();
    compact.contains("\"running\":true")
}

#[cfg(test)]
mod tests {
    use super::*;
    use nix::sys::socket::{Backlog, bind, listen};
    use std::os::unix::net::UnixListener;
    use std::path::PathBuf;

    fn socket_path(name: &str) -> PathBuf {
        let dir = std::env::temp_dir().join(format!("vminit-qmp-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        dir.join("qmp.sock")
    }

    /// A socket that listens, as QEMU's does, with a backlog of 1, and never accepts.
    fn never_accepting(path: &Path) -> OwnedFd {
        let fd = socket_fd().unwrap();
        bind(
            std::os::fd::AsRawFd::as_raw_fd(&fd),
            &UnixAddr::new(path).unwrap(),
        )
        .unwrap();
        listen(&fd, Backlog::new(1).unwrap()).unwrap();
        fd
    }

    /// Runs `execute` on another thread; panics if it does not return within `limit`.
    fn returns_within(path: &Path, timeout: Duration, limit: Duration) -> io::Result<String> {
        let (tx, rx) = std::sync::mpsc::channel();
        let path = path.to_owned();
        std::thread::spawn(move || {
            let _ = tx.send(execute(&path, "system_powerdown", timeout));
        });
        rx.recv_timeout(limit)
            .expect("execute returned within its deadline")
    }

    #[test]
    fn a_qemu_that_never_accepts_costs_at_most_the_deadline_per_attempt() {
        let path = socket_path("stuck");
        let _listener = never_accepting(&path);
        // The first attempts queue in the backlog and wait for a greeting; later ones find
        // the queue full and wait in connect(). Each ends at its deadline.
        for _ in 0..4 {
            let started = Instant::now();
            let e = returns_within(&path, Duration::from_millis(200), Duration::from_secs(3))
                .unwrap_err();
            assert_eq!(e.kind(), io::ErrorKind::TimedOut, "{e}");
            assert!(
                started.elapsed() < Duration::from_secs(2),
                "{:?}",
                started.elapsed()
            );
        }
    }

    #[test]
    fn a_qemu_that_accepts_but_never_answers_costs_at_most_the_deadline() {
        let path = socket_path("silent");
        let listener = UnixListener::bind(&path).unwrap();
        let held = std::thread::spawn(move || listener.accept().map(|(s, _)| s));
        let e =
            returns_within(&path, Duration::from_millis(200), Duration::from_secs(3)).unwrap_err();
        assert_eq!(e.kind(), io::ErrorKind::TimedOut, "{e}");
        drop(held.join());
    }

    #[test]
    fn a_command_is_answered_after_the_handshake() {
        let path = socket_path("answer");
        let listener = UnixListener::bind(&path).unwrap();
        let server = std::thread::spawn(move || {
            let (mut s, _) = listener.accept().unwrap();
            s.write_all(b"{\"QMP\": {\"version\": {}}}\n").unwrap();
            let mut reader = std::io::BufReader::new(s.try_clone().unwrap());
            let mut line = String::new();
            std::io::BufRead::read_line(&mut reader, &mut line).unwrap();
            assert!(line.contains("qmp_capabilities"), "{line}");
            s.write_all(b"{\"return\": {}}\n").unwrap();
            line.clear();
            std::io::BufRead::read_line(&mut reader, &mut line).unwrap();
            assert!(line.contains("query-status"), "{line}");
            s.write_all(b"{\"event\": \"X\"}\n{\"return\": {\"running\": true}}\n")
                .unwrap();
        });
        let answer = execute(&path, "query-status", Duration::from_secs(5)).unwrap();
        assert!(is_running(&answer), "{answer}");
        server.join().unwrap();
    }

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
