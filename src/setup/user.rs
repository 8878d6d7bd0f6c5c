//! The user-mode boot (`NET_DATAPATH=user`): nothing in the namespace changes; one passt per
//! guest NIC gives the guest the container NIC's addresses, routes, MTU and resolvers and
//! relays its traffic through the container's own sockets, and QEMU connects to each passt's
//! Unix socket. Once QEMU runs, the passts are helpers of the running guest: the supervisor
//! restarts one that dies and stops them with the other helpers after QEMU.

use std::ffi::OsString;
use std::fs;
use std::net::{Ipv4Addr, TcpListener, UdpSocket};
use std::path::PathBuf;
use std::thread::sleep;
use std::time::{Duration, Instant};

use nix::sys::signal::{SigSet, Signal, kill};
use nix::sys::wait::{WaitPidFlag, WaitStatus, waitpid};
use nix::unistd::{Pid, getgid, getuid};

use super::Boot;
use crate::config::{QemuCaps, UserPorts};
use crate::dhcp::resolv;
use crate::error::{Error, Result};
use crate::net::discover;
use crate::net::types::Mac;
use crate::pid1::policy::{self, Child};
use crate::pid1::spawn;
use crate::takeover::plan::Plan;
use crate::vm::accel::UserBackend;
use crate::vm::{console, devices, passt, qemu, slirp};

/// How long a passt gets to bind its socket and ports.
const PASST_START_TIMEOUT: Duration = Duration::from_secs(5);

/// One guest NIC's passt.
pub(super) struct Passt {
    /// The guest NIC's slot, which names it to the supervisor (`Child::Passt`).
    pub(super) slot: usize,
    /// The container NIC it serves (`eth0`).
    pub(super) lower: String,
    argv: Vec<OsString>,
    socket: PathBuf,
    /// Its pid while vminit owns it (the supervisor takes it over).
    pub(super) pid: Option<Pid>,
}

impl Passt {
    pub(super) fn child(&self) -> Child {
        Child::Passt(self.slot)
    }

    /// Starts it (again), in its own process group (a Ctrl-C on the console is the guest's).
    pub(super) fn spawn(&self, mask: SigSet) -> Result<Pid> {
        let _ = fs::remove_file(&self.socket);
        spawn::spawn(
            &self.argv,
            &spawn::SpawnOptions {
                mask,
                keep: &[],
                own_group: true,
                drop_privileges: false,
            },
        )
    }

    /// Whether it serves: it binds its socket once its ports are bound.
    pub(super) fn is_ready(&self) -> bool {
        self.socket.exists()
    }
}

