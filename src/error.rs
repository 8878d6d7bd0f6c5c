//! The one error type of vminit, named after what failed, and the exit codes it maps to.
//!
//! Messages are one line: what failed, on which object, the errno where there is one, and,
//! where the cause is a missing Docker flag or kernel module, the fix (`hint: ...`).

use std::fmt;
use std::io;
use std::path::PathBuf;

use crate::net::step::Step;

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
    /// Another vminit runs in this network namespace; this one changed nothing.
    pub const ALREADY_RUNNING: i32 = 75;
    /// A program was found but could not be executed.
    pub const NOT_EXECUTABLE: i32 = 126;
    /// A program was not found.
    pub const NOT_FOUND: i32 = 127;
    /// Added to a signal's number when a signal ended the run (shell convention).
    pub const SIGNAL_BASE: i32 = 128;
}

/// Why the container's network cannot be handed to the guest (yet).
#[derive(Debug, Clone, PartialEq)]
pub enum NetworkError {
    /// A name in `ATTACH_IFACES` is not an interface of the container.
    NoSuchInterface(String),
    /// A name in `ATTACH_IFACES` is loopback, a bridge, a tunnel or one of vminit's links.
    NotAttachable(String),
    /// The container has no NIC at all (`--network none`).
    NoInterfaces,
    /// A NIC to attach has neither an IPv4 address nor a global (or unique local) IPv6 one.
    NoAddress(String),
    /// A NIC to attach has no MAC address.
    NoMac(String),
    /// A NIC to attach has a point-to-point address (`ip addr add A peer P`): the NIC, the
    /// address, its peer.
    PointToPoint(String, std::net::Ipv4Addr, std::net::Ipv4Addr),
    /// An address the guest would take is on two links: the address, and the two links.
    SameAddress(String, String, String),
    /// More NICs than the guest has PCI slots for: how many, the most it can have, and what
    /// takes the other slots (`qemu::SlotUse::describe`).
    TooManyNics(usize, usize, String),
}

/// Everything that can stop vminit, named after the operation that failed.
#[derive(Debug)]
pub enum Error {
    /// An environment variable or argument is invalid: the variable, and what is wrong with
    /// the fix.
    Config { var: String, msg: String },
    /// The container's network does not fit the request.
    Network(NetworkError),
    /// The VM disk is missing or unusable: the path, and what is wrong with it (a phrase
    /// such as "is empty; ...") with the fix.
    Disk { path: PathBuf, problem: String },
    /// A device, capability or kernel module is missing: what failed, and the fix.
    Unavailable { what: String, hint: String },
    /// A program cannot be run: which one, and why.
    Program { what: String, source: io::Error },
    /// A change to the network namespace failed.
    Step { step: Step, source: io::Error },
    /// dnsmasq did not come up to serve DHCP.
    DnsmasqStart(String),
    /// Another system operation failed: the operation and its object, and why.
    Os { op: String, source: io::Error },
    /// Another vminit holds this network namespace's lock.
    AlreadyRunning,
    /// `docker stop` (or another termination signal, by number) arrived before the guest
    /// started.
    Interrupted(i32),
}

impl Error {
    /// Wraps an I/O error with the operation and object it came from.
    pub fn os(op: impl Into<String>, err: impl Into<io::Error>) -> Error {
        Error::Os {
            op: op.into(),
            source: err.into(),
        }
    }

    /// An invalid environment variable or argument.
    pub fn config(var: &str, msg: impl Into<String>) -> Error {
        Error::Config {
            var: var.to_string(),
            msg: msg.into(),
        }
    }

    /// Whether waiting can help: an interface or address that is not there yet may still
    /// come (Docker and device plugins add them just after start). Everything else is
    /// permanent and reported at once.
    pub fn waiting_can_help(&self) -> bool {
        matches!(
            self,
            Error::Network(
                NetworkError::NoSuchInterface(_)
                    | NetworkError::NoInterfaces
                    | NetworkError::NoAddress(_)
            )
        )
    }

