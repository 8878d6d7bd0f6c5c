//! dnsmasq as a process: its configuration written to the run directory, started in its own
//! process group, waited for until it serves, stopped and reaped.

use std::ffi::OsString;
use std::fs;
use std::thread::sleep;
use std::time::{Duration, Instant};

use nix::sys::signal::SigSet;
use nix::sys::wait::{WaitPidFlag, WaitStatus, waitpid};
use nix::unistd::Pid;

use crate::config::Config;
use crate::dhcp::dns::{Dns, DnsInput};
use crate::dhcp::dnsmasq::{self, DnsmasqInput};
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
        DhcpServer::write(config, nics, run_dir, mask, true)
    }

    /// Writes the configuration again for the guest's NICs as they are now (hot-plug);
    /// what `configure` warned about is not said again.
    pub fn reconfigure(&self, config: &Config, nics: &[NicPlan]) -> Result<DhcpServer> {
        DhcpServer::write(config, nics, &self.run_dir, self.mask, false)
    }

    fn write(
        config: &Config,
        nics: &[NicPlan],
        run_dir: &RunDir,
        mask: SigSet,
        warn: bool,
    ) -> Result<DhcpServer> {
        let paths = &config.paths;
        let dns = guest_dns(config);
        let passwd = fs::read_to_string(&paths.passwd).unwrap_or_default();
        let user = dnsmasq::user_from_passwd(&passwd);
        if warn {
            for warning in dns.warnings.iter().chain(&dns.door_unreachable(nics)) {
                log::warn!("{warning}");
            }
            if user == "root" {
                log::warn!(
                    "{} has no user nobody: dnsmasq keeps running as root",
                    paths.passwd.display()
                );
            }
        }
        let text = dnsmasq::render(&DnsmasqInput {
            nics,
            dns: &dns,
            run_dir,
            user,
        });
        let conf = run_dir.dnsmasq_conf();
        fs::write(&conf, text).map_err(|e| Error::os(format!("write {}", conf.display()), e))?;
        log::info!("wrote {}", conf.display());
        Ok(DhcpServer {
            argv: vec![
                paths.dnsmasq.clone().into_os_string(),
                OsString::from(format!("--conf-file={}", conf.display())),
            ],
            run_dir: run_dir.clone(),
            mask,
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

/// Stops dnsmasq: SIGTERM, then SIGKILL after `STOP_GRACE`; reaps it.
pub fn stop_and_reap(pid: Pid) {
    spawn::stop_and_reap(pid, STOP_GRACE);
}
