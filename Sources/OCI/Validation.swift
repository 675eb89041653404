// Checks what the runtime-spec requires beyond JSON types. Every problem names its JSON path.

extension Spec {
    public func validate(file: String) throws(OCIError) {
        var v = Validator(file: file)
        v.check(self)
        if let first = v.problems.first { throw first }
    }

    /// Every problem, for tools that want them all.
    public func problems(file: String) -> [OCIError] {
        var v = Validator(file: file)
        v.check(self)
        return v.problems
    }
}

public enum Rlimits {
    public static let names: [String: Int32] = [
        "RLIMIT_CPU": 0, "RLIMIT_FSIZE": 1, "RLIMIT_DATA": 2, "RLIMIT_STACK": 3, "RLIMIT_CORE": 4, "RLIMIT_RSS": 5,
        "RLIMIT_NPROC": 6, "RLIMIT_NOFILE": 7, "RLIMIT_MEMLOCK": 8, "RLIMIT_AS": 9, "RLIMIT_LOCKS": 10,
        "RLIMIT_SIGPENDING": 11, "RLIMIT_MSGQUEUE": 12, "RLIMIT_NICE": 13, "RLIMIT_RTPRIO": 14, "RLIMIT_RTTIME": 15,
    ]
}

/// Capability names in kernel order: the index is the capability number.
public enum CapabilityNames {
    public static let all = [
        "CAP_CHOWN", "CAP_DAC_OVERRIDE", "CAP_DAC_READ_SEARCH", "CAP_FOWNER", "CAP_FSETID", "CAP_KILL", "CAP_SETGID",
        "CAP_SETUID", "CAP_SETPCAP", "CAP_LINUX_IMMUTABLE", "CAP_NET_BIND_SERVICE", "CAP_NET_BROADCAST",
        "CAP_NET_ADMIN", "CAP_NET_RAW", "CAP_IPC_LOCK", "CAP_IPC_OWNER", "CAP_SYS_MODULE", "CAP_SYS_RAWIO",
        "CAP_SYS_CHROOT", "CAP_SYS_PTRACE", "CAP_SYS_PACCT", "CAP_SYS_ADMIN", "CAP_SYS_BOOT", "CAP_SYS_NICE",
        "CAP_SYS_RESOURCE", "CAP_SYS_TIME", "CAP_SYS_TTY_CONFIG", "CAP_MKNOD", "CAP_LEASE", "CAP_AUDIT_WRITE",
        "CAP_AUDIT_CONTROL", "CAP_SETFCAP", "CAP_MAC_OVERRIDE", "CAP_MAC_ADMIN", "CAP_SYSLOG", "CAP_WAKE_ALARM",
        "CAP_BLOCK_SUSPEND", "CAP_AUDIT_READ", "CAP_PERFMON", "CAP_BPF", "CAP_CHECKPOINT_RESTORE",
    ]
    public static func number(_ name: String) -> Int? { all.firstIndex(of: name) }
}

public enum RootfsPropagation {
    public static let valid = ["private", "rprivate", "slave", "rslave", "shared", "rshared", "unbindable", "runbindable"]
}

struct Validator {
    let file: String
    var problems: [OCIError] = []

    mutating func fail(_ path: String, _ problem: String) {
        problems.append(OCIError(file: file, path: path, problem))
    }

    mutating func absolute(_ path: String, _ value: String) {
        if !value.hasPrefix("/") { fail(path, "must be an absolute path, found '\(value)'") }
    }

