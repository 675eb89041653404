import OCI
import SystemCalls
#if canImport(Glibc)
import Glibc
#endif

/// Which cgroup hierarchy the host (or guest) mounts.
public enum CgroupMode: String, Sendable {
    /// cgroup2 at the mount root: the guest, and modern hosts.
    case unified
    /// v1 controllers, plus an (often controller-less) cgroup2 at `<root>/unified`.
    case hybrid
    /// v1 controllers only.
    case legacy

    public static func detect(mountRoot: String = "/sys/fs/cgroup") -> CgroupMode {
        if Files.exists(mountRoot + "/cgroup.controllers") { return .unified }
        if Files.exists(mountRoot + "/unified/cgroup.controllers") { return .hybrid }
        return .legacy
    }
}

/// Usage figures read back from the cgroup.
public struct CgroupStats: Sendable, Equatable, Codable {
    public var memoryUsageBytes: UInt64?
    public var memoryLimitBytes: UInt64?
    public var cpuUsageNanoseconds: UInt64?
    public var pidsCurrent: UInt64?
    public var pidsLimit: UInt64?
    /// Processes the OOM killer killed in this cgroup (memory.events, or memory.oom_control on v1).
    public var oomKills: UInt64?
}

/// One container's cgroup: created, limited from `linux.resources`, joined by the init process,
/// frozen for pause, read for stats and ps, removed on delete.
public struct CgroupManager: Sendable {
    public let mode: CgroupMode
    /// The cgroup path from the hierarchy root, always starting with "/".
    public let path: String
    public let mountRoot: String

    /// v1 controllers cocoon manages (each is a directory under the mount root when present).
    static let v1Controllers = ["cpu", "cpuacct", "cpuset", "memory", "pids", "blkio", "freezer", "devices", "hugetlb"]
    /// Where containers get a cgroup on v1: the controllers, and systemd's named hierarchy (as runc does), by
    /// which systemd tells what belongs to a unit: a scope's processes must be in it there too.
    static let v1Hierarchies = v1Controllers + ["systemd"]
    /// v2 controllers enabled for children when available.
    static let v2Controllers = ["cpuset", "cpu", "io", "memory", "pids", "hugetlb"]

    /// `cgroupsPath` as runc reads it: absolute from the hierarchy root, relative to the runtime's own
    /// cgroup; empty means `/cocoon/<id>`.
    public init(cgroupsPath: String?, containerID: String, mountRoot: String = "/sys/fs/cgroup",
                mode: CgroupMode? = nil) throws(CgroupError) {
        self.mountRoot = mountRoot
        self.mode = mode ?? CgroupMode.detect(mountRoot: mountRoot)
        var p = cgroupsPath ?? ""
        if p.contains(":") {
            throw CgroupError(.invalidArgument,
                "linux.cgroupsPath '\(p)' is in systemd form (slice:prefix:name): pass --systemd-cgroup, or give a cgroupfs path")
        }
        if p.isEmpty { p = "/cocoon/\(containerID)" }
        if !p.hasPrefix("/") { p = Self.ownCgroup(mode: self.mode) + "/" + p }
        let parts = p.split(separator: "/").map(String.init)
        guard !parts.contains("..") && !parts.contains(".") else {
            throw CgroupError(.invalidArgument, "linux.cgroupsPath '\(p)' must not contain '.' or '..'")
        }
        self.path = "/" + parts.joined(separator: "/")
    }

    /// The runtime's own cgroup (for relative paths): the v2 entry, or the memory controller's on v1.
    static func ownCgroup(mode: CgroupMode) -> String {
        let text = (try? Files.readString("/proc/self/cgroup")) ?? ""
        for line in text.split(separator: "\n") {
            let fields = line.split(separator: ":", maxSplits: 2, omittingEmptySubsequences: false)
            guard fields.count == 3 else { continue }
            if mode == .unified && fields[0] == "0" { return String(fields[2]) == "/" ? "" : String(fields[2]) }
            if mode != .unified && fields[1].split(separator: ",").contains("memory") {
                return String(fields[2]) == "/" ? "" : String(fields[2])
            }
        }
        return ""
    }

