//! While the guest runs: the supervisor's effects on the world (the power button, dnsmasq
//! restarts, the IPv6 announcements) and hot-plug, which follows `docker network connect`
//! and `disconnect`.
//!
//! A new container NIC goes to the guest in two steps. `reconcile` takes it over (the same
//! steps as at start, its /dev/tapN opened) and writes dnsmasq's hosts and options with it
//! (dnsmasq reads them again on SIGHUP, sent before the plug); then `plug` hands the tap to
//! QEMU. When dnsmasq's configuration file itself changed (rarely, see `dhcp::dnsmasq`),
//! dnsmasq is restarted and the plug waits until it serves, so that the guest's first DHCP
//! request on the new NIC is answered, not lost to a dnsmasq still starting.

use std::fs;
use std::os::fd::{AsFd, BorrowedFd};
use std::time::{Duration, Instant};

use nix::unistd::Pid;

use super::guest::Guest;
use super::{TakenNic, random_macs, read_namespace, take_over_nic};
use crate::dhcp::dhcp_server::{self, DhcpServer, Reconfigured};
use crate::error::{Error, Result};
use crate::ipv6::announce::{Dns6, Learned};
use crate::ipv6::announcer::Announcers;
use crate::net::apply::Applier;
use crate::net::netstate::NetState;
use crate::net::step::Step;
use crate::pid1::policy::{self, Child, Event};
use crate::takeover::plan::{self, NicPlan};
use crate::takeover::plan6::{self, GatewayRoutes, Guest6};
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
            Child::Passt(slot) => {
                let passt = self.passts.iter().find(|p| p.slot == slot)?;
                log::error!(
                    "the guest's NIC on {} has no network until the container restarts: QEMU 7.2 does not connect again to a new passt",
                    passt.lower
                );
                passt.spawn(self.signals.original)
            }
        };
        spawned.inspect_err(|e| log::warn!("{e}")).ok()
    }

    fn ready(&mut self, child: Child) -> bool {
        match child {
            Child::Dnsmasq => self.dhcp.as_ref().is_some_and(DhcpServer::is_ready),
            Child::Passt(slot) => self.passts.iter().any(|p| p.slot == slot && p.is_ready()),
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
            reloaded: Vec::new(),
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
        self.move_router6(&state);
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
                    "{name} is not up with an IPv4 or IPv6 address after {waited:?}; it stays with the container"
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
        let dnsmasq = if changed {
            self.reconfigure_dnsmasq()
        } else {
            Reconfigured::Unchanged
        };
        Event::Reconciled {
            again_in,
            reconfigured: dnsmasq_if(dnsmasq == Reconfigured::Restart),
            reloaded: dnsmasq_if(dnsmasq == Reconfigured::Reload),
            plugs_pending,
        }
    }

    /// Hands the taps of the NICs taken over to QEMU (QMP `getfd`) as new netdevs and
    /// virtio-net devices on the guest's PCI bus. A NIC that QEMU refuses is given back to
    /// the container and left there, and dnsmasq's configuration is written without it.
    fn plug(&mut self) -> Event {
        let mut dnsmasq = Reconfigured::Unchanged;
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
                    if let Some(taken) = self.nics.get_mut(&lower) {
                        taken.guest6 = guests6.first().cloned();
                    }
                    self.nics.publish(&self.run_dir);
                }
                Err(e) => {
                    if let Some(taken) = self.nics.remove(&lower) {
                        self.give_back(taken);
                    }
                    dnsmasq = dnsmasq.max(self.reconfigure_dnsmasq());
                    log::warn!("{}: {e}; it stays with the container", nic.lower);
                    self.left.insert(nic.lower);
                }
            }
        }
        Event::Reconciled {
            again_in: None,
            reconfigured: dnsmasq_if(dnsmasq == Reconfigured::Restart),
            reloaded: dnsmasq_if(dnsmasq == Reconfigured::Reload),
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

    /// One NIC into the running guest: its tap fds (a `getfd` each), a netdev on them, a
    /// virtio-net device with its MAC and MTU (multiqueue for several fds). A device QEMU refuses takes its netdev with it.
    fn hot_plug(&self, nic: &NicPlan, tap: &Tap) -> Result<()> {
        let plug = qemu::plug_commands(
            nic.slot,
            tap.fds.len(),
            self.checked.vhost,
            self.config.machine.nic_model,
            nic.mac,
            nic.mtu,
            self.config.machine.boot_mode.q35(),
        );
        let mut qmp = qmp::Session::open(&self.run_dir.qmp(), QMP_TIMEOUT)
            .map_err(|e| Error::os("connect to QMP", e))?;
        plug.getfd
            .iter()
            .zip(&tap.fds)
            .try_for_each(|(getfd, fd)| qmp.run_with_fd(getfd, fd.as_fd()).map(drop))
            .and_then(|_| qmp.run(&plug.netdev_add))
            .map_err(|e| Error::os(format!("QMP netdev_add {}", nic.slot.netdev()), e))?;
        if let Err(e) = qmp.run(&plug.device_add) {
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
        self.nics.publish(&self.run_dir);
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
    /// to be plugged in included); what dnsmasq needs to serve it (mostly a SIGHUP, to read
    /// its hosts and options again; a restart only when its configuration file changed).
    fn reconfigure_dnsmasq(&mut self) -> Reconfigured {
        if !self.config.dhcp {
            return Reconfigured::Unchanged;
        }
        let nics = self.nics.plans();
        let Some(server) = &self.dhcp else {
            return Reconfigured::Unchanged;
        };
        match server.reconfigure(self.config, &nics) {
            Ok((server, change)) => {
                self.dhcp = Some(server);
                change
            }
            Err(e) => {
                log::warn!("{e}");
                Reconfigured::Unchanged
            }
        }
    }

    /// The IPv6 gateways of NICs plugged in while the guest runs (see `learn_gateways6`); a
    /// failure is logged, and the guest gets no IPv6 routes on them.
    fn learn_gateways6_of(&mut self, state: &NetState, guests: &[Guest6]) -> Vec<Learned> {
        if !self.config.dhcp || guests.is_empty() {
            return Vec::new();
        }
        // The supervisor reads the signals itself: nothing stops this wait (3 s at most).
        gateway6::learn(state, guests, &|| false).unwrap_or_else(|e| {
            log::warn!("{e}");
            Vec::new()
        })
    }

    /// When no guest NIC gives the guest its IPv6 default route any more (the NIC that did
    /// left) and the container's IPv6 default route is now through a NIC that stays, that
    /// NIC's door announces the gateway as the guest's default router: the guest's next
    /// router advertisement on it (at once: the announcer starts afresh) gives the route.
    fn move_router6(&mut self, state: &NetState) {
        let gives_default = |t: &TakenNic| {
            t.guest6
                .as_ref()
                .is_some_and(|g| g.gateways.iter().any(|gw| gw.default))
        };
        if self.nics.all().any(gives_default) {
            return;
        }
        let stay: Vec<(&str, &str)> = self
            .nics
            .all()
            .filter(|t| t.pending.is_none() && t.guest6.is_some())
            .map(|t| (t.nic.lower.as_str(), t.nic.door.as_str()))
            .collect();
        let Some((lower, gateway, via)) = plan6::router6_moved_to(state, &stay) else {
            return;
        };
        // A gateway that did not answer is not asked again at every change.
        if self.router6.as_ref() == Some(&(lower.clone(), gateway)) {
            return;
        }
        self.router6 = Some((lower.clone(), gateway));
        let Some(taken) = self.nics.all().find(|t| t.nic.lower == lower) else {
            return;
        };
        let mut guest6 = taken.guest6.clone().expect("listed above");
        match guest6.gateways.iter_mut().find(|g| g.gateway == gateway) {
            Some(g) => g.default = true,
            None => guest6.gateways.push(GatewayRoutes {
                gateway,
                default: true,
                routes: Vec::new(),
            }),
        }
        // The gateway's link-local address and MAC, found on the link the container's route
        // to it takes, from that link's MAC.
        let Some(via_mac) = state.link(&via).and_then(|l| l.mac) else {
            return;
        };
        let mut probe = guest6.clone();
        probe.lower = via;
        probe.mac = via_mac;
        probe.gateways.retain(|g| g.gateway == gateway);
        let mut learned = self.learn_gateways6_of(state, &[probe]);
        for l in &mut learned {
            l.lower = lower.clone();
        }
        if learned.is_empty() {
            return;
        }
        if let Some(announcers) = &mut self.announcers {
            announcers.remove(&lower);
        }
        self.announce_too(std::slice::from_ref(&guest6), &learned);
        log::info!(
            "{lower} now holds the container's IPv6 default route: its router advertisements give the guest the router {gateway}"
        );
        if let Some(taken) = self.nics.get_mut(&lower) {
            taken.guest6 = Some(guest6);
        }
    }

    /// Announces IPv6 on the doors of NICs plugged in while the guest runs.
    fn announce_too(&mut self, guests: &[Guest6], learned: &[Learned]) {
        if !self.config.dhcp || guests.is_empty() {
            return;
        }
        let added = read_namespace(&mut self.nl).and_then(|state| {
            let resolv = fs::read_to_string(&self.config.paths.resolv_conf).unwrap_or_default();
            let dns = Dns6::from_resolv_conf(&resolv);
            let dns4 = dhcp_server::guest_dns(self.config).left_to_ipv6(&self.nics.plans());
            let dns = (&dns, dns4);
            match &mut self.announcers {
                Some(announcers) => announcers.add(guests, learned, &state, dns),
                None => {
                    self.announcers = Some(Announcers::open(guests, learned, &state, dns)?);
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
