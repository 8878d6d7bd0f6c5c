//! Proves /dev/kvm can run a guest by running one: three instructions in real mode.
//!
//! `/dev/kvm` present is not `/dev/kvm` usable (nested hypervisors without the needed
//! features, device nodes without permission). QEMU finds out only after the user
//! waited for a boot that never comes; this probe finds out in a millisecond.
#![allow(unsafe_code)]

use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};

const KVMIO: u8 = 0xAE;
const KVM_API_VERSION: i32 = 12;
const KVM_EXIT_IO: u32 = 2;
const KVM_EXIT_HLT: u32 = 5;
const GUEST_ADDR: u64 = 0x1000;
/// `mov al, 0x2a; out 0x10, al; hlt`
const PROGRAM: [u8; 5] = [0xb0, 0x2a, 0xe6, 0x10, 0xf4];

#[repr(C)]
struct UserspaceMemoryRegion {
    slot: u32,
    flags: u32,
    guest_phys_addr: u64,
    memory_size: u64,
    userspace_addr: u64,
}

#[repr(C)]
#[derive(Clone, Copy)]
struct Segment {
    base: u64,
    limit: u32,
    selector: u16,
    type_: u8,
    present: u8,
    dpl: u8,
    db: u8,
    s: u8,
    l: u8,
    g: u8,
    avl: u8,
    unusable: u8,
    padding: u8,
}

#[repr(C)]
struct Sregs {
    segs: [Segment; 8], // cs ds es fs gs ss tr ldt
    tables: [[u64; 2]; 2],
    cr0: u64,
    cr2: u64,
    cr3: u64,
    cr4: u64,
    cr8: u64,
    efer: u64,
    apic_base: u64,
    interrupt_bitmap: [u64; 4],
}

/// `struct kvm_msrs` with room for one `struct kvm_msr_entry`.
#[repr(C)]
struct OneMsr {
    nmsrs: u32,
    pad: u32,
    index: u32,
    reserved: u32,
    data: u64,
}

/// `struct kvm_msr_list` with room for 256 indices.
#[repr(C)]
struct MsrList {
    nmsrs: u32,
    indices: [u32; 256],
}

#[repr(C)]
struct Regs {
    gp: [u64; 16],
    rip: u64,
    rflags: u64,
}

const KVM_GET_API_VERSION: libc::c_ulong = nix::request_code_none!(KVMIO, 0x00) as libc::c_ulong;
const KVM_CREATE_VM: libc::c_ulong = nix::request_code_none!(KVMIO, 0x01) as libc::c_ulong;
const KVM_GET_VCPU_MMAP_SIZE: libc::c_ulong = nix::request_code_none!(KVMIO, 0x04) as libc::c_ulong;
const KVM_CREATE_VCPU: libc::c_ulong = nix::request_code_none!(KVMIO, 0x41) as libc::c_ulong;
const KVM_SET_USER_MEMORY_REGION: libc::c_ulong =
    nix::request_code_write!(KVMIO, 0x46, std::mem::size_of::<UserspaceMemoryRegion>())
        as libc::c_ulong;
const KVM_GET_MSR_FEATURE_INDEX_LIST: libc::c_ulong =
    nix::request_code_readwrite!(KVMIO, 0x0a, std::mem::size_of::<u32>()) as libc::c_ulong;
const KVM_GET_MSRS: libc::c_ulong = nix::request_code_readwrite!(KVMIO, 0x88, 8) as libc::c_ulong;
const KVM_SET_MSRS: libc::c_ulong = nix::request_code_write!(KVMIO, 0x89, 8) as libc::c_ulong;
/// MSRs QEMU copies from the host's feature MSRs into every vCPU with `-cpu host`.
/// Nested hypervisors have been seen to offer them and then refuse to set them,
/// which makes QEMU abort ("failed to set MSR 0x10a").
const FEATURE_MSRS: [u32; 1] = [0x10a /* IA32_ARCH_CAPABILITIES */];
const QEMU_KNOWN_ARCH_CAP_BITS: u64 = 0x01ff_ffff;
const KVM_RUN: libc::c_ulong = nix::request_code_none!(KVMIO, 0x80) as libc::c_ulong;
const KVM_SET_REGS: libc::c_ulong =
    nix::request_code_write!(KVMIO, 0x82, std::mem::size_of::<Regs>()) as libc::c_ulong;
const KVM_GET_SREGS: libc::c_ulong =
    nix::request_code_read!(KVMIO, 0x83, std::mem::size_of::<Sregs>()) as libc::c_ulong;
const KVM_SET_SREGS: libc::c_ulong =
    nix::request_code_write!(KVMIO, 0x84, std::mem::size_of::<Sregs>()) as libc::c_ulong;

