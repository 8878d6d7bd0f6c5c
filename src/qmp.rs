//! A minimal synchronous QMP client: handshake, one command, its answer.

use std::io::{self, BufRead, BufReader, Write};
use std::os::unix::net::UnixStream;
use std::path::Path;
use std::time::Duration;

/// Connects, negotiates capabilities, runs `command` and returns the answer line.
/// Events that arrive in between are skipped.
pub fn execute(socket: &Path, command: &str, timeout: Duration) -> io::Result<String> {
    let stream = UnixStream::connect(socket)?;
    stream.set_read_timeout(Some(timeout))?;
    stream.set_write_timeout(Some(timeout))?;
    let mut reader = BufReader::new(stream.try_clone()?);
    let mut writer = stream;
    let greeting = read_line(&mut reader)?;
    if !greeting.contains("\"QMP\"") {
        return Err(io::Error::new(
            io::ErrorKind::InvalidData,
            format!("not a QMP greeting: {greeting}"),
        ));
    }
    for cmd in ["qmp_capabilities", command] {
        writeln!(writer, "{{\"execute\": \"{cmd}\"}}")?;
        loop {
            let line = read_line(&mut reader)?;
            if line.starts_with("{\"return\"") {
                if cmd == command {
                    return Ok(line);
                }
                break;
            }
            if line.starts_with("{\"error\"") {
                return Err(io::Error::other(format!("QMP {cmd}: {line}")));
            }
        }
    }
    unreachable!("the loop returns after the last command")
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
