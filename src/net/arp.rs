//! ARP frames as bytes (pure): the question `vminit health` asks the guest for an address it
//! was handed, and the guest's answer.
//!
//! The question comes from the door's own address, which the guest routes through the NIC
//! it asks on (DHCP option 121 and the seed say so), never from `0.0.0.0`: a guest that is
//! still probing for the address (RFC 5227) would take that for another host's probe and
//! give its address up. Only a door without an IPv4 address sends the probe.

use std::net::Ipv4Addr;

use crate::net::types::Mac;

/// `ETH_P_ARP`
pub const ETHERTYPE_ARP: u16 = 0x0806;
const ARP_REQUEST: u16 = 1;
const ARP_REPLY: u16 = 2;

/// An ARP request from `from`, which holds `sender`, to `to` (Ethernet unicast): who has
/// `target`? With a `sender` of `0.0.0.0` it is RFC 5227's probe, which a host that is itself
/// probing for `target` (NetworkManager's and Windows' address conflict detection) takes for
/// a conflict and gives the address up; with a real `sender` it is an ordinary question.
pub fn request(from: Mac, sender: Ipv4Addr, to: Mac, target: Ipv4Addr) -> Vec<u8> {
    let mut f = Vec::with_capacity(42);
    f.extend(to.0);
    f.extend(from.0);
    f.extend(ETHERTYPE_ARP.to_be_bytes());
    // Ethernet, IPv4, address lengths 6 and 4, request.
    f.extend([0, 1, 0x08, 0, 6, 4]);
    f.extend(ARP_REQUEST.to_be_bytes());
    f.extend(from.0);
    f.extend(sender.octets());
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
    fn a_request_names_its_sender_and_the_guests_reply_is_recognised() {
        let target = Ipv4Addr::new(10, 1, 0, 2);
        let door = Ipv4Addr::new(169, 254, 1, 3);
        assert_eq!(
            request(DOOR, door, GUEST, target),
            hex("02420a010002 020000000003 0806 0001 0800 06 04 0001
                 020000000003 a9fe0103 000000000000 0a010002")
        );
        // As Linux answers: to the asker, at its address.
        let reply = hex("020000000003 02420a010002 0806 0001 0800 06 04 0002
                         02420a010002 0a010002 020000000003 a9fe0103");
        assert!(is_reply(&reply, GUEST, target));
        assert!(!is_reply(&reply, DOOR, target), "another MAC");
        assert!(
            !is_reply(&reply, GUEST, Ipv4Addr::new(10, 1, 0, 3)),
            "another address"
        );
        assert!(
            !is_reply(&request(GUEST, door, DOOR, target), GUEST, target),
            "a request"
        );
    }

    #[test]
    fn a_request_from_no_address_is_rfc_5227s_probe() {
        let target = Ipv4Addr::new(10, 1, 0, 2);
        assert_eq!(
            request(DOOR, Ipv4Addr::UNSPECIFIED, GUEST, target),
            hex("02420a010002 020000000003 0806 0001 0800 06 04 0001
                 020000000003 00000000 000000000000 0a010002")
        );
        // As Linux answers a probe: to the prober, target address 0.0.0.0.
        let reply = hex("020000000003 02420a010002 0806 0001 0800 06 04 0002
                         02420a010002 0a010002 020000000003 00000000");
        assert!(is_reply(&reply, GUEST, target));
    }
}
