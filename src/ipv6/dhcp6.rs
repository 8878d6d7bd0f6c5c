//! A DHCPv6 server for exactly one client (pure): the guest asks, and gets the container's
//! IPv6 address (stateful, IA_NA, RFC 8415) with infinite lifetimes, the resolvers and the
//! search list. DHCPv6 carries no prefix length: the router advertisement's on-link prefix
//! gives it (`ndp`).
//!
//! vminit answers only what arrives from the guest's MAC on the door (the caller checks), and
//! sends the answer to that MAC only.

use std::net::Ipv6Addr;

use crate::ipv6::ndp::{dns_names, udp, udp_to};
use crate::net::types::Mac;

/// Message types (RFC 8415 7.3).
const SOLICIT: u8 = 1;
const ADVERTISE: u8 = 2;
const REQUEST: u8 = 3;
const CONFIRM: u8 = 4;
const RENEW: u8 = 5;
const REBIND: u8 = 6;
const REPLY: u8 = 7;
const RELEASE: u8 = 8;
const DECLINE: u8 = 9;
const INFORMATION_REQUEST: u8 = 11;
/// Option codes (RFC 8415 21, RFC 3646).
const OPT_CLIENTID: u16 = 1;
const OPT_SERVERID: u16 = 2;
const OPT_IA_NA: u16 = 3;
const OPT_IAADDR: u16 = 5;
const OPT_PREFERENCE: u16 = 7;
const OPT_STATUS_CODE: u16 = 13;
const OPT_RAPID_COMMIT: u16 = 14;
const OPT_DNS_SERVERS: u16 = 23;
const OPT_DOMAIN_LIST: u16 = 24;
/// Status codes.
const STATUS_SUCCESS: u16 = 0;
const STATUS_NO_ADDRS_AVAIL: u16 = 2;
const STATUS_NOT_ON_LINK: u16 = 4;
/// UDP ports.
pub const CLIENT_PORT: u16 = 546;
pub const SERVER_PORT: u16 = 547;

/// What the server hands out.
#[derive(Clone, Debug, PartialEq)]
pub struct Lease {
    /// The server's DUID (DUID-LL of the door's MAC).
    pub server_id: Vec<u8>,
    /// The guest's address.
    pub addr: Ipv6Addr,
    pub dns: Vec<Ipv6Addr>,
    pub search: Vec<String>,
}

impl Lease {
    /// DUID-LL (RFC 8415 11.4): type 3, hardware type 1 (Ethernet), the MAC.
    pub fn duid_ll(mac: Mac) -> Vec<u8> {
        let mut duid = vec![0, 3, 0, 1];
        duid.extend(mac.0);
        duid
    }
}

/// The server's answer to one client message.
#[derive(Clone, Debug, PartialEq)]
pub struct Answer {
    /// The DHCPv6 message to send back (UDP payload).
    pub message: Vec<u8>,
    /// What happened, for the log (a bound address, a declined one).
    pub note: String,
}

/// A client message, its options read.
struct Request<'a> {
    kind: u8,
    xid: &'a [u8],
    client_id: Option<&'a [u8]>,
    server_id: Option<&'a [u8]>,
    /// (IAID, the addresses the client names in it).
    ia_na: Vec<([u8; 4], Vec<Ipv6Addr>)>,
    rapid_commit: bool,
}

/// `(code, data)` of each option in `bytes`; `None` if one overruns.
fn options(mut bytes: &[u8]) -> Option<Vec<(u16, &[u8])>> {
    let mut out = Vec::new();
    while !bytes.is_empty() {
        let head = bytes.get(..4)?;
        let code = u16::from_be_bytes([head[0], head[1]]);
        let len = usize::from(u16::from_be_bytes([head[2], head[3]]));
        out.push((code, bytes.get(4..4 + len)?));
        bytes = &bytes[4 + len..];
    }
    Some(out)
}

