import Foundation
import Testing
import TestSupport

/// systemd as PID 1 of namespaces of its own (tests/fixtures/systemd-in-namespace.sh): its cgroups are
/// the subtree `name` of the host's, and its sockets are in a /run no one else sees.
final class SystemdInNamespace {
    static let binary = "/usr/lib/systemd/systemd"
    static var skipReason: String? {
        if let reason = BundleFixture.skipReason { return reason }
        if !FileManager.default.isExecutableFile(atPath: binary) { return "systemd is not installed (make deps installs it)" }
        for tool in ["/usr/bin/unshare", "/usr/bin/nsenter", "/usr/bin/systemctl"] where !FileManager.default.isExecutableFile(atPath: tool) {
            return "\(tool) is missing"
        }
        return nil
    }

    let name = "cocoon-test-systemd-\(getpid())"
    let log: String
    private(set) var pid: Int32 = 0
    static let unified = FileManager.default.fileExists(atPath: "/sys/fs/cgroup/cgroup.controllers")

    init() throws {
        log = NSTemporaryDirectory() + "\(name).log"
        let script = BundleFixture.repository + "/tests/fixtures/systemd-in-namespace.sh"
        let (status, out) = try Subprocess.bash("setsid bash \(script) \(name) > \(log) 2>&1 < /dev/null & echo started")
        guard status == 0, out.contains("started") else { throw Failure("could not start \(script): \(out)") }
        // PID 1 of the namespace is the one process of init.scope once systemd has set itself up.
        let scope = Self.unified ? "/sys/fs/cgroup/\(name)/init.scope/cgroup.procs" : "/sys/fs/cgroup/systemd/\(name)/init.scope/cgroup.procs"
        let deadline = Date().addingTimeInterval(30)
        while pid == 0 && Date() < deadline {
            pid = Int32(((try? String(contentsOfFile: scope, encoding: .utf8)) ?? "").split(separator: "\n").first ?? "") ?? 0
            if pid == 0 { usleep(20_000) }
        }
        guard pid != 0 else {
            stop()
            throw Failure("systemd did not start within 30 s: \((try? String(contentsOfFile: log, encoding: .utf8)) ?? "")")
        }
        // Its API socket appears a little after it moved into init.scope.
        while !FileManager.default.fileExists(atPath: "/proc/\(pid)/root/run/systemd/private") && Date() < deadline { usleep(20_000) }
        let (_, state) = try inside("timeout 30 systemctl is-system-running --wait")
        guard state.hasPrefix("running") || state.hasPrefix("degraded") else {
            stop()
            throw Failure("systemd in the namespace is '\(state)'")
        }
    }

    struct Failure: Error, CustomStringConvertible {
        let description: String
        init(_ d: String) { description = d }
    }

    /// A shell command in systemd's namespaces (its /run, its cgroup view, its pid numbers).
    func inside(_ command: String, timeout: Double = 60) throws -> (Int32, String) {
        let quoted = "'" + command.replacingOccurrences(of: "'", with: "'\\''") + "'"
        return try Subprocess.bash("nsenter -t \(pid) -m -p -C -- bash -c \(quoted)", timeout: timeout)
    }

    /// `systemctl show -p NAME` values of a unit.
    func property(_ unit: String, _ name: String) throws -> String {
        try inside("systemctl show --value -p \(name) \(unit)").1.trimmingCharacters(in: .whitespacesAndNewlines)
    }

    /// The host's view of a cgroup of the namespace (the subtree `name`).
    func hostPath(_ controller: String, _ path: String) -> String {
        Self.unified ? "/sys/fs/cgroup/\(name)\(path)" : "/sys/fs/cgroup/\(controller)/\(name)\(path)"
    }

    /// Kills the namespace (SIGKILL to its PID 1 ends every process in it) and removes its cgroups.
    func stop() {
        if pid != 0 { kill(pid, SIGKILL) }
        let roots = Self.unified ? ["/sys/fs/cgroup/\(name)"]
            : ((try? FileManager.default.contentsOfDirectory(atPath: "/sys/fs/cgroup")) ?? []).map { "/sys/fs/cgroup/\($0)/\(name)" }
        for root in roots where FileManager.default.fileExists(atPath: root) {
            _ = try? Subprocess.bash("for i in $(seq 200); do find \(root) -depth -type d -exec rmdir {} + 2>/dev/null; [ -e \(root) ] || exit 0; sleep 0.05; done; exit 1")
        }
        try? FileManager.default.removeItem(atPath: log)
    }

    /// Cgroup directories of the namespace still on the host.
    func leftovers() -> [String] {
        ((try? FileManager.default.contentsOfDirectory(atPath: "/sys/fs/cgroup")) ?? [])
            .map { "/sys/fs/cgroup/\($0)/\(name)" }.filter { FileManager.default.fileExists(atPath: $0) }
    }
}

