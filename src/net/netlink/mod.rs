//! A blocking rtnetlink client: one request at a time, sequence-checked, errno kept; or
//! several queued and sent in one datagram, each acknowledged on its own (`defer`, `flush`).
//!
//! The requests themselves are built by the pure functions in `message`, each with the `ip`
//! command it equals. `Rtnetlink` is the seam the applier works through, so that its
//! decisions (rollback order, retries, the index cache) are unit-tested with a fake.

pub mod message;
pub mod message6;
pub mod tc;

use std::io;
use std::os::fd::OwnedFd;
use std::path::Path;

use netlink_packet_core::{
    NLM_F_ACK, NLM_F_CREATE, NLM_F_DUMP, NLM_F_ECHO, NLM_F_EXCL, NLM_F_REQUEST, NetlinkBuffer,
    NetlinkHeader, NetlinkMessage, NetlinkPayload,
};
use netlink_packet_route::address::AddressMessage;
use netlink_packet_route::link::{LinkAttribute, LinkMessage};
use netlink_packet_route::neighbour::NeighbourMessage;
use netlink_packet_route::route::RouteMessage;
use netlink_packet_route::{AddressFamily, RouteNetlinkMessage};
use netlink_sys::{Socket, SocketAddr, protocols::NETLINK_ROUTE};

use crate::net::netstate::{IpIfAddr, IpNeigh, IpRoute};
use crate::net::tc::Filter;
use crate::net::types::Mac;
use message::MacLink;

/// The kernel calls the applier makes: rtnetlink requests, and one ethtool ioctl.
/// `Netlink` is the real one; unit tests use a recording fake.
pub trait Rtnetlink {
    /// Every link's name and index: `ip -o link show`.
    fn link_indexes(&mut self) -> io::Result<Vec<(String, u32)>>;
    /// Creates a macvtap or macvlan; returns its index when the kernel echoes it.
    fn add_mac_link(&mut self, link: &MacLink) -> io::Result<Option<u32>>;
    fn del_link(&mut self, index: u32) -> io::Result<()>;
    fn set_mac(&mut self, index: u32, mac: Mac) -> io::Result<()>;
    fn set_alias(&mut self, index: u32, alias: &str) -> io::Result<()>;
    /// `ip [-6] addr add ADDR dev INDEX ...`
    fn add_addr(&mut self, index: u32, addr: &IpIfAddr) -> io::Result<()>;
    /// `ip [-6] addr del ADDR dev INDEX`
    fn del_addr(&mut self, index: u32, addr: &IpIfAddr) -> io::Result<()>;
    /// `ip [-6] route add ROUTE dev INDEX ...`
    fn add_route(&mut self, index: u32, route: &IpRoute) -> io::Result<()>;
    /// `ip [-6] route del ROUTE dev INDEX`
    fn del_route(&mut self, index: u32, route: &IpRoute) -> io::Result<()>;
    /// `ip [-6] neigh add ADDR lladdr MAC nud permanent dev INDEX`
    fn add_neigh(&mut self, index: u32, neigh: &IpNeigh) -> io::Result<()>;
    /// `ip [-6] neigh del ADDR dev INDEX`
    fn del_neigh(&mut self, index: u32, neigh: &IpNeigh) -> io::Result<()>;
    /// `ethtool -K DEV tx off`
    fn tx_checksum_off(&mut self, dev: &str) -> io::Result<()>;
    /// `ip link set DEV addrgenmode none`
    fn no_addr_gen(&mut self, index: u32) -> io::Result<()>;
    /// `ip link set DEV allmulticast on up`
    fn set_up_allmulticast(&mut self, index: u32) -> io::Result<()>;
    /// `ip link set DEV down`
    fn set_down(&mut self, index: u32) -> io::Result<()>;
    /// `sysctl -w net.ipv4.conf.DEV.arp_ignore=VALUE`, over netlink (`/proc/sys` is
    /// read-only in a container)
    fn set_arp_ignore(&mut self, index: u32, value: u32) -> io::Result<()>;
    /// `ip tuntap add dev NAME mode tap vnet_hdr [multi_queue]` on the tun device `tun`: the
    /// tap lives as long as the returned descriptor (or a copy of it) is open.
    fn add_tap(&mut self, tun: &Path, name: &str, multi_queue: bool) -> io::Result<OwnedFd>;
    /// `ip link set DEV mtu MTU up`
    fn set_mtu_up(&mut self, index: u32, mtu: u32) -> io::Result<()>;
    /// `tc qdisc add dev DEV ingress`
    fn add_ingress(&mut self, index: u32) -> io::Result<()>;
    /// `tc qdisc del dev DEV ingress`
    fn del_ingress(&mut self, index: u32) -> io::Result<()>;
    /// `tc filter add dev DEV ...`, its action sending to the link `target`.
    fn add_filter(&mut self, index: u32, filter: &Filter, target: Option<u32>) -> io::Result<()>;
    /// Queues the requests made from here on instead of sending each: they return `Ok` at
    /// once, and the next `flush` sends them. Only plain requests may be made meanwhile
    /// (no link creation, tap, ethtool call), and dumps (which are sent at once).
    fn defer(&mut self);
    /// Sends what `defer` queued, in one datagram (the kernel carries the requests out in
    /// order, each whether the one before it failed or not), and reads every
    /// acknowledgement: one result per request, in order.
    fn flush(&mut self) -> Vec<io::Result<()>>;
}

