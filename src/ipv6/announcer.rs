//! The guest's IPv6 announcements on the wire: one packet socket per door, read when the
//! supervisor's loop says it is readable, written when `announce` says something is due.
//! Decides nothing: what to send, to whom and when is `announce`'s. Where the door has no
//! IPv6 of its own and is the guest's resolver over IPv6, the guest's DNS queries to it are
//! relayed here (`Relay`).

use std::io;
use std::net::{Ipv4Addr, Ipv6Addr, SocketAddr, SocketAddrV4, UdpSocket};
use std::os::fd::{AsFd, BorrowedFd};
use std::time::Instant;

use crate::error::Result;
use crate::ipv6::announce::{
    Announcer, Dns4, Dns6, DnsQuery, Learned, Outgoing, door_nic, router_nic,
};
use crate::ipv6::gateway6::raw_socket_error;
use crate::ipv6::ndp::{self, ALL_ROUTERS_MAC, DHCP6_SERVERS_MAC};
use crate::ipv6::packet::PacketSocket;
use crate::ipv6::relay::{DoorAddrs, DoorDns6, Queries};
use crate::net::netstate::NetState;
use crate::takeover::plan6::Guest6;

/// Every door's socket and announcer, and its DNS relay where it has one.
#[derive(Debug)]
pub struct Announcers {
    doors: Vec<(PacketSocket, Announcer, Option<Relay>)>,
    /// State of a small generator that spreads the unsolicited advertisements.
    random: u32,
}

/// The doors' sockets, open and hearing the guest, before their announcers are made: what
/// the guest sends meanwhile waits in them.
#[derive(Debug)]
pub struct Listening {
    doors: Vec<ListeningDoor>,
}

/// One guest's door, listening.
#[derive(Debug)]
struct ListeningDoor {
    guest: Guest6,
    socket: PacketSocket,
    addrs: DoorAddrs,
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
            let Some(addrs) = DoorAddrs::of(link, state) else {
                continue;
            };
            let socket = PacketSocket::open(link.index).map_err(raw_socket_error)?;
            // Solicitations for the door's address go to its group: heard for when vminit
            // answers for it.
            let own_group = ndp::multicast_mac(ndp::solicited_node(addrs.door.link_local));
            for group in [ALL_ROUTERS_MAC, DHCP6_SERVERS_MAC, own_group] {
                socket.join(group).map_err(raw_socket_error)?;
            }
            socket.only_from(guest.mac).map_err(raw_socket_error)?;
            doors.push(ListeningDoor {
                guest: guest.clone(),
                socket,
                addrs,
            });
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
        let guests: Vec<Guest6> = listening.doors.iter().map(|d| d.guest.clone()).collect();
        // The NIC of the guest's IPv6 default route also announces resolvers no prefix holds.
        let router = router_nic(&guests);
        let door_dns = door_nic(&guests);
        for d in listening.doors {
            let lower = Some(d.guest.lower.as_str());
            // The door resolver's IPv6 address, where this NIC says it: the kernel's, or, on
            // a door without IPv6, the one vminit answers for and relays DNS from.
            let door = d.addrs.door;
            let relay = match DoorDns6::decide(&d.addrs, door_dns == lower, dns4) {
                DoorDns6::Relayed(server) => Relay::open(server)
                    .inspect_err(|e| {
                        log::warn!(
                            "{}: cannot relay the guest's DNS to the door ({e}): the guest cannot ask it over IPv6",
                            d.guest.lower
                        );
                    })
                    .ok(),
                DoorDns6::Kernel | DoorDns6::Unannounced => None,
            };
            let door_ll = ((d.addrs.kernel_ll || relay.is_some()) && door_dns == lower)
                .then_some(door.link_local);
            let nic_dns = dns.announced(&d.guest, router == lower, dns4, door_ll);
            let mut announcer = Announcer::new(&d.guest, learned, door, &nic_dns, now);
            log::info!("{}", announcer.describe());
            if let Some(relay) = &relay {
                announcer.relay_dns();
                log::info!(
                    "{}: the door has no IPv6 here: vminit answers for {} and relays the guest's DNS queries to {} (UDP)",
                    d.guest.lower,
                    door.link_local,
                    relay.server
                );
            }
            self.doors.push((d.socket, announcer, relay));
        }
    }

    /// Stops announcing on the door of the container NIC `lower` (it left).
    pub fn remove(&mut self, lower: &str) {
        self.doors.retain(|(_, a, _)| a.lower != lower);
    }

    /// The sockets to wait on.
    pub fn fds(&self) -> Vec<BorrowedFd<'_>> {
        self.doors
            .iter()
            .flat_map(|(s, _, r)| [Some(s.as_fd()), r.as_ref().map(|r| r.socket.as_fd())])
            .flatten()
            .collect()
    }

    /// When something is due at the latest.
    pub fn next_wakeup(&self) -> Option<Instant> {
        self.doors.iter().map(|(_, a, _)| a.next_wakeup()).min()
    }

    /// Answers what arrived and sends what is due.
    pub fn work(&mut self, now: Instant) {
        let mut buf = vec![0u8; 2048];
        for (socket, announcer, relay) in &mut self.doors {
            let mut out = Vec::new();
            loop {
                match socket.recv(&mut buf) {
                    Ok(Some(n)) => match (announcer.dns_query(&buf[..n]), relay.as_mut()) {
                        (Some(query), Some(relay)) => relay.ask(query, now),
                        _ => out.extend(announcer.on_frame(&buf[..n], now)),
                    },
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
            if let Some(relay) = relay {
                for (src, port, message) in relay.answers(&mut buf) {
                    if let Some(frame) = announcer.dns_answer(src, port, &message) {
                        out.push(Outgoing { frame, note: None });
                    }
                }
            }
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

/// The guest's DNS queries to a door without IPv6, relayed over the container's own stack
/// to dnsmasq at the door's IPv4 address (the resolver the door is over IPv4, with its
/// forwarding rules), and their answers; `relay::Queries` says under which ID and to whom.
#[derive(Debug)]
struct Relay {
    socket: UdpSocket,
    server: SocketAddrV4,
    queries: Queries,
}

impl Relay {
    fn open(server: Ipv4Addr) -> io::Result<Relay> {
        let socket = UdpSocket::bind((Ipv4Addr::UNSPECIFIED, 0))?;
        socket.set_nonblocking(true)?;
        Ok(Relay {
            socket,
            server: SocketAddrV4::new(server, 53),
            queries: Queries::new(std::process::id() as u16),
        })
    }

    /// Sends `query` on, unless `Queries` refuses it.
    fn ask(&mut self, query: DnsQuery, now: Instant) {
        let Some(message) = self.queries.ask(&query, now) else {
            return;
        };
        if let Err(e) = self.socket.send_to(&message, self.server) {
            log::debug!("relaying a DNS query to {}: {e}", self.server);
            self.queries.forget_last();
        }
    }

    /// The answers that arrived from the server: where each goes, and the message with the
    /// guest's ID.
    fn answers(&mut self, buf: &mut [u8]) -> Vec<(Ipv6Addr, u16, Vec<u8>)> {
        let mut out = Vec::new();
        loop {
            match self.socket.recv_from(buf) {
                Ok((n, from)) if from == SocketAddr::V4(self.server) => {
                    out.extend(self.queries.answer(&buf[..n]));
                }
                Ok(_) => {}
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                Err(e) => {
                    log::debug!("reading a relayed DNS answer: {e}");
                    break;
                }
            }
        }
        out
    }
}
