//! What `vminit health` concludes (pure): whether the guest holds every address vminit
//! handed it, from whether it answers for each one now and what earlier checks saw.
//!
//! A running QEMU proves nothing about the network: a guest that never took its lease, or
//! dropped an address, still "runs". So the check asks the guest itself, without an agent in
//! it, for each handed-over address (an ARP probe, a neighbour solicitation, from the door),
//! and remembers between checks which addresses were answered once and since when one is
//! missing. A DHCP lease is no proof: a guest configured by the cloud-init seed never asks.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::net::IpAddr;

use crate::net::types::Mac;

/// One address the guest was handed: the container NIC, the link the guest is asked from
/// (its door; with the tap datapath, the tap), the guest's MAC.
#[derive(Clone, Debug, PartialEq)]
pub struct Handed {
    pub lower: String,
    pub door: String,
    pub mac: Mac,
    pub addr: IpAddr,
}

impl Handed {
    fn key(&self) -> String {
        format!("{} {}", self.lower, self.addr)
    }
}

/// The handed-over addresses as the supervisor writes them to the run directory: one per
/// line, `LOWER DOOR MAC ADDRESS` (interface names hold no whitespace).
pub fn render_handed(list: &[Handed]) -> String {
    let mut out = String::new();
    for h in list {
        let _ = writeln!(out, "{} {} {} {}", h.lower, h.door, h.mac, h.addr);
    }
    out
}

/// Reads what `render_handed` wrote; lines it cannot read are skipped.
pub fn parse_handed(text: &str) -> Vec<Handed> {
    text.lines()
        .filter_map(|line| {
            let mut w = line.split(' ');
            Some(Handed {
                lower: w.next()?.to_string(),
                door: w.next()?.to_string(),
                mac: w.next()?.parse().ok()?,
                addr: w.next()?.parse().ok()?,
            })
        })
        .collect()
}

/// What the checks remember about one address.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct Seen {
    /// The guest answered for it at least once.
    pub held: bool,
    /// Since when (seconds since the epoch) it has not answered, after it had.
    pub missing_since: Option<u64>,
}

/// What the checks remember, by address (`LOWER ADDRESS`).
pub type Memory = BTreeMap<String, Seen>;

/// The memory as text: `LOWER ADDRESS held|new [MISSING_SINCE]` per line.
pub fn render_memory(memory: &Memory) -> String {
    let mut out = String::new();
    for (key, seen) in memory {
        let _ = write!(out, "{key} {}", if seen.held { "held" } else { "new" });
        if let Some(t) = seen.missing_since {
            let _ = write!(out, " {t}");
        }
        out.push('\n');
    }
    out
}

/// Reads what `render_memory` wrote; lines it cannot read are forgotten.
pub fn parse_memory(text: &str) -> Memory {
    text.lines()
        .filter_map(|line| {
            let w: Vec<&str> = line.split(' ').collect();
            let (key, rest) = (w.get(..2)?.join(" "), w.get(2..)?);
            let held = match *rest.first()? {
                "held" => true,
                "new" => false,
                _ => return None,
            };
            let missing_since = match rest.get(1) {
                Some(t) => Some(t.parse().ok()?),
                None => None,
            };
            Some((
                key,
                Seen {
                    held,
                    missing_since,
                },
            ))
        })
        .collect()
}

/// The verdict, with one line per address that is not held.
#[derive(Clone, Debug, PartialEq)]
pub enum Verdict {
    /// Every address answers.
    Healthy(Vec<String>),
    /// Some address never answered yet (the guest is still booting or configuring).
    Starting(Vec<String>),
    /// An address the guest held has not answered for longer than the grace period.
    Unhealthy(Vec<String>),
}

