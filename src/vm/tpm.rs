//! The guest's TPM 2.0 (`TPM=yes`): swtpm, its state in a directory beside the disk, started
//! before QEMU and ready before it starts; reaped by the supervisor like any child, and
//! stopped with the guest (it also ends by itself when QEMU closes its control socket).

use std::ffi::OsString;
use std::fs;
use std::os::unix::fs::DirBuilderExt;
use std::path::{Path, PathBuf};
use std::thread::sleep;
use std::time::{Duration, Instant};

use nix::sys::signal::SigSet;
use nix::sys::wait::{WaitPidFlag, WaitStatus, waitpid};
use nix::unistd::Pid;

use crate::config::Config;
use crate::error::{Error, Result};
use crate::pid1::spawn;
use crate::vm::{devices, machine, provision};

/// How long swtpm may take to listen on its control socket.
const READY_TIMEOUT: Duration = Duration::from_secs(10);

/// How long swtpm gets to save its state when stopped.
const STOP_GRACE: Duration = Duration::from_secs(2);

/// Checks, before anything changes, what `TPM=yes` needs: swtpm, and a state directory beside
/// the disk (`image.tpm`, made 0700 when missing, recorded in `made`) that can be written.
/// Returns the directory.
pub fn prepare(config: &Config, made: &mut provision::Made) -> Result<Option<PathBuf>> {
    if !config.machine.tpm {
        return Ok(None);
    }
    devices::check_program(&config.paths.swtpm, "swtpm")?;
    let dir =
        provision::image_dir(&config.paths.disk)?.join(machine::tpm_state_name(&config.paths.disk));
    if fs::symlink_metadata(&dir).is_err() {
        made.add(dir.clone());
    }
    let probe = dir.join(".vminit-probe");
    let writable = fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(&dir)
        .and_then(|_| fs::write(&probe, b""))
        .and_then(|_| fs::remove_file(&probe));
    if let Err(e) = writable {
        return Err(Error::Disk {
            path: dir,
            problem: format!(
                "cannot be written: {e}; TPM=yes keeps the TPM's state beside the disk, so mount the image directory read-write"
            ),
        });
    }
    Ok(Some(dir))
}

/// swtpm's command line: a TPM 2.0 whose state is in `state`, controlled (and its commands
/// carried) over the Unix socket `socket`, ending when QEMU closes it.
pub fn argv(swtpm: &Path, state: &Path, socket: &Path) -> Vec<OsString> {
    let option = |p: &Path| p.display().to_string().replace(',', ",,");
    vec![
        swtpm.into(),
        "socket".into(),
        "--tpm2".into(),
        "--tpmstate".into(),
        format!("dir={},mode=0600", option(state)).into(),
        "--ctrl".into(),
        format!("type=unixio,path={},mode=0600", option(socket)).into(),
        "--terminate".into(),
    ]
}

/// Starts swtpm and waits until it listens on `socket`.
pub fn start(config: &Config, state: &Path, socket: &Path, mask: SigSet) -> Result<Pid> {
    let _ = fs::remove_file(socket);
    let argv = argv(&config.paths.swtpm, state, socket);
    log::info!("starting {}", crate::vm::qemu::shell_line(&argv));
    let options = spawn::SpawnOptions {
        mask,
        keep: &[],
        own_group: true,
        drop_privileges: false,
    };
    let pid = spawn::spawn(&argv, &options)?;
    let deadline = Instant::now() + READY_TIMEOUT;
    while !socket.exists() {
        let gone = !matches!(
            waitpid(pid, Some(WaitPidFlag::WNOHANG)),
            Ok(WaitStatus::StillAlive)
        );
        if gone || Instant::now() >= deadline {
            if !gone {
                spawn::stop_and_reap(pid, Duration::ZERO);
            }
            return Err(Error::Unavailable {
                what: format!(
                    "swtpm (pid {pid}) did not listen on {} ({})",
                    socket.display(),
                    if gone {
                        "it exited; its message is above"
                    } else {
                        "timed out"
                    }
                ),
                hint: "hint: TPM=no starts the guest without a TPM".into(),
            });
        }
        sleep(Duration::from_millis(10));
    }
    log::info!("swtpm running, pid {pid}, state in {}", state.display());
    Ok(pid)
}

/// Stops swtpm (it saves its state on SIGTERM) and reaps it.
pub fn stop(pid: Pid) {
    spawn::stop_and_reap(pid, STOP_GRACE);
}