    pub fn exit_code(&self) -> i32 {
        match self {
            Error::Config { .. } => exit::USAGE,
            Error::Network(_) => exit::NETWORK_INPUT,
            Error::Disk { .. } => exit::DISK,
            Error::Unavailable { .. } | Error::DnsmasqStart(_) => exit::UNAVAILABLE,
            Error::Program { source, .. } if source.kind() == io::ErrorKind::NotFound => {
                exit::NOT_FOUND
            }
            Error::Program { .. } => exit::NOT_EXECUTABLE,
            Error::Step { step, source } if step_hint(step, source).is_some() => exit::UNAVAILABLE,
            Error::Step { .. } | Error::Os { .. } => exit::OS,
            Error::AlreadyRunning => exit::ALREADY_RUNNING,
            Error::Interrupted(sig) => exit::SIGNAL_BASE + *sig,
        }
    }
}

/// The fix for a failed network change, when its errno names one.
fn step_hint(step: &Step, e: &io::Error) -> Option<&'static str> {
    match e.raw_os_error() {
        Some(libc::EPERM) | Some(libc::EACCES) => {
            Some("hint: run the container with --cap-add NET_ADMIN")
        }
        Some(libc::EOPNOTSUPP) if matches!(step, Step::AddLink { .. }) => {
            Some("hint: the host kernel needs macvlan and macvtap (modprobe macvtap on the host)")
        }
        _ => None,
    }
}

impl fmt::Display for NetworkError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            NetworkError::NoSuchInterface(name) => write!(
                f,
                "ATTACH_IFACES: interface {name} does not exist in this container; attach the network first (docker network connect) or fix the name"
            ),
            NetworkError::NotAttachable(name) => write!(
                f,
                "ATTACH_IFACES: {name} is not an Ethernet NIC that can be given to the VM; remove it from ATTACH_IFACES"
            ),
            NetworkError::NoInterfaces => f.write_str(
                "no network interface to give to the VM; run the container with a network (not --network none)",
            ),
            NetworkError::NoAddress(name) => write!(
                f,
                "{name} has no IPv4 or IPv6 address to give to the VM; give the network an IPv4 or IPv6 subnet or leave {name} out with AUTO_ATTACH=no and ATTACH_IFACES"
            ),
            NetworkError::NoMac(name) => {
                write!(f, "{name} has no MAC address; it cannot become a guest NIC")
            }
            NetworkError::PointToPoint(name, addr, peer) => write!(
                f,
                "{name}'s address {addr} is point-to-point (peer {peer}), which the guest cannot take over; give {name} a subnet address, or leave it out with AUTO_ATTACH=no and ATTACH_IFACES"
            ),
            NetworkError::SameAddress(addr, a, b) => write!(
                f,
                "{addr} is on both {a} and {b}, and the guest can hold it only once; remove it from one, or leave {b} out with AUTO_ATTACH=no and ATTACH_IFACES"
            ),
            NetworkError::TooManyNics(n, max, taken) => write!(
                f,
                "{n} NICs to attach, but the guest has PCI slots for at most {max} ({taken}); leave some out with AUTO_ATTACH=no and ATTACH_IFACES (or give the guest fewer of the others)"
            ),
        }
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Error::Config { var, msg } => write!(f, "{var}: {msg}"),
            Error::Network(e) => e.fmt(f),
            Error::Disk { path, problem } => write!(f, "VM disk {} {problem}", path.display()),
            Error::Unavailable { what, hint } => write!(f, "{what}; {hint}"),
            Error::Program { what, source } => write!(f, "cannot run {what}: {source}"),
            Error::Step { step, source } => match step_hint(step, source) {
                Some(hint) => write!(f, "{step}: {source}; {hint}"),
                None => write!(f, "{step}: {source}"),
            },
            Error::DnsmasqStart(why) => write!(f, "dnsmasq {why}"),
            Error::Os { op, source } => write!(f, "{op}: {source}"),
            Error::AlreadyRunning => f.write_str(
                "another vminit already runs in this network namespace (it holds the lock @vminit); nothing was changed. The debug shell is the container's command (docker run ... sh), not a docker exec",
            ),
            Error::Interrupted(sig) => write!(
                f,
                "received {} during setup; not starting the guest",
                crate::pid1::policy::signal_name(*sig)
            ),
        }
    }
}