    mutating func check(_ spec: Spec) {
        let parts = spec.ociVersion.split(separator: ".")
        if parts.count < 2 || parts[0] != "1" || !["0", "1", "2"].contains(parts[1].prefix { $0.isNumber }) {
            fail("ociVersion", "'\(spec.ociVersion)' is not supported; supported versions: 1.0.x to 1.2.x")
        }
        if let root = spec.root {
            if root.path.isEmpty { fail("root.path", "must not be empty") }
        }
        if let p = spec.process { check(p) }
        let namespaces = spec.linux?.namespaces ?? []
        let newNamespaces = Set(namespaces.filter { $0.path == nil }.map(\.type))
        let anyNamespaces = Set(namespaces.map(\.type))
        if spec.hostname != nil && !newNamespaces.contains(.uts) {
            fail("hostname", "setting a hostname needs a new uts namespace in linux.namespaces")
        }
        if spec.domainname != nil && !newNamespaces.contains(.uts) {
            fail("domainname", "setting a domainname needs a new uts namespace in linux.namespaces")
        }
        for (i, m) in (spec.mounts ?? []).enumerated() {
            if m.destination.isEmpty { fail("mounts[\(i)].destination", "must not be empty") }
            if m.destination.split(separator: "/").contains("..") {
                fail("mounts[\(i)].destination", "must not contain '..'")
            }
        }
        if let hooks = spec.hooks {
            let all: [(String, [Hook]?)] = [
                ("prestart", hooks.prestart), ("createRuntime", hooks.createRuntime), ("createContainer", hooks.createContainer),
                ("startContainer", hooks.startContainer), ("poststart", hooks.poststart), ("poststop", hooks.poststop),
            ]
            for (name, list) in all {
                for (i, h) in (list ?? []).enumerated() {
                    absolute("hooks.\(name)[\(i)].path", h.path)
                    if let t = h.timeout, t <= 0 { fail("hooks.\(name)[\(i)].timeout", "must be greater than zero, found \(t)") }
                }
            }
        }
        guard let linux = spec.linux else { return }
        var seen = Set<NamespaceType>()
        for (i, ns) in namespaces.enumerated() {
            if !seen.insert(ns.type).inserted { fail("linux.namespaces[\(i)].type", "'\(ns.type.rawValue)' appears twice") }
            if let path = ns.path { absolute("linux.namespaces[\(i)].path", path) }
        }
        let hasMappings = !(linux.uidMappings ?? []).isEmpty || !(linux.gidMappings ?? []).isEmpty
        if hasMappings && !anyNamespaces.contains(.user) {
            fail("linux.uidMappings", "id mappings need a user namespace in linux.namespaces")
        }
        if newNamespaces.contains(.user) && ((linux.uidMappings ?? []).isEmpty || (linux.gidMappings ?? []).isEmpty) {
            fail("linux.uidMappings", "a new user namespace needs both uidMappings and gidMappings")
        }
        for (name, list) in [("uidMappings", linux.uidMappings), ("gidMappings", linux.gidMappings)] {
            for (i, m) in (list ?? []).enumerated() where m.size == 0 {
                fail("linux.\(name)[\(i)].size", "must be at least 1")
            }
        }
        if linux.timeOffsets != nil && !newNamespaces.contains(.time) {
            fail("linux.timeOffsets", "time offsets need a new time namespace in linux.namespaces")
        }
        for (clock, offset) in (linux.timeOffsets ?? [:]).sorted(by: { $0.key < $1.key }) {
            if clock != "monotonic" && clock != "boottime" {
                fail("linux.timeOffsets.\(clock)", "a time namespace offsets only monotonic and boottime")
            }
            if let ns = offset.nanosecs, ns >= 1_000_000_000 {
                fail("linux.timeOffsets.\(clock).nanosecs", "\(ns) is not below 1000000000")
            }
        }
        if linux.intelRdt != nil {
            fail("linux.intelRdt", "Intel RDT (resctrl cache and memory-bandwidth allocation) is not supported by cocoon; remove it from the spec")
        }
        if let personality = linux.personality {
            if personality.domain != "LINUX" && personality.domain != "LINUX32" {
                fail("linux.personality.domain", "'\(personality.domain)' is not valid; valid: LINUX, LINUX32")
            }
            if let flags = personality.flags, !flags.isEmpty {
                fail("linux.personality.flags", "no flags are defined by the runtime-spec; got \(flags)")
            }
        }
        for (i, d) in (linux.devices ?? []).enumerated() {
            absolute("linux.devices[\(i)].path", d.path)
            if !["c", "b", "u", "p"].contains(d.type) {
                fail("linux.devices[\(i)].type", "'\(d.type)' is not valid; valid: c, b, u, p")
            }
            if d.type != "p" && (d.major == nil || d.minor == nil) {
                fail("linux.devices[\(i)]", "a '\(d.type)' device needs major and minor")
            }
            if let mode = d.fileMode, mode > 0o7777 { fail("linux.devices[\(i)].fileMode", "must be at most 0o7777") }
        }
        if let cg = linux.cgroupsPath, cg.split(separator: "/").contains("..") {
            fail("linux.cgroupsPath", "must not contain '..'")
        }
        if let r = linux.resources { check(r) }
        if let prop = linux.rootfsPropagation, !RootfsPropagation.valid.contains(prop) {
            fail("linux.rootfsPropagation", "'\(prop)' is not valid; valid: \(RootfsPropagation.valid.joined(separator: ", "))")
        }
        if let s = linux.seccomp { check(s) }
        for key in (linux.sysctl ?? [:]).keys.sorted() where key.isEmpty || key.contains("/") || key.contains("..") {
            fail("linux.sysctl", "'\(key)' is not a sysctl name (dotted, like net.ipv4.ip_forward)")
        }
        for (name, list) in [("maskedPaths", linux.maskedPaths), ("readonlyPaths", linux.readonlyPaths)] {
            for (i, p) in (list ?? []).enumerated() { absolute("linux.\(name)[\(i)]", p) }
        }
    }

