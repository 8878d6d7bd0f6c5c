//! Carries out a plan's steps over netlink, and undoes them on failure or at exit.
//!
//! The applier decides nothing about the network (the plan did); it only knows how to
//! execute a step, which kernel failures are worth a bounded retry, and the order of undo.

use std::collections::HashMap;
use std::io;
use std::os::fd::OwnedFd;
use std::path::{Path, PathBuf};
use std::thread::sleep;
use std::time::Duration;

use crate::config::Pause;
use crate::error::{Error, Result};
use crate::net::netlink::Rtnetlink;
use crate::net::netlink::message::MacLink;
use crate::net::step::Step;

/// How often a link creation that fails with `EEXIST` is retried (Kubernetes pods
/// have been seen to report it transiently), and how long to wait in between.
const EEXIST_RETRIES: u32 = 5;
const EEXIST_PAUSE: Duration = Duration::from_millis(100);

/// Applies steps and remembers them, so that they can be undone in reverse order.
pub struct Applier<'a, N: Rtnetlink + ?Sized> {
    nl: &'a mut N,
    /// Interface indexes by name, from the last dump and the links created since.
    indexes: HashMap<String, u32>,
    done: Vec<Step>,
    eexist_pause: Duration,
    /// Test hook: stop working for good after this many applied steps.
    pause_after_apply: Option<usize>,
    /// Test hook: stop working for good after this many undone steps.
    pause_after_undo: Option<usize>,
    /// Steps applied, and undone, by this applier so far (for the test hook).
    applied: usize,
    undone: usize,
    /// The tun device taps are made on (`/dev/net/tun`).
    tun: PathBuf,
    /// Whether taps are made multiqueue (`IFF_MULTI_QUEUE`), to take more queues later.
    multi_queue: bool,
    /// The taps made, each held by its descriptor until `take_tap` hands it on.
    taps: HashMap<String, OwnedFd>,
}

