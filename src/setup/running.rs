//! While the guest runs: the supervisor's effects on the world (the power button, dnsmasq
//! restarts, the IPv6 announcements) and hot-plug, which follows `docker network connect`
//! and `disconnect`.
//!
//! A new container NIC goes to the guest in two steps. `reconcile` takes it over (the same
//! steps as at start, its /dev/tapN opened) and writes dnsmasq's configuration with it;
//! once the restarted dnsmasq serves it, `plug` hands the tap to QEMU. The guest's first
//! DHCP request on the new NIC is then answered, not lost to a dnsmasq still starting.

use std::fs;
use std::os::fd::{AsFd, BorrowedFd};
use std::time::{Duration, Instant};

use nix::unistd::Pid;

use super::guest::Guest;
use super::{TakenNic, random_macs, read_namespace, take_over_nic};
use crate::dhcp::dhcp_server::DhcpServer;
use crate::error::{Error, Result};
use crate::ipv6::announce::{Dns6, Learned};
use crate::ipv6::announcer::Announcers;
use crate::net::apply::Applier;
use crate::net::netstate::NetState;
use crate::net::step::Step;
use crate::pid1::policy::{self, Child, Event};
use crate::takeover::plan::{self, NicPlan};
use crate::takeover::plan6::Guest6;
use crate::vm::devices::Tap;
use crate::{ipv6::gateway6, pid1::supervise, vm::qemu, vm::qmp};

/// How long one hot-plug or unplug may keep QMP waiting.
const QMP_TIMEOUT: Duration = Duration::from_secs(2);

/// A NIC taken over while the guest runs, not yet plugged into it.
pub(super) struct Pending {
    /// Its /dev/tapN, open, for QMP `getfd`.
    tap: Tap,
    /// Its IPv6, announced once it is plugged in.
    guests6: Vec<Guest6>,
    learned: Vec<Learned>,
}