    mutating func check(_ p: Process) {
        let args = p.args ?? []
        if args.isEmpty { fail("process.args", "must contain at least one element (the program to run)") }
        else if args[0].isEmpty { fail("process.args[0]", "must not be empty") }
        absolute("process.cwd", p.cwd)
        for (i, e) in (p.env ?? []).enumerated() {
            guard let eq = e.firstIndex(of: "="), eq != e.startIndex else {
                fail("process.env[\(i)]", "'\(e)' must have the form KEY=value")
                continue
            }
        }
        if p.consoleSize != nil && p.terminal != true {
            fail("process.consoleSize", "only valid when process.terminal is true")
        }
        if let adj = p.oomScoreAdj, !(-1000...1000).contains(adj) {
            fail("process.oomScoreAdj", "\(adj) is out of range; valid: -1000 to 1000")
        }
        if let umask = p.user.umask, umask > 0o777 { fail("process.user.umask", "must be at most 0o777") }
        var seen = Set<String>()
        for (i, r) in (p.rlimits ?? []).enumerated() {
            if Rlimits.names[r.type] == nil {
                fail("process.rlimits[\(i)].type", "'\(r.type)' is not valid; valid: \(Rlimits.names.keys.sorted().joined(separator: ", "))")
            }
            if !seen.insert(r.type).inserted { fail("process.rlimits[\(i)].type", "'\(r.type)' appears twice") }
            if r.soft > r.hard { fail("process.rlimits[\(i)]", "soft limit \(r.soft) exceeds hard limit \(r.hard)") }
        }
        if let caps = p.capabilities {
            for (set, names) in [("bounding", caps.bounding), ("effective", caps.effective), ("inheritable", caps.inheritable),
                                 ("permitted", caps.permitted), ("ambient", caps.ambient)] {
                for (i, n) in (names ?? []).enumerated() where CapabilityNames.number(n) == nil {
                    fail("process.capabilities.\(set)[\(i)]", "'\(n)' is not a known capability (CAP_CHOWN ... CAP_CHECKPOINT_RESTORE)")
                }
            }
        }
    }

