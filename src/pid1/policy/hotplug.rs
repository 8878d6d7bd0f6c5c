//! When to follow the container's network changes: once a burst of the kernel's
//! notifications pauses (`QUIET`, `LONGEST` after its first at the latest), again for a NIC
//! still waiting to be up with an address, and when to plug new NICs into the guest (at
//! once, or once the helpers restarted for them serve, `PLUG_WAIT` at the latest).
//!
//! No fixed settle: whether a new NIC is finished is the kernel's word, read in the
//! reconciliation (`plan::plan_changes`: Docker brings a NIC up after its MAC and addresses;
//! a NIC not up yet waits, and its coming up is the next notification). The pause only
//! folds a burst of notifications into one look at the namespace.

use std::time::{Duration, Instant};

use super::{Action, Child};

/// How long the notifications must pause before the namespace is read again: Docker makes a
/// NIC's changes (name, MAC, addresses, up) within a millisecond of each other.
pub const QUIET: Duration = Duration::from_millis(5);
/// The longest a burst of notifications delays the look, however long it goes on.
pub const LONGEST: Duration = Duration::from_millis(150);
/// The longest new NICs wait for the restarted helpers before they are plugged in anyway
/// (the guest's DHCP client then asks again).
pub const PLUG_WAIT: Duration = Duration::from_secs(2);

/// Hot-plug's two deadlines: the next reconciliation and the next plug.
#[derive(Debug, Default)]
pub struct Hotplug {
    /// When to bring the guest's NICs in line with the container's (to look again).
    reconcile_at: Option<Instant>,
    /// The burst of notifications going on: when it started, and when to follow it.
    burst: Option<(Instant, Instant)>,
    /// When to plug the NICs taken over into the guest at the latest (sooner once the
    /// helpers in `waiting_for` serve).
    plug_at: Option<Instant>,
    /// The helpers restarted with a configuration for the NICs waiting to be plugged in.
    waiting_for: Vec<Child>,
}

impl Hotplug {
    pub fn next_deadline(&self) -> Option<Instant> {
        let burst = self.burst.map(|(_, due)| due);
        [self.reconcile_at, burst, self.plug_at]
            .into_iter()
            .flatten()
            .min()
    }

    /// The kernel reported a change: follow it once the notifications pause for `QUIET`,
    /// `LONGEST` after the burst's first at the latest.
    pub fn network_changed(&mut self, now: Instant) {
        let first = self.burst.map_or(now, |(first, _)| first);
        self.burst = Some((first, (now + QUIET).min(first + LONGEST)));
    }

    /// A reconciliation is done: look again in `again_in` (a NIC waits for its address);
    /// new NICs (`plugs_pending`) are plugged in once the helpers `reconfigured` for them
    /// serve, at once when there are none.
    pub fn reconciled(
        &mut self,
        now: Instant,
        again_in: Option<Duration>,
        reconfigured: &[Child],
        plugs_pending: bool,
    ) {
        if let Some(wait) = again_in {
            no_later_than(&mut self.reconcile_at, now + wait);
        }
        if plugs_pending || self.plug_at.is_some() {
            for child in reconfigured {
                if !self.waiting_for.contains(child) {
                    self.waiting_for.push(*child);
                }
            }
        }
        if plugs_pending {
            let at = if reconfigured.is_empty() {
                now
            } else {
                now + PLUG_WAIT
            };
            no_later_than(&mut self.plug_at, at);
        }
    }

    /// A restarted helper serves: the NICs waiting for it are plugged in once no other
    /// helper is waited for.
    pub fn ready(&mut self, child: Child, now: Instant) {
        self.waiting_for.retain(|c| *c != child);
        if self.plug_at.is_some() && self.waiting_for.is_empty() {
            self.plug_at = Some(now);
        }
    }

    /// Acts on the deadlines passed by `now`: reconcile, plug.
    pub fn tick(&mut self, now: Instant, actions: &mut Vec<Action>) {
        let burst_due = self.burst.is_some_and(|(_, due)| now >= due);
        if burst_due || self.reconcile_at.is_some_and(|t| now >= t) {
            self.reconcile_at = None;
            self.burst = None;
            actions.push(Action::Reconcile);
        }
        if self.plug_at.is_some_and(|t| now >= t) {
            self.plug_at = None;
            self.waiting_for.clear();
            actions.push(Action::Plug);
        }
    }
}