fn invalid(e: impl std::fmt::Display) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, e.to_string())
}

/// Large enough for any single dump datagram the kernel sends (it caps them near 32 KiB).
const RECV_BUF: usize = 64 * 1024;

pub struct Netlink {
    socket: Socket,
    seq: u32,
    /// Requests `defer` queued: their bytes, one after the other, and their sequence
    /// numbers (consecutive).
    queued: Option<(Vec<u8>, Vec<u32>)>,
}

impl Netlink {
    pub fn open() -> io::Result<Netlink> {
        let mut socket = Socket::new(NETLINK_ROUTE)?;
        socket.bind_auto()?;
        socket.connect(&SocketAddr::new(0, 0))?;
        Ok(Netlink {
            socket,
            seq: 0,
            queued: None,
        })
    }

    /// Sends one request and waits for the kernel's acknowledgement; queues it instead
    /// after `defer`.
    pub fn request(&mut self, msg: RouteNetlinkMessage, flags: u16) -> io::Result<()> {
        if self.queued.is_some() {
            let (seq, bytes) = self.serialize(msg, NLM_F_REQUEST | NLM_F_ACK | flags);
            let (queue, seqs) = self.queued.as_mut().expect("checked above");
            queue.extend(bytes);
            seqs.push(seq);
            return Ok(());
        }
        self.request_echo(msg, flags).map(drop)
    }

    /// Sends one request and waits for the kernel's acknowledgement; returns what the
    /// kernel echoed before it (with `NLM_F_ECHO`: the object as created).
    fn request_echo(
        &mut self,
        msg: RouteNetlinkMessage,
        flags: u16,
    ) -> io::Result<Vec<RouteNetlinkMessage>> {
        let seq = self.send(msg, NLM_F_REQUEST | NLM_F_ACK | flags)?;
        let mut acked = false;
        let mut echoed = Vec::new();
        self.receive(seq, &mut |payload| match payload {
            NetlinkPayload::Error(e) => {
                acked = true;
                match e.code {
                    None => Ok(true),
                    Some(_) => Err(e.to_io()),
                }
            }
            NetlinkPayload::InnerMessage(m) => {
                echoed.push(m);
                Ok(false)
            }
            _ => Ok(false),
        })?;
        if acked {
            Ok(echoed)
        } else {
            Err(io::Error::other("netlink: no acknowledgement"))
        }
    }

    /// Sends a dump request and collects every answer until NLMSG_DONE.
    pub fn dump(&mut self, msg: RouteNetlinkMessage) -> io::Result<Vec<RouteNetlinkMessage>> {
        let seq = self.send(msg, NLM_F_REQUEST | NLM_F_DUMP)?;
        let mut out = Vec::new();
        self.receive(seq, &mut |payload| match payload {
            NetlinkPayload::InnerMessage(m) => {
                out.push(m);
                Ok(false)
            }
            NetlinkPayload::Done(_) => Ok(true),
            NetlinkPayload::Error(e) => Err(e.to_io()),
            _ => Ok(false),
        })?;
        Ok(out)
    }

    fn send(&mut self, msg: RouteNetlinkMessage, flags: u16) -> io::Result<u32> {
        let (seq, buf) = self.serialize(msg, flags);
        self.socket.send(&buf, 0)?;
        Ok(seq)
    }