    mutating func check(_ r: Resources) {
        for (i, d) in (r.devices ?? []).enumerated() {
            if let t = d.type, !["a", "c", "b"].contains(t) {
                fail("linux.resources.devices[\(i)].type", "'\(t)' is not valid; valid: a, c, b")
            }
            if let a = d.access, a.isEmpty || !a.allSatisfy({ "rwm".contains($0) }) {
                fail("linux.resources.devices[\(i)].access", "'\(a)' is not valid; use letters from 'rwm'")
            }
        }
        if let m = r.memory {
            // 0 means "not set" (docker sends zeros for what it does not change), as in runc.
            if let l = m.limit, l < -1 { fail("linux.resources.memory.limit", "must be positive, -1 for no limit, or 0 for unchanged") }
            if let s = m.swap, s < -1 { fail("linux.resources.memory.swap", "must be positive, -1 for no limit, or 0 for unchanged") }
            if let l = m.limit, let s = m.swap, l > 0, s > 0, s < l {
                fail("linux.resources.memory.swap", "memory+swap (\(s)) must not be below the memory limit (\(l))")
            }
            if let sw = m.swappiness, sw > 100 { fail("linux.resources.memory.swappiness", "must be 0 to 100") }
        }
        if let c = r.cpu {
            if let q = c.quota, q < -1 { fail("linux.resources.cpu.quota", "must be positive, -1 for no limit, or 0 for unchanged") }
            if let p = c.period, p != 0, !(1000...1_000_000).contains(p) {
                fail("linux.resources.cpu.period", "\(p) is out of range; valid: 1000 to 1000000 microseconds")
            }
            if let s = c.cpus, !s.isEmpty, !s.allSatisfy({ $0.isNumber || $0 == "," || $0 == "-" }) {
                fail("linux.resources.cpu.cpus", "'\(s)' is not a CPU list like 0-3,5")
            }
            if let s = c.mems, !s.isEmpty, !s.allSatisfy({ $0.isNumber || $0 == "," || $0 == "-" }) {
                fail("linux.resources.cpu.mems", "'\(s)' is not a node list like 0-1")
            }
        }
        if let p = r.pids, p.limit < -1 { fail("linux.resources.pids.limit", "must be positive, or 0/-1 for no limit") }
        for key in (r.unified ?? [:]).keys.sorted() where key.contains("/") || key.hasPrefix(".") || key.isEmpty {
            fail("linux.resources.unified", "'\(key)' is not a cgroup v2 file name")
        }
    }

    mutating func check(_ s: Seccomp) {
        if !Seccomp.actions.contains(s.defaultAction) {
            fail("linux.seccomp.defaultAction", "'\(s.defaultAction)' is not valid; valid: \(Seccomp.actions.sorted().joined(separator: ", "))")
        }
        for (i, a) in (s.architectures ?? []).enumerated() where !Seccomp.architecturesKnown.contains(a) {
            fail("linux.seccomp.architectures[\(i)]", "'\(a)' is not a known architecture")
        }
        for (i, f) in (s.flags ?? []).enumerated() where !Seccomp.flagsKnown.contains(f) {
            fail("linux.seccomp.flags[\(i)]", "'\(f)' is not valid; valid: \(Seccomp.flagsKnown.sorted().joined(separator: ", "))")
        }
        for (i, rule) in (s.syscalls ?? []).enumerated() {
            if rule.names.isEmpty || rule.names.contains("") { fail("linux.seccomp.syscalls[\(i)].names", "must list syscall names") }
            if !Seccomp.actions.contains(rule.action) {
                fail("linux.seccomp.syscalls[\(i)].action", "'\(rule.action)' is not valid; valid: \(Seccomp.actions.sorted().joined(separator: ", "))")
            }
            for (j, arg) in (rule.args ?? []).enumerated() {
                if arg.index > 5 { fail("linux.seccomp.syscalls[\(i)].args[\(j)].index", "must be 0 to 5") }
                if !Seccomp.operators.contains(arg.op) {
                    fail("linux.seccomp.syscalls[\(i)].args[\(j)].op", "'\(arg.op)' is not valid; valid: \(Seccomp.operators.sorted().joined(separator: ", "))")
                }
            }
        }
    }
}