fn parse(message: &[u8]) -> Option<Request<'_>> {
    let kind = *message.first()?;
    let mut req = Request {
        kind,
        xid: message.get(1..4)?,
        client_id: None,
        server_id: None,
        ia_na: Vec::new(),
        rapid_commit: false,
    };
    for (code, data) in options(&message[4..])? {
        match code {
            OPT_CLIENTID => req.client_id = Some(data),
            OPT_SERVERID => req.server_id = Some(data),
            OPT_RAPID_COMMIT => req.rapid_commit = true,
            OPT_IA_NA => {
                let iaid: [u8; 4] = data.get(..4)?.try_into().ok()?;
                let addrs = options(data.get(12..)?)?
                    .into_iter()
                    .filter(|(c, _)| *c == OPT_IAADDR)
                    .filter_map(|(_, d)| <[u8; 16]>::try_from(d.get(..16)?).ok())
                    .map(Ipv6Addr::from)
                    .collect();
                req.ia_na.push((iaid, addrs));
            }
            _ => {}
        }
    }
    Some(req)
}

fn option(out: &mut Vec<u8>, code: u16, data: &[u8]) {
    out.extend(code.to_be_bytes());
    out.extend((data.len() as u16).to_be_bytes());
    out.extend(data);
}

fn status(code: u16, text: &str) -> Vec<u8> {
    let mut data = code.to_be_bytes().to_vec();
    data.extend(text.as_bytes());
    let mut out = Vec::new();
    option(&mut out, OPT_STATUS_CODE, &data);
    out
}

/// The IA_NA binding of `iaid`: the lease's address, infinite lifetimes (no renewal).
fn binding(iaid: &[u8; 4], addr: Ipv6Addr) -> Vec<u8> {
    let mut iaaddr = addr.octets().to_vec();
    iaaddr.extend(u32::MAX.to_be_bytes());
    iaaddr.extend(u32::MAX.to_be_bytes());
    let mut data = iaid.to_vec();
    data.extend(u32::MAX.to_be_bytes());
    data.extend(u32::MAX.to_be_bytes());
    option(&mut data, OPT_IAADDR, &iaaddr);
    let mut out = Vec::new();
    option(&mut out, OPT_IA_NA, &data);
    out
}

/// An IA_NA that gets nothing (a client may ask for several; it has one address).
fn no_binding(iaid: &[u8; 4]) -> Vec<u8> {
    let mut data = iaid.to_vec();
    data.extend([0u8; 8]);
    data.extend(status(STATUS_NO_ADDRS_AVAIL, "one address per NIC"));
    let mut out = Vec::new();
    option(&mut out, OPT_IA_NA, &data);
    out
}

/// The answer to `message` (a DHCPv6 client message), or `None` when it gets none: not a
/// client message, no client id, or meant for another server.
pub fn answer(lease: &Lease, message: &[u8]) -> Option<Answer> {
    let req = parse(message)?;
    let client_id = req.client_id?;
    let ours = req.server_id.is_none_or(|id| id == lease.server_id);
    let (kind, note, bind) = match req.kind {
        SOLICIT if req.server_id.is_none() => {
            if req.rapid_commit {
                (REPLY, format!("bound {} (rapid commit)", lease.addr), true)
            } else {
                (ADVERTISE, format!("offered {}", lease.addr), true)
            }
        }
        REQUEST | RENEW if req.server_id.is_some() && ours => {
            (REPLY, format!("bound {}", lease.addr), true)
        }
        REBIND if req.server_id.is_none() => (REPLY, format!("bound {}", lease.addr), true),
        CONFIRM | INFORMATION_REQUEST if req.server_id.is_none() => {
            (REPLY, "answered".to_string(), false)
        }
        RELEASE if ours && req.server_id.is_some() => {
            (REPLY, format!("released {}", lease.addr), false)
        }
        DECLINE if ours && req.server_id.is_some() => (
            REPLY,
            format!(
                "declined {}: the guest found it in use on the network (duplicate address detection)",
                lease.addr
            ),
            false,
        ),
        _ => return None,
    };
    let mut out = vec![kind];
    out.extend(req.xid);
    option(&mut out, OPT_CLIENTID, client_id);
    option(&mut out, OPT_SERVERID, &lease.server_id);
    match kind {
        ADVERTISE => option(&mut out, OPT_PREFERENCE, &[255]),
        _ if req.kind == SOLICIT => option(&mut out, OPT_RAPID_COMMIT, &[]),
        _ => {}
    }
    if bind {
        for (i, (iaid, _)) in req.ia_na.iter().enumerate() {
            out.extend(if i == 0 {
                binding(iaid, lease.addr)
            } else {
                no_binding(iaid)
            });
        }
    }
    match req.kind {
        CONFIRM => {
            let on_link = req
                .ia_na
                .iter()
                .flat_map(|(_, addrs)| addrs)
                .all(|a| *a == lease.addr);
            out.extend(if on_link {
                status(STATUS_SUCCESS, "on link")
            } else {
                status(STATUS_NOT_ON_LINK, "not this link's address")
            });
        }
        RELEASE | DECLINE => out.extend(status(STATUS_SUCCESS, "")),
        _ => {}
    }
    if !matches!(req.kind, RELEASE | DECLINE) {
        if !lease.dns.is_empty() {
            let servers: Vec<u8> = lease.dns.iter().flat_map(|a| a.octets()).collect();
            option(&mut out, OPT_DNS_SERVERS, &servers);
        }
        let names = dns_names(&lease.search);
        if !names.is_empty() {
            option(&mut out, OPT_DOMAIN_LIST, &names);
        }
    }
    Some(Answer { message: out, note })
}

