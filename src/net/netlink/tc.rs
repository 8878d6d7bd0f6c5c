//! The tc requests of the tap datapath (pure): an ingress qdisc, and u32 filters with an
//! optional mirred action. Each builder names the `tc` command it equals.

use netlink_packet_route::tc::{
    TcAction, TcActionAttribute, TcActionMirrorOption, TcActionOption, TcActionType, TcAttribute,
    TcFilterU32Option, TcHandle, TcMessage, TcMirror, TcMirrorActionType, TcOption, TcU32Key,
    TcU32Selector, TcU32SelectorFlags,
};

use crate::net::tc::{Filter, Verdict};

/// The ingress qdisc's handle, `ffff:`, which its filters name as their parent.
const INGRESS_HANDLE: TcHandle = TcHandle {
    major: 0xffff,
    minor: 0,
};

/// `tc qdisc add dev DEV ingress` (and, sent as a delete, `tc qdisc del dev DEV ingress`)
pub fn ingress(index: u32) -> TcMessage {
    let mut msg = TcMessage::with_index(index as i32);
    msg.header.handle = INGRESS_HANDLE;
    msg.header.parent = TcHandle::INGRESS;
    msg.attributes.push(TcAttribute::Kind("ingress".into()));
    msg
}

/// `tc filter add dev DEV <filter>`; `target` is the index of the link its action sends to.
pub fn filter(index: u32, filter: &Filter, target: Option<u32>) -> TcMessage {
    let mut msg = TcMessage::with_index(index as i32);
    msg.header.parent = INGRESS_HANDLE;
    // TC_H_MAKE(prio << 16, htons(protocol))
    msg.header.info = (u32::from(filter.prio) << 16) | u32::from(filter.protocol.to_be());
    let mut selector = TcU32Selector::default();
    selector.flags = TcU32SelectorFlags::Terminal;
    selector.keys = filter
        .keys
        .iter()
        .map(|k| {
            let mut key = TcU32Key::default();
            key.mask = k.mask;
            key.val = k.value & k.mask;
            key.off = k.at;
            key
        })
        .collect();
    if selector.keys.is_empty() {
        // `match u32 0 0`: a key that every frame matches.
        selector.keys.push(TcU32Key::default());
    }
    selector.nkeys = selector.keys.len() as u8;
    let mut options = vec![TcOption::U32(TcFilterU32Option::Selector(selector))];
    let mirred = match &filter.verdict {
        Verdict::Stay => None,
        Verdict::Redirect(_) => Some((TcMirrorActionType::EgressRedir, TcActionType::Stolen)),
        Verdict::Mirror(_) => Some((TcMirrorActionType::EgressMirror, TcActionType::Ok)),
    };
    if let (Some((eaction, then)), Some(ifindex)) = (mirred, target) {
        let mut parms = TcMirror::default();
        parms.eaction = eaction;
        parms.ifindex = ifindex;
        parms.generic.action = then;
        let mut action = TcAction::default();
        action.tab = 1;
        action.attributes = vec![
            TcActionAttribute::Kind("mirred".into()),
            TcActionAttribute::Options(vec![TcActionOption::Mirror(TcActionMirrorOption::Parms(
                parms,
            ))]),
        ];
        options.push(TcOption::U32(TcFilterU32Option::Action(vec![action])));
    }
    msg.attributes = vec![
        TcAttribute::Kind("u32".into()),
        TcAttribute::Options(options),
    ];
    msg
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::net::tc::{ETH_P_ALL, Key};
    use netlink_packet_core::Emitable;

    fn bytes(msg: &TcMessage) -> Vec<u8> {
        let mut buf = vec![0; msg.buffer_len()];
        msg.emit(&mut buf);
        buf
    }

    #[test]
    fn the_ingress_qdisc_is_ffff_under_the_ingress_parent() {
        let b = bytes(&ingress(7));
        // family, pads, ifindex 7, handle ffff:0000, parent ffff:fff1, info 0
        assert_eq!(
            &b[..20],
            &[
                0, 0, 0, 0, 7, 0, 0, 0, 0, 0, 0xff, 0xff, 0xf1, 0xff, 0xff, 0xff, 0, 0, 0, 0
            ]
        );
    }

    #[test]
    fn a_redirect_filter_carries_a_stolen_egress_mirred_to_its_target() {
        let f = Filter {
            prio: 3,
            protocol: ETH_P_ALL,
            keys: vec![Key {
                at: -14,
                mask: 0xffff_ffff,
                value: 0x0242_ac13,
            }],
            verdict: Verdict::Redirect("eth0".into()),
        };
        let msg = filter(5, &f, Some(9));
        assert_eq!(msg.header.info, 0x0003_0300);
        assert_eq!(msg.header.parent, INGRESS_HANDLE);
        let text = format!("{:?}", msg.attributes);
        assert!(text.contains("EgressRedir"), "{text}");
        assert!(text.contains("ifindex: 9"), "{text}");
        assert!(text.contains("Stolen"), "{text}");
        assert!(text.contains("off: -14"), "{text}");
    }

    #[test]
    fn a_filter_that_keeps_frames_has_no_action_and_matches_all_with_no_keys() {
        let f = Filter {
            prio: 1,
            protocol: ETH_P_ALL,
            keys: Vec::new(),
            verdict: Verdict::Stay,
        };
        let text = format!("{:?}", filter(5, &f, None).attributes);
        assert!(!text.contains("Action"), "{text}");
        assert!(text.contains("nkeys: 1"), "{text}");
    }
}
