//! A blocking rtnetlink client: one request at a time, sequence-checked, errno kept.
//!
//! Each request builder below carries the `ip` command it is equivalent to.

use std::io;
use std::net::{IpAddr, Ipv4Addr};

use netlink_packet_core::{
    NLM_F_ACK, NLM_F_CREATE, NLM_F_DUMP, NLM_F_ECHO, NLM_F_EXCL, NLM_F_REQUEST, NetlinkHeader,
    NetlinkMessage, NetlinkPayload,
};
use netlink_packet_route::address::{AddressAttribute, AddressMessage, AddressScope};
use netlink_packet_route::link::{
    InfoData, InfoKind, InfoMacVlan, InfoMacVtap, LinkAttribute, LinkFlags, LinkInfo, LinkMessage,
    MacVlanMode,
};
use netlink_packet_route::route::{
    RouteAddress, RouteAttribute, RouteFlags, RouteHeader, RouteMessage, RouteProtocol, RouteScope,
    RouteType,
};
use netlink_packet_route::{AddressFamily, RouteNetlinkMessage};
use netlink_sys::{Socket, SocketAddr, protocols::NETLINK_ROUTE};

use crate::types::{Ipv4Net, Mac, Route};

/// Large enough for any single dump datagram the kernel sends (it caps them near 32 KiB).
const RECV_BUF: usize = 64 * 1024;

pub struct Netlink {
    socket: Socket,
    seq: u32,
}

/// The two kinds of MAC-based virtual links vminit creates.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum MacLinkKind {
    /// A macvtap: the guest's NIC, read and written through /dev/tapN.
    Macvtap,
    /// A macvlan: the container's own door to the guest on the same lower device.
    Macvlan,
}

impl Netlink {
    pub fn open() -> io::Result<Netlink> {
        let mut socket = Socket::new(NETLINK_ROUTE)?;
        socket.bind_auto()?;
        socket.connect(&SocketAddr::new(0, 0))?;
        Ok(Netlink { socket, seq: 0 })
    }

    /// Sends one request and waits for the kernel's acknowledgement.
    pub fn request(&mut self, msg: RouteNetlinkMessage, flags: u16) -> io::Result<()> {
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
        self.seq = self.seq.wrapping_add(1);
        let mut header = NetlinkHeader::default();
        header.flags = flags;
        header.sequence_number = self.seq;
        let mut packet = NetlinkMessage::new(header, NetlinkPayload::from(msg));
        packet.finalize();
        let mut buf = vec![0u8; packet.buffer_len()];
        packet.serialize(&mut buf);
        log::debug!("netlink send seq={} {:?}", self.seq, packet.payload);
        self.socket.send(&buf, 0)?;
        Ok(self.seq)
    }