impl<'a, N: Rtnetlink + ?Sized> Applier<'a, N> {
    pub fn new(nl: &'a mut N) -> Applier<'a, N> {
        Applier {
            nl,
            indexes: HashMap::new(),
            done: Vec::new(),
            eexist_pause: EEXIST_PAUSE,
            pause_after_apply: None,
            pause_after_undo: None,
            applied: 0,
            undone: 0,
            tun: PathBuf::from("/dev/net/tun"),
            multi_queue: false,
            taps: HashMap::new(),
        }
    }

    /// Makes taps on `tun` instead of `/dev/net/tun`, with `queues` queue pairs each (the
    /// step makes the first; the caller opens the others).
    pub fn tun_device(&mut self, tun: &Path, queues: u32) {
        self.tun = tun.to_path_buf();
        self.multi_queue = queues > 1;
    }

    /// The descriptor of the tap `name` made by this applier, now the caller's (the tap
    /// lives as long as it, or a copy, is open).
    pub fn take_tap(&mut self, name: &str) -> Option<OwnedFd> {
        self.taps.remove(name)
    }

    /// Test hook (`VMINIT_TEST_PAUSE`): the applier stops for good after the given number
    /// of applied (or undone) steps, so that a test can kill vminit at exactly that point.
    pub fn pause_after(&mut self, pause: Option<Pause>) {
        match pause {
            Some(Pause::Setup(n)) => self.pause_after_apply = Some(n),
            Some(Pause::Teardown(n)) => self.pause_after_undo = Some(n),
            None => {}
        }
    }

    /// Counts `n` steps applied by an earlier applier of this run toward the test hook: the
    /// hook's step numbers run through a whole setup, done in parts.
    pub fn count_applied(&mut self, n: usize) {
        self.applied += n;
    }

    /// Applies every step in order; on the first failure undoes what was applied. Steps
    /// that are one plain request each go to the kernel in batches (`batch_len`).
    pub fn apply_all(&mut self, steps: &[Step]) -> Result<()> {
        let mut at = 0;
        while at < steps.len() {
            let n = self.batch_len(&steps[at..]);
            let result = if n > 1 {
                self.apply_batch(&steps[at..at + n])
            } else {
                self.apply(&steps[at])
            };
            if let Err(e) = result {
                self.rollback();
                return Err(e);
            }
            at += n.max(1);
        }
        Ok(())
    }

    /// How many of `steps`, from the first, go to the kernel in one batch: plain requests
    /// on links that exist (`batchable`); a batch ends with the identity record (an alias),
    /// so that nothing is changed before the kernel has said it holds it, and at the test
    /// hook's step, so that a test can kill vminit right after it.
    fn batch_len(&self, steps: &[Step]) -> usize {
        let mut n = 0;
        for step in steps {
            if !batchable(step) || self.pause_after_apply == Some(self.applied + n) {
                break;
            }
            n += 1;
            if matches!(step, Step::SetAlias { .. }) {
                break;
            }
        }
        n
    }

    /// Applies `steps` (all `batchable`) as one batch: each is logged, queued, and then
    /// sent together; the kernel carries out each, whether one before it failed or not, so
    /// every step it acknowledged counts as applied (a rollback undoes exactly those), and
    /// the first failure is the error. A step that fails before it is queued (a link that
    /// cannot be found) ends the batch there.
    fn apply_batch(&mut self, steps: &[Step]) -> Result<()> {
        self.nl.defer();
        let mut queued = Vec::new();
        let mut failed = None;
        for step in steps {
            log::info!("{step}");
            match self.exec(step) {
                Ok(()) => queued.push(step),
                Err(source) => {
                    failed = Some(Error::Step {
                        step: step.clone(),
                        source,
                    });
                    break;
                }
            }
        }
        let results = self.nl.flush();
        let mut first_failure = None;
        for (step, result) in queued.into_iter().zip(results) {
            match result {
                Err(e) if !tolerated(step, &e) => {
                    first_failure.get_or_insert(Error::Step {
                        step: step.clone(),
                        source: e,
                    });
                }
                Err(e) => log::info!("{step}: {e}; nothing to do"),
                Ok(()) => self.applied_one(step),
            }
        }
        match first_failure.or(failed) {
            Some(e) => Err(e),
            None => Ok(()),
        }
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
                    sleep(self.eexist_pause);
                }
                Err(source) => {
                    return Err(Error::Step {
                        step: step.clone(),
                        source,
                    });
                }
            }
        }
        self.applied_one(step);
        Ok(())
    }

    /// Remembers `step` as applied (and stops for good there when the test hook says so).
    fn applied_one(&mut self, step: &Step) {
        self.done.push(step.clone());
        self.applied += 1;
        if self.pause_after_apply == Some(self.applied) {
            park(&format!("setup step {}: {step}", self.applied));
        }
    }

    /// Forgets the applied steps (they are now the caller's to undo, or to keep).
    pub fn take_applied(&mut self) -> Vec<Step> {
        std::mem::take(&mut self.done)
    }

    /// Undoes every applied step, newest first. Failures are logged, not fatal:
    /// rollback does as much as it can.
    pub fn rollback(&mut self) {
        let done = std::mem::take(&mut self.done);
        self.undo(&done);
    }

    /// Undoes `done` (steps applied earlier, oldest first), newest first, as far as it can.
    pub fn undo(&mut self, done: &[Step]) {
        for step in done.iter().rev() {
            if let Some(inverse) = step.inverse() {
                log::info!("undo: {inverse}");
                if let Err(e) = self.exec(&inverse) {
                    log::warn!("undo: {inverse}: {e}");
                }
                self.undone += 1;
                if self.pause_after_undo == Some(self.undone) {
                    park(&format!("teardown step {}: {inverse}", self.undone));
                }
            }
        }
    }

    /// Runs steps that must not be undone later (recovery); logs failures. A step whose
    /// object is already there, or already gone, has nothing left to do.
    pub fn run_best_effort(&mut self, steps: &[Step]) {
        for step in steps {
            log::info!("{step}");
            match self.exec(step) {
                Ok(()) => {}
                Err(e) if already_done(step, &e) => log::debug!("{step}: {e}; nothing to do"),
                Err(e) => log::warn!("{step}: {e}"),
            }
        }
    }

    /// The interface index of `name`, as of the last lookup.
    pub fn index_of(&mut self, name: &str) -> Result<u32> {
        self.index(name)
            .map_err(|e| Error::os(format!("find interface {name}"), e))
    }

    fn index(&mut self, name: &str) -> io::Result<u32> {
        if let Some(i) = self.indexes.get(name) {
            return Ok(*i);
        }
        self.indexes = self.nl.link_indexes()?.into_iter().collect();
        self.indexes
            .get(name)
            .copied()
            .ok_or_else(|| io::Error::from_raw_os_error(libc::ENODEV))
    }

    fn exec(&mut self, step: &Step) -> io::Result<()> {
        match step {
            Step::DelRoute { dev, route } => {
                let i = self.index(dev)?;
                self.nl.del_route(i, route)
            }
            Step::AddRoute { dev, route } => {
                let i = self.index(dev)?;
                self.nl.add_route(i, route)
            }
            Step::DelAddr { dev, addr } => {
                let i = self.index(dev)?;
                self.nl.del_addr(i, addr)
            }
            Step::AddAddr { dev, addr } => {
                let i = self.index(dev)?;
                self.nl.add_addr(i, addr)
            }
            Step::DelNeigh { dev, neigh } => {
                let i = self.index(dev)?;
                self.nl.del_neigh(i, neigh)
            }
            Step::AddNeigh { dev, neigh } => {
                let i = self.index(dev)?;
                self.nl.add_neigh(i, neigh)
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
                up,
            } => {
                let lower = self.index(lower)?;
                let link = MacLink {
                    kind: *kind,
                    name,
                    lower,
                    mac: *mac,
                    mtu: *mtu,
                    up: *up,
                };
                match self.nl.add_mac_link(&link)? {
                    Some(index) => {
                        self.indexes.insert(name.clone(), index);
                    }
                    // An older kernel did not say: the next lookup dumps the links again.
                    None => {
                        self.indexes.remove(name);
                    }
                }
                Ok(())
            }
            Step::DelLink { name } => {
                let i = self.index(name)?;
                self.indexes.remove(name);
                self.nl.del_link(i)?;
                // A tap of this applier's is gone with its link.
                self.taps.remove(name);
                Ok(())
            }
            Step::AddTap { name, mac, mtu } => {
                let fd = self.nl.add_tap(&self.tun, name, self.multi_queue)?;
                self.indexes.remove(name);
                // Held from here on: a later failure's rollback deletes the link.
                self.taps.insert(name.clone(), fd);
                let i = self.index(name)?;
                self.nl.set_mac(i, *mac)?;
                self.nl.set_mtu_up(i, *mtu)
            }
            Step::AddIngress { dev } => {
                let i = self.index(dev)?;
                self.nl.add_ingress(i)
            }
            Step::DelIngress { dev } => {
                let i = self.index(dev)?;
                self.nl.del_ingress(i)
            }
            Step::AddFilter { dev, filter } => {
                let i = self.index(dev)?;
                let target = match filter.target() {
                    Some(name) => Some(self.index(name)?),
                    None => None,
                };
                self.nl.add_filter(i, filter, target)
            }
            Step::SetAlias { dev, alias } => {
                let i = self.index(dev)?;
                self.nl.set_alias(i, alias)
            }
            Step::NoAddrGen { dev } => {
                let i = self.index(dev)?;
                match self.nl.no_addr_gen(i) {
                    Err(e) if tolerated(step, &e) => Ok(()),
                    other => other,
                }
            }
            Step::SetUpAllMulticast { dev } => {
                let i = self.index(dev)?;
                self.nl.set_up_allmulticast(i)
            }
            Step::SetDown { dev } => {
                let i = self.index(dev)?;
                self.nl.set_down(i)
            }
            Step::SetArpIgnore { dev, value, .. } => {
                let i = self.index(dev)?;
                self.nl.set_arp_ignore(i, *value)
            }
            Step::TxChecksumOff { dev } => match self.nl.tx_checksum_off(dev) {
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

/// Whether `step` is one plain rtnetlink request on links that exist: what a batch holds.
/// Not: link creation (its index is needed next, and `EEXIST` is retried), link deletion,
/// taps, the ethtool call.
fn batchable(step: &Step) -> bool {
    !matches!(
        step,
        Step::AddLink { .. }
            | Step::DelLink { .. }
            | Step::AddTap { .. }
            | Step::TxChecksumOff { .. }
    )
}

/// Whether the failure `e` of `step` leaves nothing to do: `addrgenmode none` on a link
/// without IPv6 at all (a kernel without it, an MTU below 1280) has nothing to prevent.
fn tolerated(step: &Step, e: &io::Error) -> bool {
    matches!(step, Step::NoAddrGen { .. }) && e.raw_os_error() == Some(libc::EAFNOSUPPORT)
}

/// The test hook's end: says where it stopped, then waits to be killed.
fn park(at: &str) -> ! {
    log::warn!("test hook: paused after {at}");
    loop {
        sleep(Duration::from_secs(3600));
    }
}

/// Whether `e` says `step` found the namespace as it would have left it.
fn already_done(step: &Step, e: &io::Error) -> bool {
    let errno = e.raw_os_error();
    match step {
        Step::AddAddr { .. } | Step::AddRoute { .. } | Step::AddNeigh { .. } => {
            errno == Some(libc::EEXIST)
        }
        Step::DelAddr { .. } | Step::DelRoute { .. } | Step::DelNeigh { .. } => {
            matches!(
                errno,
                Some(libc::EADDRNOTAVAIL | libc::ESRCH | libc::ENOENT)
            )
        }
        Step::DelLink { .. } => errno == Some(libc::ENODEV),
        // No ingress qdisc there (EINVAL on older kernels), or no link at all.
        Step::DelIngress { .. } => {
            matches!(errno, Some(libc::ENOENT | libc::EINVAL | libc::ENODEV))
        }
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::error::exit;
    use crate::net::netstate::{IfAddr, IpIfAddr, IpNeigh, IpRoute};
    use crate::net::step::MacLinkKind;
    use crate::net::types::Mac;

    /// A kernel that records every call as the `ip` command it stands for, knows link names
    /// and indexes, and fails the calls it is told to fail.
    #[derive(Default)]
    struct FakeKernel {
        links: Vec<(String, u32)>,
        calls: Vec<String>,
        /// (call prefix, errno, how many times): a matching call fails that often.
        failures: Vec<(String, i32, u32)>,
        /// Whether new links' indexes are echoed (Linux 6.3 and later).
        echo: bool,
        dumps: u32,
        /// While `defer`red: the results of the calls made, which `flush` reports (the calls
        /// themselves are carried out, as the kernel does with a batch).
        deferred: Option<Vec<io::Result<()>>>,
        /// How many calls each `flush` reported.
        batches: Vec<usize>,
    }

    impl FakeKernel {
        fn with_links(names: &[&str]) -> FakeKernel {
            FakeKernel {
                links: names
                    .iter()
                    .enumerate()
                    .map(|(i, n)| (n.to_string(), i as u32 + 1))
                    .collect(),
                echo: true,
                ..FakeKernel::default()
            }
        }

        fn fail(mut self, prefix: &str, errno: i32, times: u32) -> FakeKernel {
            self.failures.push((prefix.into(), errno, times));
            self
        }

        fn call(&mut self, text: String) -> io::Result<()> {
            self.calls.push(text.clone());
            let mut result = Ok(());
            for (prefix, errno, times) in &mut self.failures {
                if *times > 0 && text.starts_with(prefix.as_str()) {
                    *times -= 1;
                    result = Err(io::Error::from_raw_os_error(*errno));
                    break;
                }
            }
            match &mut self.deferred {
                Some(results) => {
                    results.push(result);
                    Ok(())
                }
                None => result,
            }
        }
    }

    impl Rtnetlink for FakeKernel {
        fn link_indexes(&mut self) -> io::Result<Vec<(String, u32)>> {
            self.dumps += 1;
            Ok(self.links.clone())
        }
        fn add_mac_link(&mut self, link: &MacLink) -> io::Result<Option<u32>> {
            self.call(format!("link add {} lower {}", link.name, link.lower))?;
            let index = 99 + self.links.len() as u32;
            self.links.push((link.name.to_string(), index));
            Ok(self.echo.then_some(index))
        }
        fn del_link(&mut self, index: u32) -> io::Result<()> {
            self.call(format!("link del {index}"))?;
            self.links.retain(|(_, i)| *i != index);
            Ok(())
        }
        fn set_mac(&mut self, index: u32, mac: Mac) -> io::Result<()> {
            self.call(format!("link set {index} address {mac}"))
        }
        fn set_alias(&mut self, index: u32, alias: &str) -> io::Result<()> {
            self.call(format!("link set {index} alias {alias}"))
        }
        fn add_addr(&mut self, index: u32, addr: &IpIfAddr) -> io::Result<()> {
            self.call(format!("addr add {} dev {index}", addr_text(addr)))
        }
        fn del_addr(&mut self, index: u32, addr: &IpIfAddr) -> io::Result<()> {
            self.call(format!("addr del {} dev {index}", addr_text(addr)))
        }
        fn add_route(&mut self, index: u32, route: &IpRoute) -> io::Result<()> {
            self.call(format!("route add {} dev {index}", route_text(route)))
        }
        fn del_route(&mut self, index: u32, route: &IpRoute) -> io::Result<()> {
            self.call(format!("route del {} dev {index}", route_text(route)))
        }
        fn add_neigh(&mut self, index: u32, neigh: &IpNeigh) -> io::Result<()> {
            self.call(format!("neigh add {} dev {index}", neigh_text(neigh)))
        }
        fn del_neigh(&mut self, index: u32, neigh: &IpNeigh) -> io::Result<()> {
            self.call(format!("neigh del {} dev {index}", neigh_text(neigh)))
        }
        fn tx_checksum_off(&mut self, dev: &str) -> io::Result<()> {
            self.call(format!("ethtool -K {dev} tx off"))
        }
        fn no_addr_gen(&mut self, index: u32) -> io::Result<()> {
            self.call(format!("link set {index} addrgenmode none"))
        }
        fn set_up_allmulticast(&mut self, index: u32) -> io::Result<()> {
            self.call(format!("link set {index} allmulticast on up"))
        }
        fn set_down(&mut self, index: u32) -> io::Result<()> {
            self.call(format!("link set {index} down"))
        }
        fn set_arp_ignore(&mut self, index: u32, value: u32) -> io::Result<()> {
            self.call(format!("link set {index} arp_ignore {value}"))
        }
        fn add_tap(&mut self, _tun: &Path, name: &str, _multi_queue: bool) -> io::Result<OwnedFd> {
            self.call(format!("tuntap add {name}"))?;
            let index = 99 + self.links.len() as u32;
            self.links.push((name.to_string(), index));
            Ok(std::fs::File::open("/dev/null")?.into())
        }
        fn set_mtu_up(&mut self, index: u32, mtu: u32) -> io::Result<()> {
            self.call(format!("link set {index} mtu {mtu} up"))
        }
        fn add_ingress(&mut self, index: u32) -> io::Result<()> {
            self.call(format!("qdisc add {index} ingress"))
        }
        fn del_ingress(&mut self, index: u32) -> io::Result<()> {
            self.call(format!("qdisc del {index} ingress"))
        }
        fn add_filter(
            &mut self,
            index: u32,
            filter: &crate::net::tc::Filter,
            target: Option<u32>,
        ) -> io::Result<()> {
            self.call(format!(
                "filter add {index} prio {} to {target:?}",
                filter.prio
            ))
        }
        fn defer(&mut self) {
            self.deferred = Some(Vec::new());
        }
        fn flush(&mut self) -> Vec<io::Result<()>> {
            let results = self.deferred.take().unwrap_or_default();
            self.batches.push(results.len());
            results
        }
    }

    #[test]
    fn a_tap_is_held_until_taken_and_a_failed_join_deletes_it_and_its_qdiscs() {
        use crate::net::tc::{ETH_P_ALL, Filter, Verdict};
        let mut nl = FakeKernel::with_links(&["eth0"]).fail("filter add 1 ", libc::EINVAL, 1);
        let mut a = Applier::new(&mut nl);
        let mac = Mac([2, 0, 0, 0, 0, 1]);
        let tap = Step::AddTap {
            name: "vmtap0".into(),
            mac,
            mtu: 1400,
        };
        let redirect = |dev: &str, to: &str| Step::AddFilter {
            dev: dev.into(),
            filter: Filter {
                prio: 1,
                protocol: ETH_P_ALL,
                keys: Vec::new(),
                verdict: Verdict::Redirect(to.into()),
            },
        };
        let steps = [
            tap,
            Step::AddIngress {
                dev: "vmtap0".into(),
            },
            redirect("vmtap0", "eth0"),
            Step::AddIngress { dev: "eth0".into() },
            redirect("eth0", "vmtap0"),
        ];
        assert!(a.apply_all(&steps).is_err());
        assert!(
            a.take_tap("vmtap0").is_none(),
            "the rollback let the tap go"
        );
        assert_eq!(
            nl.calls,
            [
                "tuntap add vmtap0",
                "link set 100 address 02:00:00:00:00:01",
                "link set 100 mtu 1400 up",
                "qdisc add 100 ingress",
                "filter add 100 prio 1 to Some(1)",
                "qdisc add 1 ingress",
                "filter add 1 prio 1 to Some(100)",
                "qdisc del 1 ingress",
                "qdisc del 100 ingress",
                "link del 100",
            ]
        );
    }

    fn add_link(kind: MacLinkKind, name: &str) -> Step {
        Step::AddLink {
            kind,
            name: name.into(),
            lower: "eth0".into(),
            mac: None,
            mtu: 1500,
            up: true,
        }
    }

    fn addr_text(addr: &IpIfAddr) -> String {
        match addr {
            IpIfAddr::V4(a) => a.net.to_string(),
            IpIfAddr::V6(a) => a.net.to_string(),
        }
    }

    fn route_text(route: &IpRoute) -> String {
        match route {
            IpRoute::V4(r) => r.route.to_string(),
            IpRoute::V6(r) => r.route.to_string(),
        }
    }

    fn neigh_text(neigh: &IpNeigh) -> String {
        match neigh {
            IpNeigh::V4(n) => n.addr.to_string(),
            IpNeigh::V6(n) => n.addr.to_string(),
        }
    }

    fn addr(net: &str) -> IfAddr {
        IfAddr::plain(net.parse().unwrap())
    }

    /// A shortened takeover of eth0 (index 2): address off, new MAC, macvtap, door.
    fn takeover() -> Vec<Step> {
        let mut steps = address_off_and_new_mac().to_vec();
        steps.extend([
            add_link(MacLinkKind::Macvtap, "vmtap0"),
            add_link(MacLinkKind::Macvlan, "vmlink0"),
            Step::add_addr("vmlink0", addr("169.254.1.2/32")),
        ]);
        steps
    }

    /// eth0's address off, and its new MAC.
    fn address_off_and_new_mac() -> [Step; 2] {
        [
            Step::del_addr("eth0", addr("10.1.0.2/24")),
            Step::SetMac {
                dev: "eth0".into(),
                mac: Mac([2, 0, 0, 0, 0, 9]),
                old: Mac([2, 0x42, 10, 1, 0, 2]),
            },
        ]
    }

    fn applier(kernel: &mut FakeKernel) -> Applier<'_, FakeKernel> {
        let mut a = Applier::new(kernel);
        a.eexist_pause = Duration::ZERO;
        a
    }

    /// `steps` applied on eth0 (index 2) by a kernel that fails the first call starting
    /// with `prefix` with `errno`: the kernel afterwards, and the error.
    fn failed_at(prefix: &str, errno: i32, steps: &[Step]) -> (FakeKernel, Error) {
        let mut kernel = FakeKernel::with_links(&["lo", "eth0"]).fail(prefix, errno, 1);
        let e = applier(&mut kernel).apply_all(steps).unwrap_err();
        (kernel, e)
    }

    #[test]
    fn a_failed_step_rolls_back_what_was_applied_newest_first() {
        let (kernel, e) = failed_at("addr add 169.254.1.2/32", libc::ENOSPC, &takeover());
        assert!(
            matches!(e, Error::Step { ref step, ref source } if *step == takeover()[4] && source.raw_os_error() == Some(libc::ENOSPC)),
            "{e}"
        );
        assert_eq!(
            kernel.calls,
            [
                "addr del 10.1.0.2/24 dev 2",
                "link set 2 address 02:00:00:00:00:09",
                "link add vmtap0 lower 2",
                "link add vmlink0 lower 2",
                "addr add 169.254.1.2/32 dev 102",
                // rollback: the door, the macvtap, the MAC, the address
                "link del 102",
                "link del 101",
                "link set 2 address 02:42:0a:01:00:02",
                "addr add 10.1.0.2/24 dev 2",
            ]
        );
    }

    #[test]
    fn a_rollback_step_that_fails_does_not_stop_the_rest_of_the_rollback() {
        let mut kernel = FakeKernel::with_links(&["lo", "eth0"])
            .fail("addr add 169.254.1.2/32", libc::ENOSPC, 1)
            .fail("link del 101", libc::EBUSY, 1);
        let _ = applier(&mut kernel).apply_all(&takeover());
        assert_eq!(
            kernel.calls[5..],
            [
                "link del 102",
                "link del 101",
                "link set 2 address 02:42:0a:01:00:02",
                "addr add 10.1.0.2/24 dev 2",
            ]
        );
    }

    #[test]
    fn a_link_that_exists_transiently_is_retried_and_then_created() {
        let mut kernel =
            FakeKernel::with_links(&["lo", "eth0"]).fail("link add vmtap0", libc::EEXIST, 3);
        let step = add_link(MacLinkKind::Macvtap, "vmtap0");
        applier(&mut kernel).apply(&step).unwrap();
        assert_eq!(kernel.calls.len(), 4, "{:?}", kernel.calls);
    }

    #[test]
    fn eexist_is_retried_a_bounded_number_of_times_then_reported() {
        let mut kernel =
            FakeKernel::with_links(&["lo", "eth0"]).fail("link add vmtap0", libc::EEXIST, 99);
        let step = add_link(MacLinkKind::Macvtap, "vmtap0");
        let e = applier(&mut kernel).apply(&step).unwrap_err();
        assert_eq!(kernel.calls.len(), 1 + EEXIST_RETRIES as usize);
        assert_eq!(e.exit_code(), exit::OS);
        assert!(e.to_string().contains("File exists"), "{e}");
    }

    #[test]
    fn eexist_on_anything_but_a_new_link_is_not_retried() {
        let mut kernel = FakeKernel::with_links(&["lo", "eth0"]).fail("addr add", libc::EEXIST, 99);
        let step = Step::add_addr("eth0", addr("10.1.0.2/24"));
        assert!(applier(&mut kernel).apply(&step).is_err());
        assert_eq!(kernel.calls.len(), 1);
    }

    #[test]
    fn a_missing_capability_is_reported_with_the_docker_flag() {
        let mut kernel = FakeKernel::with_links(&["lo", "eth0"]).fail("addr del", libc::EPERM, 1);
        let e = applier(&mut kernel).apply_all(&takeover()).unwrap_err();
        assert_eq!(e.exit_code(), exit::UNAVAILABLE);
        assert!(e.to_string().contains("--cap-add NET_ADMIN"), "{e}");
    }

    #[test]
    fn indexes_come_from_one_dump_and_the_kernels_echo_of_new_links() {
        let mut kernel = FakeKernel::with_links(&["lo", "eth0"]);
        applier(&mut kernel).apply_all(&takeover()).unwrap();
        assert_eq!(
            kernel.dumps, 1,
            "one dump for eth0; vmlink0's index was echoed"
        );
        assert_eq!(kernel.calls[4], "addr add 169.254.1.2/32 dev 102");
    }

    #[test]
    fn without_an_echo_a_new_link_is_looked_up_again() {
        let mut kernel = FakeKernel::with_links(&["lo", "eth0"]);
        kernel.echo = false;
        applier(&mut kernel).apply_all(&takeover()).unwrap();
        assert_eq!(kernel.dumps, 2);
        assert_eq!(kernel.calls[4], "addr add 169.254.1.2/32 dev 102");
    }

    #[test]
    fn an_unknown_interface_fails_the_step_with_enodev() {
        let mut kernel = FakeKernel::with_links(&["lo"]);
        let e = applier(&mut kernel).apply(&takeover()[0]).unwrap_err();
        assert!(
            matches!(e, Error::Step { ref source, .. } if source.raw_os_error() == Some(libc::ENODEV)),
            "{e}"
        );
        assert!(kernel.calls.is_empty());
    }

    #[test]
    fn tx_checksum_offload_that_cannot_change_is_left_but_other_failures_count() {
        let step = Step::TxChecksumOff {
            dev: "vmlink0".into(),
        };
        let mut kernel =
            FakeKernel::with_links(&["lo", "eth0"]).fail("ethtool", libc::EOPNOTSUPP, 1);
        assert!(applier(&mut kernel).apply(&step).is_ok());
        let mut kernel = FakeKernel::with_links(&["lo", "eth0"]).fail("ethtool", libc::ENODEV, 1);
        assert!(applier(&mut kernel).apply(&step).is_err());
    }

    #[test]
    fn undo_after_take_applied_reverses_the_steps_that_have_an_inverse() {
        let mut kernel = FakeKernel::with_links(&["lo", "eth0"]);
        let mut a = applier(&mut kernel);
        let mut steps = takeover();
        steps.insert(
            3,
            Step::SetAlias {
                dev: "vmtap0".into(),
                alias: "vminit:nic eth0".into(),
            },
        );
        a.apply_all(&steps).unwrap();
        let done = a.take_applied();
        a.rollback(); // nothing left to roll back
        a.undo(&done);
        assert_eq!(
            kernel.calls[6..],
            [
                "addr del 169.254.1.2/32 dev 102",
                "link del 102",
                "link del 101",
                "link set 2 address 02:42:0a:01:00:02",
                "addr add 10.1.0.2/24 dev 2",
            ]
        );
    }

    #[test]
    fn best_effort_steps_go_on_past_a_failure_and_are_not_remembered() {
        let mut kernel = FakeKernel::with_links(&["lo", "eth0", "vmtap0", "vmlink0"]).fail(
            "link del 4",
            libc::EBUSY,
            1,
        );
        let mut a = applier(&mut kernel);
        a.run_best_effort(&[
            Step::DelLink {
                name: "vmlink0".into(),
            },
            Step::DelLink {
                name: "vmtap0".into(),
            },
        ]);
        assert!(a.take_applied().is_empty());
        assert_eq!(kernel.calls, ["link del 4", "link del 3"]);
    }
    /// One NIC's takeover as the plan makes it: the door and its record, the container
    /// NIC's route and address off, its new MAC, the macvtap, the door's address and routes.
    fn nic_takeover() -> Vec<Step> {
        let mut steps = vec![
            add_link(MacLinkKind::Macvlan, "vmlink0"),
            Step::SetAlias {
                dev: "vmlink0".into(),
                alias: "vminit:door eth0".into(),
            },
            Step::del_route(
                "eth0",
                crate::net::netstate::KernelRoute::main(crate::net::types::Route {
                    dst: "0.0.0.0/0".parse().unwrap(),
                    gateway: Some("10.1.0.1".parse().unwrap()),
                    metric: None,
                }),
            ),
        ];
        steps.extend(address_off_and_new_mac());
        steps.extend([
            add_link(MacLinkKind::Macvtap, "vmtap0"),
            Step::NoAddrGen {
                dev: "vmtap0".into(),
            },
            Step::SetUpAllMulticast {
                dev: "vmtap0".into(),
            },
            Step::TxChecksumOff {
                dev: "vmlink0".into(),
            },
            Step::add_addr("vmlink0", addr("169.254.1.2/32")),
            Step::add_addr("vmlink0", addr("169.254.1.5/32")),
        ]);
        steps
    }

    #[test]
    fn plain_requests_go_in_batches_that_end_at_the_record_and_before_each_link_creation() {
        let mut kernel = FakeKernel::with_links(&["lo", "eth0"]);
        applier(&mut kernel).apply_all(&nic_takeover()).unwrap();
        // The alias alone (the record before any change), the route, address and MAC
        // together, the macvtap's two settings, the door's two addresses.
        assert_eq!(kernel.batches, [3, 2, 2], "{:?}", kernel.calls);
        assert_eq!(kernel.calls.len(), 11, "{:?}", kernel.calls);
        let mut one_by_one = FakeKernel::with_links(&["lo", "eth0"]);
        let mut a = applier(&mut one_by_one);
        for step in nic_takeover() {
            a.apply(&step).unwrap();
        }
        assert_eq!(
            kernel.calls, one_by_one.calls,
            "the same requests, in order"
        );
    }

    #[test]
    fn a_failure_in_the_middle_of_a_batch_undoes_exactly_what_the_kernel_applied() {
        // The address is gone already; the kernel still sets the MAC after it, as it carries
        // out every request of a batch.
        let (kernel, e) = failed_at("addr del 10.1.0.2/24", libc::EADDRNOTAVAIL, &nic_takeover());
        assert!(
            matches!(e, Error::Step { ref step, .. } if *step == nic_takeover()[3]),
            "the first failure is the error: {e}"
        );
        assert_eq!(
            kernel.calls,
            [
                "link add vmlink0 lower 2",
                "link set 101 alias vminit:door eth0",
                "route del default via 10.1.0.1 dev 2",
                "addr del 10.1.0.2/24 dev 2",
                "link set 2 address 02:00:00:00:00:09",
                // rollback, newest first: the MAC the kernel set after the failure, the
                // route; not the address it did not delete; the door (its alias with it)
                "link set 2 address 02:42:0a:01:00:02",
                "route add default via 10.1.0.1 dev 2",
                "link del 101",
            ]
        );
    }

    #[test]
    fn a_batch_ends_at_the_step_the_test_hook_stops_after() {
        let mut kernel = FakeKernel::with_links(&["lo", "eth0"]);
        let mut a = applier(&mut kernel);
        let steps = nic_takeover();
        assert_eq!(a.batch_len(&steps[2..]), 3);
        a.applied = 2;
        a.pause_after_apply = Some(4);
        assert_eq!(a.batch_len(&steps[2..]), 2, "steps 3 and 4, then the pause");
        a.pause_after_apply = Some(2);
        assert_eq!(a.batch_len(&steps[2..]), 0, "paused before: one by one");
    }
}
