import SystemCalls

/// Host memory of a process, for reports and benchmarks.
public enum ProcessMemory {
    /// VmRSS from /proc/PID/status, in KiB (0 if unreadable).
    public static func residentKiB(pid: Int32) -> Int { field("VmRSS:", in: "/proc/\(pid)/status") }

    /// Pss from /proc/PID/smaps_rollup, in KiB: shared pages split among their users.
    public static func proportionalKiB(pid: Int32) -> Int { field("Pss:", in: "/proc/\(pid)/smaps_rollup") }

    static func field(_ key: String, in path: String) -> Int {
        guard let text = try? Files.readString(path) else { return 0 }
        for line in text.split(separator: "\n") where line.hasPrefix(key) {
            let parts = line.split(separator: " ", omittingEmptySubsequences: true)
            if parts.count >= 2, let v = Int(parts[1]) { return v }
        }
        return 0
    }
}
