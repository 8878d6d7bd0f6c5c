//! The door's DNS relay over IPv6 (pure): which door addresses the guest is told and who
//! answers there, and the relay's table of queries sent on, each under an ID of the relay's
//! own so that answers find their way back to the guest's address, port and ID.
//! `announcer` holds the sockets.

use std::net::{Ipv4Addr, Ipv6Addr};
use std::time::{Duration, Instant};

use crate::ipv6::announce::{Dns4, DnsQuery, Door};
use crate::net::netstate::{Link, NetState};

/// How long a relayed query waits for its answer.
pub const TIMEOUT: Duration = Duration::from_secs(5);
/// How many relayed queries may wait at once (more are dropped: the guest asks again).
pub const PENDING: usize = 64;
/// A DNS message's header: nothing shorter is relayed.
const HEADER: usize = 12;

/// A door's addresses as the guest and the container see them.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct DoorAddrs {
    /// Its MAC and link-local address: the kernel's where the door has IPv6, else the one its
    /// MAC derives (Docker gives links made in a container no IPv6), which nobody else holds.
    pub door: Door,
    /// Whether that address is the kernel's.
    pub kernel_ll: bool,
    /// Its IPv4 address (the door address, where dnsmasq answers DNS), if it has one.
    pub ipv4: Option<Ipv4Addr>,
}

impl DoorAddrs {
    /// The addresses of the door `link` in `state`; `None` for a link without a MAC.
    pub fn of(link: &Link, state: &NetState) -> Option<DoorAddrs> {
        let mac = link.mac?;
        let kernel = state
            .addrs6_of(link.index)
            .iter()
            .find(|a| a.net.is_link_local())
            .map(|a| a.net.addr);
        Some(DoorAddrs {
            door: Door {
                mac,
                link_local: kernel.unwrap_or_else(|| mac.link_local()),
            },
            kernel_ll: kernel.is_some(),
            ipv4: state.addrs_of(link.index).first().map(|a| a.net.addr),
        })
    }
}

/// Who answers DNS at the door's link-local address on one guest NIC.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum DoorDns6 {
    /// Nobody: the address is not announced on this NIC.
    Unannounced,
    /// dnsmasq, on the door's own (kernel) address.
    Kernel,
    /// vminit, relaying to dnsmasq at this IPv4 address of the door.
    Relayed(Ipv4Addr),
}

impl DoorDns6 {
    /// For the NIC whose announcements carry the door resolver (`door_nic`, see
    /// `announce::door_nic`): the kernel's address where the door has one; else, when the
    /// guest cannot ask the door over IPv4 (`dns4.door_over_ipv6`), vminit relays to the door's
    /// IPv4 address. Any other NIC announces no door.
    pub fn decide(addrs: &DoorAddrs, door_nic: bool, dns4: Dns4) -> DoorDns6 {
        match (door_nic, addrs.kernel_ll, addrs.ipv4) {
            (false, _, _) => DoorDns6::Unannounced,
            (true, true, _) => DoorDns6::Kernel,
            (true, false, Some(ip)) if dns4.door_over_ipv6 => DoorDns6::Relayed(ip),
            (true, false, _) => DoorDns6::Unannounced,
        }
    }
}

/// The queries sent on and not answered yet.
#[derive(Debug, Default)]
pub struct Queries {
    pending: Vec<Pending>,
    next_id: u16,
}

/// A query sent on: the relay's ID for it, and the guest's.
#[derive(Debug)]
struct Pending {
    id: u16,
    guest_id: [u8; 2],
    src: Ipv6Addr,
    port: u16,
    sent: Instant,
}

impl Queries {
    /// Starting at ID `first` (anything; a random start keeps a restarted vminit's IDs apart).
    pub fn new(first: u16) -> Queries {
        Queries {
            pending: Vec::new(),
            next_id: first,
        }
    }

    /// The message to send on for `query` at `now`, under a free ID of the relay's; `None`
    /// when it is no DNS message or `PENDING` queries wait already. Queries older than
    /// `TIMEOUT` are given up first.
    pub fn ask(&mut self, query: &DnsQuery, now: Instant) -> Option<Vec<u8>> {
        self.pending
            .retain(|p| now.duration_since(p.sent) < TIMEOUT);
        if query.message.len() < HEADER || self.pending.len() >= PENDING {
            return None;
        }
        let mut id = self.next_id;
        while self.pending.iter().any(|p| p.id == id) {
            id = id.wrapping_add(1);
        }
        self.next_id = id.wrapping_add(1);
        self.pending.push(Pending {
            id,
            guest_id: [query.message[0], query.message[1]],
            src: query.src,
            port: query.port,
            sent: now,
        });
        let mut message = query.message.clone();
        message[..2].copy_from_slice(&id.to_be_bytes());
        Some(message)
    }

    /// Forgets the query last asked (it could not be sent).
    pub fn forget_last(&mut self) {
        self.pending.pop();
    }

