import CSupport
import OCI
#if canImport(Glibc)
import Glibc
#endif

/// User, groups and the five capability sets, applied in the order the kernel requires:
/// bounding set first (needs CAP_SETPCAP), then ids (keeping capabilities across setuid),
/// then effective/permitted/inheritable, then ambient.
enum Credentials {
    static func mask(_ names: [String]?) -> UInt64 {
        (names ?? []).reduce(0) { m, name in CapabilityNames.number(name).map { m | (1 << UInt64($0)) } ?? m }
    }

    static func apply(user: User, capabilities caps: Capabilities?) throws(LinuxContainerError) {
        let last = Int(cocoon_cap_last())
        if let caps {
            let bounding = mask(caps.bounding)
            for cap in 0...last where bounding & (1 << UInt64(cap)) == 0 {
                if cocoon_cap_bound_drop(Int32(cap)) != 0 && errno != EINVAL {
                    throw LinuxContainerError(.permissionDenied, step: "drop capability \(CapabilityNames.all[cap]) from the bounding set",
                                              String(cString: strerror(errno)))
                }
            }
        }
        try InitProcess.check("keep capabilities across setuid", cocoon_set_keepcaps(1))
        let groups = user.additionalGids ?? []
        try InitProcess.check("setgroups", groups.withUnsafeBufferPointer { cocoon_setgroups($0.baseAddress, Int32(groups.count)) })
        try InitProcess.check("setgid \(user.gid)", cocoon_setresgid(user.gid))
        try InitProcess.check("setuid \(user.uid)", cocoon_setresuid(user.uid))
        try InitProcess.check("clear keep capabilities", cocoon_set_keepcaps(0))
        guard let caps else { return }
        try InitProcess.check("capset", cocoon_capset(mask(caps.effective), mask(caps.permitted), mask(caps.inheritable)))
        // The kernel accepts an ambient capability only if it is permitted and inheritable; runc's
        // default spec lists ambient capabilities without inheritable ones, so (like runc) those are skipped.
        let allowed = mask(caps.permitted) & mask(caps.inheritable)
        for name in caps.ambient ?? [] {
            guard let cap = CapabilityNames.number(name), cap <= last, allowed & (1 << UInt64(cap)) != 0 else { continue }
            try InitProcess.check("raise ambient capability \(name)", cocoon_cap_ambient_raise(Int32(cap)))
        }
    }
}
