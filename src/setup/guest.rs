//! The running guest: what a boot becomes once QEMU runs. It owns the guest's NICs (what
//! was done to hand each over, to undo at the end), dnsmasq, the IPv6 announcements and
//! the network notifications; `running` holds what it does while the supervisor runs
//! (`Effects`: the power button, helper restarts, hot-plug).

use std::collections::{HashMap, HashSet};
use std::fs;
use std::net::{IpAddr, Ipv6Addr};
use std::time::Instant;

use nix::unistd::Pid;

use super::{Checked, TakenNic};
use crate::config::{Config, Pause};
use crate::dhcp::dhcp_server::{self, DhcpServer};
use crate::ipv6::announcer::Announcers;
use crate::net::apply::Applier;
use crate::net::monitor::Monitor;
use crate::net::netlink::Netlink;
use crate::pid1::health::{Handed, render_handed};
use crate::pid1::policy::Child;
use crate::pid1::supervise::{self, Signals};
use crate::rundir::RunDir;
use crate::takeover::plan::NicPlan;
use crate::takeover::plan6::Guest6;

/// The guest's NICs in the order they were taken over: the one owner of each guest NIC and
/// of what was done to hand it over (undone newest first at the end).
#[derive(Default)]
pub(super) struct GuestNics(Vec<TakenNic>);

impl GuestNics {
    pub(super) fn push(&mut self, taken: TakenNic) {
        self.0.push(taken);
    }

    /// The plans of every guest NIC, those waiting to be plugged in included.
    pub(super) fn plans(&self) -> Vec<NicPlan> {
        self.0.iter().map(|t| t.nic.clone()).collect()
    }

    /// The guest NIC of the container NIC `lower`.
    pub(super) fn get_mut(&mut self, lower: &str) -> Option<&mut TakenNic> {
        self.0.iter_mut().find(|t| t.nic.lower == lower)
    }

    /// Takes the guest NIC of `lower` out of the guest's NICs: it is no longer undone at the
    /// end (the caller gives it back, or it went with its container NIC).
    pub(super) fn remove(&mut self, lower: &str) -> Option<TakenNic> {
        let at = self.0.iter().position(|t| t.nic.lower == lower)?;
        Some(self.0.remove(at))
    }

    /// The container NICs taken over while the guest runs and not plugged into it yet.
    pub(super) fn pending(&self) -> Vec<String> {
        self.0
            .iter()
            .filter(|t| t.pending.is_some())
            .map(|t| t.nic.lower.clone())
            .collect()
    }

    /// Gives each guest NIC what the guest is told about IPv6 on it (`guests`, by container
    /// NIC).
    pub(super) fn set_guests6(&mut self, guests: &[Guest6]) {
        for taken in &mut self.0 {
            taken.guest6 = guests.iter().find(|g| g.lower == taken.nic.lower).cloned();
        }
    }

    /// Each plugged-in guest NIC's IPv6 side and its container NIC and door.
    pub(super) fn all(&self) -> impl Iterator<Item = &TakenNic> {
        self.0.iter()
    }

    /// Writes the addresses the guest was handed (plugged-in NICs only) where `vminit health`
    /// reads them. A failure is logged: the health check then says `starting`.
    pub(super) fn publish(&self, run_dir: &RunDir) {
        let handed: Vec<Handed> = self
            .0
            .iter()
            .filter(|t| t.pending.is_none())
            .flat_map(|t| {
                let v4 = t.nic.addr.map(|a| IpAddr::V4(a.addr));
                let v6 = t.guest6.as_ref().map(|g| IpAddr::V6(g.addr.addr));
                v4.into_iter().chain(v6).map(|addr| Handed {
                    lower: t.nic.lower.clone(),
                    door: t.nic.serves_on().to_string(),
                    mac: t.nic.mac,
                    addr,
                })
            })
            .collect();
        let path = run_dir.guest_nics();
        let tmp = path.with_extension("new");
        if let Err(e) =
            fs::write(&tmp, render_handed(&handed)).and_then(|()| fs::rename(&tmp, &path))
        {
            log::warn!("cannot write {} for the health check: {e}", path.display());
        }
    }

    /// Whether anything was changed in the namespace for them.
    fn changed_anything(&self) -> bool {
        self.0.iter().any(|t| !t.steps.is_empty())
    }
}

/// The guest, once QEMU runs.
pub(super) struct Guest<'a> {
    pub(super) config: &'a Config,
    pub(super) signals: &'a Signals,
    pub(super) checked: Checked,
    pub(super) run_dir: RunDir,
    pub(super) nl: Netlink,
    /// Notifications of network changes, for hot-plug; `None` if they could not be had.
    pub(super) monitor: Option<Monitor>,
    pub(super) dhcp: Option<DhcpServer>,
    /// dnsmasq's pid until the supervisor takes it over.
    pub(super) dnsmasq: Option<Pid>,
    /// The guest's IPv6 announcements.
    pub(super) announcers: Option<Announcers>,
    pub(super) nics: GuestNics,
    /// swtpm (`TPM=yes`), stopped with the guest.
    pub(super) tpm: Option<Pid>,
    pub(super) qemu: Pid,
    /// New container NICs without an address yet, and since when (hot-plug).
    pub(super) waiting: HashMap<String, Instant>,
    /// New container NICs already reported as left to the container.
    pub(super) left: HashSet<String>,
    /// The NIC and gateway the IPv6 default route last moved to (asked once).
    pub(super) router6: Option<(String, Ipv6Addr)>,
}

impl Guest<'_> {
    /// Runs the supervisor until QEMU is gone; returns the exit status.
    pub(super) fn supervise(&mut self) -> i32 {
        let helpers: Vec<(Child, Pid)> = self
            .dnsmasq
            .take()
            .map(|pid| (Child::Dnsmasq, pid))
            .into_iter()
            .collect();
        let mut monitor = self.monitor.take();
        let (signals, stop_timeout, qemu) = (self.signals, self.config.stop_timeout, self.qemu);
        supervise::run(
            signals,
            monitor.as_mut(),
            qemu,
            &helpers,
            stop_timeout,
            self,
        )
    }

    /// After QEMU: everything put back as it was before the boot.
    pub(super) fn put_back(mut self) {
        self.announcers = None;
        put_back(
            self.config,
            &mut self.nl,
            &self.run_dir,
            self.dnsmasq,
            self.tpm,
            self.nics,
        );
    }
}

/// Stops dnsmasq and swtpm, undoes every NIC's steps newest first, removes the tap nodes and the
/// console password's copy: the end of every boot, whether QEMU ran or not.
pub(super) fn put_back(
    config: &Config,
    nl: &mut Netlink,
    run_dir: &RunDir,
    dnsmasq: Option<Pid>,
    tpm: Option<Pid>,
    nics: GuestNics,
) {
    if let Some(pid) = dnsmasq {
        dhcp_server::stop_and_reap(pid);
    }
    if let Some(pid) = tpm {
        crate::vm::tpm::stop(pid);
    }
    if nics.changed_anything() {
        log::info!("restoring the container's network");
    }
    let mut applier = Applier::new(nl);
    applier.pause_after(config.pause.filter(|p| matches!(p, Pause::Teardown(_))));
    for taken in nics.0.iter().rev() {
        applier.undo(&taken.steps);
        if let Some(node) = &taken.node {
            let _ = fs::remove_file(node);
        }
    }
    // QEMU read the VNC password at its start: no copy outlives the run.
    let _ = fs::remove_file(run_dir.vnc_password());
}