    /// The request as bytes, under the next sequence number.
    fn serialize(&mut self, msg: RouteNetlinkMessage, flags: u16) -> (u32, Vec<u8>) {
        self.seq = self.seq.wrapping_add(1);
        let mut header = NetlinkHeader::default();
        header.flags = flags;
        header.sequence_number = self.seq;
        let mut packet = NetlinkMessage::new(header, NetlinkPayload::from(msg));
        packet.finalize();
        let mut buf = vec![0u8; packet.buffer_len()];
        packet.serialize(&mut buf);
        log::debug!("netlink send seq={} {:?}", self.seq, packet.payload);
        (self.seq, buf)
    }

    /// Reads datagrams until `handle` says the exchange `seq` is complete.
    /// Messages from other (stale) sequence numbers are skipped.
    fn receive(
        &mut self,
        seq: u32,
        handle: &mut dyn FnMut(NetlinkPayload<RouteNetlinkMessage>) -> io::Result<bool>,
    ) -> io::Result<()> {
        self.receive_from(seq, 1, &mut |_, payload| handle(payload))
    }

    /// Reads datagrams until `handle` says the exchanges `first` and the `count - 1` after
    /// it are complete; it is told which one each message belongs to. Messages from other
    /// (stale) sequence numbers are skipped.
    fn receive_from(
        &mut self,
        first: u32,
        count: u32,
        handle: &mut dyn FnMut(u32, NetlinkPayload<RouteNetlinkMessage>) -> io::Result<bool>,
    ) -> io::Result<()> {
        loop {
            let mut buf: Vec<u8> = Vec::with_capacity(RECV_BUF);
            let n = self.socket.recv(&mut buf, 0)?;
            if n > buf.len() {
                return Err(io::Error::other("netlink: datagram truncated"));
            }
            let mut offset = 0;
            while offset < n {
                let bytes = &buf[offset..n];
                let raw = NetlinkBuffer::new_checked(bytes).map_err(invalid)?;
                let len = raw.length() as usize;
                if len == 0 {
                    return Err(io::Error::other("netlink: zero-length message"));
                }
                offset += (len + 3) & !3;
                let seq = raw.sequence_number();
                if seq.wrapping_sub(first) >= count {
                    log::debug!("netlink: skipping message of seq {seq}");
                    continue;
                }
                let payload = match NetlinkMessage::<RouteNetlinkMessage>::deserialize(bytes) {
                    Ok(msg) => msg.payload,
                    Err(e) => {
                        // One attribute the library cannot read must not hide the
                        // object: read it again, attribute by attribute.
                        let mut skipped = Vec::new();
                        let lenient =
                            message::parse_lenient(raw.message_type(), raw.payload(), &mut skipped)
                                .ok_or_else(|| invalid(e))?;
                        log::debug!("netlink: skipped what could not be read: {skipped:?}");
                        NetlinkPayload::InnerMessage(lenient)
                    }
                };
                log::debug!("netlink recv seq={seq} {payload:?}");
                if handle(seq.wrapping_sub(first), payload)? {
                    return Ok(());
                }
            }
        }
    }

    // ---- dumps ----

    /// `ip -d link show`
    pub fn links(&mut self) -> io::Result<Vec<LinkMessage>> {
        let msg = RouteNetlinkMessage::GetLink(LinkMessage::default());
        Ok(self
            .dump(msg)?
            .into_iter()
            .filter_map(|m| match m {
                RouteNetlinkMessage::NewLink(l) => Some(l),
                _ => None,
            })
            .collect())
    }

    /// `ip -4 addr show`
    pub fn addresses(&mut self) -> io::Result<Vec<AddressMessage>> {
        self.addresses_of(AddressFamily::Inet)
    }

    /// `ip -4 neigh show`
    pub fn neighbours(&mut self) -> io::Result<Vec<NeighbourMessage>> {
        self.neighbours_of(AddressFamily::Inet)
    }

    /// `ip -4 route show table all`
    pub fn routes(&mut self) -> io::Result<Vec<RouteMessage>> {
        self.routes_of(AddressFamily::Inet)
    }

    /// `ip -6 addr show`
    pub fn addresses6(&mut self) -> io::Result<Vec<AddressMessage>> {
        self.addresses_of(AddressFamily::Inet6)
    }

    /// `ip -6 route show table all`
    pub fn routes6(&mut self) -> io::Result<Vec<RouteMessage>> {
        self.routes_of(AddressFamily::Inet6)
    }

    /// `ip -6 neigh show`
    pub fn neighbours6(&mut self) -> io::Result<Vec<NeighbourMessage>> {
        self.neighbours_of(AddressFamily::Inet6)
    }