/// `ioctl(fd, req, arg)`, with the errno named after `what` on failure.
///
/// # Safety
/// `arg` must be what request `req` expects: an integer, or a pointer to a live value of
/// the structure the request reads or writes (as its number, built with its size, says).
unsafe fn ioctl(
    fd: RawFd,
    req: libc::c_ulong,
    arg: libc::c_ulong,
    what: &str,
) -> Result<i32, String> {
    // SAFETY: the caller upholds the contract above.
    let r = unsafe { libc::ioctl(fd, req as _, arg) };
    if r < 0 {
        Err(format!("{what}: {}", std::io::Error::last_os_error()))
    } else {
        Ok(r)
    }
}

fn owned(fd: i32) -> OwnedFd {
    // SAFETY: `fd` was just returned by a successful ioctl that creates a descriptor;
    // nothing else owns it.
    unsafe { OwnedFd::from_raw_fd(fd) }
}

/// An anonymous private mapping, unmapped on drop.
struct Mapping {
    ptr: *mut libc::c_void,
    len: usize,
}

impl Mapping {
    fn new(len: usize, fd: Option<RawFd>) -> Result<Mapping, String> {
        let (flags, fd) = match fd {
            Some(fd) => (libc::MAP_SHARED, fd),
            None => (libc::MAP_PRIVATE | libc::MAP_ANONYMOUS, -1),
        };
        // SAFETY: a fresh mapping at an address the kernel chooses; no existing memory
        // is affected.
        let ptr = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                len,
                libc::PROT_READ | libc::PROT_WRITE,
                flags,
                fd,
                0,
            )
        };
        if ptr == libc::MAP_FAILED {
            return Err(format!("mmap: {}", std::io::Error::last_os_error()));
        }
        Ok(Mapping { ptr, len })
    }
}

impl Drop for Mapping {
    fn drop(&mut self) {
        // SAFETY: `ptr`/`len` describe a mapping this value created and still owns.
        unsafe { libc::munmap(self.ptr, self.len) };
    }
}

/// What the probe guest was made of: held by the caller, its teardown (about half the
/// probe's time: the kernel frees the VM) happens when the caller drops it.
#[derive(Default)]
pub struct ProbeVm {
    // Dropped in this order: the mappings, then the vCPU and the VM.
    maps: Vec<Mapping>,
    fds: Vec<OwnedFd>,
}

impl ProbeVm {
    /// Keeps `fd`; its number, for the requests that follow.
    fn fd(&mut self, fd: OwnedFd) -> RawFd {
        let raw = fd.as_raw_fd();
        self.fds.push(fd);
        raw
    }

    /// Keeps `map`; its address.
    fn map(&mut self, map: Mapping) -> *mut libc::c_void {
        let ptr = map.ptr;
        self.maps.push(map);
        ptr
    }
}

