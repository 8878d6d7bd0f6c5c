//! A tc ingress filter as data (pure): the u32 matches and the one action the tap datapath
//! uses, and the `tc` command each equals.
//!
//! Only what every kernel with the ingress qdisc, the u32 classifier and the mirred action
//! has is used (no flower, no matchall, no gact): a filter that matches and has no action
//! ends the classification with "pass" (the frame stays on its link), a mirred redirect
//! steals it, a mirred mirror sends a copy and lets the frame go on.

use std::fmt;

/// Ethertypes a filter can be limited to (`tc filter ... protocol P`).
pub const ETH_P_ALL: u16 = 0x0003;
pub const ETH_P_IP: u16 = 0x0800;
pub const ETH_P_IPV6: u16 = 0x86dd;

/// One u32 key: the 32-bit word at `at` bytes from the network header (negative: in the
/// Ethernet header, -14 is the destination MAC), masked, equals `value`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Key {
    pub at: i32,
    pub mask: u32,
    pub value: u32,
}

/// What a filter does with the frames it matches.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Verdict {
    /// Nothing: the frame stays on the link it arrived on (classification ends, "pass").
    Stay,
    /// Sent out of the named link instead (`action mirred egress redirect dev X`).
    Redirect(String),
    /// A copy sent out of the named link, the frame itself stays
    /// (`action mirred egress mirror dev X pass`).
    Mirror(String),
}

/// A u32 filter on a link's ingress qdisc. Lower `prio` is tried first.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Filter {
    pub prio: u16,
    /// The ethertype it applies to (`ETH_P_ALL`: every frame).
    pub protocol: u16,
    /// Every key must match; none matches every frame.
    pub keys: Vec<Key>,
    pub verdict: Verdict,
}

impl Filter {
    /// The link the filter sends frames to, if any.
    pub fn target(&self) -> Option<&str> {
        match &self.verdict {
            Verdict::Stay => None,
            Verdict::Redirect(to) | Verdict::Mirror(to) => Some(to),
        }
    }
}

impl fmt::Display for Filter {
    /// The arguments after `tc filter add dev DEV`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let protocol = match self.protocol {
            ETH_P_ALL => "all".to_string(),
            ETH_P_IP => "ip".to_string(),
            ETH_P_IPV6 => "ipv6".to_string(),
            other => format!("{other:#06x}"),
        };
        write!(f, "ingress prio {} protocol {protocol} u32", self.prio)?;
        if self.keys.is_empty() {
            write!(f, " match u32 0 0")?;
        }
        for k in &self.keys {
            write!(
                f,
                " match u32 {:#010x} {:#010x} at {}",
                k.value, k.mask, k.at
            )?;
        }
        match &self.verdict {
            Verdict::Stay => Ok(()),
            Verdict::Redirect(to) => write!(f, " action mirred egress redirect dev {to}"),
            Verdict::Mirror(to) => write!(f, " action mirred egress mirror dev {to} pass"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_filter_prints_as_the_tc_command_it_equals() {
        let f = Filter {
            prio: 6,
            protocol: ETH_P_ALL,
            keys: Vec::new(),
            verdict: Verdict::Redirect("eth0".into()),
        };
        assert_eq!(
            f.to_string(),
            "ingress prio 6 protocol all u32 match u32 0 0 action mirred egress redirect dev eth0"
        );
        let g = Filter {
            prio: 2,
            protocol: ETH_P_IP,
            keys: vec![Key {
                at: 20,
                mask: 0xffff,
                value: 67,
            }],
            verdict: Verdict::Stay,
        };
        assert_eq!(
            g.to_string(),
            "ingress prio 2 protocol ip u32 match u32 0x00000043 0x0000ffff at 20"
        );
    }
}
