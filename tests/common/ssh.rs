//! Logging in to a guest by SSH from a peer (OpenSSH's client with a fresh key pair, retried
//! while the guest's sshd is not up yet), and a file's checksum.

use std::path::Path;
use std::time::{Duration, Instant};

use super::cmd::{CmdOutput, run_ok};
use super::disk::ScratchDir;

/// A fresh ed25519 key pair without a passphrase, in a scratch directory removed on drop.
#[derive(Debug)]
pub struct SshKey {
    /// The private key's path (`ssh -i`).
    pub private: String,
    /// The public key's line, as `CLOUD_INIT_SSH_KEYS` takes it.
    pub public: String,
    _dir: ScratchDir,
}

impl SshKey {
    pub fn new() -> SshKey {
        let dir = ScratchDir::new();
        let private = dir.path("id_ed25519").to_string_lossy().into_owned();
        // ssh-keygen -t ed25519 -N '' -f DIR/id_ed25519
        run_ok(&[
            "ssh-keygen",
            "-q",
            "-t",
            "ed25519",
            "-N",
            "",
            "-C",
            "test@peer",
            "-f",
            &private,
        ]);
        let public =
            std::fs::read_to_string(format!("{private}.pub")).expect("read the public key");
        SshKey {
            private,
            public: public.trim().to_owned(),
            _dir: dir,
        }
    }

    /// Logs in as `user@ip` with this key (no password, no known-hosts file: the guest's host
    /// key is new) and runs `command` (no single quotes in it), where `shell` runs a script:
    /// a peer's network namespace. Retries for up to `timeout` while the login fails (sshd
    /// not up yet, the key not installed yet); returns what the command printed.
    pub fn login(
        &self,
        shell: impl Fn(&str) -> CmdOutput,
        user: &str,
        ip: &str,
        command: &str,
        timeout: Duration,
    ) -> String {
        let script = format!(
            "ssh -i {} -o BatchMode=yes -o StrictHostKeyChecking=no \
             -o UserKnownHostsFile=/dev/null -o LogLevel=ERROR -o ConnectTimeout=20 \
             {user}@{ip} '{command}'",
            self.private
        );
        let deadline = Instant::now() + timeout;
        loop {
            let out = shell(&script);
            if out.success() {
                return out.stdout;
            }
            assert!(
                Instant::now() < deadline,
                "no SSH login as {user}@{ip}: {out}"
            );
            std::thread::sleep(Duration::from_secs(5));
        }
    }
}

/// `sha256sum FILE`'s hash.
pub fn sha256(file: &Path) -> String {
    let out = run_ok(&["sha256sum", &file.to_string_lossy()]);
    out.split_whitespace()
        .next()
        .expect("sha256sum prints a hash")
        .to_owned()
}
