//! ARP frames as bytes (pure): the probe `vminit health` sends the guest for an address it
//! was handed, and the guest's answer.
//!
//! The probe is RFC 5227's: sender address 0.0.0.0, so that a guest answers it whatever its
//! routes and reverse-path filter say (Linux answers a probe for a local address as it does
//! for duplicate address detection), and learns nothing from it.

use std::net::Ipv4Addr;

use crate::net::types::Mac;

/// `ETH_P_ARP`
pub const ETHERTYPE_ARP: u16 = 0x0806;
const ARP_REQUEST: u16 = 1;
const ARP_REPLY: u16 = 2;

/// An ARP probe from `from` to `to` (Ethernet unicast): who has `target`?
pub fn probe(from: Mac, to: Mac, target: Ipv4Addr) -> Vec<u8> {
    let mut f = Vec::with_capacity(42);
    f.extend(to.0);
    f.extend(from.0);
    f.extend(ETHERTYPE_ARP.to_be_bytes());
    // Ethernet, IPv4, address lengths 6 and 4, request.
    f.extend([0, 1, 0x08, 0, 6, 4]);
    f.extend(ARP_REQUEST.to_be_bytes());
    f.extend(from.0);
    f.extend(Ipv4Addr::UNSPECIFIED.octets());
    f.extend([0; 6]);
    f.extend(target.octets());
    f
}

/// Whether `frame` is an ARP reply from `mac` that says it holds `target`.
pub fn is_reply(frame: &[u8], mac: Mac, target: Ipv4Addr) -> bool {
    frame.len() >= 42
        && frame[12..14] == ETHERTYPE_ARP.to_be_bytes()
        && frame[14..20] == [0, 1, 0x08, 0, 6, 4]
        && frame[20..22] == ARP_REPLY.to_be_bytes()
        && frame[22..28] == mac.0
        && frame[28..32] == target.octets()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::hex;

    const DOOR: Mac = Mac([2, 0, 0, 0, 0, 3]);
    const GUEST: Mac = Mac([2, 0x42, 10, 1, 0, 2]);

    #[test]
    fn the_probe_is_rfc_5227s_and_the_guests_reply_is_recognised() {
        let target = Ipv4Addr::new(10, 1, 0, 2);
        assert_eq!(
            probe(DOOR, GUEST, target),
            hex("02420a010002 020000000003 0806 0001 0800 06 04 0001
                 020000000003 00000000 000000000000 0a010002")
        );
        // As Linux answers a probe: to the prober, target address 0.0.0.0.
        let reply = hex("020000000003 02420a010002 0806 0001 0800 06 04 0002
                         02420a010002 0a010002 020000000003 00000000");
        assert!(is_reply(&reply, GUEST, target));
        assert!(!is_reply(&reply, DOOR, target), "another MAC");
        assert!(
            !is_reply(&reply, GUEST, Ipv4Addr::new(10, 1, 0, 3)),
            "another address"
        );
        assert!(
            !is_reply(&probe(GUEST, DOOR, target), GUEST, target),
            "a request"
        );
    }
}