    /// Reads datagrams until `handle` says the exchange `seq` is complete.
    /// Messages from other (stale) sequence numbers are skipped.
    fn receive(
        &mut self,
        seq: u32,
        handle: &mut dyn FnMut(NetlinkPayload<RouteNetlinkMessage>) -> io::Result<bool>,
    ) -> io::Result<()> {
        loop {
            let mut buf: Vec<u8> = Vec::with_capacity(RECV_BUF);
            let n = self.socket.recv(&mut buf, 0)?;
            if n > buf.len() {
                return Err(io::Error::other("netlink: datagram truncated"));
            }
            let mut offset = 0;
            while offset < n {
                let msg = NetlinkMessage::<RouteNetlinkMessage>::deserialize(&buf[offset..n])
                    .map_err(|e| io::Error::new(io::ErrorKind::InvalidData, e.to_string()))?;
                let len = msg.header.length as usize;
                if len == 0 {
                    return Err(io::Error::other("netlink: zero-length message"));
                }
                offset += (len + 3) & !3;
                if msg.header.sequence_number != seq {
                    log::debug!(
                        "netlink: skipping message of seq {}",
                        msg.header.sequence_number
                    );
                    continue;
                }
                log::debug!("netlink recv seq={seq} {:?}", msg.payload);
                if handle(msg.payload)? {
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
        let mut req = AddressMessage::default();
        req.header.family = AddressFamily::Inet;
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

    /// `ip -4 route show table all`
    pub fn routes(&mut self) -> io::Result<Vec<RouteMessage>> {
        let mut req = RouteMessage::default();
        req.header.address_family = AddressFamily::Inet;
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

    // ---- changes ----

    /// `ip link set dev INDEX address MAC`
    pub fn set_mac(&mut self, index: u32, mac: Mac) -> io::Result<()> {
        let mut msg = LinkMessage::default();
        msg.header.index = index;
        msg.attributes.push(LinkAttribute::Address(mac.0.to_vec()));
        self.request(RouteNetlinkMessage::SetLink(msg), 0)
    }

    /// `ip link set dev INDEX alias TEXT`
    pub fn set_alias(&mut self, index: u32, alias: &str) -> io::Result<()> {
        let mut msg = LinkMessage::default();
        msg.header.index = index;
        msg.attributes
            .push(LinkAttribute::IfAlias(alias.to_string()));
        self.request(RouteNetlinkMessage::SetLink(msg), 0)
    }

    /// `ip link add link LOWER name NAME [address MAC] mtu MTU up type macvtap|macvlan mode bridge`
    ///
    /// The mode is always set explicitly: the kernel default (VEPA) cannot reach siblings.
    /// Returns the new link's index when the kernel echoes it (Linux 6.3 and later).
    pub fn add_mac_link(
        &mut self,
        kind: MacLinkKind,
        name: &str,
        lower: u32,
        mac: Option<Mac>,
        mtu: u32,
    ) -> io::Result<Option<u32>> {
        let mut msg = LinkMessage::default();
        msg.header.flags = LinkFlags::Up;
        msg.header.change_mask = LinkFlags::Up;
        msg.attributes.push(LinkAttribute::IfName(name.to_string()));
        msg.attributes.push(LinkAttribute::Link(lower));
        msg.attributes.push(LinkAttribute::Mtu(mtu));
        if let Some(mac) = mac {
            msg.attributes.push(LinkAttribute::Address(mac.0.to_vec()));
        }
        let (info_kind, data) = match kind {
            MacLinkKind::Macvtap => (
                InfoKind::MacVtap,
                InfoData::MacVtap(vec![InfoMacVtap::Mode(MacVlanMode::Bridge)]),
            ),
            MacLinkKind::Macvlan => (
                InfoKind::MacVlan,
                InfoData::MacVlan(vec![InfoMacVlan::Mode(MacVlanMode::Bridge)]),
            ),
        };
        msg.attributes.push(LinkAttribute::LinkInfo(vec![
            LinkInfo::Kind(info_kind),
            LinkInfo::Data(data),
        ]));
        let echoed = self.request_echo(
            RouteNetlinkMessage::NewLink(msg),
            NLM_F_CREATE | NLM_F_EXCL | NLM_F_ECHO,
        )?;
        Ok(echoed.into_iter().find_map(|m| match m {
            RouteNetlinkMessage::NewLink(l) if l.header.index != 0 => Some(l.header.index),
            _ => None,
        }))
    }

    /// `ip link del dev INDEX`
    pub fn del_link(&mut self, index: u32) -> io::Result<()> {
        let mut msg = LinkMessage::default();
        msg.header.index = index;
        self.request(RouteNetlinkMessage::DelLink(msg), 0)
    }

    /// `ip addr add ADDR/PREFIX [brd +] dev INDEX` (add) or `ip addr del ...` (!add)
    pub fn change_addr(
        &mut self,
        add: bool,
        index: u32,
        net: Ipv4Net,
        broadcast: bool,
    ) -> io::Result<()> {
        let mut msg = AddressMessage::default();
        msg.header.family = AddressFamily::Inet;
        msg.header.prefix_len = net.prefix;
        msg.header.index = index;
        msg.header.scope = AddressScope::Universe;
        msg.attributes
            .push(AddressAttribute::Local(IpAddr::V4(net.addr)));
        msg.attributes
            .push(AddressAttribute::Address(IpAddr::V4(net.addr)));
        if add {
            if broadcast && net.prefix < 31 {
                let bcast = u32::from(net.network()) | !u32::from(net.netmask());
                msg.attributes
                    .push(AddressAttribute::Broadcast(Ipv4Addr::from(bcast)));
            }
            self.request(
                RouteNetlinkMessage::NewAddress(msg),
                NLM_F_CREATE | NLM_F_EXCL,
            )
        } else {
            self.request(RouteNetlinkMessage::DelAddress(msg), 0)
        }
    }

    /// `ip route add DST [via GW] dev INDEX [onlink] [src SRC] [metric M]` (add)
    /// or `ip route del ...` (!add)
    pub fn change_route(
        &mut self,
        add: bool,
        index: u32,
        route: &Route,
        src: Option<Ipv4Addr>,
        onlink: bool,
    ) -> io::Result<()> {
        let mut msg = RouteMessage::default();
        msg.header.address_family = AddressFamily::Inet;
        msg.header.destination_prefix_length = route.dst.prefix;
        msg.header.table = RouteHeader::RT_TABLE_MAIN;
        if add {
            msg.header.kind = RouteType::Unicast;
            msg.header.protocol = RouteProtocol::Boot;
            msg.header.scope = if route.gateway.is_some() {
                RouteScope::Universe
            } else {
                RouteScope::Link
            };
        } else {
            // Match any type, protocol and scope, as `ip route del` does.
            msg.header.scope = RouteScope::NoWhere;
        }
        if onlink && add {
            msg.header.flags = RouteFlags::Onlink;
        }
        if route.dst.prefix > 0 {
            msg.attributes
                .push(RouteAttribute::Destination(RouteAddress::Inet(
                    route.dst.network(),
                )));
        }
        if let Some(gw) = route.gateway {
            msg.attributes
                .push(RouteAttribute::Gateway(RouteAddress::Inet(gw)));
        }
        msg.attributes.push(RouteAttribute::Oif(index));
        if let (Some(src), true) = (src, add) {
            msg.attributes
                .push(RouteAttribute::PrefSource(RouteAddress::Inet(src)));
        }
        if let Some(m) = route.metric {
            msg.attributes.push(RouteAttribute::Priority(m));
        }
        if add {
            self.request(
                RouteNetlinkMessage::NewRoute(msg),
                NLM_F_CREATE | NLM_F_EXCL,
            )
        } else {
            self.request(RouteNetlinkMessage::DelRoute(msg), 0)
        }
    }
}
