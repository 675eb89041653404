import CSupport
import OCI
#if canImport(Glibc)
import Glibc
#endif

/// An OCI seccomp profile compiled by libseccomp. Syscall names this kernel and architecture do not
/// know are skipped, as runc does, so one profile serves several kernels.
struct SeccompFilter {
    let profile: Seccomp

    static func action(_ name: String, errnoRet: UInt32?, defaultErrno: UInt32?) throws(LinuxContainerError) -> UInt32 {
        switch name {
        case "SCMP_ACT_KILL", "SCMP_ACT_KILL_THREAD": return 0x0000_0000
        case "SCMP_ACT_KILL_PROCESS": return 0x8000_0000
        case "SCMP_ACT_TRAP": return 0x0003_0000
        case "SCMP_ACT_ERRNO": return 0x0005_0000 | ((errnoRet ?? defaultErrno ?? UInt32(EPERM)) & 0xffff)
        case "SCMP_ACT_TRACE": return 0x7ff0_0000 | ((errnoRet ?? UInt32(EPERM)) & 0xffff)
        case "SCMP_ACT_ALLOW": return 0x7fff_0000
        case "SCMP_ACT_LOG": return 0x7ffc_0000
        default:
            throw LinuxContainerError(.unimplemented, step: "seccomp", "action \(name) is not supported (SCMP_ACT_NOTIFY needs a listener)")
        }
    }

    static func compare(_ op: String) -> scmp_compare {
        switch op {
        case "SCMP_CMP_NE": SCMP_CMP_NE
        case "SCMP_CMP_LT": SCMP_CMP_LT
        case "SCMP_CMP_LE": SCMP_CMP_LE
        case "SCMP_CMP_GE": SCMP_CMP_GE
        case "SCMP_CMP_GT": SCMP_CMP_GT
        case "SCMP_CMP_MASKED_EQ": SCMP_CMP_MASKED_EQ
        default: SCMP_CMP_EQ
        }
    }

    /// A compiled filter, loaded later into the thread that execs.
    final class Compiled: @unchecked Sendable {
        let ctx: scmp_filter_ctx
        init(_ ctx: scmp_filter_ctx) { self.ctx = ctx }
        deinit { seccomp_release(ctx) }

        func load() throws(LinuxContainerError) {
            let r = seccomp_load(ctx)
            if r != 0 { throw LinuxContainerError(.permissionDenied, step: "seccomp", "load the filter: \(String(cString: strerror(-r)))") }
        }
    }

    /// Builds the filter (every error here fails `create`, before the container starts).
    func compile() throws(LinuxContainerError) -> Compiled {
        let defaultAction = try Self.action(profile.defaultAction, errnoRet: profile.defaultErrnoRet, defaultErrno: nil)
        guard let ctx = seccomp_init(defaultAction) else {
            throw LinuxContainerError(step: "seccomp", "seccomp_init failed for default action \(profile.defaultAction)")
        }
        let compiled = Compiled(ctx)
        for arch in profile.architectures ?? [] {
            let name = arch.dropFirst("SCMP_ARCH_".count).lowercased()
            let token = seccomp_arch_resolve_name(name)
            // Unknown to this libseccomp, or the native one (already in the context).
            guard token != 0, seccomp_arch_exist(ctx, token) != 0 else { continue }
            let r = seccomp_arch_add(ctx, token)
            if r != 0 && r != -EEXIST { throw LinuxContainerError(step: "seccomp", "add architecture \(arch): \(String(cString: strerror(-r)))") }
        }
        for flag in profile.flags ?? [] {
            let attribute: scmp_filter_attr? = switch flag {
            case "SECCOMP_FILTER_FLAG_TSYNC": SCMP_FLTATR_CTL_TSYNC
            case "SECCOMP_FILTER_FLAG_LOG": SCMP_FLTATR_CTL_LOG
            case "SECCOMP_FILTER_FLAG_SPEC_ALLOW": SCMP_FLTATR_CTL_SSB
            default: nil
            }
            if let attribute { _ = seccomp_attr_set(ctx, attribute, 1) }
        }
        for (i, rule) in (profile.syscalls ?? []).enumerated() {
            let action = try Self.action(rule.action, errnoRet: rule.errnoRet, defaultErrno: profile.defaultErrnoRet)
            if action == defaultAction { continue }  // libseccomp refuses rules equal to the default
            var comparisons = (rule.args ?? []).map {
                scmp_arg_cmp(arg: $0.index, op: Self.compare($0.op), datum_a: $0.value, datum_b: $0.valueTwo ?? 0)
            }
            for name in rule.names {
                let nr = seccomp_syscall_resolve_name(name)
                guard nr != __NR_SCMP_ERROR else { continue }
                let r = comparisons.withUnsafeMutableBufferPointer {
                    seccomp_rule_add_array(ctx, action, nr, UInt32($0.count), $0.baseAddress)
                }
                if r != 0 {
                    throw LinuxContainerError(.invalidArgument, step: "seccomp",
                        "linux.seccomp.syscalls[\(i)] \(name): \(String(cString: strerror(-r)))")
                }
            }
        }
        return compiled
    }
}
