//! dnsmasq as a process: its configuration written to the run directory, started in its own
//! process group, waited for until it serves, stopped and reaped.

use std::ffi::OsString;
use std::fs;
use std::os::unix::fs::{DirBuilderExt, MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::thread::sleep;
use std::time::{Duration, Instant};

use nix::sys::signal::SigSet;
use nix::sys::wait::{WaitPidFlag, WaitStatus, waitpid};
use nix::unistd::Pid;

use crate::config::Config;
use crate::dhcp::dns::{Dns, DnsInput};
use crate::dhcp::dnsmasq::{self, DnsmasqInput, Rendered};
use crate::error::{Error, Result};
use crate::rundir::RunDir;
use crate::takeover::plan::NicPlan;
use crate::{dhcp::resolv, pid1::spawn};

/// How long dnsmasq gets to bind its sockets and write its pid file.
const START_TIMEOUT: Duration = Duration::from_secs(5);

/// How long dnsmasq gets to exit on SIGTERM before SIGKILL.
pub const STOP_GRACE: Duration = crate::pid1::policy::STOP_GRACE;

/// A configured dnsmasq: how to start it, and how to tell that it serves.
#[derive(Clone, Debug)]
pub struct DhcpServer {
    argv: Vec<OsString>,
    run_dir: RunDir,
    /// The signal mask children start with.
    mask: SigSet,
    /// The files as last written.
    files: Rendered,
}

/// What a running dnsmasq needs for a new configuration.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Reconfigured {
    Unchanged,
    /// Only the hosts and options files changed: it reads them again on SIGHUP.
    Reload,
    /// Its configuration file changed: it must be started again.
    Restart,
}

impl Reconfigured {
    /// What going from the files `old` to `new` needs.
    pub fn between(old: &Rendered, new: &Rendered) -> Reconfigured {
        if old.conf != new.conf {
            Reconfigured::Restart
        } else if old != new {
            Reconfigured::Reload
        } else {
            Reconfigured::Unchanged
        }
    }
}

impl DhcpServer {
    /// Writes dnsmasq's configuration for the guest's NICs (the container's resolvers and
    /// `GUEST_DNS`, its hostname, the user dnsmasq can drop to) into the run directory, and
    /// logs what the guest will not get.
    pub fn configure(
        config: &Config,
        nics: &[NicPlan],
        run_dir: &RunDir,
        mask: SigSet,
    ) -> Result<DhcpServer> {
        let files = DhcpServer::render(config, nics, run_dir, true);
        make_dhcp_dir(&run_dir.dhcp_dir())?;
        write_file(&run_dir.dnsmasq_conf(), &files.conf)?;
        write_file(&run_dir.dnsmasq_hosts(), &files.hosts)?;
        write_file(&run_dir.dnsmasq_opts(), &files.opts)?;
        log::info!("wrote {}", run_dir.dnsmasq_conf().display());
        Ok(DhcpServer {
            argv: vec![
                config.paths.dnsmasq.clone().into_os_string(),
                OsString::from(format!("--conf-file={}", run_dir.dnsmasq_conf().display())),
            ],
            run_dir: run_dir.clone(),
            mask,
            files,
        })
    }

    /// Writes the configuration again for the guest's NICs as they are now (hot-plug),
    /// only the files that changed, each replaced whole (a rename: dnsmasq never reads
    /// half of one); what `configure` warned about is not said again. Also says what the
    /// running dnsmasq needs to serve it.
    pub fn reconfigure(
        &self,
        config: &Config,
        nics: &[NicPlan],
    ) -> Result<(DhcpServer, Reconfigured)> {
        let files = DhcpServer::render(config, nics, &self.run_dir, false);
        let change = Reconfigured::between(&self.files, &files);
        let run_dir = &self.run_dir;
        for (path, old, new) in [
            (run_dir.dnsmasq_hosts(), &self.files.hosts, &files.hosts),
            (run_dir.dnsmasq_opts(), &self.files.opts, &files.opts),
            (run_dir.dnsmasq_conf(), &self.files.conf, &files.conf),
        ] {
            if old != new {
                write_file(&path, new)?;
                log::info!("wrote {}", path.display());
            }
        }
        let server = DhcpServer {
            files,
            ..self.clone()
        };
        Ok((server, change))
    }

    /// The files for the guest's NICs (the container's resolvers and `GUEST_DNS`, its
    /// hostname, the user dnsmasq can drop to); `warn`: log what the guest will not get.
    fn render(config: &Config, nics: &[NicPlan], run_dir: &RunDir, warn: bool) -> Rendered {
        let paths = &config.paths;
        let dns = guest_dns(config);
        let passwd = fs::read_to_string(&paths.passwd).unwrap_or_default();
        let user = dnsmasq::user_from_passwd(&passwd);
        if warn {
            for warning in &dns.warnings {
                log::warn!("{warning}");
            }
            if user == "root" {
                log::warn!(
                    "{} has no user nobody: dnsmasq keeps running as root",
                    paths.passwd.display()
                );
            }
        }
        dnsmasq::render(&DnsmasqInput {
            nics,
            dns: &dns,
            run_dir,
            user,
        })
    }

