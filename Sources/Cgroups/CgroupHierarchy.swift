import SystemCalls

/// A cgroup hierarchy the calling process is in, and where this mount namespace shows it: what a
/// container's `cgroup` mount is made of on a cgroup v1 (legacy or hybrid) host.
public struct CgroupHierarchy: Sendable, Equatable {
    /// The hierarchy as /proc/self/cgroup names it ("cpu,cpuacct", "name=systemd"); empty for cgroup v2.
    public let controllers: String
    /// The process's cgroup, from the root of the hierarchy (or of its cgroup namespace).
    public let cgroup: String
    /// Where the hierarchy is mounted.
    public let mountPoint: String
    /// The process's cgroup directory under `mountPoint`; nil when that mount does not reach it (a
    /// bind of another part of the hierarchy).
    public let directory: String?

    public init(controllers: String, cgroup: String, mountPoint: String, directory: String?) {
        self.controllers = controllers
        self.cgroup = cgroup
        self.mountPoint = mountPoint
        self.directory = directory
    }

    public var isV2: Bool { controllers.isEmpty }
    /// The mount data that mounts this hierarchy again: its controllers (and `name=`).
    public var mountData: String { controllers }

    /// The hierarchies of the calling process that are mounted directly under `mountRoot`, in
    /// /proc/self/cgroup's order.
    public static func current(mountRoot: String = "/sys/fs/cgroup") -> [CgroupHierarchy] {
        resolve(cgroupFile: (try? Files.readString("/proc/self/cgroup")) ?? "", mounts: MountTable.current(), mountRoot: mountRoot)
    }

    /// Pairs each line of a /proc/<pid>/cgroup with its mount: a v1 hierarchy's mount has every one of
    /// its controllers among its super options; cgroup v2's is the cgroup2 mount at or under `mountRoot`.
    /// Mounts elsewhere (other containers' views) are ignored; of several, the last one made wins, as it
    /// is the one a path lookup finds.
    public static func resolve(cgroupFile: String, mounts: [MountTableEntry], mountRoot: String) -> [CgroupHierarchy] {
        let root = mountRoot.hasSuffix("/") ? String(mountRoot.dropLast()) : mountRoot
        var out: [CgroupHierarchy] = []
        for line in cgroupFile.split(separator: "\n") {
            let fields = line.split(separator: ":", maxSplits: 2, omittingEmptySubsequences: false).map(String.init)
            guard fields.count == 3, fields[2].hasPrefix("/") else { continue }
            let isV2 = fields[0] == "0" && fields[1].isEmpty
            let wanted = Set(fields[1].split(separator: ",").map(String.init))
            guard isV2 || !wanted.isEmpty else { continue }
            let mount = mounts.last { m in
                let placed = isV2 ? (m.mountPoint == root || Self.parent(of: m.mountPoint) == root)
                                  : Self.parent(of: m.mountPoint) == root
                guard placed else { return false }
                return isV2 ? m.fileSystemType == "cgroup2" : m.fileSystemType == "cgroup" && wanted.isSubset(of: m.superOptions)
            }
            guard let mount else { continue }
            out.append(CgroupHierarchy(controllers: isV2 ? "" : fields[1], cgroup: fields[2], mountPoint: mount.mountPoint,
                                       directory: Self.directory(of: fields[2], under: mount)))
        }
        return out
    }

    static func parent(of path: String) -> String {
        guard let slash = path.lastIndex(of: "/"), slash != path.startIndex else { return "/" }
        return String(path[..<slash])
    }

    /// The mount shows the hierarchy from its `root`; the cgroup must be at or below it.
    static func directory(of cgroup: String, under mount: MountTableEntry) -> String? {
        let base = mount.root == "/" ? "" : mount.root
        guard cgroup == mount.root || cgroup.hasPrefix(base + "/") else { return nil }
        let rest = String(cgroup.dropFirst(base.count))
        return rest == "/" || rest.isEmpty ? mount.mountPoint : mount.mountPoint + rest
    }
}