    /// Where the answer `message` goes (the guest's address and port) and the answer with the
    /// guest's ID; `None` for one nobody waits for (late, repeated or forged).
    pub fn answer(&mut self, message: &[u8]) -> Option<(Ipv6Addr, u16, Vec<u8>)> {
        let head = message.get(..HEADER)?;
        let id = u16::from_be_bytes([head[0], head[1]]);
        let at = self.pending.iter().position(|p| p.id == id)?;
        let p = self.pending.swap_remove(at);
        let mut answer = message.to_vec();
        answer[..2].copy_from_slice(&p.guest_id);
        Some((p.src, p.port, answer))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::net::types::Mac;

    fn query(id: u16, port: u16) -> DnsQuery {
        let mut message = id.to_be_bytes().to_vec();
        message.extend([1, 0, 0, 1, 0, 0, 0, 0, 0, 0, 7, 7]);
        DnsQuery {
            src: "fe80::42:aff:fe01:2".parse().unwrap(),
            port,
            message,
        }
    }

    #[test]
    fn an_answer_goes_back_to_the_asker_with_its_own_id_and_only_once() {
        let t0 = Instant::now();
        let mut q = Queries::new(0xfffe);
        let sent = q.ask(&query(0x1234, 40000), t0).unwrap();
        assert_eq!(&sent[..2], &[0xff, 0xfe], "the relay's ID");
        assert_eq!(
            &sent[2..],
            &query(0x1234, 40000).message[2..],
            "the rest unchanged"
        );
        // The same guest ID again (another port): another relay ID, wrapping around.
        let again = q.ask(&query(0x1234, 40001), t0).unwrap();
        assert_eq!(&again[..2], &[0xff, 0xff]);
        let third = q.ask(&query(0x0001, 40002), t0).unwrap();
        assert_eq!(&third[..2], &[0, 0]);

        let mut answer = again.clone();
        answer[2] |= 0x80; // a response
        let (src, port, back) = q.answer(&answer).unwrap();
        assert_eq!((src, port), (query(0, 0).src, 40001));
        assert_eq!(&back[..3], &[0x12, 0x34, answer[2]]);
        assert_eq!(q.answer(&answer), None, "answered once");
        assert_eq!(q.answer(&[0xff, 0xfe]), None, "shorter than a header");
        assert!(q.answer(&sent).is_some());
    }

    #[test]
    fn no_more_than_pending_wait_and_old_ones_are_given_up() {
        let t0 = Instant::now();
        let mut q = Queries::new(1);
        for i in 0..PENDING {
            assert!(q.ask(&query(i as u16, 1), t0).is_some());
        }
        assert_eq!(q.ask(&query(9, 1), t0), None, "full");
        let later = t0 + TIMEOUT;
        let fresh = q
            .ask(&query(9, 1), later)
            .expect("the old ones were given up");
        assert_eq!(q.answer(&fresh).map(|(_, p, _)| p), Some(1));
        let short = DnsQuery {
            message: vec![0; HEADER - 1],
            ..query(0, 1)
        };
        assert_eq!(q.ask(&short, later), None, "no DNS message");
    }

    #[test]
    fn ids_in_use_are_skipped_and_a_query_that_was_not_sent_is_forgotten() {
        let t0 = Instant::now();
        let mut q = Queries::new(5);
        let first = q.ask(&query(1, 1), t0).unwrap();
        q.forget_last();
        assert_eq!(q.answer(&first), None, "forgotten");
        let mut q = Queries::new(5);
        q.ask(&query(1, 1), t0).unwrap();
        q.next_id = 5; // as after wrapping all the way round
        assert_eq!(
            &q.ask(&query(2, 2), t0).unwrap()[..2],
            &[0, 6],
            "5 is taken"
        );
    }

    #[test]
    fn the_door_nic_gets_the_kernels_address_else_the_relay_where_ipv4_cannot_reach_the_door() {
        let door = Door {
            mac: Mac([2, 0, 0, 0, 0, 3]),
            link_local: "fe80::ff:fe00:3".parse().unwrap(),
        };
        let over6 = Dns4 {
            gives_resolvers: false,
            door_over_ipv6: true,
        };
        let over4 = Dns4 {
            gives_resolvers: true,
            door_over_ipv6: false,
        };
        let ip = Ipv4Addr::new(169, 254, 1, 3);
        let addrs = |kernel_ll, ipv4| DoorAddrs {
            door,
            kernel_ll,
            ipv4,
        };
        use DoorDns6::{Kernel, Relayed, Unannounced};
        assert_eq!(
            DoorDns6::decide(&addrs(true, Some(ip)), true, over6),
            Kernel
        );
        assert_eq!(
            DoorDns6::decide(&addrs(true, Some(ip)), false, over6),
            Unannounced
        );
        assert_eq!(
            DoorDns6::decide(&addrs(false, Some(ip)), true, over6),
            Relayed(ip)
        );
        assert_eq!(
            DoorDns6::decide(&addrs(false, Some(ip)), false, over6),
            Unannounced
        );
        assert_eq!(
            DoorDns6::decide(&addrs(false, Some(ip)), true, over4),
            Unannounced,
            "IPv4 reaches it"
        );
        assert_eq!(
            DoorDns6::decide(&addrs(false, None), true, over6),
            Unannounced,
            "nothing to relay to"
        );
    }
}