impl supervise::Effects for Guest<'_> {
    fn powerdown(&mut self) -> bool {
        log::info!("pressing the guest's power button (QMP system_powerdown)");
        match qmp::execute(
            &self.run_dir.qmp(),
            "system_powerdown",
            Duration::from_secs(2),
        ) {
            Ok(_) => true,
            Err(e) => {
                log::warn!("QMP system_powerdown: {e}; trying again shortly");
                false
            }
        }
    }

    fn quit(&mut self) {
        log::warn!("stopping QEMU now (QMP quit); the guest did not power off");
        if let Err(e) = qmp::execute(&self.run_dir.qmp(), "quit", policy::QMP_DEADLINE) {
            log::warn!("QMP quit: {e}");
        }
    }

    fn start(&mut self, child: Child) -> Option<Pid> {
        let spawned = match child {
            Child::Dnsmasq => self.dhcp.as_ref()?.spawn(),
        };
        spawned.inspect_err(|e| log::warn!("{e}")).ok()
    }

    fn ready(&mut self, child: Child) -> bool {
        match child {
            Child::Dnsmasq => self.dhcp.as_ref().is_some_and(DhcpServer::is_ready),
        }
    }

    fn watched_fds(&self) -> Vec<BorrowedFd<'_>> {
        self.announcers
            .as_ref()
            .map(Announcers::fds)
            .unwrap_or_default()
    }

    fn next_wakeup(&self) -> Option<Instant> {
        self.announcers.as_ref()?.next_wakeup()
    }

    fn on_wakeup(&mut self, now: Instant) {
        if let Some(announcers) = &mut self.announcers {
            announcers.work(now);
        }
    }

    /// Follows `docker network connect` and `disconnect`: reads the namespace, unplugs the
    /// guest NICs whose container NIC left, takes over the new ones, and rewrites dnsmasq's
    /// configuration when the guest's NICs changed. The new NICs are plugged in later
    /// (`plug`), once dnsmasq serves them.
    fn reconcile(&mut self) -> Event {
        let nothing = Event::Reconciled {
            again_in: None,
            reconfigured: Vec::new(),
            plugs_pending: false,
        };
        let state = match read_namespace(&mut self.nl) {
            Ok(state) => state,
            Err(e) => {
                log::warn!("{e}");
                return nothing;
            }
        };
        let guest: Vec<NicPlan> = self.nics.plans();
        let random = random_macs(state.links.len().max(1)).unwrap_or_default();
        let changes = plan::plan_changes(
            &plan::PlanInput {
                attach: &self.config.attach,
                selected_network: self.config.selected_network,
                selected_network6: self.config.selected_network6,
                state: &state,
                random_macs: &random,
                datapath: self.checked.datapath,
            },
            &guest,
        );
        let mut changed = false;
        for lower in &changes.gone {
            self.unplug(lower);
            changed = true;
        }
        for warning in &changes.warnings {
            log::warn!("{warning}");
        }
        if let Some((lower, gateway)) = &changes.router
            && let Some(taken) = self.nics.get_mut(lower)
        {
            taken.nic = taken.nic.with_router(*gateway);
            changed = true;
            log::info!(
                "{lower} now holds the container's default route: the guest's next DHCP lease on it gives the router {gateway}"
            );
        }
        let mut plugs_pending = false;
        for (nic, steps) in &changes.added {
            self.waiting.remove(&nic.lower);
            if self.left.contains(&nic.lower) {
                continue;
            }
            let guests6: Vec<Guest6> = changes
                .v6
                .iter()
                .filter(|g| g.lower == nic.lower)
                .cloned()
                .collect();
            let learned = self.learn_gateways6_of(&state, &guests6);
            match self.take_over_new(nic, steps) {
                Ok(tap) => {
                    let taken = self.nics.get_mut(&nic.lower).expect("just taken over");
                    taken.pending = Some(Pending {
                        tap,
                        guests6,
                        learned,
                    });
                    changed = true;
                    plugs_pending = true;
                }
                Err(e) => {
                    log::warn!("{}: {e}; it stays with the container", nic.lower);
                    // Tried once: it stays with the container until it leaves and comes back.
                    self.left.insert(nic.lower.clone());
                }
            }
        }
        let now = Instant::now();
        let mut again_in = None;
        for name in &changes.waiting {
            let since = *self.waiting.entry(name.clone()).or_insert(now);
            let waited = now.duration_since(since);
            if waited < self.config.iface_wait {
                again_in = Some(Duration::from_millis(100));
            } else if self.left.insert(name.clone()) {
                log::warn!(
                    "{name} has no IPv4 or IPv6 address after {waited:?}; it stays with the container"
                );
            }
        }
        for (name, e) in &changes.refused {
            if self.left.insert(name.clone()) {
                log::warn!("{e}; {name} stays with the container");
            }
        }
        // A name that left the namespace may come back as a new NIC.
        self.left.retain(|name| state.link(name).is_some());
        self.waiting
            .retain(|name, _| changes.waiting.contains(name));
        let dnsmasq_changed = changed && self.reconfigure_dnsmasq();
        Event::Reconciled {
            again_in,
            reconfigured: dnsmasq_if(dnsmasq_changed),
            plugs_pending,
        }
    }

    /// Hands the taps of the NICs taken over to QEMU (QMP `getfd`) as new netdevs and
    /// virtio-net devices on the guest's PCI bus. A NIC that QEMU refuses is given back to
    /// the container and left there, and dnsmasq's configuration is written without it.
    fn plug(&mut self) -> Event {
        let mut dnsmasq_changed = false;
        for lower in self.nics.pending() {
            let taken = self.nics.get_mut(&lower).expect("listed as pending");
            let Some(Pending {
                tap,
                guests6,
                learned,
            }) = taken.pending.take()
            else {
                continue;
            };
            let nic = taken.nic.clone();
            match self.hot_plug(&nic, &tap) {
                Ok(()) => {
                    let addr = nic.addr.map_or("IPv6 only".into(), |a| a.to_string());
                    log::info!(
                        "{}: plugged into the guest as {} ({}, {addr})",
                        nic.lower,
                        nic.tap,
                        nic.mac,
                    );
                    self.announce_too(&guests6, &learned);
                }
                Err(e) => {
                    if let Some(taken) = self.nics.remove(&lower) {
                        self.give_back(taken);
                    }
                    dnsmasq_changed |= self.reconfigure_dnsmasq();
                    log::warn!("{}: {e}; it stays with the container", nic.lower);
                    self.left.insert(nic.lower);
                }
            }
        }
        Event::Reconciled {
            again_in: None,
            reconfigured: dnsmasq_if(dnsmasq_changed),
            plugs_pending: false,
        }
    }
}

