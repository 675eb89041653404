import OCI
import SystemCalls

/// Device rules every container gets after its spec's own (the same set runc allows):
/// mknod of anything, and the standard character devices.
public let defaultDeviceRules: [DeviceCgroupRule] = [
    .init(allow: true, type: "c", access: "m"), .init(allow: true, type: "b", access: "m"),
    .init(allow: true, type: "c", major: 1, minor: 3, access: "rwm"), .init(allow: true, type: "c", major: 1, minor: 5, access: "rwm"),
    .init(allow: true, type: "c", major: 1, minor: 7, access: "rwm"), .init(allow: true, type: "c", major: 1, minor: 8, access: "rwm"),
    .init(allow: true, type: "c", major: 1, minor: 9, access: "rwm"), .init(allow: true, type: "c", major: 5, minor: 0, access: "rwm"),
    .init(allow: true, type: "c", major: 5, minor: 2, access: "rwm"), .init(allow: true, type: "c", major: 136, access: "rwm"),
    .init(allow: true, type: "c", major: 10, minor: 200, access: "rwm"),
]

func deviceRuleLine(_ r: DeviceCgroupRule) -> String {
    let major = r.major.map { $0 < 0 ? "*" : "\($0)" } ?? "*"
    let minor = r.minor.map { $0 < 0 ? "*" : "\($0)" } ?? "*"
    return "\(r.type ?? "a") \(major):\(minor) \(r.access ?? "rwm")"
}

/// runc's convention, which docker relies on: 0 means "leave as it is".
func set<T: BinaryInteger>(_ v: T?) -> T? { v.flatMap { $0 == 0 ? nil : $0 } }

/// cgroup v1 files (hybrid and legacy hosts).
struct CgroupV1Limits {
    let manager: CgroupManager

    func apply(_ r: Resources) throws(CgroupError) {
        if let m = r.memory { try memory(m) }
        if let c = r.cpu { try cpu(c) }
        if let p = set(r.pids?.limit) {
            try manager.write(manager.directory("pids"), "pids.max", p > 0 ? "\(p)" : "max", key: "linux.resources.pids.limit")
        }
        if let b = r.blockIO { try blockIO(b) }
        for h in r.hugepageLimits ?? [] {
            try manager.write(manager.directory("hugetlb"), "hugetlb.\(h.pageSize).limit_in_bytes", "\(h.limit)",
                              key: "linux.resources.hugepageLimits")
        }
        if let unified = r.unified, !unified.isEmpty {
            throw CgroupError(.failedPrecondition, "linux.resources.unified needs cgroup v2; this host uses cgroup v1 controllers")
        }
        if let rules = r.devices {
            let dir = manager.directory("devices")
            for rule in rules + defaultDeviceRules {
                try manager.write(dir, rule.allow ? "devices.allow" : "devices.deny", deviceRuleLine(rule), key: "linux.resources.devices")
            }
        }
    }

    func memory(_ m: MemoryResources) throws(CgroupError) {
        let dir = manager.directory("memory")
        let key = "linux.resources.memory"
        let hasSwapFile = dir.map { Files.exists($0 + "/memory.memsw.limit_in_bytes") } ?? false
        // memsw must stay >= limit, so the order of the two writes depends on the direction of change.
        let swap = set(m.swap)
        if let limit = set(m.limit) {
            do {
                try manager.write(dir, "memory.limit_in_bytes", "\(limit)", key: key + ".limit")
                if let swap, hasSwapFile { try manager.write(dir, "memory.memsw.limit_in_bytes", "\(swap)", key: key + ".swap") }
            } catch {
                guard let swap, hasSwapFile else { throw error }
                try manager.write(dir, "memory.memsw.limit_in_bytes", "\(swap)", key: key + ".swap")
                try manager.write(dir, "memory.limit_in_bytes", "\(limit)", key: key + ".limit")
            }
        } else if let swap, hasSwapFile {
            try manager.write(dir, "memory.memsw.limit_in_bytes", "\(swap)", key: key + ".swap")
        }
        if let r = set(m.reservation) { try manager.write(dir, "memory.soft_limit_in_bytes", "\(r)", key: key + ".reservation") }
        if let s = m.swappiness { try manager.write(dir, "memory.swappiness", "\(s)", key: key + ".swappiness") }
        if m.disableOOMKiller == true { try manager.write(dir, "memory.oom_control", "1", key: key + ".disableOOMKiller") }
    }

    func cpu(_ c: CPUResources) throws(CgroupError) {
        let dir = manager.directory("cpu")
        let key = "linux.resources.cpu"
        if let s = set(c.shares) { try manager.write(dir, "cpu.shares", "\(s)", key: key + ".shares") }
        if let p = set(c.period) { try manager.write(dir, "cpu.cfs_period_us", "\(p)", key: key + ".period") }
        if let q = set(c.quota) { try manager.write(dir, "cpu.cfs_quota_us", "\(q)", key: key + ".quota") }
        if let p = c.realtimePeriod { try manager.write(dir, "cpu.rt_period_us", "\(p)", key: key + ".realtimePeriod") }
        if let r = c.realtimeRuntime { try manager.write(dir, "cpu.rt_runtime_us", "\(r)", key: key + ".realtimeRuntime") }
        if let cpus = c.cpus, !cpus.isEmpty { try manager.write(manager.directory("cpuset"), "cpuset.cpus", cpus, key: key + ".cpus") }
        if let mems = c.mems, !mems.isEmpty { try manager.write(manager.directory("cpuset"), "cpuset.mems", mems, key: key + ".mems") }
    }

