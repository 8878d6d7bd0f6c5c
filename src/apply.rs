//! Carries out a plan's steps over netlink, and undoes them on failure or at exit.

use std::collections::HashMap;
use std::io;
use std::thread::sleep;
use std::time::Duration;

use crate::error::{Error, Result};
use crate::netlink::Netlink;
use crate::plan::Step;

/// How often a link creation that fails with `EEXIST` is retried (Kubernetes pods
/// have been seen to report it transiently), and how long to wait in between.
const EEXIST_RETRIES: u32 = 5;
const EEXIST_PAUSE: Duration = Duration::from_millis(100);

/// Applies steps and remembers them, so that they can be undone in reverse order.
pub struct Applier<'a> {
    nl: &'a mut Netlink,
    indexes: HashMap<String, u32>,
    done: Vec<Step>,
}

impl<'a> Applier<'a> {
    pub fn new(nl: &'a mut Netlink) -> Applier<'a> {
        Applier {
            nl,
            indexes: HashMap::new(),
            done: Vec::new(),
        }
    }

    /// Applies every step in order; on the first failure undoes what was applied.
    pub fn apply_all(&mut self, steps: &[Step]) -> Result<()> {
        for step in steps {
            if let Err(e) = self.apply(step) {
                self.rollback();
                return Err(e);
            }
        }
        Ok(())
    }

    /// Applies one step, logging it as the `ip` command it equals.
    pub fn apply(&mut self, step: &Step) -> Result<()> {
        log::info!("{step}");
        let mut attempt = 0;
        loop {
            match self.exec(step) {
                Ok(()) => break,
                Err(e)
                    if e.raw_os_error() == Some(libc::EEXIST)
                        && matches!(step, Step::AddLink { .. })
                        && attempt < EEXIST_RETRIES =>
                {
                    attempt += 1;
                    log::warn!("{step}: {e}; retry {attempt} of {EEXIST_RETRIES}");
                    sleep(EEXIST_PAUSE);
                }
                Err(e) => return Err(step_error(step, e)),
            }
        }
        self.done.push(step.clone());
        Ok(())
    }

    /// Forgets the applied steps (they are now the caller's to undo, or to keep).
    pub fn take_applied(&mut self) -> Vec<Step> {
        std::mem::take(&mut self.done)
    }

    /// Undoes every applied step, newest first. Failures are logged, not fatal:
    /// rollback does as much as it can.
    pub fn rollback(&mut self) {
        let done = std::mem::take(&mut self.done);
        undo(self, &done);
    }

    /// Runs steps that must not be undone later (recovery, teardown); logs failures.
    pub fn run_best_effort(&mut self, steps: &[Step]) {
        for step in steps {
            log::info!("{step}");
            if let Err(e) = self.exec(step) {
                log::warn!("{step}: {e}");
            }
        }
    }

    fn index(&mut self, name: &str) -> io::Result<u32> {
        if let Some(i) = self.indexes.get(name) {
            return Ok(*i);
        }
        self.indexes = self
            .nl
            .links()?
            .into_iter()
            .filter_map(|l| {
                let name = l.attributes.iter().find_map(|a| match a {
                    netlink_packet_route::link::LinkAttribute::IfName(n) => Some(n.clone()),
                    _ => None,
                })?;
                Some((name, l.header.index))
            })
            .collect();
        self.indexes
            .get(name)
            .copied()
            .ok_or_else(|| io::Error::from_raw_os_error(libc::ENODEV))
    }

    /// The interface index of `name`, as of the last lookup.
    pub fn index_of(&mut self, name: &str) -> Result<u32> {
        self.index(name)
            .map_err(|e| Error::os(format!("find interface {name}"), e))
    }

    fn exec(&mut self, step: &Step) -> io::Result<()> {
        match step {
            Step::DelRoute { dev, route } => {
                let i = self.index(dev)?;
                self.nl.change_route(false, i, route, None, false)
            }
            Step::AddRoute {
                dev,
                route,
                src,
                onlink,
            } => {
                let i = self.index(dev)?;
                self.nl.change_route(true, i, route, *src, *onlink)
            }
            Step::DelAddr { dev, addr, .. } => {
                let i = self.index(dev)?;
                self.nl.change_addr(false, i, *addr, false)
            }
            Step::AddAddr {
                dev,
                addr,
                broadcast,
            } => {
                let i = self.index(dev)?;
                self.nl.change_addr(true, i, *addr, *broadcast)
            }
            Step::SetMac { dev, mac, .. } => {
                let i = self.index(dev)?;
                self.nl.set_mac(i, *mac)
            }
            Step::AddLink {
                kind,
                name,
                lower,
                mac,
                mtu,
            } => {
                let l = self.index(lower)?;
                if let Some(index) = self.nl.add_mac_link(*kind, name, l, *mac, *mtu)? {
                    self.indexes.insert(name.clone(), index);
                }
                Ok(())
            }
            Step::DelLink { name } => {
                let i = self.index(name)?;
                self.indexes.remove(name);
                self.nl.del_link(i)
            }
            Step::SetAlias { dev, alias } => {
                let i = self.index(dev)?;
                self.nl.set_alias(i, alias)
            }
            Step::TxChecksumOff { dev } => match crate::ethtool::disable_tx_checksum(dev) {
                // A nicety for old DHCP clients, not a requirement: macvlans on veth
                // cannot change it.
                Err(e) if e.raw_os_error() == Some(libc::EOPNOTSUPP) => {
                    log::info!(
                        "{dev}: TX checksum offload cannot be changed here ({e}); leaving it"
                    );
                    Ok(())
                }
                other => other,
            },
        }
    }
}

/// Undoes `done` newest first.
pub fn undo(applier: &mut Applier, done: &[Step]) {
    for step in done.iter().rev() {
        if let Some(inverse) = step.inverse() {
            log::info!("undo: {inverse}");
            if let Err(e) = applier.exec(&inverse) {
                log::warn!("undo: {inverse}: {e}");
            }
        }
    }
}

fn step_error(step: &Step, e: io::Error) -> Error {
    match e.raw_os_error() {
        Some(libc::EPERM) | Some(libc::EACCES) => Error::Unavailable(format!(
            "{step}: {e}; hint: run the container with --cap-add NET_ADMIN"
        )),
        Some(libc::EOPNOTSUPP) if matches!(step, Step::AddLink { .. }) => {
            Error::Unavailable(format!(
                "{step}: {e}; hint: the host kernel needs macvlan and macvtap (modprobe macvtap on the host)"
            ))
        }
        _ => Error::os(step.to_string(), e),
    }
}