impl Guest<'_> {
    /// Takes over one container NIC connected while the guest runs (the same steps as at
    /// start) and opens its /dev/tapN; it joins the guest's NICs, to be plugged in. On
    /// failure nothing stays done.
    fn take_over_new(&mut self, nic: &NicPlan, steps: &[Step]) -> Result<Tap> {
        let mut applier = Applier::new(&mut self.nl);
        let (taken, tap) = take_over_nic(self.config, &self.checked, &mut applier, nic, steps);
        // None: a step failed, and the applier rolled the NIC back.
        let Some(taken) = taken else {
            return tap;
        };
        match tap {
            Ok(tap) => {
                self.nics.push(taken);
                Ok(tap)
            }
            Err(e) => {
                self.give_back(taken);
                Err(e)
            }
        }
    }

    /// One NIC into the running guest: its tap fd (`getfd`), a netdev on it, a virtio-net
    /// device with its MAC and MTU. A device QEMU refuses takes its netdev with it.
    fn hot_plug(&self, nic: &NicPlan, tap: &Tap) -> Result<()> {
        let [getfd, netdev_add, device_add] =
            qemu::plug_commands(nic.slot, self.checked.vhost, nic.mac, nic.mtu);
        let mut qmp = qmp::Session::open(&self.run_dir.qmp(), QMP_TIMEOUT)
            .map_err(|e| Error::os("connect to QMP", e))?;
        qmp.run_with_fd(&getfd, tap.fd.as_fd())
            .and_then(|_| qmp.run(&netdev_add))
            .map_err(|e| Error::os(format!("QMP netdev_add {}", nic.slot.netdev()), e))?;
        if let Err(e) = qmp.run(&device_add) {
            let [_, netdev_del] = qemu::unplug_commands(nic.slot);
            let _ = qmp.run(&netdev_del);
            return Err(Error::os("QMP device_add", e));
        }
        Ok(())
    }

    /// Undoes one NIC's takeover: it is the container's again.
    fn give_back(&mut self, taken: TakenNic) {
        Applier::new(&mut self.nl).undo(&taken.steps);
        if let Some(node) = taken.node {
            let _ = fs::remove_file(node);
        }
    }

    /// Takes out of the guest the NIC whose container NIC left (`docker network
    /// disconnect`): QMP `device_del` (the guest ejects it) and `netdev_del`. Its links went
    /// with the container NIC; nothing is left to put back.
    fn unplug(&mut self, lower: &str) {
        if let Some(announcers) = &mut self.announcers {
            announcers.remove(lower);
        }
        let Some(taken) = self.nics.remove(lower) else {
            return;
        };
        if taken.pending.is_some() {
            log::info!("{lower} left the container before it was plugged into the guest");
        } else {
            let slot = taken.nic.slot;
            let unplugged =
                qmp::Session::open(&self.run_dir.qmp(), QMP_TIMEOUT).and_then(|mut qmp| {
                    let [device_del, netdev_del] = qemu::unplug_commands(slot);
                    qmp.run(&device_del)?;
                    qmp.run(&netdev_del)
                });
            match unplugged {
                Ok(_) => log::info!(
                    "{lower} left the container: its guest NIC {} is unplugged",
                    taken.nic.tap
                ),
                Err(e) => log::warn!("{lower} left the container; unplugging its guest NIC: {e}"),
            }
        }
        if let Some(node) = taken.node {
            let _ = fs::remove_file(node);
        }
    }

    /// Writes dnsmasq's configuration for the guest's NICs as they are now (those waiting
    /// to be plugged in included); whether dnsmasq must be restarted to serve it.
    fn reconfigure_dnsmasq(&mut self) -> bool {
        if !self.config.dhcp {
            return false;
        }
        let nics = self.nics.plans();
        let Some(server) = &self.dhcp else {
            return false;
        };
        match server.reconfigure(self.config, &nics) {
            Ok(server) => {
                self.dhcp = Some(server);
                true
            }
            Err(e) => {
                log::warn!("{e}");
                false
            }
        }
    }

    /// The IPv6 gateways of NICs plugged in while the guest runs (see `learn_gateways6`); a
    /// failure is logged, and the guest gets no IPv6 routes on them.
    fn learn_gateways6_of(&mut self, state: &NetState, guests: &[Guest6]) -> Vec<Learned> {
        if !self.config.dhcp || guests.is_empty() {
            return Vec::new();
        }
        gateway6::learn(&mut self.nl, state, guests).unwrap_or_else(|e| {
            log::warn!("{e}");
            Vec::new()
        })
    }

    /// Announces IPv6 on the doors of NICs plugged in while the guest runs.
    fn announce_too(&mut self, guests: &[Guest6], learned: &[Learned]) {
        if !self.config.dhcp || guests.is_empty() {
            return;
        }
        let added = read_namespace(&mut self.nl).and_then(|state| {
            let resolv = fs::read_to_string(&self.config.paths.resolv_conf).unwrap_or_default();
            let dns = Dns6::from_resolv_conf(&resolv);
            match &mut self.announcers {
                Some(announcers) => announcers.add(guests, learned, &state, &dns),
                None => {
                    self.announcers = Some(Announcers::open(guests, learned, &state, &dns)?);
                    Ok(())
                }
            }
        });
        if let Err(e) = added {
            log::warn!("{e}; the guest's new NIC gets no IPv6 announcements");
        }
    }
}

/// dnsmasq, if its configuration changed.
fn dnsmasq_if(changed: bool) -> Vec<Child> {
    changed.then_some(Child::Dnsmasq).into_iter().collect()
}
