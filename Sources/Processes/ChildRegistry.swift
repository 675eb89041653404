import SystemCalls
#if canImport(Glibc)
import Glibc
#endif

/// The children this process spawned and will wait for through their pidfds.
///
/// A process that is PID 1 (the guest agent) inherits every orphan and must reap them, but must
/// never reap a child some `ChildProcess` still owns: its exit status would be lost. Spawning and
/// registering happen under one lock that `reapOrphans` also takes, so a child that exits at once
/// is never mistaken for an orphan.
public final class ChildRegistry: @unchecked Sendable {
    public static let shared = ChildRegistry()

    private let lock = NSLockLite()
    private var owned: Set<pid_t> = []

    func spawning<T>(_ body: () -> (T, pid_t?)) -> T {
        lock.lock()
        defer { lock.unlock() }
        let (result, pid) = body()
        if let pid { owned.insert(pid) }
        return result
    }

    func release(_ pid: pid_t) {
        lock.lock()
        owned.remove(pid)
        lock.unlock()
    }

    /// Reaps every zombie child of this process that no `ChildProcess` owns. Returns how many.
    @discardableResult
    public func reapOrphans() -> Int {
        lock.lock()
        defer { lock.unlock() }
        let me = getpid()
        var reaped = 0
        for entry in Files.entries("/proc") {
            guard let pid = pid_t(entry.name), !owned.contains(pid) else { continue }
            guard let stat = try? Files.readString("/proc/\(pid)/stat"),
                  let close = stat.lastIndex(of: ")") else { continue }
            // After the command name: " S PPID ..."
            let fields = stat[stat.index(after: close)...].split(separator: " ", maxSplits: 3)
            guard fields.count >= 2, fields[0] == "Z", pid_t(fields[1]) == me else { continue }
            var status: Int32 = 0
            if waitpid(pid, &status, WNOHANG) == pid { reaped += 1 }
        }
        return reaped
    }
}
