//! The supervised children by pid: QEMU's and each helper's, and what a reaped pid means to
//! the policy.

use nix::unistd::Pid;

use crate::pid1::policy::{Child, Event, Exit};

/// The pids of QEMU and of the helper children alive now.
#[derive(Debug)]
pub struct Children {
    qemu: Pid,
    helpers: Vec<(Child, Pid)>,
}

impl Children {
    pub fn new(qemu: Pid, helpers: &[(Child, Pid)]) -> Children {
        Children {
            qemu,
            helpers: helpers.to_vec(),
        }
    }

    pub fn qemu(&self) -> Pid {
        self.qemu
    }

    /// The helpers alive, in the order they were given.
    pub fn helpers(&self) -> Vec<Child> {
        self.helpers.iter().map(|&(child, _)| child).collect()
    }

    /// The pid of `child`, if it is alive (not reaped yet).
    pub fn pid(&self, child: Child) -> Option<Pid> {
        self.helpers
            .iter()
            .find(|&&(c, _)| c == child)
            .map(|&(_, pid)| pid)
    }

    /// `child` was started again as `pid`.
    pub fn started(&mut self, child: Child, pid: Pid) {
        self.helpers.retain(|&(c, _)| c != child);
        self.helpers.push((child, pid));
    }

    /// What the exit of a reaped pid means: QEMU's, a helper's (its pid is forgotten: the
    /// kernel may hand it out again, and a signal for the helper must not reach a stranger),
    /// or nothing (an orphan the kernel gave PID 1 to reap).
    pub fn reaped(&mut self, pid: Pid, exit: Exit) -> Option<Event> {
        if pid == self.qemu {
            return Some(Event::QemuExited(exit));
        }
        let at = self.helpers.iter().position(|&(_, p)| p == pid)?;
        let (child, _) = self.helpers.remove(at);
        Some(Event::ChildExited(child, exit))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const QEMU: Pid = Pid::from_raw(10);
    const DNSMASQ: Pid = Pid::from_raw(11);

    fn children() -> Children {
        Children::new(QEMU, &[(Child::Dnsmasq, DNSMASQ)])
    }

    #[test]
    fn qemus_pid_is_qemus_exit() {
        let mut c = children();
        assert_eq!(
            c.reaped(QEMU, Exit::Signal(9)),
            Some(Event::QemuExited(Exit::Signal(9)))
        );
    }

    #[test]
    fn a_helpers_pid_is_its_exit_once_and_then_forgotten() {
        let mut c = children();
        assert_eq!(c.pid(Child::Dnsmasq), Some(DNSMASQ));
        assert_eq!(
            c.reaped(DNSMASQ, Exit::Code(1)),
            Some(Event::ChildExited(Child::Dnsmasq, Exit::Code(1)))
        );
        assert_eq!(c.pid(Child::Dnsmasq), None, "no signal to a reused pid");
        assert_eq!(c.reaped(DNSMASQ, Exit::Code(0)), None);
        assert_eq!(c.helpers(), vec![]);
    }

    #[test]
    fn a_restarted_helper_is_known_by_its_new_pid() {
        let mut c = children();
        c.reaped(DNSMASQ, Exit::Code(1));
        let new = Pid::from_raw(12);
        c.started(Child::Dnsmasq, new);
        assert_eq!(c.pid(Child::Dnsmasq), Some(new));
        assert_eq!(c.reaped(DNSMASQ, Exit::Code(0)), None);
        assert_eq!(
            c.reaped(new, Exit::Signal(15)),
            Some(Event::ChildExited(Child::Dnsmasq, Exit::Signal(15)))
        );
    }

    #[test]
    fn a_pid_of_no_child_of_ours_is_nothing() {
        let mut c = children();
        assert_eq!(c.reaped(Pid::from_raw(99), Exit::Code(0)), None);
        assert_eq!(c.helpers(), vec![Child::Dnsmasq], "nothing forgotten");
        assert_eq!(c.qemu(), QEMU);
    }

    #[test]
    fn without_helpers_only_qemu_is_known() {
        let mut c = Children::new(QEMU, &[]);
        assert_eq!(c.helpers(), vec![]);
        assert_eq!(c.reaped(DNSMASQ, Exit::Code(0)), None);
        assert_eq!(
            c.reaped(QEMU, Exit::Code(0)),
            Some(Event::QemuExited(Exit::Code(0)))
        );
    }
}
