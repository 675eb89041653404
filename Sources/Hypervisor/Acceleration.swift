import CSupport
import Foundation
import SystemCalls

/// What the host offers for hardware virtualisation.
public struct HostVirtualization: Sendable, Equatable {
    /// /dev/kvm opens read-write.
    public var kvmDeviceUsable: Bool
    public var kvmDeviceError: String?
    /// The CPU advertises vmx (Intel) or svm (AMD).
    public var cpuHasVirtualizationExtensions: Bool
    /// /dev/vhost-vsock opens read-write.
    public var vhostVsockUsable: Bool

    public init(kvmDeviceUsable: Bool, kvmDeviceError: String? = nil, cpuHasVirtualizationExtensions: Bool, vhostVsockUsable: Bool) {
        self.kvmDeviceUsable = kvmDeviceUsable
        self.kvmDeviceError = kvmDeviceError
        self.cpuHasVirtualizationExtensions = cpuHasVirtualizationExtensions
        self.vhostVsockUsable = vhostVsockUsable
    }

    public static func probe() -> HostVirtualization {
        func opens(_ path: String) -> (Bool, String?) {
            let fd = open(path, O_RDWR | O_CLOEXEC)
            if fd < 0 { return (false, String(cString: strerror(errno))) }
            close(fd)
            return (true, nil)
        }
        let (kvm, kvmError) = opens("/dev/kvm")
        let (vsock, _) = opens("/dev/vhost-vsock")
        let cpuinfo = (try? Files.readString("/proc/cpuinfo", limit: 4 << 20)) ?? ""
        let flags = cpuinfo.split(separator: "\n").first { $0.hasPrefix("flags") } ?? ""
        let words = Set(flags.split(separator: " ").map(String.init))
        return HostVirtualization(kvmDeviceUsable: kvm, kvmDeviceError: kvmError,
                                  cpuHasVirtualizationExtensions: words.contains("vmx") || words.contains("svm"),
                                  vhostVsockUsable: vsock)
    }

    /// Why KVM cannot be used, or nil when it can.
    public var kvmProblem: String? {
        if !kvmDeviceUsable { return "/dev/kvm cannot be opened (\(kvmDeviceError ?? "missing"))" }
        // A /dev/kvm without vmx/svm is a paravirtual or nested stub that can hang a normal guest.
        if !cpuHasVirtualizationExtensions { return "the CPU does not advertise vmx or svm" }
        return nil
    }
}

public enum AccelerationChoice {
    /// auto uses KVM only when it is really usable; otherwise TCG with one warning.
    /// kvm insists, failing clearly where it cannot work; tcg always emulates.
    public static func resolve(_ mode: AccelerationMode, host: HostVirtualization) throws(HypervisorError) -> (Accelerator, warning: String?) {
        switch mode {
        case .tcg:
            return (.tcg, nil)
        case .kvm:
            if let problem = host.kvmProblem {
                throw HypervisorError(.failedPrecondition,
                    "hypervisor.accel = \"kvm\" but KVM is not usable: \(problem); use accel = \"auto\" or \"tcg\"")
            }
            return (.kvm, nil)
        case .auto:
            if let problem = host.kvmProblem {
                return (.tcg, "KVM is not usable (\(problem)): using TCG emulation, which is much slower")
            }
            return (.kvm, nil)
        }
    }
}