/// The UDP datagram (header with a zero checksum, then `payload`) from the server port to
/// the client port; `ndp::ipv6_frame` fills in the checksum.
pub fn udp_to_client(payload: &[u8]) -> Vec<u8> {
    udp(SERVER_PORT, CLIENT_PORT, payload)
}

/// The DHCPv6 message in a UDP datagram to the server port, if `udp` is one.
pub fn from_client(udp: &[u8]) -> Option<&[u8]> {
    udp_to(udp, SERVER_PORT).map(|(_, message)| message)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::hex;

    fn lease() -> Lease {
        Lease {
            server_id: Lease::duid_ll(Mac([0x0e, 0x1b, 0x92, 0x9a, 0x54, 0x2d])),
            addr: "fd00:1::2".parse().unwrap(),
            dns: vec!["fd00:1::53".parse().unwrap()],
            search: vec!["example.test".into()],
        }
    }

    #[test]
    fn a_solicit_is_advertised_the_containers_address_as_scapy_expects() {
        let answer = answer(&lease(), &hex(SCAPY_SOLICIT)).unwrap();
        assert_eq!(answer.message, hex(SCAPY_ADVERTISE));
        assert_eq!(answer.note, "offered fd00:1::2");
    }

    #[test]
    fn a_request_for_this_server_is_bound_and_one_for_another_server_is_ignored() {
        let solicit = hex(SCAPY_SOLICIT);
        let advert = answer(&lease(), &solicit).unwrap().message;
        // The client's Request: the Advertise's server id, its own IA_NA and client id.
        let mut request = vec![REQUEST, 0xaa, 0xbb, 0xcc];
        request.extend(&advert[4..]);
        let reply = answer(&lease(), &request).unwrap();
        assert_eq!(reply.message[0], REPLY);
        assert_eq!(&reply.message[1..4], &[0xaa, 0xbb, 0xcc]);
        assert_eq!(reply.note, "bound fd00:1::2");
        let mut other = lease();
        other.server_id = Lease::duid_ll(Mac([2, 0, 0, 0, 0, 9]));
        assert_eq!(answer(&other, &request), None);
    }

    #[test]
    fn rapid_commit_binds_at_once_and_confirm_says_whether_the_address_is_this_links() {
        let mut solicit = hex(SCAPY_SOLICIT);
        option(&mut solicit, OPT_RAPID_COMMIT, &[]);
        let reply = answer(&lease(), &solicit).unwrap();
        assert_eq!(reply.message[0], REPLY);
        let opts = options(&reply.message[4..]).unwrap();
        assert!(opts.iter().any(|(c, _)| *c == OPT_RAPID_COMMIT));
        assert!(opts.iter().any(|(c, _)| *c == OPT_IA_NA));

        let confirm = |addr: &str| {
            let mut m = vec![CONFIRM, 1, 2, 3];
            option(
                &mut m,
                OPT_CLIENTID,
                &[0, 3, 0, 1, 2, 0x42, 0xac, 0x13, 0, 2],
            );
            let mut ia = vec![0, 0, 0, 1];
            ia.extend([0u8; 8]);
            let mut iaaddr = addr.parse::<Ipv6Addr>().unwrap().octets().to_vec();
            iaaddr.extend([0u8; 8]);
            option(&mut ia, OPT_IAADDR, &iaaddr);
            option(&mut m, OPT_IA_NA, &ia);
            let reply = answer(&lease(), &m).unwrap().message;
            let opts = options(&reply[4..]).unwrap();
            let (_, st) = opts
                .into_iter()
                .find(|(c, _)| *c == OPT_STATUS_CODE)
                .unwrap();
            u16::from_be_bytes([st[0], st[1]])
        };
        assert_eq!(confirm("fd00:1::2"), STATUS_SUCCESS);
        assert_eq!(confirm("fd00:9::2"), STATUS_NOT_ON_LINK);
    }

    #[test]
    fn a_decline_is_answered_and_reported_and_garbage_is_not_answered() {
        let advert = answer(&lease(), &hex(SCAPY_SOLICIT)).unwrap().message;
        let mut decline = vec![DECLINE, 9, 9, 9];
        decline.extend(&advert[4..]);
        let a = answer(&lease(), &decline).unwrap();
        assert!(a.note.contains("duplicate address detection"), "{}", a.note);
        assert_eq!(answer(&lease(), &[]), None);
        assert_eq!(answer(&lease(), &[SOLICIT, 1, 2]), None);
        assert_eq!(
            answer(&lease(), &[SOLICIT, 1, 2, 3, 0, 1, 0, 9]),
            None,
            "overrun"
        );
        assert_eq!(answer(&lease(), &[SOLICIT, 1, 2, 3]), None, "no client id");
        assert_eq!(answer(&lease(), &[ADVERTISE, 1, 2, 3, 0, 1, 0, 0]), None);
    }

    #[test]
    fn the_udp_datagram_goes_from_the_server_port_to_the_client_port() {
        let udp = udp_to_client(b"xyz");
        assert_eq!(udp, [2, 0x23, 2, 0x22, 0, 11, 0, 0, b'x', b'y', b'z']);
        let mut from_client = udp.clone();
        from_client[2..4].copy_from_slice(&SERVER_PORT.to_be_bytes());
        assert_eq!(super::from_client(&from_client), Some(&b"xyz"[..]));
        assert_eq!(super::from_client(&udp), None);
    }

    /// scapy 2.5: DHCP6_Solicit(trid=0x1234) / DHCP6OptClientId(duid=DUID_LL(lladdr=
    /// "02:42:0a:3d:00:02")) / DHCP6OptIA_NA(iaid=0x0a3d0002) / DHCP6OptOptReq(reqopts=[23, 24])
    /// / DHCP6OptElapsedTime().
    const SCAPY_SOLICIT: &str = "010012340001000a0003000102420a3d00020003000c0a3d000200000000000000000006000400170018000800020000";
    /// scapy 2.5: DHCP6_Advertise(trid=0x1234) / DHCP6OptClientId(the same) / DHCP6OptServerId(
    /// duid=DUID_LL(lladdr="0e:1b:92:9a:54:2d")) / DHCP6OptPref(prefval=255) / DHCP6OptIA_NA(
    /// iaid=0x0a3d0002, T1 and T2 infinite, ianaopts=[DHCP6OptIAAddress(addr="fd00:1::2",
    /// lifetimes infinite)]) / DHCP6OptDNSServers(["fd00:1::53"]) / DHCP6OptDNSDomains(
    /// ["example.test"]).
    const SCAPY_ADVERTISE: &str = "
        020012340001000a0003000102420a3d00020002000a000300010e1b929a542d00070001ff000300280a3d0002ffffff
        ffffffffff00050018fd000001000000000000000000000002ffffffffffffffff00170010fd00000100000000000000
        00000000530018000e076578616d706c65047465737400";
}
