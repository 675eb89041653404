import CSupport
import Config
import Hypervisor
import Processes
import SystemCalls
#if canImport(Glibc)
import Glibc
#endif

/// One requirement of the host, checked.
public struct CheckResult: Sendable, Equatable {
    public enum Status: String, Sendable { case ok, warning, failure }
    public let name: String
    public let status: Status
    public let detail: String
    public let fix: String?

    public init(_ name: String, _ status: Status, _ detail: String, fix: String? = nil) {
        self.name = name
        self.status = status
        self.detail = detail
        self.fix = fix
    }

    /// `[ ok ] name: detail`, with the fix on failure or warning.
    public var line: String {
        let tag = switch status { case .ok: "[ ok ]"; case .warning: "[warn]"; case .failure: "[FAIL]" }
        var text = "\(tag) \(name): \(detail)"
        if let fix, status != .ok { text += " -- fix: \(fix)" }
        return text
    }
}

/// The requirements of `cocoon check`. Failures mean cocoon cannot run; warnings mean it runs degraded.
public enum HostCheck {
    public static func run(configuration config: Configuration, host: HostVirtualization = .probe(),
                           isRoot: Bool = geteuid() == 0) -> [CheckResult] {
        var results: [CheckResult] = []
        results.append(isRoot
            ? CheckResult("root", .ok, "running as root")
            : CheckResult("root", .failure, "running as uid \(geteuid())", fix: "run cocoon as root (it creates VMs, namespaces and mounts)"))
        results.append(configurationSource(config))
        results.append(qemu(config.hypervisor.path))
        results.append(kvm(host, mode: config.hypervisor.accel))
        results.append(host.vhostVsockUsable
            ? CheckResult("vhost-vsock", .ok, "/dev/vhost-vsock usable: the agent channel uses vsock")
            : CheckResult("vhost-vsock", .warning, "/dev/vhost-vsock not usable: the agent channel uses virtio-serial",
                          fix: "modprobe vhost_vsock"))
        results.append(file("guest kernel", config.hypervisor.kernel, fix: "make kernel (in a checkout) or make install"))
        switch config.hypervisor.bootFrom {
        case .image: results.append(file("guest image", config.hypervisor.image, fix: "make image (in a checkout) or make install, or hypervisor.boot_from = \"initrd\""))
        case .initrd: results.append(file("guest initramfs", config.hypervisor.initrd, fix: "make initramfs (in a checkout) or make install"))
        }
        results.append(Files.isExecutable(config.hypervisor.virtiofsd)
            ? CheckResult("virtiofsd", .ok, config.hypervisor.virtiofsd)
            : CheckResult("virtiofsd", .warning, "\(config.hypervisor.virtiofsd) not found: rootfs sharing needs it",
                          fix: "apt-get install qemu-system-common, or set hypervisor.virtiofsd"))
        results.append(cgroups())
        results.append(seccomp())
        return results
    }

    /// True when nothing failed.
    public static func passed(_ results: [CheckResult]) -> Bool { !results.contains { $0.status == .failure } }

    static func configurationSource(_ config: Configuration) -> CheckResult {
        CheckResult("configuration", .ok, config.source ?? "built-in defaults (no \(Configuration.defaultPath))")
    }

    static func qemu(_ path: String) -> CheckResult {
        guard Files.isExecutable(path) else {
            return CheckResult("QEMU", .failure, "\(path) not found", fix: "apt-get install qemu-system-x86 (make deps), or set hypervisor.path")
        }
        guard let (termination, output) = try? ChildProcess.run(path, ["--version"], timeout: 10), termination == .exited(0) else {
            return CheckResult("QEMU", .failure, "\(path) --version failed", fix: "reinstall qemu-system-x86")
        }
        let version = output.split(separator: "\n").first.map(String.init) ?? "unknown version"
        return CheckResult("QEMU", .ok, "\(path): \(version)")
    }

    static func kvm(_ host: HostVirtualization, mode: AccelerationMode) -> CheckResult {
        guard let problem = host.kvmProblem else {
            return CheckResult("acceleration", .ok, "KVM usable")
        }
        let fix = "enable VT-x/AMD-V (or nested virtualisation) and load kvm_intel or kvm_amd"
        if mode == .kvm {
            return CheckResult("acceleration", .failure, "hypervisor.accel = kvm but \(problem)", fix: fix)
        }
        return CheckResult("acceleration", .warning, "\(problem): VMs run under TCG emulation (slow)", fix: fix)
    }

    static func file(_ name: String, _ path: String, fix: String) -> CheckResult {
        Files.exists(path) ? CheckResult(name, .ok, path) : CheckResult(name, .failure, "\(path) not found", fix: fix)
    }

    static func cgroups() -> CheckResult {
        func isCgroup2(_ path: String) -> Bool {
            cocoon_fs_type(path) == 0x6367_7270  // CGROUP2_SUPER_MAGIC
        }
        if isCgroup2("/sys/fs/cgroup") { return CheckResult("cgroups", .ok, "v2 (unified)") }
        if isCgroup2("/sys/fs/cgroup/unified") { return CheckResult("cgroups", .ok, "hybrid (v1 controllers, v2 at /sys/fs/cgroup/unified)") }
        if Files.exists("/sys/fs/cgroup/memory") { return CheckResult("cgroups", .ok, "v1") }
        return CheckResult("cgroups", .warning, "no cgroup file system at /sys/fs/cgroup", fix: "mount cgroup2 on /sys/fs/cgroup")
    }

    static func seccomp() -> CheckResult {
        let status = (try? Files.readString("/proc/self/status")) ?? ""
        return status.contains("Seccomp:")
            ? CheckResult("seccomp", .ok, "supported by the host kernel")
            : CheckResult("seccomp", .warning, "the host kernel does not report seccomp", fix: "use a kernel with CONFIG_SECCOMP_FILTER")
    }
}