    /// runc's mapping of v1 cpu.shares onto v2 cpu.weight (systemd's CPUWeight takes the same scale).
    public static func cpuWeight(shares: UInt64) -> UInt64 { CgroupV2Limits.cpuWeight(shares: shares) }
    /// v1 blkio.weight onto v2 io.weight.
    public static func ioWeight(_ weight: UInt16) -> UInt64 { CgroupV2Limits.ioWeight(weight) }

    /// Directories of this cgroup, one per hierarchy that cocoon manages.
    public var directories: [String] {
        switch mode {
        case .unified: [mountRoot + path]
        case .hybrid, .legacy: Self.v1Hierarchies.filter { isHierarchy(mountRoot + "/" + $0) }.map { mountRoot + "/" + $0 + path }
        }
    }

    /// Whether containers get a cgroup of their own in this v1 hierarchy (it has a controller cocoon manages,
    /// or it is systemd's).
    public static func placesContainers(in hierarchy: CgroupHierarchy) -> Bool {
        hierarchy.controllers.split(separator: ",").contains { v1Controllers.contains(String($0)) || $0 == "name=systemd" }
    }

    /// A mounted v1 hierarchy, not just a directory of that name: systemd in a container leaves empty
    /// directories for controllers it could not mount (hugetlb where the host gave it to cgroup v2).
    func isHierarchy(_ dir: String) -> Bool { Files.exists(dir + "/cgroup.procs") }

    func directory(_ controller: String) -> String? {
        switch mode {
        case .unified: return mountRoot + path
        case .hybrid, .legacy:
            let dir = mountRoot + "/" + controller
            return isHierarchy(dir) ? dir + path : nil
        }
    }

    // MARK: - Create and join

    public func create() throws(CgroupError) {
        for dir in directories {
            do { try Files.makeDirectories(dir) } catch {
                throw CgroupError(error.code, "create cgroup \(dir): \(error.message)")
            }
        }
        if mode == .unified {
            try enableControllers()
        } else if let cpuset = directory("cpuset") {
            try inheritCpuset(cpuset)
        }
    }

    /// cgroup v2: a controller must be enabled in every ancestor's subtree_control.
    func enableControllers() throws(CgroupError) {
        var dir = mountRoot
        for part in path.split(separator: "/").dropLast() {
            try enable(in: dir)
            dir += "/" + part
        }
        try enable(in: dir)
    }

    private func enable(in dir: String) throws(CgroupError) {
        let available = ((try? Files.readString(dir + "/cgroup.controllers")) ?? "").split(separator: " ").map {
            String($0).trimmingCharacters(in: .whitespacesAndNewlines)
        }
        let wanted = Self.v2Controllers.filter(available.contains)
        guard !wanted.isEmpty else { return }
        // Best effort per controller: a controller held by a threaded subtree or a process in the
        // root cgroup must not prevent the others.
        for c in wanted { try? Files.writeString(dir + "/cgroup.subtree_control", "+" + c) }
    }

    /// cgroup v1 cpuset: a new cgroup starts with empty cpus/mems and cannot take tasks until filled.
    func inheritCpuset(_ leaf: String) throws(CgroupError) {
        let root = mountRoot + "/cpuset"
        var dir = root
        for part in path.split(separator: "/") {
            let parent = dir
            dir += "/" + part
            for file in ["cpuset.cpus", "cpuset.mems"] {
                let current = ((try? Files.readString(dir + "/" + file)) ?? "").trimmingCharacters(in: .whitespacesAndNewlines)
                if current.isEmpty {
                    let inherited = ((try? Files.readString(parent + "/" + file)) ?? "").trimmingCharacters(in: .whitespacesAndNewlines)
                    do { try Files.writeString(dir + "/" + file, inherited) } catch {
                        throw CgroupError(error.code, "inherit \(file) in \(dir): \(error.message)")
                    }
                }
            }
        }
        _ = leaf
    }