/// Judges one check: `answered[i]` says whether the guest answered for `handed[i]` now,
/// `now` is in seconds since the epoch. An address the guest held and lost is tolerated
/// for `grace` seconds (a reboot, a DHCP renewal); after that the guest is unhealthy. One
/// never held keeps the guest `Starting`. Returns the new memory (addresses no longer
/// handed over are forgotten).
pub fn judge(
    handed: &[Handed],
    answered: &[bool],
    memory: &Memory,
    now: u64,
    grace: u64,
) -> (Verdict, Memory) {
    let mut next = Memory::new();
    let (mut lost, mut waiting, mut notes) = (Vec::new(), Vec::new(), Vec::new());
    for (h, &ok) in handed.iter().zip(answered) {
        let before = memory.get(&h.key()).copied().unwrap_or_default();
        let seen = if ok {
            Seen {
                held: true,
                missing_since: None,
            }
        } else if before.held {
            let since = before.missing_since.unwrap_or(now);
            let gone = now.saturating_sub(since);
            let line = format!(
                "{}: the guest does not answer for {} ({gone} s)",
                h.lower, h.addr
            );
            if gone > grace {
                lost.push(line);
            } else {
                notes.push(line + &format!(", unhealthy after {grace} s"));
            }
            Seen {
                held: true,
                missing_since: Some(since),
            }
        } else {
            waiting.push(format!(
                "{}: the guest has not taken {} yet",
                h.lower, h.addr
            ));
            Seen::default()
        };
        next.insert(h.key(), seen);
    }
    let verdict = if !lost.is_empty() {
        Verdict::Unhealthy(lost.into_iter().chain(waiting).chain(notes).collect())
    } else if !waiting.is_empty() {
        Verdict::Starting(waiting.into_iter().chain(notes).collect())
    } else {
        Verdict::Healthy(notes)
    };
    (verdict, next)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn handed() -> Vec<Handed> {
        vec![
            Handed {
                lower: "eth0".into(),
                door: "vmlink0".into(),
                mac: Mac([2, 0x42, 10, 1, 0, 2]),
                addr: "10.1.0.2".parse().unwrap(),
            },
            Handed {
                lower: "eth0".into(),
                door: "vmlink0".into(),
                mac: Mac([2, 0x42, 10, 1, 0, 2]),
                addr: "fd00:1::2".parse().unwrap(),
            },
        ]
    }

    #[test]
    fn the_handed_over_addresses_and_the_memory_survive_their_files() {
        assert_eq!(parse_handed(&render_handed(&handed())), handed());
        let mut m = Memory::new();
        m.insert(
            "eth0 10.1.0.2".into(),
            Seen {
                held: true,
                missing_since: Some(7),
            },
        );
        m.insert("eth1 fd00:1::2".into(), Seen::default());
        assert_eq!(parse_memory(&render_memory(&m)), m);
        assert!(parse_memory("garbage\neth0 10.1.0.2 maybe\n").is_empty());
    }

    #[test]
    fn starting_until_every_address_answers_then_healthy_then_unhealthy_after_the_grace() {
        let h = handed();
        let (v, m) = judge(&h, &[true, false], &Memory::new(), 100, 20);
        assert_eq!(
            v,
            Verdict::Starting(vec!["eth0: the guest has not taken fd00:1::2 yet".into()])
        );
        let (v, m) = judge(&h, &[true, true], &m, 110, 20);
        assert_eq!(v, Verdict::Healthy(vec![]));
        // Lost: tolerated for the grace period, said so, then unhealthy.
        let (v, m) = judge(&h, &[false, true], &m, 120, 20);
        assert!(
            matches!(&v, Verdict::Healthy(n) if n[0].contains("unhealthy after 20 s")),
            "{v:?}"
        );
        let (v, m) = judge(&h, &[false, true], &m, 141, 20);
        assert_eq!(
            v,
            Verdict::Unhealthy(vec![
                "eth0: the guest does not answer for 10.1.0.2 (21 s)".into()
            ])
        );
        // Back: healthy again, and the clock starts anew.
        let (v, m) = judge(&h, &[true, true], &m, 150, 20);
        assert_eq!(v, Verdict::Healthy(vec![]));
        assert_eq!(
            m["eth0 10.1.0.2"],
            Seen {
                held: true,
                missing_since: None
            }
        );
        // An address no longer handed over is forgotten.
        let (_, m) = judge(&h[..1], &[true], &m, 160, 20);
        assert_eq!(m.len(), 1);
    }
}