    /// `ip -4|-6 addr show`
    fn addresses_of(&mut self, family: AddressFamily) -> io::Result<Vec<AddressMessage>> {
        let mut req = AddressMessage::default();
        req.header.family = family;
        let msg = RouteNetlinkMessage::GetAddress(req);
        Ok(self
            .dump(msg)?
            .into_iter()
            .filter_map(|m| match m {
                RouteNetlinkMessage::NewAddress(a) => Some(a),
                _ => None,
            })
            .collect())
    }

    /// `ip -4|-6 neigh show`
    fn neighbours_of(&mut self, family: AddressFamily) -> io::Result<Vec<NeighbourMessage>> {
        let mut req = NeighbourMessage::default();
        req.header.family = family;
        let msg = RouteNetlinkMessage::GetNeighbour(req);
        Ok(self
            .dump(msg)?
            .into_iter()
            .filter_map(|m| match m {
                RouteNetlinkMessage::NewNeighbour(n) => Some(n),
                _ => None,
            })
            .collect())
    }

    /// `ip -4|-6 route show table all`
    fn routes_of(&mut self, family: AddressFamily) -> io::Result<Vec<RouteMessage>> {
        let mut req = RouteMessage::default();
        req.header.address_family = family;
        let msg = RouteNetlinkMessage::GetRoute(req);
        Ok(self
            .dump(msg)?
            .into_iter()
            .filter_map(|m| match m {
                RouteNetlinkMessage::NewRoute(r) => Some(r),
                _ => None,
            })
            .collect())
    }
}

/// The flags of a request that creates an object, and fails if it exists already.
const CREATE: u16 = NLM_F_CREATE | NLM_F_EXCL;

impl Rtnetlink for Netlink {
    fn link_indexes(&mut self) -> io::Result<Vec<(String, u32)>> {
        Ok(self
            .links()?
            .into_iter()
            .filter_map(|l| {
                let name = l.attributes.iter().find_map(|a| match a {
                    LinkAttribute::IfName(n) => Some(n.clone()),
                    _ => None,
                })?;
                Some((name, l.header.index))
            })
            .collect())
    }

    fn add_mac_link(&mut self, link: &MacLink) -> io::Result<Option<u32>> {
        let msg = RouteNetlinkMessage::NewLink(message::add_mac_link(link));
        // NLM_F_ECHO: Linux 6.3 and later echo the new link, index included.
        let echoed = self.request_echo(msg, CREATE | NLM_F_ECHO)?;
        Ok(echoed.into_iter().find_map(|m| match m {
            RouteNetlinkMessage::NewLink(l) if l.header.index != 0 => Some(l.header.index),
            _ => None,
        }))
    }

    fn del_link(&mut self, index: u32) -> io::Result<()> {
        self.request(RouteNetlinkMessage::DelLink(message::del_link(index)), 0)
    }

    fn set_mac(&mut self, index: u32, mac: Mac) -> io::Result<()> {
        self.request(
            RouteNetlinkMessage::SetLink(message::set_mac(index, mac)),
            0,
        )
    }

    fn set_alias(&mut self, index: u32, alias: &str) -> io::Result<()> {
        let msg = message::set_alias(index, alias);
        self.request(RouteNetlinkMessage::SetLink(msg), 0)
    }

    fn add_addr(&mut self, index: u32, addr: &IpIfAddr) -> io::Result<()> {
        let msg = match addr {
            IpIfAddr::V4(a) => message::add_addr(index, a),
            IpIfAddr::V6(a) => message6::add_addr6(index, a),
        };
        self.request(RouteNetlinkMessage::NewAddress(msg), CREATE)
    }

    fn del_addr(&mut self, index: u32, addr: &IpIfAddr) -> io::Result<()> {
        let msg = match addr {
            IpIfAddr::V4(a) => message::del_addr(index, a.net),
            IpIfAddr::V6(a) => message6::del_addr6(index, a.net),
        };
        self.request(RouteNetlinkMessage::DelAddress(msg), 0)
    }

    fn add_route(&mut self, index: u32, route: &IpRoute) -> io::Result<()> {
        let msg = match route {
            IpRoute::V4(r) => message::add_route(index, r),
            IpRoute::V6(r) => message6::add_route6(index, r),
        };
        self.request(RouteNetlinkMessage::NewRoute(msg), CREATE)
    }

    fn del_route(&mut self, index: u32, route: &IpRoute) -> io::Result<()> {
        let msg = match route {
            IpRoute::V4(r) => message::del_route(index, r),
            IpRoute::V6(r) => message6::del_route6(index, r),
        };
        self.request(RouteNetlinkMessage::DelRoute(msg), 0)
    }