/// Sets `deadline` to `at`, unless it is sooner already.
fn no_later_than(deadline: &mut Option<Instant>, at: Instant) {
    *deadline = Some(deadline.map_or(at, |t| t.min(at)));
}

#[cfg(test)]
mod tests {
    use super::*;

    const D: Child = Child::Dnsmasq;

    fn tick(h: &mut Hotplug, now: Instant) -> Vec<Action> {
        let mut actions = Vec::new();
        h.tick(now, &mut actions);
        actions
    }

    #[test]
    fn a_burst_of_changes_is_followed_once_it_pauses() {
        let mut h = Hotplug::default();
        let t0 = Instant::now();
        assert_eq!(h.next_deadline(), None);
        h.network_changed(t0);
        assert_eq!(h.next_deadline(), Some(t0 + QUIET));
        let t1 = t0 + QUIET / 2;
        h.network_changed(t1);
        assert_eq!(tick(&mut h, t0 + QUIET), vec![], "it went on");
        assert_eq!(tick(&mut h, t1 + QUIET), vec![Action::Reconcile]);
        assert_eq!(h.next_deadline(), None);
    }

    #[test]
    fn a_burst_that_goes_on_is_followed_longest_after_its_first() {
        let mut h = Hotplug::default();
        let t0 = Instant::now();
        let mut now = t0;
        while now < t0 + LONGEST {
            h.network_changed(now);
            assert!(h.next_deadline() <= Some(t0 + LONGEST));
            now += QUIET / 2;
        }
        assert_eq!(h.next_deadline(), Some(t0 + LONGEST));
        assert_eq!(tick(&mut h, t0 + LONGEST), vec![Action::Reconcile]);
        h.network_changed(t0 + LONGEST);
        assert_eq!(h.next_deadline(), Some(t0 + LONGEST + QUIET), "a new burst");
    }

    #[test]
    fn a_sooner_look_again_wins_over_a_later_one() {
        let mut h = Hotplug::default();
        let t0 = Instant::now();
        h.reconciled(t0, Some(Duration::from_millis(100)), &[], false);
        assert_eq!(h.next_deadline(), Some(t0 + Duration::from_millis(100)));
        h.reconciled(t0, Some(Duration::from_secs(1)), &[], false);
        assert_eq!(h.next_deadline(), Some(t0 + Duration::from_millis(100)));
    }

    #[test]
    fn new_nics_wait_for_the_restarted_helper_or_plug_wait() {
        let t0 = Instant::now();
        let mut served = Hotplug::default();
        served.reconciled(t0, None, &[D], true);
        assert_eq!(served.next_deadline(), Some(t0 + PLUG_WAIT));
        let t1 = t0 + Duration::from_millis(300);
        served.ready(D, t1);
        assert_eq!(tick(&mut served, t1), vec![Action::Plug]);
        assert_eq!(served.next_deadline(), None);

        let mut silent = Hotplug::default();
        silent.reconciled(t0, None, &[D], true);
        assert_eq!(tick(&mut silent, t0 + PLUG_WAIT / 2), vec![]);
        assert_eq!(tick(&mut silent, t0 + PLUG_WAIT), vec![Action::Plug]);
    }

    #[test]
    fn new_nics_with_no_helper_to_wait_for_are_plugged_at_once() {
        let t0 = Instant::now();
        let mut h = Hotplug::default();
        h.reconciled(t0, None, &[], true);
        assert_eq!(tick(&mut h, t0), vec![Action::Plug]);
    }

    #[test]
    fn a_helper_ready_with_no_nic_waiting_plugs_nothing() {
        let t0 = Instant::now();
        let mut h = Hotplug::default();
        h.reconciled(t0, None, &[D], false);
        h.ready(D, t0);
        assert_eq!(h.next_deadline(), None);
        assert_eq!(tick(&mut h, t0 + PLUG_WAIT), vec![]);
    }

    #[test]
    fn a_plug_already_due_is_not_held_back_by_a_later_configuration() {
        let t0 = Instant::now();
        let mut h = Hotplug::default();
        h.reconciled(t0, None, &[D], true);
        h.ready(D, t0);
        // The plug is due; a new configuration before it is carried out does not delay the
        // NICs already served.
        h.reconciled(t0, None, &[D], false);
        assert_eq!(tick(&mut h, t0), vec![Action::Plug]);
    }
}