    func blockIO(_ b: BlockIOResources) throws(CgroupError) {
        let dir = manager.directory("blkio")
        let key = "linux.resources.blockIO"
        // 0 means "not set" to docker and runc.
        if let w = b.weight, w != 0 { try manager.write(dir, "blkio.weight", "\(w)", key: key + ".weight") }
        for d in b.weightDevice ?? [] {
            if let w = d.weight { try manager.write(dir, "blkio.weight_device", "\(d.major):\(d.minor) \(w)", key: key + ".weightDevice") }
        }
        let throttles: [(String, [ThrottleDevice]?)] = [
            ("blkio.throttle.read_bps_device", b.throttleReadBpsDevice), ("blkio.throttle.write_bps_device", b.throttleWriteBpsDevice),
            ("blkio.throttle.read_iops_device", b.throttleReadIOPSDevice), ("blkio.throttle.write_iops_device", b.throttleWriteIOPSDevice),
        ]
        for (file, list) in throttles {
            for d in list ?? [] { try manager.write(dir, file, "\(d.major):\(d.minor) \(d.rate)", key: key) }
        }
    }
}

/// cgroup v2 files (the guest, and unified hosts); device rules become an eBPF program.
struct CgroupV2Limits {
    let manager: CgroupManager

    /// runc's mapping of v1 cpu.shares [2, 262144] onto v2 cpu.weight [1, 10000].
    static func cpuWeight(shares: UInt64) -> UInt64 {
        shares == 0 ? 100 : 1 + ((max(2, min(shares, 262_144)) - 2) * 9999) / 262_142
    }

    /// v1 blkio.weight [10, 1000] onto v2 io.weight [1, 10000].
    static func ioWeight(_ w: UInt16) -> UInt64 {
        1 + (UInt64(max(10, min(w, 1000))) - 10) * 9999 / 990
    }

    func apply(_ r: Resources) throws(CgroupError) {
        let dir = manager.directory("")
        let key = "linux.resources"
        if let m = r.memory {
            if let l = set(m.limit) { try manager.write(dir, "memory.max", l < 0 ? "max" : "\(l)", key: key + ".memory.limit") }
            if let res = set(m.reservation) { try manager.write(dir, "memory.low", res < 0 ? "max" : "\(res)", key: key + ".memory.reservation") }
            if let s = set(m.swap) {
                // v1's swap is memory+swap; v2 limits swap alone.
                let value = s < 0 ? "max" : "\(max(0, s - (m.limit ?? 0)))"
                try manager.write(dir, "memory.swap.max", value, key: key + ".memory.swap")
            }
        }
        if let c = r.cpu {
            if let s = set(c.shares) { try manager.write(dir, "cpu.weight", "\(Self.cpuWeight(shares: s))", key: key + ".cpu.shares") }
            if set(c.quota) != nil || set(c.period) != nil {
                let quota = set(c.quota).map { $0 < 0 ? "max" : "\($0)" } ?? "max"
                try manager.write(dir, "cpu.max", "\(quota) \(set(c.period) ?? 100_000)", key: key + ".cpu.quota")
            }
            if let i = c.idle { try manager.write(dir, "cpu.idle", "\(i)", key: key + ".cpu.idle") }
            if let cpus = c.cpus, !cpus.isEmpty { try manager.write(dir, "cpuset.cpus", cpus, key: key + ".cpu.cpus") }
            if let mems = c.mems, !mems.isEmpty { try manager.write(dir, "cpuset.mems", mems, key: key + ".cpu.mems") }
        }
        if let p = set(r.pids?.limit) { try manager.write(dir, "pids.max", p > 0 ? "\(p)" : "max", key: key + ".pids.limit") }
        if let b = r.blockIO {
            if let w = b.weight, w != 0 { try manager.write(dir, "io.weight", "default \(Self.ioWeight(w))", key: key + ".blockIO.weight") }
            let throttles: [(String, [ThrottleDevice]?)] = [
                ("rbps", b.throttleReadBpsDevice), ("wbps", b.throttleWriteBpsDevice),
                ("riops", b.throttleReadIOPSDevice), ("wiops", b.throttleWriteIOPSDevice),
            ]
            for (name, list) in throttles {
                for d in list ?? [] { try manager.write(dir, "io.max", "\(d.major):\(d.minor) \(name)=\(d.rate)", key: key + ".blockIO") }
            }
        }
        for h in r.hugepageLimits ?? [] {
            try manager.write(dir, "hugetlb.\(h.pageSize).max", "\(h.limit)", key: key + ".hugepageLimits")
        }
        for (file, value) in (r.unified ?? [:]).sorted(by: { $0.key < $1.key }) {
            try manager.write(dir, file, value, key: key + ".unified[\(file)]")
        }
        if let rules = r.devices {
            try DeviceFilter(rules: rules + defaultDeviceRules).attach(to: manager.mountRoot + manager.path)
        }
    }
}