    fn add_neigh(&mut self, index: u32, neigh: &IpNeigh) -> io::Result<()> {
        let msg = match neigh {
            IpNeigh::V4(n) => message::add_neigh(index, n),
            IpNeigh::V6(n) => message6::add_neigh6(index, n),
        };
        self.request(RouteNetlinkMessage::NewNeighbour(msg), CREATE)
    }

    fn del_neigh(&mut self, index: u32, neigh: &IpNeigh) -> io::Result<()> {
        let msg = match neigh {
            IpNeigh::V4(n) => message::del_neigh(index, n),
            IpNeigh::V6(n) => message6::del_neigh6(index, n),
        };
        self.request(RouteNetlinkMessage::DelNeighbour(msg), 0)
    }

    fn tx_checksum_off(&mut self, dev: &str) -> io::Result<()> {
        crate::net::ethtool::disable_tx_checksum(dev)
    }

    fn no_addr_gen(&mut self, index: u32) -> io::Result<()> {
        let msg = message6::no_addr_gen(index);
        self.request(RouteNetlinkMessage::SetLink(msg), 0)
    }

    fn set_up_allmulticast(&mut self, index: u32) -> io::Result<()> {
        let msg = message6::set_up_allmulticast(index);
        self.request(RouteNetlinkMessage::SetLink(msg), 0)
    }

    fn set_down(&mut self, index: u32) -> io::Result<()> {
        let msg = message::set_down(index);
        self.request(RouteNetlinkMessage::SetLink(msg), 0)
    }

    fn set_arp_ignore(&mut self, index: u32, value: u32) -> io::Result<()> {
        let msg = message::set_arp_ignore(index, value);
        self.request(RouteNetlinkMessage::SetLink(msg), 0)
    }

    fn add_tap(&mut self, tun: &Path, name: &str, multi_queue: bool) -> io::Result<OwnedFd> {
        crate::net::tun::open_tap(tun, name, multi_queue)
    }

    fn set_mtu_up(&mut self, index: u32, mtu: u32) -> io::Result<()> {
        let msg = message::set_mtu_up(index, mtu);
        self.request(RouteNetlinkMessage::SetLink(msg), 0)
    }

    fn add_ingress(&mut self, index: u32) -> io::Result<()> {
        let msg = tc::ingress(index);
        self.request(RouteNetlinkMessage::NewQueueDiscipline(msg), CREATE)
    }

    fn del_ingress(&mut self, index: u32) -> io::Result<()> {
        let msg = tc::ingress(index);
        self.request(RouteNetlinkMessage::DelQueueDiscipline(msg), 0)
    }

    fn add_filter(&mut self, index: u32, filter: &Filter, target: Option<u32>) -> io::Result<()> {
        let msg = tc::filter(index, filter, target);
        self.request(RouteNetlinkMessage::NewTrafficFilter(msg), CREATE)
    }

    fn defer(&mut self) {
        self.queued = Some((Vec::new(), Vec::new()));
    }

    fn flush(&mut self) -> Vec<io::Result<()>> {
        let Some((bytes, seqs)) = self.queued.take() else {
            return Vec::new();
        };
        let Some(&first) = seqs.first() else {
            return Vec::new();
        };
        // A dump made meanwhile (an index looked up) took a number in between.
        let span = seqs[seqs.len() - 1].wrapping_sub(first) + 1;
        let mut results: Vec<Option<io::Result<()>>> = seqs.iter().map(|_| None).collect();
        let mut left = seqs.len();
        let exchange = self.socket.send(&bytes, 0).and_then(|_| {
            self.receive_from(first, span, &mut |i, payload| {
                let at = seqs.iter().position(|&s| s == first.wrapping_add(i));
                if let NetlinkPayload::Error(e) = payload
                    && let Some(slot) = at.and_then(|at| results.get_mut(at))
                    && slot.is_none()
                {
                    *slot = Some(match e.code {
                        None => Ok(()),
                        Some(_) => Err(e.to_io()),
                    });
                    left -= 1;
                }
                Ok(left == 0)
            })
        });
        // A request whose acknowledgement could not be read counts as failed.
        let failed = |e: &io::Error| io::Error::new(e.kind(), format!("netlink: {e}"));
        results
            .into_iter()
            .map(|r| match (r, &exchange) {
                (Some(r), _) => r,
                (None, Err(e)) => Err(failed(e)),
                (None, Ok(())) => Err(io::Error::other("netlink: no acknowledgement")),
            })
            .collect()
    }
}