/// Creates a VM with one vCPU, runs `PROGRAM` and checks it exits with the port
/// write and then the halt. Any other outcome means KVM cannot run a guest here. The VM,
/// vCPU and mappings go into `keep`.
pub fn run_probe_guest(kvm: &OwnedFd, keep: &mut ProbeVm) -> Result<(), String> {
    // SAFETY: the request takes an integer argument, not a pointer.
    let version = unsafe {
        ioctl(
            kvm.as_raw_fd(),
            KVM_GET_API_VERSION,
            0,
            "KVM_GET_API_VERSION",
        )
    }?;
    if version != KVM_API_VERSION {
        return Err(format!(
            "KVM API version {version}, expected {KVM_API_VERSION}"
        ));
    }
    // SAFETY: the request takes an integer argument, not a pointer.
    let vm = owned(unsafe { ioctl(kvm.as_raw_fd(), KVM_CREATE_VM, 0, "KVM_CREATE_VM") }?);
    let vm = keep.fd(vm);

    let mem = keep.map(Mapping::new(0x1000, None)?);
    // SAFETY: `mem` is a writable mapping of 4096 bytes; PROGRAM is 5 bytes.
    unsafe { std::ptr::copy_nonoverlapping(PROGRAM.as_ptr(), mem.cast::<u8>(), PROGRAM.len()) };
    let region = UserspaceMemoryRegion {
        slot: 0,
        flags: 0,
        guest_phys_addr: GUEST_ADDR,
        memory_size: 0x1000,
        userspace_addr: mem as u64,
    };
    // SAFETY: the request takes a pointer to this local structure, which outlives the call.
    unsafe {
        ioctl(
            vm,
            KVM_SET_USER_MEMORY_REGION,
            &region as *const _ as libc::c_ulong,
            "KVM_SET_USER_MEMORY_REGION",
        )
    }?;

    // SAFETY: the request takes an integer argument, not a pointer.
    let vcpu = owned(unsafe { ioctl(vm, KVM_CREATE_VCPU, 0, "KVM_CREATE_VCPU") }?);
    let vcpu = keep.fd(vcpu);
    // SAFETY: the request takes an integer argument, not a pointer.
    let run_size = unsafe {
        ioctl(
            kvm.as_raw_fd(),
            KVM_GET_VCPU_MMAP_SIZE,
            0,
            "KVM_GET_VCPU_MMAP_SIZE",
        )
    }? as usize;
    let run = keep.map(Mapping::new(run_size, Some(vcpu))?);

    // SAFETY: Sregs is plain old data; all-zero is a valid value to be overwritten.
    let mut sregs: Sregs = unsafe { std::mem::zeroed() };
    // SAFETY: the request takes a pointer to this local structure, which outlives the call.
    unsafe {
        ioctl(
            vcpu,
            KVM_GET_SREGS,
            &mut sregs as *mut _ as libc::c_ulong,
            "KVM_GET_SREGS",
        )
    }?;
    sregs.segs[0].base = 0; // cs
    sregs.segs[0].selector = 0;
    // SAFETY: the request takes a pointer to this local structure, which outlives the call.
    unsafe {
        ioctl(
            vcpu,
            KVM_SET_SREGS,
            &sregs as *const _ as libc::c_ulong,
            "KVM_SET_SREGS",
        )
    }?;
    let regs = Regs {
        gp: [0; 16],
        rip: GUEST_ADDR,
        rflags: 2,
    };
    // SAFETY: the request takes a pointer to this local structure, which outlives the call.
    unsafe {
        ioctl(
            vcpu,
            KVM_SET_REGS,
            &regs as *const _ as libc::c_ulong,
            "KVM_SET_REGS",
        )
    }?;

    check_feature_msrs(kvm, vcpu)?;

    for expected in [KVM_EXIT_IO, KVM_EXIT_HLT] {
        // SAFETY: the request takes an integer argument, not a pointer.
        unsafe { ioctl(vcpu, KVM_RUN, 0, "KVM_RUN") }?;
        // SAFETY: `run` maps the vCPU's kvm_run structure, whose u32 exit_reason sits
        // at offset 8; the kernel does not write it while KVM_RUN is not executing.
        let reason = unsafe { run.cast::<u8>().add(8).cast::<u32>().read_volatile() };
        if reason != expected {
            return Err(format!(
                "test guest stopped with KVM exit reason {reason}, expected {expected}"
            ));
        }
    }
    Ok(())
}

/// Reads each feature MSR QEMU will copy from /dev/kvm and sets it on the vCPU, as
/// QEMU does with `-cpu host`; a refusal means QEMU would abort.
fn check_feature_msrs(kvm: &OwnedFd, vcpu: RawFd) -> Result<(), String> {
    let mut list = MsrList {
        nmsrs: 256,
        indices: [0; 256],
    };
    // SAFETY: the request takes a pointer to this local structure, which outlives the call.
    if unsafe {
        ioctl(
            kvm.as_raw_fd(),
            KVM_GET_MSR_FEATURE_INDEX_LIST,
            &mut list as *mut _ as libc::c_ulong,
            "KVM_GET_MSR_FEATURE_INDEX_LIST",
        )
    }
    .is_err()
    {
        // An old kernel without feature MSRs: QEMU will not copy any.
        return Ok(());
    }
    let offered = &list.indices[..(list.nmsrs as usize).min(256)];
    for msr in FEATURE_MSRS.into_iter().filter(|m| offered.contains(m)) {
        let mut one = OneMsr {
            nmsrs: 1,
            pad: 0,
            index: msr,
            reserved: 0,
            data: 0,
        };
        // SAFETY: the request takes a pointer to this local structure, which outlives the call.
        let read = unsafe {
            ioctl(
                kvm.as_raw_fd(),
                KVM_GET_MSRS,
                &mut one as *mut _ as libc::c_ulong,
                "KVM_GET_MSRS",
            )
        }?;
        if read != 1 {
            return Err(format!("KVM offers MSR {msr:#x} but cannot read it"));
        }
        // QEMU sets the bits of the host's value that it has names for (bits 0-24
        // in QEMU 7.x); setting the same subset tells whether QEMU's write will pass.
        let host_value = one.data;
        one.data = host_value & QEMU_KNOWN_ARCH_CAP_BITS;
        // SAFETY: the request takes a pointer to this local structure, which outlives the call.
        let set = unsafe {
            ioctl(
                vcpu,
                KVM_SET_MSRS,
                &one as *const _ as libc::c_ulong,
                "KVM_SET_MSRS",
            )
        }?;
        if set != 1 {
            return Err(format!(
                "KVM offers MSR {msr:#x} (host value {host_value:#x}) but refuses to set it on a vCPU, which QEMU requires; a nested hypervisor without full support"
            ));
        }
    }
    Ok(())
}
