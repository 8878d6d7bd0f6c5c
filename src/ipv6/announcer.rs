//! The guest's IPv6 announcements on the wire: one packet socket per door, read when the
//! supervisor's loop says it is readable, written when `announce` says something is due.
//! Decides nothing: what to send, to whom and when is `announce`'s.

use std::os::fd::{AsFd, BorrowedFd};
use std::time::Instant;

use crate::error::Result;
use crate::ipv6::announce::{Announcer, Dns4, Dns6, Door, Learned, door_nic, router_nic};
use crate::ipv6::gateway6::raw_socket_error;
use crate::ipv6::ndp::{ALL_ROUTERS_MAC, DHCP6_SERVERS_MAC};
use crate::ipv6::packet::PacketSocket;
use crate::net::netstate::NetState;
use crate::takeover::plan6::Guest6;

/// Every door's socket and announcer.
#[derive(Debug)]
pub struct Announcers {
    doors: Vec<(PacketSocket, Announcer)>,
    /// State of a small generator that spreads the unsolicited advertisements.
    random: u32,
}

/// The doors' sockets, open and hearing the guest, before their announcers are made: what
/// the guest sends meanwhile waits in them.
#[derive(Debug)]
pub struct Listening {
    /// Each guest, its door's socket and addresses, and whether the door's link-local address
    /// is the kernel's (the door has IPv6, and dnsmasq answers DNS there).
    doors: Vec<(Guest6, PacketSocket, Door, bool)>,
}

impl Listening {
    /// Opens a socket on each guest's door (the takeover made them; `state` is read after
    /// it) that hears the guest's router solicitations and DHCPv6 messages, and nothing else.
    pub fn open(guests: &[Guest6], state: &NetState) -> Result<Listening> {
        let mut doors = Vec::new();
        for guest in guests {
            let Some(link) = state.link(&guest.door) else {
                continue;
            };
            let Some(mac) = link.mac else {
                continue;
            };
            // The kernel's link-local address of the door, where it has IPv6; without, vminit
            // answers for the one its MAC gives.
            let kernel_ll = state
                .addrs6
                .iter()
                .find(|a| a.index == link.index && a.addr.net.is_link_local())
                .map(|a| a.addr.net.addr);
            let link_local = kernel_ll.unwrap_or_else(|| mac.link_local());
            let socket = PacketSocket::open(link.index).map_err(raw_socket_error)?;
            for group in [ALL_ROUTERS_MAC, DHCP6_SERVERS_MAC] {
                socket.join(group).map_err(raw_socket_error)?;
            }
            socket.only_from(guest.mac).map_err(raw_socket_error)?;
            let door = Door { mac, link_local };
            doors.push((guest.clone(), socket, door, kernel_ll.is_some()));
        }
        Ok(Listening { doors })
    }
}

impl Announcers {
    /// Announces on each guest's door (see `Listening::open`). `dns4`: what DNS over IPv4
    /// leaves to IPv6 (see `Dns6::announced`).
    pub fn open(
        guests: &[Guest6],
        learned: &[Learned],
        state: &NetState,
        dns: (&Dns6, Dns4),
    ) -> Result<Announcers> {
        let mut announcers = Announcers::none();
        announcers.add(guests, learned, state, dns)?;
        Ok(announcers)
    }

    /// No door yet.
    pub fn none() -> Announcers {
        Announcers {
            doors: Vec::new(),
            random: std::process::id() | 1,
        }
    }

    /// Adds the doors of `guests` (NICs plugged in while the guest runs).
    pub fn add(
        &mut self,
        guests: &[Guest6],
        learned: &[Learned],
        state: &NetState,
        dns: (&Dns6, Dns4),
    ) -> Result<()> {
        self.start(Listening::open(guests, state)?, learned, dns);
        Ok(())
    }

    /// Starts announcing on doors already listening, with the gateways `learned` meanwhile.
    pub fn start(&mut self, listening: Listening, learned: &[Learned], (dns, dns4): (&Dns6, Dns4)) {
        let now = Instant::now();
        let guests: Vec<Guest6> = listening.doors.iter().map(|(g, ..)| g.clone()).collect();
        // The NIC of the guest's IPv6 default route also announces resolvers no prefix holds.
        let router = router_nic(&guests);
        let door_dns = door_nic(&guests);
        for (guest, socket, door, door_ipv6) in listening.doors {
            let lower = Some(guest.lower.as_str());
            // The door resolver's IPv6 address, where the door has one and this NIC says it.
            let door_ll = (door_ipv6 && door_dns == lower).then_some(door.link_local);
            let nic_dns = dns.announced(&guest, router == lower, dns4, door_ll);
            let announcer = Announcer::new(&guest, learned, door, &nic_dns, now);
            log::info!("{}", announcer.describe());
            self.doors.push((socket, announcer));
        }
    }

    /// Stops announcing on the door of the container NIC `lower` (it left).
    pub fn remove(&mut self, lower: &str) {
        self.doors.retain(|(_, a)| a.lower != lower);
    }

    /// The sockets to wait on.
    pub fn fds(&self) -> Vec<BorrowedFd<'_>> {
        self.doors.iter().map(|(s, _)| s.as_fd()).collect()
    }

    /// When something is due at the latest.
    pub fn next_wakeup(&self) -> Option<Instant> {
        self.doors.iter().map(|(_, a)| a.next_wakeup()).min()
    }

    /// Answers what arrived and sends what is due.
    pub fn work(&mut self, now: Instant) {
        let mut buf = vec![0u8; 2048];
        for (socket, announcer) in &mut self.doors {
            let mut out = Vec::new();
            loop {
                match socket.recv(&mut buf) {
                    Ok(Some(n)) => out.extend(announcer.on_frame(&buf[..n], now)),
                    Ok(None) => break,
                    Err(e) => {
                        log::warn!("{}: reading the guest's frames: {e}", announcer.door_name);
                        break;
                    }
                }
            }
            // xorshift32: enough to spread unsolicited advertisements.
            self.random ^= self.random << 13;
            self.random ^= self.random >> 17;
            self.random ^= self.random << 5;
            out.extend(announcer.due(now, self.random));
            for o in out {
                if let Some(note) = &o.note {
                    log::info!("{note}");
                }
                if let Err(e) = socket.send(&o.frame) {
                    log::warn!("{}: sending to the guest: {e}", announcer.door_name);
                }
            }
        }
    }
}