impl Boot<'_> {
    /// Every phase up to a running QEMU in user mode (or the debug shell).
    pub(super) fn user_phases(&mut self) -> Result<Pid> {
        // Nothing is taken over, so nothing follows the network: NICs connected later stay
        // with the container.
        self.monitor = None;
        let plan = self.wait_for_plan(None)?;
        self.check_slots(&plan)?;
        let console_tcp = console::tcp_address(self.config.display.as_ref(), &plan, &mut self.nl)?;
        let seed = self.write_seed(&plan)?;
        let probe = self.start_kvm_probe();
        let (accel, netdevs) = match self.checked.user_backend {
            UserBackend::Slirp => {
                let netdevs = self.slirp_netdevs(&plan);
                (self.choose_accelerator(probe.as_ref())?, netdevs)
            }
            UserBackend::Passt => {
                self.start_passts(&plan)?;
                let accel = self.choose_accelerator(probe.as_ref())?;
                self.wait_for_passts()?;
                let sockets = self.passts.iter().map(|p| p.socket.clone());
                (accel, sockets.map(qemu::Netdev::Stream).collect())
            }
        };
        self.grow_disk()?;
        self.launch(
            &plan,
            netdevs,
            Vec::new(),
            accel,
            seed.as_deref(),
            console_tcp,
        )
    }

    /// QEMU's own user networking for every guest NIC, where passt cannot sandbox itself:
    /// slirp reads the container's resolv.conf itself and relays the guest's DNS there.
    fn slirp_netdevs(&self, plan: &Plan) -> Vec<qemu::Netdev> {
        let resolv = self.resolv();
        self.warn_guest_dns();
        // QEMU binds the ports: with QEMU_CAPS=drop it has no CAP_NET_BIND_SERVICE.
        let keeps_caps = self.config.qemu_caps != QemuCaps::Drop;
        let (ports, warning) = self.bindable_ports(keeps_caps);
        let (ports, all) = slirp::ports(&ports);
        for warning in [warning, all].into_iter().flatten() {
            log::warn!("{warning}");
        }
        let hostname = discover::hostname();
        // UDP from the container's every address goes to one NIC: the default route's, else
        // the first with an address.
        let udp_nic = plan
            .nics
            .iter()
            .position(|n| n.gateway.is_some())
            .or_else(|| plan.nics.iter().position(|n| n.addr.is_some()));
        plan.nics
            .iter()
            .enumerate()
            .map(|(i, nic)| {
                let addr = nic.addr.map(|net| net.addr);
                let tcp = free_ports(&ports, addr, Protocol::Tcp, &nic.lower);
                let udp = match udp_nic == Some(i) {
                    true => free_ports(&ports, None, Protocol::Udp, &nic.lower),
                    false => Vec::new(),
                };
                if let Some(guest) = addr {
                    let n = slirp::network(guest, nic.gateway);
                    log::info!(
                        "slirp for {}: the guest is {guest} in {}, its router {}, its resolver {} (relayed to the container's); {} TCP port(s) forwarded from {guest}, {} UDP port(s) from every address of the container",
                        nic.lower,
                        n.net,
                        n.host,
                        n.dns,
                        tcp.len(),
                        udp.len(),
                    );
                }
                qemu::Netdev::Slirp(slirp::options(&slirp::SlirpNic {
                    addr,
                    gateway: nic.gateway,
                    tcp: &tcp,
                    udp: &udp,
                    hostname: &hostname,
                    search: &resolv.search,
                }))
            })
            .collect()
    }

    fn resolv(&self) -> resolv::Resolv {
        resolv::parse(&fs::read_to_string(&self.config.paths.resolv_conf).unwrap_or_default())
    }

    fn warn_guest_dns(&self) {
        if !self.config.guest_dns.is_empty() {
            log::warn!(
                "GUEST_DNS is not used in user mode: the guest gets the container's resolvers"
            );
        }
    }

    /// `USER_PORTS`, narrowed to what the relay may bind here (`keeps_caps`: it keeps vminit's
    /// capabilities), and the warning that says so.
    fn bindable_ports(&self, keeps_caps: bool) -> (UserPorts, Option<String>) {
        let unprivileged = fs::read_to_string("/proc/sys/net/ipv4/ip_unprivileged_port_start")
            .ok()
            .and_then(|s| s.trim().parse().ok())
            .unwrap_or(1024);
        passt::bindable(
            &self.config.user_ports,
            unprivileged,
            keeps_caps && self.checked.caps & (1 << devices::CAP_NET_BIND_SERVICE) != 0,
        )
    }

    /// Starts one passt per guest NIC, in the foreground as vminit's children.
    fn start_passts(&mut self, plan: &Plan) -> Result<()> {
        let resolv = self.resolv();
        // passt reads the container's resolv.conf itself; a loopback resolver (Docker's
        // 127.0.0.11) reaches the guest only as the gateway's address, which passt relays.
        // (The first IPv4 one decides: the guest gets its IPv4 DNS from passt's DHCP.)
        let loopback = resolv
            .nameservers
            .iter()
            .find(|ip| ip.is_ipv4())
            .filter(|ip| ip.is_loopback());
        let map_gateway = loopback.is_some();
        if let Some(ip) = loopback {
            log::info!(
                "DNS: the guest asks its gateway's address, which passt relays to {ip}; the guest's other connections to that address reach the container's loopback"
            );
        }
        self.warn_guest_dns();
        let (ports, warning) = self.bindable_ports(true);
        if let Some(warning) = warning {
            log::warn!("{warning}");
        }
        log::info!(
            "passt forwards {} of the container's addresses to the guest (USER_PORTS)",
            describe(&ports)
        );
        // passt keeps vminit's user: as `nobody` it could not bind its socket in the private
        // run directory, nor QEMU (without capabilities) connect to one it owned. Its sandbox
        // (its own user namespace, an empty filesystem, seccomp) is what confines it.
        let runas = (getuid().as_raw(), getgid().as_raw());
        for nic in &plan.nics {
            let socket = self.run_dir.passt_socket(nic.slot.0);
            let addr6 = plan
                .v6
                .iter()
                .find(|g| g.lower == nic.lower)
                .map(|g| g.addr.addr);
            let argv = passt::argv(&passt::PasstNic {
                passt: &self.config.paths.passt,
                socket: &socket,
                lower: &nic.lower,
                addr: nic.addr,
                gateway: nic.gateway,
                addr6,
                mtu: nic.mtu,
                mac: passt_mac(nic.mac),
                ports: &ports,
                dhcp: self.config.dhcp,
                map_gateway,
                runas,
            });
            log::info!("starting {}", qemu::shell_line(&argv));
            let mut passt = Passt {
                slot: nic.slot.0,
                lower: nic.lower.clone(),
                argv,
                socket,
                pid: None,
            };
            let pid = passt.spawn(self.signals.original)?;
            log::info!("passt for {} running, pid {pid}", nic.lower);
            passt.pid = Some(pid);
            self.passts.push(passt);
        }
        Ok(())
    }

    /// Waits until every passt has bound its socket (after its ports), or reports the one
    /// that exited.
    fn wait_for_passts(&self) -> Result<()> {
        let deadline = Instant::now() + PASST_START_TIMEOUT;
        for passt in &self.passts {
            let (Some(pid), lower) = (passt.pid, &passt.lower) else {
                continue;
            };
            while !passt.is_ready() {
                match waitpid(pid, Some(WaitPidFlag::WNOHANG)) {
                    Ok(WaitStatus::StillAlive) => {}
                    Ok(status) => {
                        return Err(Error::Unavailable {
                            what: format!(
                                "passt for {lower} could not start ({status:?}); its own message is above: \"Couldn't create user namespace\" means the container's seccomp profile forbids passt's sandbox (Docker's default does), \"Failed to bind any port\" that USER_PORTS names no port it may bind"
                            ),
                            hint: format!(
                                "hint: run the container with --security-opt seccomp=unconfined (or a seccomp profile that allows unshare), or give it the better datapath: {}",
                                crate::vm::accel::BETTER_FLAGS
                            ),
                        });
                    }
                    Err(e) => return Err(Error::os("wait for passt", e)),
                }
                if Instant::now() >= deadline {
                    return Err(Error::Unavailable {
                        what: format!(
                            "passt for {lower} did not open {} within {PASST_START_TIMEOUT:?}",
                            passt.socket.display()
                        ),
                        hint: "hint: see passt's message above".into(),
                    });
                }
                self.check_not_interrupted()?;
                sleep(Duration::from_millis(2));
            }
        }
        Ok(())
    }
}

