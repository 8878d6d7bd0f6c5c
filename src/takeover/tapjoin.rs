//! The tap datapath's join of the guest's tap to its container NIC at layer 2 (pure): which
//! frames cross, which stay with the door on the tap.
//!
//! ```text
//!  guest ── tap (door address, dnsmasq, RA/DHCPv6) ──tc── NIC ── network
//! ```
//!
//! From the guest (the tap's ingress), tried in order: frames for the tap's own MAC (the
//! door: ARP replies, DNS, unicast DHCP, the container's traffic) stay; the guest's DHCP,
//! router solicitations and DHCPv6 stay (they are the door's to answer, never the network's);
//! other broadcast and multicast frames go out of the NIC and stay too (an ARP request for
//! the door must reach it, one for the gateway the network); everything else goes out of
//! the NIC. From the network (the NIC's ingress): frames for the guest's MAC go to the guest
//! only; broadcast and multicast go to the guest and stay (the container still hears its
//! network); everything else stays with the container.

use crate::net::tc::{ETH_P_ALL, ETH_P_IP, ETH_P_IPV6, Filter, Key, Verdict};
use crate::net::types::Mac;

/// Priorities of the filters on the tap; the NIC's use 1 and 2.
const PRIO_DOOR: u16 = 1;
const PRIO_DHCP: u16 = 2;
const PRIO_RS: u16 = 3;
const PRIO_DHCP6: u16 = 4;
const PRIO_MULTICAST: u16 = 5;
const PRIO_REST: u16 = 6;

/// The filters on the tap's ingress: frames the guest sends.
pub fn from_guest(tap_mac: Mac, lower: &str) -> Vec<Filter> {
    let stay = |prio, protocol, keys: Vec<Key>| Filter {
        prio,
        protocol,
        keys,
        verdict: Verdict::Stay,
    };
    vec![
        stay(PRIO_DOOR, ETH_P_ALL, to_mac(tap_mac).to_vec()),
        // IPv4 without options, UDP, destination port 67.
        stay(
            PRIO_DHCP,
            ETH_P_IP,
            vec![
                key(0, 0x0f00_0000, 0x0500_0000),
                key(8, 0x00ff_0000, 0x0011_0000),
                key(20, 0x0000_ffff, 67),
            ],
        ),
        // IPv6, ICMPv6 (no extension header), type 133.
        stay(
            PRIO_RS,
            ETH_P_IPV6,
            vec![
                key(4, 0x0000_ff00, 0x0000_3a00),
                key(40, 0xff00_0000, 0x8500_0000),
            ],
        ),
        // IPv6, UDP, destination port 547.
        stay(
            PRIO_DHCP6,
            ETH_P_IPV6,
            vec![key(4, 0x0000_ff00, 0x0000_1100), key(40, 0x0000_ffff, 547)],
        ),
        Filter {
            prio: PRIO_MULTICAST,
            protocol: ETH_P_ALL,
            keys: vec![multicast()],
            verdict: Verdict::Mirror(lower.to_string()),
        },
        Filter {
            prio: PRIO_REST,
            protocol: ETH_P_ALL,
            keys: Vec::new(),
            verdict: Verdict::Redirect(lower.to_string()),
        },
    ]
}

/// The filters on the container NIC's ingress: frames from the network.
pub fn from_network(guest_mac: Mac, tap: &str) -> Vec<Filter> {
    vec![
        Filter {
            prio: 1,
            protocol: ETH_P_ALL,
            keys: to_mac(guest_mac).to_vec(),
            verdict: Verdict::Redirect(tap.to_string()),
        },
        Filter {
            prio: 2,
            protocol: ETH_P_ALL,
            keys: vec![multicast()],
            verdict: Verdict::Mirror(tap.to_string()),
        },
    ]
}

fn key(at: i32, mask: u32, value: u32) -> Key {
    Key { at, mask, value }
}

/// The Ethernet destination is `mac`: its first four bytes at -14, the last two at -10.
fn to_mac(mac: Mac) -> [Key; 2] {
    let m = mac.0;
    [
        key(
            -14,
            0xffff_ffff,
            u32::from_be_bytes([m[0], m[1], m[2], m[3]]),
        ),
        key(-10, 0xffff_0000, u32::from_be_bytes([m[4], m[5], 0, 0])),
    ]
}

/// The Ethernet destination is a group address (broadcast or multicast).
fn multicast() -> Key {
    key(-14, 0x0100_0000, 0x0100_0000)
}

#[cfg(test)]
mod tests {
    use super::*;

    const GUEST: Mac = Mac([0x02, 0x42, 0xac, 0x13, 0x00, 0x02]);
    const TAP: Mac = Mac([0x0a, 0x11, 0x22, 0x33, 0x44, 0x55]);

    #[test]
    fn the_guests_frames_for_the_door_stay_and_the_rest_leave_by_the_nic() {
        let f = from_guest(TAP, "eth0");
        let text: Vec<String> = f.iter().map(|f| f.to_string()).collect();
        assert_eq!(
            text[0],
            "ingress prio 1 protocol all u32 match u32 0x0a112233 0xffffffff at -14 match u32 0x44550000 0xffff0000 at -10"
        );
        assert!(text[1].contains("protocol ip") && text[1].contains("0x00000043 0x0000ffff at 20"));
        assert!(
            text[2].contains("protocol ipv6") && text[2].contains("0x85000000 0xff000000 at 40")
        );
        assert!(text[3].contains("0x00000223 0x0000ffff at 40"));
        assert!(text[4].ends_with("action mirred egress mirror dev eth0 pass"));
        assert!(text[5].ends_with("match u32 0 0 action mirred egress redirect dev eth0"));
        // Everything that stays is tried before anything that leaves.
        let prios: Vec<u16> = f.iter().map(|f| f.prio).collect();
        assert!(prios.windows(2).all(|w| w[0] < w[1]), "{prios:?}");
        assert!(f[..4].iter().all(|f| f.verdict == Verdict::Stay));
    }

    #[test]
    fn the_networks_frames_for_the_guest_go_to_it_and_group_frames_to_both() {
        let text: Vec<String> = from_network(GUEST, "vmtap0")
            .iter()
            .map(|f| f.to_string())
            .collect();
        assert_eq!(
            text,
            [
                "ingress prio 1 protocol all u32 match u32 0x0242ac13 0xffffffff at -14 match u32 0x00020000 0xffff0000 at -10 action mirred egress redirect dev vmtap0",
                "ingress prio 2 protocol all u32 match u32 0x01000000 0x01000000 at -14 action mirred egress mirror dev vmtap0 pass",
            ]
        );
    }
}