/// `--systemd-cgroup`: containers' cgroups as transient scope units of a real systemd, driven over its
/// D-Bus API by cocoon with process isolation.
@Suite(.serialized, .enabled(if: SystemdInNamespace.skipReason == nil, Comment(rawValue: SystemdInNamespace.skipReason ?? "")))
struct SystemdCgroupTests {
    static let state = "/run/cocoon-test-systemd"

    static func unifiedOr(_ v2: String, _ v1: String) -> String { SystemdInNamespace.unified ? v2 : v1 }

    func cocoon(_ systemd: SystemdInNamespace, _ args: String) throws -> (Int32, String) {
        let c = try #require(BundleFixture.cocoon)
        return try systemd.inside("\(c) --config \(BundleFixture.configFile) --isolation process --root \(Self.state) --systemd-cgroup \(args)")
    }

    @Test func aContainerLivesInATransientScopeWithItsLimitsUntilDeleted() throws {
        let systemd = try SystemdInNamespace()
        defer {
            systemd.stop()
            #expect(systemd.leftovers().isEmpty, "cgroups left: \(systemd.leftovers())")
        }
        let b = try BundleFixture(args: ["sleep", "60"]) { config in
            var linux = config["linux"] as! [String: Any]
            linux["cgroupsPath"] = "system.slice:cocoon:sd1"
            linux["resources"] = [
                "memory": ["limit": 64 << 20],
                "pids": ["limit": 100],
                "devices": [["allow": false, "access": "rwm"], ["allow": true, "type": "c", "major": 10, "minor": 200, "access": "rwm"]],
            ]
            config["linux"] = linux
        }
        defer { b.remove() }
        let unit = "cocoon-sd1.scope"
        let (created, createOut) = try cocoon(systemd, "create -b \(b.directory) sd1")
        #expect(created == 0, "\(createOut)")
        #expect(try systemd.property(unit, "ActiveState") == "active")
        #expect(try systemd.property(unit, "Delegate") == "yes")
        #expect(try systemd.property(unit, "TasksMax") == "100")
        #expect(try systemd.property(unit, "DevicePolicy") == "strict")
        #expect(try systemd.property(unit, "DeviceAllow").contains("/dev/char/10:200 rwm"))
        let memoryProperty = SystemdInNamespace.unified ? "MemoryMax" : "MemoryLimit"
        #expect(try systemd.property(unit, memoryProperty) == "\(64 << 20)")
        // A second container with the same cgroupsPath is refused, and the first one's scope stays.
        let (twin, twinOut) = try cocoon(systemd, "create -b \(b.directory) sd1-twin")
        #expect(twin == 1)
        #expect(twinOut.contains("already exists") && twinOut.contains(unit), "\(twinOut)")
        #expect(try systemd.property(unit, "ActiveState") == "active")
        #expect(try systemd.inside("ls \(Self.state)").1.split(separator: "\n") == ["sd1"])

        // The init process is in the scope in every hierarchy, including those systemd does not manage.
        let procs = Self.unifiedOr(systemd.hostPath("", "/system.slice/\(unit)/cgroup.procs"), systemd.hostPath("pids", "/system.slice/\(unit)/cgroup.procs"))
        let hostPid = try #require(Int32(try String(contentsOfFile: procs, encoding: .utf8).split(separator: "\n").first ?? ""),
                                   "the container's init is not in the scope")
        let cgroups = try String(contentsOfFile: "/proc/\(hostPid)/cgroup", encoding: .utf8)
        for line in cgroups.split(separator: "\n") where !line.hasPrefix("0::") || SystemdInNamespace.unified {
            #expect(line.hasSuffix("/\(systemd.name)/system.slice/\(unit)"), "\(line)")
        }
        let limitFile = SystemdInNamespace.unified ? systemd.hostPath("", "/system.slice/\(unit)/memory.max")
            : systemd.hostPath("memory", "/system.slice/\(unit)/memory.limit_in_bytes")
        #expect(try String(contentsOfFile: limitFile, encoding: .utf8) == "\(64 << 20)\n")

        // update reaches systemd too, so its own re-apply cannot undo it.
        #expect(try systemd.inside("echo '{\"memory\":{\"limit\":100663296},\"pids\":{\"limit\":50}}' > /tmp/\(systemd.name).json").0 == 0)
        defer { try? FileManager.default.removeItem(atPath: "/tmp/\(systemd.name).json") }
        let (updated, updateOut) = try cocoon(systemd, "update --resources /tmp/\(systemd.name).json sd1")
        #expect(updated == 0, "\(updateOut)")
        #expect(try systemd.property(unit, memoryProperty) == "100663296")
        #expect(try systemd.property(unit, "TasksMax") == "50")
        #expect(try String(contentsOfFile: limitFile, encoding: .utf8) == "100663296\n")

