import Config
import OCI

/// The VM a container gets: its limits decide, so that the guest never has less than the
/// container may use, and the host never reserves more than the pod declared plus a known overhead.
public enum VMSizing {
    public struct Size: Sendable, Equatable {
        public var memoryMiB: Int
        public var vcpus: Int
        public init(memoryMiB: Int, vcpus: Int) {
            self.memoryMiB = memoryMiB
            self.vcpus = vcpus
        }
    }

    /// Memory: the limit rounded up to MiB plus `memory_overhead_mib`; without a limit,
    /// `memory_mib`. vCPUs: quota / period rounded up, capped at `max_vcpus`; without a quota, `vcpus`.
    public static func size(for resources: Resources?, config: HypervisorConfig) -> Size {
        var size = Size(memoryMiB: config.memoryMiB, vcpus: config.vcpus)
        if let limit = resources?.memory?.limit, limit > 0 {
            let mib = Int((limit + (1 << 20) - 1) >> 20)
            size.memoryMiB = mib + config.memoryOverheadMiB
        }
        if let quota = resources?.cpu?.quota, quota > 0 {
            let period = Int64(resources?.cpu?.period ?? 100_000)
            if period > 0 {
                let cpus = Int((quota + period - 1) / period)
                size.vcpus = min(max(cpus, 1), config.maxVcpus)
            }
        }
        return size
    }
}
