//! Readies the graphical console outside QEMU: the socket's directory, the password's copy, the
//! TCP address. The decisions are `display`'s; this module only looks and does.

use std::fs;
use std::io::Write;
use std::net::Ipv4Addr;
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt, PermissionsExt};
use std::path::Path;

use crate::error::{Error, Result};
use crate::net::discover;
use crate::net::netlink::Netlink;
use crate::takeover::plan::Plan;
use crate::vm::display::{self, Vnc};

/// Readies the graphical console: the VNC socket's directory (made 0750 when missing, refused
/// when world-writable) and the password, copied without its newline to `password_copy` (0600,
/// in the private run directory), where QEMU reads it. QEMU's command line names the copy,
/// never the password.
pub fn prepare(vnc: &Vnc, password_copy: &Path) -> Result<()> {
    let password = match &vnc.password_file {
        None => None,
        Some(file) => {
            let raw = fs::read(file).map_err(|e| {
                Error::config(
                    "VNC_PASSWORD_FILE",
                    format!(
                        "cannot read {}: {e}; mount the file, e.g. a secret under /run/secrets",
                        file.display()
                    ),
                )
            })?;
            let (password, warning) = display::password(&raw, file)?;
            if let Some(warning) = warning {
                log::warn!("{warning}");
            }
            Some(password)
        }
    };
    // mkdir -p -m 0750 VNC_DIR
    let dir = &vnc.dir;
    fs::DirBuilder::new()
        .recursive(true)
        .mode(0o750)
        .create(dir)
        .map_err(|e| Error::os(format!("create {}", dir.display()), e))?;
    let mode = fs::metadata(dir)
        .map_err(|e| Error::os(format!("stat {}", dir.display()), e))?
        .permissions()
        .mode();
    display::check_dir_mode(dir, mode)?;
    let mountinfo = fs::read_to_string("/proc/self/mountinfo").unwrap_or_default();
    let real = fs::canonicalize(dir).unwrap_or_else(|_| dir.clone());
    if !mountinfo.is_empty() && !display::is_mount_point(&mountinfo, &real) {
        log::warn!(
            "VNC_DIR {} is not a mount: the console's socket is out of the host's reach; hint: add -v /path/on/host:{}",
            dir.display(),
            dir.display()
        );
    }
    if let Some(password) = password {
        let copy = password_copy;
        fs::OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .mode(0o600)
            .open(copy)
            .and_then(|mut f| f.write_all(&password))
            .map_err(|e| Error::os(format!("write {}", copy.display()), e))?;
    }
    log::info!(
        "graphical console: VNC on {}{}",
        vnc.socket().display(),
        if vnc.password_file.is_some() {
            " (password from VNC_PASSWORD_FILE)"
        } else {
            ""
        }
    );
    Ok(())
}

/// The address for `VNC_LISTEN`, read once the plan says which links the guest takes and
/// before anything changes; `None` when VNC is not wanted on TCP.
pub fn tcp_address(vnc: Option<&Vnc>, plan: &Plan, nl: &mut Netlink) -> Result<Option<Ipv4Addr>> {
    let Some(vnc) = vnc else {
        return Ok(None);
    };
    let Some(listen) = &vnc.listen else {
        return Ok(None);
    };
    let state = discover::read(nl).map_err(|e| Error::os("read the network configuration", e))?;
    let guest_links: Vec<&str> = plan
        .nics
        .iter()
        .flat_map(|n| [n.lower.as_str(), n.tap.as_str(), n.door.as_str()])
        .collect();
    let addrs: Option<Vec<Ipv4Addr>> = state
        .link(&listen.iface)
        .map(|l| state.addrs_of(l.index).iter().map(|n| n.net.addr).collect());
    let addr = display::listen_address(listen, &guest_links, addrs.as_deref())?;
    log::info!(
        "graphical console: VNC also on {addr}:{} ({})",
        listen.port,
        listen.iface
    );
    if vnc.password_file.is_none() {
        log::warn!(
            "VNC on {addr}:{} has no password: whoever reaches it gets the guest's console; hint: set VNC_PASSWORD_FILE",
            listen.port
        );
    }
    Ok(Some(addr))
}
