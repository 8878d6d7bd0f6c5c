//! The one error type of vminit and the exit codes it maps to.

use std::fmt;
use std::io;

/// Exit codes of vminit itself. The guest's own status passes through unchanged
/// (QEMU's exit code, or 128+signal when QEMU was killed); these are the codes
/// vminit uses when it stops before or instead of running QEMU.
pub mod exit {
    /// An environment variable or argument is invalid.
    pub const USAGE: i32 = 64;
    /// The container's network does not fit the request (unknown interface, no IPv4, ...).
    pub const NETWORK_INPUT: i32 = 65;
    /// The VM disk is missing or not a qcow2 image.
    pub const DISK: i32 = 66;
    /// A device, capability or kernel module vminit needs is not available.
    pub const UNAVAILABLE: i32 = 69;
    /// A system call failed while setting up (netlink, mknod, spawn, ...).
    pub const OS: i32 = 71;
    /// A program was found but could not be executed.
    pub const NOT_EXECUTABLE: i32 = 126;
    /// A program was not found.
    pub const NOT_FOUND: i32 = 127;
}

/// Everything that can stop vminit, named after the operation that failed.
#[derive(Debug)]
pub enum Error {
    /// Bad environment variable or argument: (variable, message with the fix).
    Config(String, String),
    /// The network namespace does not offer what was asked for.
    Network(String),
    /// The disk image is missing or unusable.
    Disk(String),
    /// A device or capability is missing; the message ends with the fix.
    Unavailable(String),
    /// A program cannot be run: (path, cause).
    Program(String, io::Error),
    /// A system operation failed: (operation and object, cause).
    Os(String, io::Error),
}

impl Error {
    /// Wraps an I/O error with the operation and object it came from.
    pub fn os(what: impl Into<String>, err: impl Into<io::Error>) -> Error {
        Error::Os(what.into(), err.into())
    }

    pub fn exit_code(&self) -> i32 {
        match self {
            Error::Config(..) => exit::USAGE,
            Error::Network(_) => exit::NETWORK_INPUT,
            Error::Disk(_) => exit::DISK,
            Error::Unavailable(_) => exit::UNAVAILABLE,
            Error::Program(_, e) if e.kind() == io::ErrorKind::NotFound => exit::NOT_FOUND,
            Error::Program(..) => exit::NOT_EXECUTABLE,
            Error::Os(..) => exit::OS,
        }
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Error::Config(var, msg) => write!(f, "{var}: {msg}"),
            Error::Network(msg) | Error::Disk(msg) | Error::Unavailable(msg) => f.write_str(msg),
            Error::Program(path, e) => write!(f, "cannot run {path}: {e}"),
            Error::Os(what, e) => write!(f, "{what}: {e}"),
        }
    }
}

impl std::error::Error for Error {}

pub type Result<T> = std::result::Result<T, Error>;