    /// cgroup v1 only: each hierarchy's `tasks` file of this cgroup, opened for writing by this (privileged)
    /// process, for a child to move itself in before it execs (ChildProcess.Options.cgroupTaskDescriptors).
    ///
    /// Why: moving a process by pid through `cgroup.procs` takes the kernel's global threadgroup lock for
    /// writing and waits for an RCU grace period (6–15 ms measured, the longest wait of `cocoon run`); a
    /// single thread moving itself through `tasks` takes neither. The kernel checks the opener's
    /// credentials, so a child in a user namespace can use them too.
    public func openTaskFiles() throws(CgroupError) -> [FileDescriptor] {
        guard mode != .unified else { return [] }
        var opened: [FileDescriptor] = []
        for dir in directories {
            do { opened.append(try FileDescriptor.open(dir + "/tasks", O_WRONLY | O_CLOEXEC)) } catch {
                opened.forEach { $0.close() }
                throw CgroupError(error.code, "open \(dir)/tasks: \(error.message)")
            }
        }
        return opened
    }

    /// Moves a process (the container's init) into the cgroup.
    public func join(pid: Int32) throws(CgroupError) {
        for dir in directories {
            do { try Files.writeString(dir + "/cgroup.procs", "\(pid)") } catch {
                throw CgroupError(error.code, "join \(dir): \(error.message)")
            }
        }
    }

    // MARK: - Limits

    public func apply(_ resources: Resources) throws(CgroupError) {
        switch mode {
        case .unified: try CgroupV2Limits(manager: self).apply(resources)
        case .hybrid, .legacy: try CgroupV1Limits(manager: self).apply(resources)
        }
    }

    func write(_ dir: String?, _ file: String, _ value: String, key: String) throws(CgroupError) {
        guard let dir else {
            throw CgroupError(.failedPrecondition, "\(key): the cgroup controller for \(file) is not available on this host")
        }
        // Never O_CREAT: a missing control file means the kernel does not offer it here.
        guard Files.exists(dir + "/" + file) else {
            throw CgroupError(.failedPrecondition, "\(key): this host's cgroup has no \(file) (\(dir))")
        }
        do { try Files.writeString(dir + "/" + file, value) } catch {
            throw CgroupError(error.code == .notFound ? .failedPrecondition : error.code,
                              "\(key): write \(value) to \(dir)/\(file): \(error.message)")
        }
    }

    // MARK: - Reading back

    /// Every process in the cgroup (and its descendants on v1, where children are separate dirs).
    public func processes() -> [Int32] {
        guard let dir = directory(mode == .unified ? "" : "pids") ?? directories.first else { return [] }
        var pids: [Int32] = []
        func collect(_ d: String) {
            let text = (try? Files.readString(d + "/cgroup.procs")) ?? ""
            pids += text.split(separator: "\n").compactMap { Int32($0) }
            for child in Files.subdirectories(d) { collect(d + "/" + child) }
        }
        collect(dir)
        return pids.sorted()
    }

    public func freeze(_ frozen: Bool) throws(CgroupError) {
        switch mode {
        case .unified:
            try write(directory(""), "cgroup.freeze", frozen ? "1" : "0", key: frozen ? "pause" : "resume")
        case .hybrid, .legacy:
            try write(directory("freezer"), "freezer.state", frozen ? "FROZEN" : "THAWED", key: frozen ? "pause" : "resume")
            // The v1 freezer moves through FREEZING; wait (bounded) until it settles.
            let deadline = Deadline.after(seconds: 5)
            while !deadline.hasPassed {
                let state = ((try? Files.readString(directory("freezer")! + "/freezer.state")) ?? "")
                    .trimmingCharacters(in: .whitespacesAndNewlines)
                if state == (frozen ? "FROZEN" : "THAWED") { return }
                sleep(seconds: 0.005)
            }
            throw CgroupError(.deadlineExceeded, "the freezer did not reach \(frozen ? "FROZEN" : "THAWED") within 5 s")
        }
    }

