//! A minimal QMP client: enough to press a guest's power button or ask its status from a test.

use std::io::{self, BufRead, BufReader, Write};
use std::os::unix::net::UnixStream;
use std::path::Path;
use std::time::Duration;

/// Connects to the QMP socket at `socket`, negotiates capabilities and runs `command` with
/// `arguments` (a JSON object's text, e.g. `{"device":"net0"}`). Returns the answer's JSON line;
/// an `{"error": …}` answer is an error. Events QEMU sends meanwhile are skipped.
pub fn qmp_execute(
    socket: &Path,
    command: &str,
    arguments: Option<&str>,
    timeout: Duration,
) -> io::Result<String> {
    let stream = UnixStream::connect(socket)?;
    stream.set_read_timeout(Some(timeout))?;
    stream.set_write_timeout(Some(timeout))?;
    let mut reader = BufReader::new(stream.try_clone()?);
    let mut writer = stream;
    let mut line = String::new();
    reader.read_line(&mut line)?; // the greeting: {"QMP": {...}}
    ask(
        &mut reader,
        &mut writer,
        r#"{"execute":"qmp_capabilities"}"#,
    )?;
    let request = match arguments {
        Some(args) => format!(r#"{{"execute":"{command}","arguments":{args}}}"#),
        None => format!(r#"{{"execute":"{command}"}}"#),
    };
    ask(&mut reader, &mut writer, &request)
}

/// Sends one request and reads lines until its answer.
fn ask(reader: &mut impl BufRead, writer: &mut impl Write, request: &str) -> io::Result<String> {
    // One write: QEMU acts on the closing brace, and after `quit` it may be gone before a
    // second write (EPIPE).
    writer.write_all(format!("{request}\n").as_bytes())?;
    writer.flush()?;
    loop {
        let mut line = String::new();
        if reader.read_line(&mut line)? == 0 {
            return Err(io::Error::new(
                io::ErrorKind::UnexpectedEof,
                "QMP closed the connection",
            ));
        }
        if line.starts_with(r#"{"return""#) {
            return Ok(line.trim_end().to_owned());
        }
        if line.starts_with(r#"{"error""#) {
            return Err(io::Error::other(format!("{request} → {}", line.trim_end())));
        }
    }
}