/// The one-line message already names the cause (`{op}: {source}`); `source` hands the
/// same cause to a caller that wants the errno itself.
impl std::error::Error for Error {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            Error::Program { source, .. }
            | Error::Step { source, .. }
            | Error::Os { source, .. } => Some(source),
            _ => None,
        }
    }
}

pub type Result<T> = std::result::Result<T, Error>;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_error_that_wraps_a_system_error_hands_it_on_with_its_errno() {
        use std::error::Error as _;
        let e = Error::os(
            "create /run/vminit",
            io::Error::from_raw_os_error(libc::EROFS),
        );
        let source = e.source().expect("a source");
        let io = source.downcast_ref::<io::Error>().expect("an io::Error");
        assert_eq!(io.raw_os_error(), Some(libc::EROFS));
        assert!(Error::AlreadyRunning.source().is_none());
    }
    use crate::net::step::MacLinkKind;

    fn add_link() -> Step {
        Step::AddLink {
            kind: MacLinkKind::Macvtap,
            name: "vmtap0".into(),
            lower: "eth0".into(),
            mac: None,
            mtu: 1500,
            up: true,
        }
    }

    #[test]
    fn only_missing_interfaces_and_addresses_are_worth_waiting_for() {
        let transient = [
            NetworkError::NoSuchInterface("eth1".into()),
            NetworkError::NoInterfaces,
            NetworkError::NoAddress("eth0".into()),
        ];
        for e in transient {
            assert!(Error::Network(e.clone()).waiting_can_help(), "{e}");
        }
        let permanent = [
            Error::Network(NetworkError::NotAttachable("br0".into())),
            Error::Network(NetworkError::NoMac("eth0".into())),
            Error::config("SELECTED_NETWORK", "matches nothing"),
            Error::os("read", io::Error::from_raw_os_error(libc::EIO)),
        ];
        for e in permanent {
            assert!(!e.waiting_can_help(), "{e}");
        }
    }

    #[test]
    fn a_refused_network_change_names_the_docker_flag_and_exits_69() {
        let e = Error::Step {
            step: add_link(),
            source: io::Error::from_raw_os_error(libc::EPERM),
        };
        assert_eq!(e.exit_code(), exit::UNAVAILABLE);
        assert!(
            e.to_string()
                .ends_with("hint: run the container with --cap-add NET_ADMIN")
        );
        assert!(
            e.to_string()
                .starts_with("ip link add link eth0 name vmtap0")
        );
    }

    #[test]
    fn a_missing_macvtap_driver_names_the_module() {
        let e = Error::Step {
            step: add_link(),
            source: io::Error::from_raw_os_error(libc::EOPNOTSUPP),
        };
        assert_eq!(e.exit_code(), exit::UNAVAILABLE);
        assert!(e.to_string().contains("modprobe macvtap"), "{e}");
    }

    #[test]
    fn other_failed_changes_keep_their_errno_and_exit_71() {
        let e = Error::Step {
            step: add_link(),
            source: io::Error::from_raw_os_error(libc::EEXIST),
        };
        assert_eq!(e.exit_code(), exit::OS);
        assert!(e.to_string().ends_with("File exists (os error 17)"), "{e}");
    }

    #[test]
    fn a_signal_during_setup_exits_128_plus_its_number() {
        assert_eq!(Error::Interrupted(libc::SIGTERM).exit_code(), 143);
        let rtmin3 = Error::Interrupted(crate::pid1::policy::stop::SIGRTMIN_PLUS_3);
        assert_eq!(rtmin3.exit_code(), 165);
        assert!(rtmin3.to_string().starts_with("received SIGRTMIN+3"));
    }
}
