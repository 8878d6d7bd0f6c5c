//! Every path under vminit's private run directory, in one place (pure).
//!
//! The directory itself (mode 0700) is created by `setup`; everything vminit and its
//! children write at run time lives in it, but for what dnsmasq reads after dropping its
//! privileges (`dhcp_dir`, beside it).

use std::ffi::OsString;
use std::path::{Path, PathBuf};

/// The run directory (`VMINIT_RUN_DIR`, default `/run/vminit`) and the files in it.
#[derive(Clone, Debug, PartialEq)]
pub struct RunDir {
    root: PathBuf,
}

/// The longest path a Unix socket can have: `sun_path` holds 108 bytes with the NUL.
pub const SOCKET_PATH_MAX: usize = 107;

/// Why a Unix socket cannot be made at `path`, if it cannot: the input it comes from
/// (`var`) and the fix are in the message.
pub fn check_socket_path(var: &str, path: &Path) -> Result<(), String> {
    let len = path.as_os_str().len();
    if len > SOCKET_PATH_MAX {
        return Err(format!(
            "the socket {} would be {len} bytes long, and a Unix socket path is at most {SOCKET_PATH_MAX}; make {var} {} bytes shorter",
            path.display(),
            len - SOCKET_PATH_MAX
        ));
    }
    Ok(())
}

impl RunDir {
    pub fn new(root: impl Into<PathBuf>) -> RunDir {
        RunDir { root: root.into() }
    }

    /// Why QEMU could not listen on the run directory's sockets, if it could not.
    pub fn check_sockets(&self) -> Result<(), String> {
        check_socket_path("VMINIT_RUN_DIR", &self.qmp())?;
        check_socket_path("VMINIT_RUN_DIR", &self.health())
    }

    /// The directory itself.
    pub fn root(&self) -> &Path {
        &self.root
    }

    /// dnsmasq's generated configuration.
    pub fn dnsmasq_conf(&self) -> PathBuf {
        self.root.join("dnsmasq.conf")
    }

    /// The directory of the files dnsmasq reads again on SIGHUP, beside this one
    /// (`/run/vminit.dhcp`): it reads them after dropping its privileges, and this
    /// directory is private (0700).
    pub fn dhcp_dir(&self) -> PathBuf {
        let mut name = self
            .root
            .file_name()
            .map(OsString::from)
            .unwrap_or_else(|| OsString::from("vminit"));
        name.push(".dhcp");
        self.root.with_file_name(name)
    }

    /// The guest NICs' DHCP hosts, which dnsmasq reads again on SIGHUP.
    pub fn dnsmasq_hosts(&self) -> PathBuf {
        self.dhcp_dir().join("hosts")
    }

    /// The guest NICs' DHCP options, which dnsmasq reads again on SIGHUP.
    pub fn dnsmasq_opts(&self) -> PathBuf {
        self.dhcp_dir().join("opts")
    }

    /// dnsmasq writes its pid here once its sockets are bound: the sign that it serves.
    pub fn dnsmasq_pid(&self) -> PathBuf {
        self.root.join("dnsmasq.pid")
    }

    /// dnsmasq's lease database.
    pub fn dnsmasq_leases(&self) -> PathBuf {
        self.root.join("dnsmasq.leases")
    }

    /// QMP socket for vminit's own commands (power button, quit).
    pub fn qmp(&self) -> PathBuf {
        self.root.join("qmp.sock")
    }

    /// QMP socket for `vminit health`, so that a health check never waits for vminit.
    pub fn health(&self) -> PathBuf {
        self.root.join("health.sock")
    }

    /// The addresses handed to the guest, for `vminit health` (see `pid1::health`).
    pub fn guest_nics(&self) -> PathBuf {
        self.root.join("guest-nics")
    }

    /// What `vminit health` remembers between checks.
    pub fn health_state(&self) -> PathBuf {
        self.root.join("health-state")
    }

    /// The NoCloud seed's files, which QEMU presents to the guest as the `cidata` disk.
    pub fn seed(&self) -> PathBuf {
        self.root.join("seed")
    }

    /// The QEMU command line the debug shell runs.
    pub fn qemu_script(&self) -> PathBuf {
        self.root.join("qemu.sh")
    }

    /// swtpm's control socket (`TPM=yes`), which QEMU connects to.
    pub fn tpm_socket(&self) -> PathBuf {
        self.root.join("swtpm.sock")
    }

    /// The Unix socket of the `index`th guest NIC's passt (user mode).
    pub fn passt_socket(&self, index: usize) -> PathBuf {
        self.root.join(format!("passt{index}.sock"))
    }

    /// The VNC password (`VNC_PASSWORD_FILE` without its newline), as QEMU reads it; 0600.
    pub fn vnc_password(&self) -> PathBuf {
        self.root.join("vnc-password")
    }
}

#[cfg(test)]
mod dhcp_dir_tests {
    use super::*;

    #[test]
    fn the_dhcp_directory_is_beside_the_run_directory_never_in_it() {
        for (root, dir) in [
            ("/run/vminit", "/run/vminit.dhcp"),
            ("/run/vminit/", "/run/vminit.dhcp"),
            ("/var/run/my vm", "/var/run/my vm.dhcp"),
            ("/", "/vminit.dhcp"),
        ] {
            assert_eq!(RunDir::new(root).dhcp_dir(), PathBuf::from(dir), "{root}");
        }
    }
}