    /// Starts dnsmasq without waiting for it: in its own process group (a Ctrl-C on the
    /// console's terminal is the guest's, not dnsmasq's), with only stdio inherited.
    pub fn spawn(&self) -> Result<Pid> {
        let _ = fs::remove_file(self.run_dir.dnsmasq_pid());
        let options = spawn::SpawnOptions {
            mask: self.mask,
            keep: &[],
            own_group: true,
            drop_privileges: false,
        };
        spawn::spawn(&self.argv, &options)
    }

    /// Whether the dnsmasq last spawned serves: it writes its pid file once its sockets
    /// are bound (`spawn` removes the old one first).
    pub fn is_ready(&self) -> bool {
        fs::metadata(self.run_dir.dnsmasq_pid()).is_ok_and(|m| m.len() > 0)
    }

    /// Waits until dnsmasq serves (it writes its pid file once its sockets are bound), or
    /// reports why it could not start. `stop` is asked between polls: its error (a stop
    /// signal that arrived) ends the wait at once.
    pub fn wait_ready(&self, pid: Pid, stop: &dyn Fn() -> Result<()>) -> Result<()> {
        let deadline = Instant::now() + START_TIMEOUT;
        loop {
            if self.is_ready() {
                log::info!("dnsmasq running, pid {pid}");
                return Ok(());
            }
            match waitpid(pid, Some(WaitPidFlag::WNOHANG)) {
                Ok(WaitStatus::StillAlive) => {}
                Ok(status) => {
                    return Err(Error::DnsmasqStart(format!(
                        "could not start ({status:?}); its own message is above"
                    )));
                }
                Err(e) => return Err(Error::os("wait for dnsmasq", e)),
            }
            if Instant::now() >= deadline {
                return Err(Error::DnsmasqStart(format!(
                    "did not start within {START_TIMEOUT:?}"
                )));
            }
            stop()?;
            sleep(Duration::from_micros(500));
        }
    }
}

/// The guest's DNS, decided from the container's resolv.conf, `GUEST_DNS` and the hostname
/// (the seed's, else the container's): what dnsmasq serves and the seed states.
pub fn guest_dns(config: &Config) -> Dns {
    let resolv = fs::read_to_string(&config.paths.resolv_conf).unwrap_or_default();
    let hostname = config
        .seed
        .as_ref()
        .and_then(|s| s.hostname.clone())
        .unwrap_or_else(crate::net::discover::hostname);
    Dns::decide(&DnsInput {
        resolv: &resolv::parse(&resolv),
        guest_dns: &config.guest_dns,
        hostname: Some(&hostname),
    })
}

/// Replaces `path` whole with `text` (written beside it, then renamed over it), readable by
/// all (dnsmasq reads its hosts and options after dropping its privileges; nothing in them
/// is secret: the guest gets it all by DHCP).
fn write_file(path: &Path, text: &str) -> Result<()> {
    let mut tmp = path.as_os_str().to_owned();
    tmp.push(".new");
    let tmp = PathBuf::from(tmp);
    fs::write(&tmp, text)
        .and_then(|()| fs::set_permissions(&tmp, fs::Permissions::from_mode(0o644)))
        .and_then(|()| fs::rename(&tmp, path))
        .map_err(|e| Error::os(format!("write {}", path.display()), e))
}

/// Makes the directory of dnsmasq's hosts and options (0755), or checks the one there: a
/// directory (not a link) that only root writes.
fn make_dhcp_dir(dir: &Path) -> Result<()> {
    match fs::symlink_metadata(dir) {
        Ok(m) if m.is_dir() && m.uid() == 0 && m.mode() & 0o022 == 0 => Ok(()),
        Ok(_) => Err(Error::DnsmasqStart(format!(
            "cannot use {}: not a directory only root writes; remove it",
            dir.display()
        ))),
        Err(_) => fs::DirBuilder::new()
            .mode(0o755)
            .create(dir)
            .and_then(|()| fs::set_permissions(dir, fs::Permissions::from_mode(0o755)))
            .map_err(|e| Error::os(format!("create {}", dir.display()), e)),
    }
}

/// Stops dnsmasq: SIGTERM, then SIGKILL after `STOP_GRACE`; reaps it.
pub fn stop_and_reap(pid: Pid) {
    spawn::stop_and_reap(pid, STOP_GRACE);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_a_changed_configuration_file_restarts_dnsmasq() {
        let files = |conf: &str, hosts: &str, opts: &str| Rendered {
            conf: conf.into(),
            hosts: hosts.into(),
            opts: opts.into(),
        };
        let old = files("c", "h", "o");
        let between = |new| Reconfigured::between(&old, &new);
        assert_eq!(between(files("c", "h", "o")), Reconfigured::Unchanged);
        assert_eq!(between(files("c", "h2", "o")), Reconfigured::Reload);
        assert_eq!(between(files("c", "h", "o2")), Reconfigured::Reload);
        assert_eq!(between(files("c2", "h2", "o")), Reconfigured::Restart);
    }
}