    public var isFrozen: Bool {
        switch mode {
        case .unified:
            let events = (try? Files.readString(mountRoot + path + "/cgroup.events")) ?? ""
            return events.split(separator: "\n").contains("frozen 1")
        case .hybrid, .legacy:
            guard let dir = directory("freezer") else { return false }
            return ((try? Files.readString(dir + "/freezer.state")) ?? "").hasPrefix("FROZEN")
        }
    }

    public func stats() -> CgroupStats {
        func number(_ dir: String?, _ file: String) -> UInt64? {
            guard let dir, let text = try? Files.readString(dir + "/" + file) else { return nil }
            return UInt64(text.trimmingCharacters(in: .whitespacesAndNewlines))
        }
        func counter(_ dir: String?, _ file: String, _ name: String) -> UInt64? {
            guard let dir, let text = try? Files.readString(dir + "/" + file) else { return nil }
            let line = text.split(separator: "\n").first { $0.hasPrefix(name + " ") }
            return line.flatMap { UInt64($0.split(separator: " ").last ?? "") }
        }
        var s = CgroupStats()
        switch mode {
        case .unified:
            let dir = mountRoot + path
            s.memoryUsageBytes = number(dir, "memory.current")
            s.memoryLimitBytes = number(dir, "memory.max")
            s.pidsCurrent = number(dir, "pids.current")
            s.pidsLimit = number(dir, "pids.max")
            s.oomKills = counter(dir, "memory.events", "oom_kill")
            let cpu = (try? Files.readString(dir + "/cpu.stat")) ?? ""
            if let line = cpu.split(separator: "\n").first(where: { $0.hasPrefix("usage_usec ") }),
               let usec = UInt64(line.split(separator: " ")[1]) {
                s.cpuUsageNanoseconds = usec * 1000
            }
        case .hybrid, .legacy:
            s.memoryUsageBytes = number(directory("memory"), "memory.usage_in_bytes")
            s.memoryLimitBytes = number(directory("memory"), "memory.limit_in_bytes")
            s.pidsCurrent = number(directory("pids"), "pids.current")
            s.pidsLimit = number(directory("pids"), "pids.max")
            s.cpuUsageNanoseconds = number(directory("cpuacct"), "cpuacct.usage")
            s.oomKills = counter(directory("memory"), "memory.oom_control", "oom_kill")
        }
        return s
    }

    /// Removes the cgroup once empty. Leaves ancestors (shared with other containers) alone.
    public func destroy() throws(CgroupError) {
        for dir in directories where Files.exists(dir) {
            // Children first (v1 nested cgroups made by the workload).
            for child in Files.subdirectories(dir) { rmdir(dir + "/" + child) }
            let deadline = Deadline.after(seconds: 5)
            while rmdir(dir) != 0 {
                // Gone already: systemd removes a scope's cgroups when the scope stops.
                if errno == ENOENT { break }
                guard errno == EBUSY, !deadline.hasPassed else {
                    throw CgroupError(.failedPrecondition, "remove cgroup \(dir): \(String(cString: strerror(errno)))")
                }
                sleep(seconds: 0.01)
            }
        }
    }
}

extension String {
    func trimmingCharacters(in set: CharacterSetLite) -> String {
        var s = Substring(self)
        while let c = s.first, set.contains(c) { s.removeFirst() }
        while let c = s.last, set.contains(c) { s.removeLast() }
        return String(s)
    }
}

/// Just enough of CharacterSet for trimming, without Foundation (the agent uses this module).
public struct CharacterSetLite: Sendable {
    let characters: Set<Character>
    public static let whitespacesAndNewlines = CharacterSetLite(characters: [" ", "\t", "\n", "\r"])
    func contains(_ c: Character) -> Bool { characters.contains(c) }
}