        #expect(try cocoon(systemd, "start sd1").0 == 0)
        #expect(try cocoon(systemd, "ps sd1").1.contains("sleep 60"))
        let (deleted, deleteOut) = try cocoon(systemd, "delete --force sd1")
        #expect(deleted == 0, "\(deleteOut)")
        #expect(try systemd.property(unit, "LoadState") == "not-found", "the scope is stopped and forgotten")
        #expect(!BundleFixture.isRunning(pid: hostPid))
        let scopeDirs = ((try? FileManager.default.contentsOfDirectory(atPath: "/sys/fs/cgroup")) ?? [])
            .map { "/sys/fs/cgroup/\($0)/\(systemd.name)/system.slice/\(unit)" }.filter { FileManager.default.fileExists(atPath: $0) }
        #expect(scopeDirs.isEmpty, "\(scopeDirs)")
    }

    @Test func aFailureAfterTheScopeStartedStopsItAndLeavesNothing() throws {
        let systemd = try SystemdInNamespace()
        defer { systemd.stop() }
        // A limit cocoon cannot write on this host, found only after systemd made the scope: on cgroup v1,
        // linux.resources.unified; on v2, a control file that does not exist.
        let b = try BundleFixture(args: ["true"]) { config in
            var linux = config["linux"] as! [String: Any]
            linux["cgroupsPath"] = "system.slice:cocoon:sd2"
            linux["resources"] = ["unified": SystemdInNamespace.unified ? ["nonexistent.control": "1"] : ["memory.high": "1000000"]]
            config["linux"] = linux
        }
        defer { b.remove() }
        let (status, out) = try cocoon(systemd, "run -b \(b.directory) sd2")
        #expect(status == 1)
        #expect(out.contains("linux.resources.unified"), "\(out)")
        #expect(try systemd.property("cocoon-sd2.scope", "LoadState") == "not-found", "the scope was stopped")
        #expect(try systemd.inside("ls \(Self.state)").1.trimmingCharacters(in: .whitespacesAndNewlines).isEmpty)
        let scopeDirs = ((try? FileManager.default.contentsOfDirectory(atPath: "/sys/fs/cgroup")) ?? [])
            .map { "/sys/fs/cgroup/\($0)/\(systemd.name)/system.slice/cocoon-sd2.scope" }.filter { FileManager.default.fileExists(atPath: $0) }
        #expect(scopeDirs.isEmpty, "\(scopeDirs)")
    }

    @Test(.enabled(if: VMCLIFixture.skipReason == nil, Comment(rawValue: VMCLIFixture.skipReason ?? "")))
    func aVMContainersHostCgroupIsAScopeHoldingItsVM() throws {
        // What docker and containerd pass on systemd hosts: the VM's host cgroup becomes the scope, and the
        // stand-in, the sandbox daemon, virtiofsd and QEMU are in it in every hierarchy.
        let systemd = try SystemdInNamespace()
        defer {
            systemd.stop()
            #expect(systemd.leftovers().isEmpty, "cgroups left: \(systemd.leftovers())")
        }
        let b = try BundleFixture(args: ["sh", "-c", "echo in-the-vm; sleep 60"]) { config in
            var linux = config["linux"] as! [String: Any]
            linux["cgroupsPath"] = "system.slice:cocoon:vm1"
            config["linux"] = linux
        }
        defer { b.remove() }
        let output = NSTemporaryDirectory() + "\(systemd.name)-vm.out"
        defer { try? FileManager.default.removeItem(atPath: output) }
        let c = try #require(BundleFixture.cocoon)
        let cocoon = "\(c) --config \(VMCLIFixture.configFile) --root \(Self.state) --systemd-cgroup"
        let unit = "cocoon-vm1.scope"
        // The stand-in keeps the caller's stdout: a file, not the pipe the helper reads to its end.
        let (created, _) = try systemd.inside("\(cocoon) create -b \(b.directory) vm1 > \(output) 2>&1 < /dev/null", timeout: 180)
        #expect(created == 0, "\((try? String(contentsOfFile: output, encoding: .utf8)) ?? "")")
        #expect(try systemd.property(unit, "ActiveState") == "active")
        #expect(try systemd.property(unit, "Delegate") == "yes")
        // The VM's RAM (256 MiB) and the host overhead (256 MiB), as a unit property so systemd keeps it.
        #expect(try systemd.property(unit, SystemdInNamespace.unified ? "MemoryMax" : "MemoryLimit") == "\(512 << 20)")
        let limitFile = SystemdInNamespace.unified ? systemd.hostPath("", "/system.slice/\(unit)/memory.max")
            : systemd.hostPath("memory", "/system.slice/\(unit)/memory.limit_in_bytes")
        #expect((try? String(contentsOfFile: limitFile, encoding: .utf8)) == "\(512 << 20)\n")

        let procs = Self.unifiedOr(systemd.hostPath("", "/system.slice/\(unit)/cgroup.procs"),
                                   systemd.hostPath("pids", "/system.slice/\(unit)/cgroup.procs"))
        let members = ((try? String(contentsOfFile: procs, encoding: .utf8)) ?? "").split(separator: "\n").compactMap { Int32($0) }
        let names = members.map { ((try? String(contentsOfFile: "/proc/\($0)/comm", encoding: .utf8)) ?? "").trimmingCharacters(in: .whitespacesAndNewlines) }
        #expect(members.count >= 4 && names.contains { $0.hasPrefix("qemu-system") }, "stand-in, daemon, virtiofsd and QEMU: \(names)")
        for pid in members {
            let cgroups = (try? String(contentsOfFile: "/proc/\(pid)/cgroup", encoding: .utf8)) ?? ""
            for line in cgroups.split(separator: "\n") where !line.hasPrefix("0::") || SystemdInNamespace.unified {
                #expect(line.hasSuffix("/\(systemd.name)/system.slice/\(unit)"), "pid \(pid): \(line)")
            }
        }

        let (started, startOut) = try systemd.inside("\(cocoon) start vm1", timeout: 120)
        #expect(started == 0, "\(startOut)")
        let deadline = Date().addingTimeInterval(60)
        while Date() < deadline, !((try? String(contentsOfFile: output, encoding: .utf8)) ?? "").contains("in-the-vm") { usleep(100_000) }
        #expect(((try? String(contentsOfFile: output, encoding: .utf8)) ?? "").contains("in-the-vm"))

        let (deleted, deleteOut) = try systemd.inside("\(cocoon) delete --force vm1", timeout: 120)
        #expect(deleted == 0, "\(deleteOut)")
        #expect(try systemd.property(unit, "LoadState") == "not-found", "the scope is stopped and forgotten")
        #expect(members.allSatisfy { !BundleFixture.isRunning(pid: $0) }, "the VM's processes are gone")
        let scopeDirs = ((try? FileManager.default.contentsOfDirectory(atPath: "/sys/fs/cgroup")) ?? [])
            .map { "/sys/fs/cgroup/\($0)/\(systemd.name)/system.slice/\(unit)" }.filter { FileManager.default.fileExists(atPath: $0) }
        #expect(scopeDirs.isEmpty, "\(scopeDirs)")
        #expect(try systemd.inside("ls \(Self.state)").1.trimmingCharacters(in: .whitespacesAndNewlines) == "daemons"
                || systemd.inside("ls \(Self.state)").1.trimmingCharacters(in: .whitespacesAndNewlines).isEmpty)
    }

    @Test func badPathsAndAMissingSystemdAreClearErrors() throws {
        let b = try BundleFixture(args: ["true"]) { config in
            var linux = config["linux"] as! [String: Any]
            linux["cgroupsPath"] = "/not/systemd/form"
            config["linux"] = linux
        }
        defer { b.remove() }
        let form = try BundleFixture(args: ["true"]) { config in
            var linux = config["linux"] as! [String: Any]
            linux["cgroupsPath"] = "system.slice:cocoon:sd4"
            config["linux"] = linux
        }
        defer { form.remove() }
        do {
            let systemd = try SystemdInNamespace()
            defer { systemd.stop() }
            let (status, out) = try cocoon(systemd, "run -b \(b.directory) sd3")
            #expect(status == 1)
            #expect(out.contains("linux.cgroupsPath '/not/systemd/form'") && out.contains("slice:prefix:name"), "\(out)")
        }
        // This host's own PID 1 is not systemd: the flag says so rather than falling back.
        if !FileManager.default.fileExists(atPath: "/run/systemd/system") {
            let (hostStatus, _, err) = try form.cocoon(["--systemd-cgroup", "run", "-b", form.directory, "sd4"])
            #expect(hostStatus == 1)
            #expect(err.contains("systemd is not running on this host"), "\(err)")
            #expect(!BundleFixture.leftovers().contains("sd4"))
        }
        // A systemd-form path without the flag names the flag.
        let (plain, _, plainErr) = try form.cocoon(["run", "-b", form.directory, "sd5"])
        #expect(plain == 1)
        #expect(plainErr.contains("--systemd-cgroup"), "\(plainErr)")
        #expect(!BundleFixture.leftovers().contains("sd5"))
    }
}
