import Cgroups
import DBus
import OCI
import SystemCalls

/// `linux.resources` as systemd unit properties. cocoon also writes the cgroup files itself (systemd
/// knows only part of what the spec can say); these are what systemd would otherwise put back on its own
/// when it re-applies a unit's settings, at a daemon-reload for example.
public enum UnitProperties {
    /// systemd's "infinity".
    static let unlimited = UInt64.max

    public static func resources(_ r: Resources?, mode: CgroupMode, procDevices: String? = nil) throws(SystemdError) -> [(String, DBusValue)] {
        var p: [(String, DBusValue)] = []
        let v2 = mode == .unified
        p.append(("MemoryAccounting", .boolean(true)))
        p.append(("CPUAccounting", .boolean(true)))
        p.append(("TasksAccounting", .boolean(true)))
        p.append((v2 ? "IOAccounting" : "BlockIOAccounting", .boolean(true)))
        guard let r else { return p }
        if let m = r.memory {
            if let limit = m.limit, limit != 0 {
                p.append((v2 ? "MemoryMax" : "MemoryLimit", .uint64(limit < 0 ? unlimited : UInt64(limit))))
            }
            if v2, let low = m.reservation, low != 0 { p.append(("MemoryLow", .uint64(low < 0 ? unlimited : UInt64(low)))) }
            if v2, let swap = m.swap, swap != 0 {
                // v1's swap figure is memory+swap; systemd's MemorySwapMax is swap alone.
                p.append(("MemorySwapMax", .uint64(swap < 0 ? unlimited : UInt64(max(0, swap - (m.limit ?? 0))))))
            }
        }
        if let c = r.cpu {
            if let shares = c.shares, shares != 0 {
                p.append(v2 ? ("CPUWeight", .uint64(CgroupManager.cpuWeight(shares: shares))) : ("CPUShares", .uint64(shares)))
            }
            if let period = c.period, period != 0 { p.append(("CPUQuotaPeriodUSec", .uint64(period))) }
            if let quota = c.quota, quota != 0 {
                p.append(("CPUQuotaPerSecUSec", .uint64(quota < 0 ? unlimited : quotaPerSecond(quota: UInt64(quota), period: c.period))))
            }
        }
        if let limit = r.pids?.limit, limit != 0 {
            p.append(("TasksMax", .uint64(limit < 0 ? unlimited : UInt64(limit))))
        }
        if let w = r.blockIO?.weight, w != 0 {
            p.append(v2 ? ("IOWeight", .uint64(CgroupManager.ioWeight(w))) : ("BlockIOWeight", .uint64(UInt64(w))))
        }
        if let rules = r.devices {
            p += try devices(rules + defaultDeviceRules, procDevices: procDevices ?? ((try? Files.readString("/proc/devices")) ?? ""))
        }
        return p
    }

    /// systemd keeps CPU quota as a whole percentage of one CPU: round up to the next 10 ms per second,
    /// so the cgroup's own quota (which cocoon writes exactly) is never above systemd's.
    static func quotaPerSecond(quota: UInt64, period: UInt64?) -> UInt64 {
        let period = (period ?? 0) == 0 ? 100_000 : period!
        let perSecond = quota.multipliedReportingOverflow(by: 1_000_000)
        if perSecond.overflow { return unlimited }
        let usec = perSecond.partialValue / period
        return (usec + 9_999) / 10_000 * 10_000
    }

    /// The device rules (the spec's, then cocoon's defaults; the last match wins) as DevicePolicy and
    /// DeviceAllow. systemd can only list what is allowed, so a rule list is translated only when it
    /// starts from "deny everything"; an allowed rule that a later deny narrows is left out, so systemd
    /// never allows more than the spec (it may allow less, and cocoon's own cgroup writes are exact).
    static func devices(_ rules: [DeviceCgroupRule], procDevices: String) throws(SystemdError) -> [(String, DBusValue)] {
        func isAll(_ r: DeviceCgroupRule) -> Bool {
            (r.type ?? "a") == "a" && (r.major ?? -1) < 0 && (r.minor ?? -1) < 0 && Set(r.access ?? "rwm").isSuperset(of: "rwm")
        }
        guard let start = rules.lastIndex(where: { !$0.allow && isAll($0) }) else {
            if rules.contains(where: { !$0.allow }) {
                throw SystemdError(.invalidArgument,
                    "linux.resources.devices: with --systemd-cgroup the list must begin with a rule denying every device ({\"allow\": false, \"access\": \"rwm\"}); systemd cannot keep a list of denials and would restore access at its next reload")
            }
            // Nothing denied: systemd's "auto" policy does not restrict devices either.
            return [("DevicePolicy", .string("auto"))]
        }
        var allowed: [DBusValue] = []
        let tail = Array(rules[(start + 1)...])
        for (i, rule) in tail.enumerated() where rule.allow {
            if tail[(i + 1)...].contains(where: { !$0.allow && overlaps($0, rule) }) { continue }
            let access = String((rule.access ?? "rwm").filter { "rwm".contains($0) })
            guard !access.isEmpty else { continue }
            for pattern in patterns(rule, procDevices: procDevices) {
                allowed.append(.structure([.string(pattern), .string(access)]))
            }
        }
        return [("DevicePolicy", .string("strict")), ("DeviceAllow", .array(element: "(ss)", allowed))]
    }

    static func overlaps(_ a: DeviceCgroupRule, _ b: DeviceCgroupRule) -> Bool {
        let ta = a.type ?? "a", tb = b.type ?? "a"
        guard ta == "a" || tb == "a" || ta == tb else { return false }
        func match(_ x: Int64?, _ y: Int64?) -> Bool { (x ?? -1) < 0 || (y ?? -1) < 0 || x == y }
        guard match(a.major, b.major), match(a.minor, b.minor) else { return false }
        return !Set(a.access ?? "rwm").isDisjoint(with: Set(b.access ?? "rwm"))
    }

    /// systemd's names for one rule's devices: a node by number, every device of a driver (by its name in
    /// /proc/devices), or every device of a kind.
    static func patterns(_ rule: DeviceCgroupRule, procDevices: String) -> [String] {
        let kinds: [(String, String, String)] = [("c", "char", "Character devices:"), ("b", "block", "Block devices:")]
        var out: [String] = []
        for (letter, word, heading) in kinds where (rule.type ?? "a") == "a" || rule.type == letter {
            let major = rule.major ?? -1, minor = rule.minor ?? -1
            if major < 0 {
                out.append("\(word)-*")
            } else if minor >= 0 {
                out.append("/dev/\(word)/\(major):\(minor)")
            } else if let name = driverName(major: major, heading: heading, procDevices: procDevices) {
                out.append("\(word)-\(name)")
            }
            // A major no driver claims names no device that could be opened: nothing to allow.
        }
        return out
    }

    static func driverName(major: Int64, heading: String, procDevices: String) -> String? {
        var inSection = false
        for line in procDevices.split(separator: "\n") {
            if line.hasSuffix(":") { inSection = line == heading; continue }
            guard inSection else { continue }
            let fields = line.split(separator: " ", omittingEmptySubsequences: true)
            if fields.count == 2, Int64(fields[0]) == major { return String(fields[1]) }
        }
        return nil
    }
}