/// Stops the passts vminit still owns (those the supervisor did not take over: a boot that
/// failed), all at once: SIGTERM, and SIGKILL for those still there after
/// `policy::STOP_GRACE`; removes every socket.
pub(super) fn stop_passts(passts: &mut [Passt]) {
    let owned: Vec<(Pid, &str)> = passts
        .iter_mut()
        .filter_map(|p| Some((p.pid.take()?, p.lower.as_str())))
        .collect();
    for (pid, _) in &owned {
        let _ = kill(*pid, Signal::SIGTERM);
    }
    let deadline = Instant::now() + policy::STOP_GRACE;
    for (pid, lower) in &owned {
        loop {
            match waitpid(*pid, Some(WaitPidFlag::WNOHANG)) {
                Ok(WaitStatus::StillAlive) if Instant::now() < deadline => {
                    sleep(Duration::from_millis(5))
                }
                Ok(WaitStatus::StillAlive) => {
                    let _ = kill(*pid, Signal::SIGKILL);
                    let _ = waitpid(*pid, None);
                    break;
                }
                _ => break,
            }
        }
        log::info!("passt for {lower} (pid {pid}) stopped");
    }
    for passt in passts.iter() {
        let _ = fs::remove_file(&passt.socket);
    }
}

#[derive(Clone, Copy, PartialEq)]
enum Protocol {
    Tcp,
    Udp,
}

/// The forwards whose port on `addr` (`None`: every address) can be bound now: QEMU refuses
/// to start when one cannot (a service of the container on that port, Docker's resolver's);
/// the others are left out with one warning.
fn free_ports(
    ports: &[(u16, u16)],
    addr: Option<Ipv4Addr>,
    protocol: Protocol,
    lower: &str,
) -> Vec<(u16, u16)> {
    let ip = addr.unwrap_or(Ipv4Addr::UNSPECIFIED);
    let (free, busy): (Vec<_>, Vec<_>) = ports.iter().partition(|(port, _)| match protocol {
        Protocol::Tcp => TcpListener::bind((ip, *port)).is_ok(),
        Protocol::Udp => UdpSocket::bind((ip, *port)).is_ok(),
    });
    if !busy.is_empty() {
        let list: Vec<String> = busy.iter().map(|(p, _)| p.to_string()).collect();
        log::warn!(
            "slirp for {lower}: {} port(s) {} of {ip} are not forwarded: the container already uses them",
            if protocol == Protocol::Tcp {
                "TCP"
            } else {
                "UDP"
            },
            list.join(",")
        );
    }
    free
}

/// What `USER_PORTS` forwards, for the log.
fn describe(ports: &UserPorts) -> String {
    match ports {
        UserPorts::None => "no port".into(),
        UserPorts::All => "every TCP and UDP port that is not ephemeral".into(),
        UserPorts::List(list) => format!("TCP and UDP ports {list}"),
    }
}

/// passt's own MAC towards the guest (the gateway's, as the guest sees it): the guest's,
/// made locally administered with its last bit flipped, so that the two never clash.
fn passt_mac(guest: Mac) -> Mac {
    let mut bytes = guest.0;
    bytes[0] = (bytes[0] | 0x02) & !0x01;
    bytes[5] ^= 0x01;
    Mac(bytes)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn passts_own_mac_is_unicast_local_and_never_the_guests() {
        for guest in [[0x02, 0x42, 10, 1, 0, 2], [0x52, 0x54, 0, 0x12, 0x34, 0x56]] {
            let own = passt_mac(Mac(guest));
            assert_ne!(own, Mac(guest));
            assert_eq!(own.0[0] & 0x03, 0x02, "{own}");
        }
    }
}
