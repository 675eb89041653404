import CSupport
import Sockets
import SystemCalls
import Foundation
import Testing
import TestSupport

/// The runc command line with process isolation, on busybox bundles made offline.
@Suite(.serialized, .enabled(if: BundleFixture.skipReason == nil, Comment(rawValue: BundleFixture.skipReason ?? "")))
struct ProcessIsolationTests {
    @Test func runPrintsAndReturnsTheExitStatus() throws {
        let b = try BundleFixture(args: ["sh", "-c", "echo out; echo err >&2; echo pid $$; hostname; exit 3"])
        defer { b.remove() }
        let (status, out, err) = try b.cocoon(["run", "-b", b.directory, "run-exit"])
        #expect(status == 3)
        #expect(out == "out\npid 1\ncocoon\n", "the container is PID 1 of its own namespace with the spec's hostname")
        #expect(err == "err\n")
        #expect(!BundleFixture.leftovers().contains("run-exit"), "run removes the container after it exits")
    }

    @Test func theProgramStartsWithNoSignalBlocked() throws {
        // The init stage is PID 1 of the new pid namespace; what PID 1 of a guest does at start (block
        // SIGCHLD for its reaper) must not leak into the user's program through exec.
        let b = try BundleFixture(args: ["sh", "-c", "grep -E '^Sig(Blk|Ign)' /proc/self/status"])
        defer { b.remove() }
        let (status, out, _) = try b.cocoon(["run", "-b", b.directory, "run-sigmask"])
        #expect(status == 0)
        #expect(out.contains("SigBlk:\t0000000000000000"), "\(out)")
    }

    @Test func stdinReachesTheContainer() throws {
        let b = try BundleFixture(args: ["sh", "-c", "read line; echo got:$line"])
        defer { b.remove() }
        let (status, out, _) = try b.cocoon(["run", "-b", b.directory, "run-stdin"], stdin: "hello\n")
        #expect(status == 0)
        #expect(out == "got:hello\n")
    }

    @Test func exitStatusOfAChildKilledBySignalPassesThrough() throws {
        // PID 1 of a namespace ignores signals it has no handler for, so the shell's child is killed.
        let b = try BundleFixture(args: ["sh", "-c", "sh -c 'kill -9 $$'; exit $?"])
        defer { b.remove() }
        #expect(try b.cocoon(["run", "-b", b.directory, "run-signal"]).0 == 137)
    }

    @Test func runExitsWith128PlusSignalWhenTheContainerIsKilled() throws {
        let b = try BundleFixture(args: ["sleep", "60"])
        defer { b.remove() }
        let id = "run-killed"
        let result = LockedResult()
        let thread = Thread {
            let r = try? b.cocoon(["run", "-b", b.directory, id], timeout: 60)
            result.set(r?.0)
        }
        thread.start()
        let deadline = Date().addingTimeInterval(20)
        while Date() < deadline, !(try b.cocoon(["state", id]).1.contains("\"running\"")) { usleep(20000) }
        #expect(try b.cocoon(["kill", id, "KILL"]).0 == 0)
        while Date() < deadline, result.get() == nil { usleep(20000) }
        #expect(result.get() == 137)
        #expect(!BundleFixture.leftovers().contains(id))
    }

    @Test func isolationIsReal() throws {
        // Own root (the host's /etc/debian_version is not visible), capabilities cut to the spec's three,
        // masked paths empty, and the read-only root refuses writes.
        let b = try BundleFixture(args: ["sh", "-c", """
            test -e /etc/debian_version && echo host-visible
            grep CapEff /proc/self/status
            wc -c < /etc/passwd
            ls /home | wc -l
            touch /rootfs-write 2>/dev/null && echo writable || echo read-only
            """]) { config in
            var linux = config["linux"] as! [String: Any]
            linux["maskedPaths"] = ["/etc/passwd", "/home", "/does/not/exist"]
            config["linux"] = linux
        }
        defer { b.remove() }
        let (status, out, err) = try b.cocoon(["run", "-b", b.directory, "run-isolation"])
        #expect(status == 0, "\(err)")
        #expect(!out.contains("host-visible"))
        #expect(out.contains("CapEff:\t0000000020000420"))
        #expect(out.contains("\n0\n0\n"), "a masked file reads as empty and a masked directory lists nothing")
        #expect(out.contains("read-only"))
    }

    @Test func timeNamespaceOffsetsAndPersonality() throws {
        // boottime moved a million seconds ahead: /proc/uptime (boottime) shows it; the personality
        // LINUX32 makes uname report a 32-bit machine. An exec joins the same time namespace.
        func bundle(_ args: [String]) throws -> BundleFixture {
            try BundleFixture(args: args) { config in
                var linux = config["linux"] as! [String: Any]
                var namespaces = linux["namespaces"] as! [[String: Any]]
                namespaces.append(["type": "time"])
                linux["namespaces"] = namespaces
                linux["timeOffsets"] = ["boottime": ["secs": 1_000_000, "nanosecs": 0], "monotonic": ["secs": 86_400]]
                linux["personality"] = ["domain": "LINUX32"]
                config["linux"] = linux
            }
        }
        let b = try bundle(["sh", "-c", "cut -d. -f1 /proc/uptime; uname -m"])
        defer { b.remove() }
        var r = try b.cocoon(["run", "-b", b.directory, "run-timens"])
        #expect(r.0 == 0, "\(r.2)")
        let lines = r.1.split(separator: "\n")
        #expect(lines.count == 2 && (Int(lines[0]) ?? 0) >= 1_000_000, "uptime in the container: \(r.1)")
        #expect(lines.count == 2 && lines[1] == "i686", "uname -m under LINUX32: \(r.1)")
        let hostUptime = Int(((try? String(contentsOfFile: "/proc/uptime", encoding: .utf8)) ?? "0").split(separator: ".")[0]) ?? 0
        #expect(hostUptime < 1_000_000, "the host's clock is not moved")

        let d = try bundle(["sleep", "60"])
        defer { d.remove() }
        #expect(try d.cocoon(["run", "-d", "-b", d.directory, "run-timens-exec"]).0 == 0)
        defer { _ = try? d.cocoon(["delete", "--force", "run-timens-exec"]) }
        r = try d.cocoon(["exec", "run-timens-exec", "cut", "-d.", "-f1", "/proc/uptime"])
        #expect(r.0 == 0 && (Int(r.1.trimmingCharacters(in: .whitespacesAndNewlines)) ?? 0) >= 1_000_000, "exec: \(r.1) \(r.2)")
    }

    @Test(arguments: [
        ("timeOffsets", "linux.timeOffsets.realtime", "monotonic and boottime"),
        ("personality", "linux.personality.domain", "LINUX, LINUX32"),
        ("intelRdt", "linux.intelRdt", "not supported"),
    ])
    func timeOffsetsPersonalityAndIntelRdtAreValidated(field: String, path: String, hint: String) throws {
        // An unsupported or invalid setting fails create, naming it; it is never silently dropped.
        let b = try BundleFixture(args: ["true"]) { config in
            var linux = config["linux"] as! [String: Any]
            var namespaces = linux["namespaces"] as! [[String: Any]]
            namespaces.append(["type": "time"])
            linux["namespaces"] = namespaces
            switch field {
            case "timeOffsets": linux["timeOffsets"] = ["realtime": ["secs": 5]]
            case "personality": linux["personality"] = ["domain": "SVR4"]
            default: linux["intelRdt"] = ["closID": "guaranteed", "l3CacheSchema": "L3:0=7f0"]
            }
            config["linux"] = linux
        }
        defer { b.remove() }
        let (status, _, err) = try b.cocoon(["run", "-b", b.directory, "run-bad-\(field.lowercased())"])
        #expect(status == 1)
        #expect(err.contains(path) && err.contains(hint), "\(err)")
    }

    @Test(arguments: [true, false])
    func theProgramAndItsHooksStartInTheContainersCgroup(cgroupNamespace: Bool) throws {
        // Init is born in the cgroup (v2) or moves itself in (v1) before anything of the container's runs; a
        // createContainer hook (forked by init) and the program must both be inside it, and a cgroup namespace
        // must be rooted at it (unshared after the move): its lines read "/" then.
        let out = NSTemporaryDirectory() + "cocoon-cg-\(UUID().uuidString)"
        try FileManager.default.createDirectory(atPath: out, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(atPath: out) }
        let id = cgroupNamespace ? "cg-ns" : "cg-host"
        let b = try BundleFixture(args: ["sh", "-c", "grep -E ':(memory|pids):' /proc/self/cgroup"]) { config in
            var linux = config["linux"] as! [String: Any]
            var namespaces = (linux["namespaces"] as! [[String: Any]]).filter { $0["type"] as? String != "cgroup" }
            if cgroupNamespace { namespaces.append(["type": "cgroup"]) }
            linux["namespaces"] = namespaces
            config["linux"] = linux
            config["hooks"] = ["createContainer": [["path": "/bin/sh",
                                                    "args": ["sh", "-c", "grep -E ':(memory|pids):' /proc/self/cgroup > \(out)/hook"]]]]
        }
        defer { b.remove() }
        let (status, stdout, err) = try b.cocoon(["run", "-b", b.directory, id])
        #expect(status == 0, "\(err)")
        let hook = (try? String(contentsOfFile: out + "/hook", encoding: .utf8)) ?? ""
        for (who, text) in [("program", stdout), ("createContainer hook", hook)] {
            let lines = text.split(separator: "\n")
            #expect(lines.count == 2, "\(who): \(text)")
            for line in lines {
                let path = line.split(separator: ":", maxSplits: 2).last.map(String.init) ?? ""
                if cgroupNamespace {
                    #expect(path == "/", "\(who) sees its cgroup as the namespace's root: \(line)")
                } else {
                    #expect(path.hasSuffix("/cocoon/\(id)"), "\(who) is in the container's cgroup: \(line)")
                }
            }
        }
    }

    @Test func userSwitch() throws {
        let b = try BundleFixture(args: ["id"]) { config in
            var process = config["process"] as! [String: Any]
            process["user"] = ["uid": 1000, "gid": 1000, "additionalGids": [65534]]
            config["process"] = process
        }
        defer { b.remove() }
        let (status, out, err) = try b.cocoon(["run", "-b", b.directory, "run-user"])
        #expect(status == 0, "\(err)")
        #expect(out.hasPrefix("uid=1000(user) gid=1000(user) groups=65534(nogroup)"), "\(out)")
    }

    @Test func userNamespaceMapsRootToAnUnprivilegedHostUser() throws {
        let shared = NSTemporaryDirectory() + "cocoon-userns-\(UUID().uuidString)"
        try FileManager.default.createDirectory(atPath: shared, withIntermediateDirectories: true)
        chmod(shared, 0o777)
        defer { try? FileManager.default.removeItem(atPath: shared) }
        // /tmp exists in the image: in a user namespace the container's root could not create a mount point
        // in a rootfs owned by the host's root (runc behaves the same).
        let b = try BundleFixture(args: ["sh", "-c", "id -u; cat /proc/self/uid_map; touch /tmp/made-inside; sleep 30"]) { config in
            var linux = config["linux"] as! [String: Any]
            var namespaces = linux["namespaces"] as! [[String: Any]]
            namespaces.append(["type": "user"])
            linux["namespaces"] = namespaces
            linux["uidMappings"] = [["containerID": 0, "hostID": 100000, "size": 65536]]
            linux["gidMappings"] = [["containerID": 0, "hostID": 100000, "size": 65536]]
            config["linux"] = linux
            var mounts = config["mounts"] as! [[String: Any]]
            mounts.append(["destination": "/tmp", "type": "bind", "source": shared, "options": ["rbind", "rw"]])
            config["mounts"] = mounts
        }
        defer { b.remove() }
        let id = "userns"
        var r = try b.cocoon(["run", "-d", "-b", b.directory, id])
        #expect(r.0 == 0, "\(r.2)")
        defer { _ = try? b.cocoon(["delete", "--force", id]) }
        let deadline = Date().addingTimeInterval(10)
        while Date() < deadline, !FileManager.default.fileExists(atPath: shared + "/made-inside") { usleep(20000) }
        let owner = try FileManager.default.attributesOfItem(atPath: shared + "/made-inside")[.ownerAccountID] as? Int
        #expect(owner == 100000, "root in the container is uid 100000 on the host")
        // exec joins the user namespace and is root there too.
        r = try b.cocoon(["exec", id, "sh", "-c", "id -u; grep CapEff /proc/self/status"])
        #expect(r.0 == 0, "\(r.2)")
        #expect(r.1.hasPrefix("0\n"))
        #expect(r.1.contains("CapEff:\t0000000020000420"))
    }

    @Test func lifecycle() throws {
        // PID 1 of a namespace only gets the signals it handles: trap TERM.
        let b = try BundleFixture(args: ["sh", "-c", "trap 'exit 0' TERM; while true; do sleep 0.1; done"])
        defer { b.remove() }
        let id = "life-cycle"
        let pidFile = b.directory + "/pid"
        var r = try b.cocoon(["create", "-b", b.directory, "--pid-file", pidFile, id])
        #expect(r.0 == 0, "\(r.2)")
        let pid = try String(contentsOfFile: pidFile, encoding: .utf8)
        r = try b.cocoon(["state", id])
        #expect(r.0 == 0)
        let created = try JSONSerialization.jsonObject(with: Data(r.1.utf8)) as! [String: Any]
        #expect(created["status"] as? String == "created")
        #expect("\(created["pid"] ?? "")" == pid)
        #expect(created["bundle"] as? String == URL(fileURLWithPath: b.directory).standardizedFileURL.path)
        #expect(created["ociVersion"] as? String == "1.2.0")
        #expect(try b.cocoon(["start", id]).0 == 0)
        #expect(try b.cocoon(["state", id]).1.contains("\"running\""))
        // Lifecycle errors as the runtime-spec requires.
        r = try b.cocoon(["start", id])
        #expect(r.0 == 1)
        #expect(r.2.contains("not created"))
        r = try b.cocoon(["delete", id])
        #expect(r.0 == 1)
        #expect(r.2.contains("--force"))
        #expect(try b.cocoon(["list", "--quiet"]).1.contains(id))
        #expect(try b.cocoon(["kill", id, "TERM"]).0 == 0)
        let deadline = Date().addingTimeInterval(10)
        while Date() < deadline, try b.cocoon(["state", id]).1.contains("\"running\"") { usleep(20000) }
        #expect(try b.cocoon(["state", id]).1.contains("\"stopped\""))
        r = try b.cocoon(["kill", id, "KILL"])
        #expect(r.0 == 1, "a stopped container cannot be signalled")
        #expect(try b.cocoon(["delete", id]).0 == 0)
        r = try b.cocoon(["state", id])
        #expect(r.0 == 1)
        #expect(r.2.contains("does not exist"))
        #expect(!BundleFixture.leftovers().contains(id))
    }

    /// CVE-2019-5736: what a container can reach through /proc/PID/exe of the init stage cannot be
    /// written, whether the init runs through a read-only bind mount (own mount namespace) or from
    /// a sealed copy (the host's mount namespace).
    @Test(arguments: [true, false])
    func initBinaryCannotBeWrittenThroughProcExe(ownMountNamespace: Bool) throws {
        let b = try BundleFixture(args: ["true"]) { config in
            guard !ownMountNamespace else { return }
            var linux = config["linux"] as! [String: Any]
            linux["namespaces"] = [["type": "pid"], ["type": "uts"]]
            linux["maskedPaths"] = []
            linux["readonlyPaths"] = []
            config["linux"] = linux
        }
        defer { b.remove() }
        let id = "sealed-init-\(ownMountNamespace)"
        let pidFile = b.directory + "/pid"
        let r = try b.cocoon(["create", "-b", b.directory, "--pid-file", pidFile, id])
        #expect(r.0 == 0, "\(r.2)")
        defer { _ = try? b.cocoon(["delete", "--force", id]) }
        let pid = try String(contentsOfFile: pidFile, encoding: .utf8)
        let exe = try FileManager.default.destinationOfSymbolicLink(atPath: "/proc/\(pid)/exe")
        if !ownMountNamespace {
            // A copy: whatever is done to it never reaches the host's binary.
            #expect(exe.hasPrefix("/memfd:cocoon-init"), "\(exe)")
            return
        }
        // The attack: hold the init's executable while it runs, write to it once it is no longer busy.
        let handle = open("/proc/\(pid)/exe", 0o10000000 /* O_PATH */ | O_CLOEXEC)
        #expect(handle >= 0)
        defer { close(handle) }
        #expect(try b.cocoon(["start", id]).0 == 0)
        let deadline = Date().addingTimeInterval(10)
        while Date() < deadline, BundleFixture.isRunning(pid: Int32(pid) ?? 0) { usleep(10000) }
        // ETXTBSY while another test's container runs the same binary (the kernel checks that first).
        var fd: Int32 = -1
        var error: Int32 = 0
        repeat {
            fd = open("/proc/self/fd/\(handle)", O_WRONLY)
            error = errno
            if fd < 0 && error == ETXTBSY { usleep(20000) }
        } while fd < 0 && error == ETXTBSY && Date() < deadline.addingTimeInterval(20)
        #expect(fd < 0 && error == EROFS, "the binary is reachable only through a read-only mount (errno \(error))")
        if fd >= 0 { close(fd) }
        // The host sees no trace of the read-only bind mount.
        let mounts = try String(contentsOfFile: "/proc/self/mounts", encoding: .utf8)
        #expect(!mounts.contains("cocoon-init"))
    }

    @Test func execJoinsTheContainer() throws {
        let b = try BundleFixture(args: ["sleep", "60"])
        defer { b.remove() }
        let id = "exec-join"
        #expect(try b.cocoon(["run", "-d", "-b", b.directory, id]).0 == 0)
        defer { _ = try? b.cocoon(["delete", "--force", id]) }
        // The container's pid namespace (sleep is 1), hostname, root, cgroup, and the exit status.
        var r = try b.cocoon(["exec", id, "sh", "-c", "echo pid=$$ host=$(hostname); tr '\\0' ' ' < /proc/1/cmdline; echo; test -e /etc/debian_version || echo own-root; exit 4"])
        #expect(r.0 == 4, "\(r.2)")
        #expect(r.1.contains("host=cocoon"))
        #expect(r.1.contains("sleep 60"))
        #expect(r.1.contains("own-root"))
        #expect(!r.1.contains("pid=1 "))
        // The exec'd process is in the container's cgroup in every hierarchy cocoon manages (on v1 it moved
        // itself in, one hierarchy at a time), which its cgroup namespace shows as "/".
        r = try b.cocoon(["exec", id, "sh", "-c",
                          "l=$(grep -E ':(cpu|cpuacct|cpuset|memory|pids|blkio|freezer|devices):' /proc/self/cgroup); "
                          + "[ -n \"$l\" ] || l=$(grep '^0::' /proc/self/cgroup); echo \"$l\""])
        let cgroupLines = r.1.split(separator: "\n")
        #expect(!cgroupLines.isEmpty && cgroupLines.allSatisfy { $0.hasSuffix(":/") }, "\(r.1)")
        #expect(r.1.contains(":memory:/") || r.1.contains("0::/"), "\(r.1)")
        // User, environment, working directory, stdin.
        r = try b.cocoon(["exec", "--user", "1000:1000", "--env", "GREETING=hi", "--cwd", "/tmp", id,
                          "sh", "-c", "id -u; echo $GREETING; pwd; read x; echo got:$x"], stdin: "input\n")
        #expect(r.0 == 0, "\(r.2)")
        #expect(r.1 == "1000\nhi\n/tmp\ngot:input\n")
        // A terminal relayed by cocoon.
        r = try b.cocoon(["exec", "-t", id, "sh", "-c", "test -t 0 && echo tty-ok"])
        #expect(r.1.contains("tty-ok"))
        // Errors: an unknown program, a stopped container.
        r = try b.cocoon(["exec", id, "no-such-program"])
        #expect(r.0 == 1)
        #expect(r.2.contains("executable file not found"))
        #expect(r.2.components(separatedBy: "executable file not found").count == 2, "reported once: \(r.2)")
        #expect(try b.cocoon(["kill", id, "KILL"]).0 == 0)
        let deadline = Date().addingTimeInterval(10)
        while Date() < deadline, try b.cocoon(["state", id]).1.contains("\"running\"") { usleep(20000) }
        r = try b.cocoon(["exec", id, "true"])
        #expect(r.0 == 1)
        #expect(r.2.contains("stopped"))
    }

    @Test func forceDeleteKillsARunningContainer() throws {
        let b = try BundleFixture(args: ["sleep", "60"])
        defer { b.remove() }
        #expect(try b.cocoon(["run", "-d", "-b", b.directory, "force-delete"]).0 == 0)
        let state = try b.cocoon(["state", "force-delete"]).1
        let pid = try #require((try JSONSerialization.jsonObject(with: Data(state.utf8)) as? [String: Any])?["pid"] as? Int)
        #expect(try b.cocoon(["delete", "--force", "force-delete"]).0 == 0)
        #expect(!BundleFixture.isRunning(pid: Int32(pid)), "the container process is gone")
        #expect(!BundleFixture.leftovers().contains("force-delete"))
        #expect(try b.cocoon(["delete", "--force", "force-delete"]).0 == 0, "delete --force of a missing container succeeds")
    }

    @Test func badInputIsAClearError() throws {
        let b = try BundleFixture(args: ["no-such-program"])
        defer { b.remove() }
        var r = try b.cocoon(["create", "-b", b.directory, "bad-exec"])
        #expect(r.0 == 1)
        #expect(r.2.contains("executable file not found"))
        #expect(!BundleFixture.leftovers().contains("bad-exec"), "a failed create leaves nothing")

        let bad = try BundleFixture(args: ["true"]) { config in
            var process = config["process"] as! [String: Any]
            process["cwd"] = "relative"
            config["process"] = process
        }
        defer { bad.remove() }
        let log = bad.directory + "/log.json"
        r = try bad.cocoon(["--log", log, "--log-format", "json", "create", "-b", bad.directory, "bad-spec"])
        #expect(r.0 == 1)
        #expect(r.2.contains("config.json: process.cwd: must be an absolute path"))
        let line = try String(contentsOfFile: log, encoding: .utf8).split(separator: "\n").last.map(String.init) ?? ""
        let entry = try JSONSerialization.jsonObject(with: Data(line.utf8)) as? [String: Any]
        #expect(entry?["level"] as? String == "error")
        #expect((entry?["msg"] as? String)?.contains("process.cwd") == true)

        r = try b.cocoon(["create", "-b", b.directory, "../escape"])
        #expect(r.0 == 1)
        #expect(r.2.contains("invalid"))
        r = try b.cocoon(["kill", "whatever", "SIGNOPE"])
        #expect(r.0 == 1)
        #expect(r.2.contains("invalid signal"))
        // VM isolation (the default) with a configuration that has no guest kernel: the error says what
        // is missing, and create leaves nothing behind (no record, no daemon, no stand-in).
        let vmRoot = NSTemporaryDirectory() + "cocoon-vm-mode-\(getpid())"
        defer { try? FileManager.default.removeItem(atPath: vmRoot) }
        r = try BundleFixture.run(["--config", BundleFixture.configFile, "--root", vmRoot, "create", "-b", b.directory, "vm-mode"])
        #expect(r.0 == 1)
        #expect(r.2.contains("guest kernel") && r.2.contains("not found"), "\(r.2)")
        #expect(!FileManager.default.fileExists(atPath: vmRoot + "/vm-mode"))
        #expect(PrivateContainerd.processes(named: "stand-in", mentioning: BundleFixture.configFile).isEmpty)
    }
}

final class LockedResult: @unchecked Sendable {
    private let lock = NSLock()
    private var value: Int32?
    func set(_ v: Int32?) { lock.withLock { value = v } }
    func get() -> Int32? { lock.withLock { value } }
}

/// cgroup limits and the commands built on the container's cgroup, on this host's hierarchy.
@Suite(.serialized, .enabled(if: BundleFixture.skipReason == nil, Comment(rawValue: BundleFixture.skipReason ?? "")))
struct CgroupIntegrationTests {
    func withResources(_ resources: [String: Any], devices: [[String: Any]]? = nil) -> (inout [String: Any]) -> Void {
        { config in
            var linux = config["linux"] as! [String: Any]
            linux["resources"] = resources
            if let devices { linux["devices"] = devices }
            config["linux"] = linux
        }
    }

    @Test(arguments: [true, false])
    func theCgroupMountShowsTheContainersOwnCgroupReadOnly(cgroupNamespace: Bool) throws {
        // The default spec mounts type "cgroup" read-only at /sys/fs/cgroup. On a v1 host that is a tmpfs
        // with one mount per hierarchy (as runc makes it); on a v2 host one cgroup2 mount. Either way the
        // limit file is the container's own, and nothing in it can be changed.
        let unified = FileManager.default.fileExists(atPath: "/sys/fs/cgroup/cgroup.controllers")
        let limitFile = unified ? "/sys/fs/cgroup/memory.max" : "/sys/fs/cgroup/memory/memory.limit_in_bytes"
        let procs = unified ? "/sys/fs/cgroup/cgroup.procs" : "/sys/fs/cgroup/pids/cgroup.procs"
        let child = unified ? "/sys/fs/cgroup/child" : "/sys/fs/cgroup/memory/child"
        let script = """
            ls /sys/fs/cgroup | tr '\\n' ' '; echo
            cat \(limitFile)
            cat \(procs) | tr '\\n' ' '; echo
            mkdir \(child) 2>&1 || true
            touch /sys/fs/cgroup/new 2>&1 || true
            """
        let b = try BundleFixture(args: ["sh", "-c", script], edit: { config in
            withResources(["memory": ["limit": 48 << 20]])(&config)
            var linux = config["linux"] as! [String: Any]
            var namespaces = (linux["namespaces"] as! [[String: Any]]).filter { $0["type"] as? String != "cgroup" }
            if cgroupNamespace { namespaces.append(["type": "cgroup"]) }
            linux["namespaces"] = namespaces
            config["linux"] = linux
        })
        defer { b.remove() }
        let (status, out, err) = try b.cocoon(["run", "-b", b.directory, cgroupNamespace ? "cgmount-ns" : "cgmount-host"])
        #expect(status == 0, "\(err)")
        let lines = out.split(separator: "\n", omittingEmptySubsequences: false).map(String.init)
        try #require(lines.count >= 5, "\(out)")
        let listing = Set(lines[0].split(separator: " ").map(String.init))
        if unified {
            #expect(listing.contains("memory.max") && listing.contains("cgroup.procs"), "\(lines[0])")
        } else {
            #expect(listing.isSuperset(of: ["memory", "pids", "cpu", "cpuacct", "freezer", "devices"]), "\(lines[0])")
            #expect(listing.contains("systemd") == FileManager.default.fileExists(atPath: "/sys/fs/cgroup/systemd/cgroup.procs"),
                    "systemd's named hierarchy, where the host has it: \(lines[0])")
            #expect(!listing.contains("unified"), "a hybrid host's cgroup2 would show the runtime's cgroup: \(lines[0])")
        }
        #expect(lines[1] == "\(48 << 20)", "the container's own limit: \(out)")
        // Only the container's processes, with the pid namespace's numbers (1 is the shell).
        let pids = lines[2].split(separator: " ").compactMap { Int($0) }
        #expect(pids.contains(1) && pids.count <= 3, "the container's cgroup is the root of the mount: \(lines[2])")
        #expect(lines[3].contains("Read-only file system"), "\(lines[3])")
        #expect(lines[4].contains("Read-only file system"), "\(lines[4])")
    }

    @Test func memoryLimitKillsAnAllocationPastIt() throws {
        // dd allocates (and fills) one 64 MiB buffer; the limit is 32 MiB.
        let b = try BundleFixture(args: ["dd", "if=/dev/zero", "of=/dev/null", "bs=64M", "count=1"],
                                  edit: withResources(["memory": ["limit": 32 << 20]]))
        defer { b.remove() }
        #expect(try b.cocoon(["run", "-b", b.directory, "cg-memory"]).0 == 137)
        let small = try BundleFixture(args: ["dd", "if=/dev/zero", "of=/dev/null", "bs=8M", "count=1"],
                                      edit: withResources(["memory": ["limit": 32 << 20]]))
        defer { small.remove() }
        #expect(try small.cocoon(["run", "-b", small.directory, "cg-memory-ok"]).0 == 0)
    }

    @Test func pidsLimit() throws {
        let b = try BundleFixture(args: ["sh", "-c", "for i in 1 2 3 4 5 6 7 8; do sleep 5 & done 2>&1; wait"],
                                  edit: withResources(["pids": ["limit": 4]]))
        defer { b.remove() }
        let (_, out, err) = try b.cocoon(["run", "-b", b.directory, "cg-pids"])
        #expect((out + err).contains("Resource temporarily unavailable") || (out + err).contains("can't fork"), "\(out)\(err)")
    }

    @Test func deviceRulesDenyWhatTheSpecDoesNotAllow() throws {
        // /dev/kmsg exists in the container but the device cgroup denies it; /dev/null stays allowed.
        let b = try BundleFixture(args: ["sh", "-c", "echo x > /dev/null && echo null-ok; head -c1 /dev/kmsg || echo kmsg-denied"],
                                  edit: withResources(["devices": [["allow": false, "access": "rwm"]]],
                                                      devices: [["type": "c", "path": "/dev/kmsg", "major": 1, "minor": 11]]))
        defer { b.remove() }
        let (status, out, err) = try b.cocoon(["run", "-b", b.directory, "cg-devices"])
        #expect(status == 0, "\(err)")
        #expect(out.contains("null-ok"))
        #expect(out.contains("kmsg-denied"))
        #expect(err.contains("Operation not permitted"))
    }

    @Test func pauseResumePsUpdateAndStats() throws {
        let b = try BundleFixture(args: ["sh", "-c", "sleep 60 & sleep 60 & wait"])
        defer { b.remove() }
        let id = "cg-manage"
        #expect(try b.cocoon(["run", "-d", "-b", b.directory, id]).0 == 0)
        defer { _ = try? b.cocoon(["delete", "--force", id]) }
        // ps: the shell and its two sleeps.
        let deadline = Date().addingTimeInterval(10)
        var pids: [Int] = []
        while Date() < deadline {
            pids = (try JSONSerialization.jsonObject(with: Data(try b.cocoon(["ps", "--format", "json", id]).1.utf8)) as? [Int]) ?? []
            if pids.count == 3 { break }
            usleep(20000)
        }
        #expect(pids.count == 3)
        #expect(try b.cocoon(["pause", id]).0 == 0)
        #expect(try b.cocoon(["state", id]).1.contains("\"paused\""))
        let freezer = try String(contentsOfFile: "/sys/fs/cgroup/freezer/cocoon/\(id)/freezer.state", encoding: .utf8)
        #expect(freezer.hasPrefix("FROZEN"))
        #expect(try b.cocoon(["pause", id]).0 == 1, "pausing twice is refused")
        #expect(try b.cocoon(["resume", id]).0 == 0)
        #expect(try b.cocoon(["state", id]).1.contains("\"running\""))
        #expect(try b.cocoon(["resume", id]).0 == 1)
        // update, then stats report the new limit.
        var r = try b.cocoon(["update", "--memory", "\(48 << 20)", "--pids-limit", "50", id])
        #expect(r.0 == 0, "\(r.2)")
        r = try b.cocoon(["events", "--stats", id])
        let event = try JSONSerialization.jsonObject(with: Data(r.1.utf8)) as? [String: Any]
        let data = event?["data"] as? [String: Any]
        #expect(event?["type"] as? String == "stats")
        #expect(((data?["memory"] as? [String: Any])?["usage"] as? [String: Any])?["limit"] as? Int == 48 << 20)
        #expect((data?["pids"] as? [String: Any])?["limit"] as? Int == 50)
        #expect((data?["pids"] as? [String: Any])?["current"] as? Int == 3)
        r = try b.cocoon(["update", "--memory=-7", id])
        #expect(r.0 == 1)
        #expect(r.2.contains("linux.resources.memory.limit"))
        // kill --all reaches every process, then delete removes the cgroup.
        #expect(try b.cocoon(["kill", "--all", id, "KILL"]).0 == 0)
        while Date() < deadline, try b.cocoon(["state", id]).1.contains("\"running\"") { usleep(20000) }
        #expect(try b.cocoon(["delete", id]).0 == 0)
        #expect(!FileManager.default.fileExists(atPath: "/sys/fs/cgroup/memory/cocoon/\(id)"))
        #expect(!FileManager.default.fileExists(atPath: "/sys/fs/cgroup/pids/cocoon/\(id)"))
    }
}

/// OCI hooks at all six points, with the state on stdin; failures and timeouts stop the create.
@Suite(.serialized, .enabled(if: BundleFixture.skipReason == nil, Comment(rawValue: BundleFixture.skipReason ?? "")))
struct HookTests {
    func hook(_ script: String, timeout: Int? = nil) -> [String: Any] {
        var h: [String: Any] = ["path": "/bin/sh", "args": ["sh", "-c", script]]
        if let timeout { h["timeout"] = timeout }
        return h
    }

    @Test func everyHookRunsWithTheState() throws {
        let out = NSTemporaryDirectory() + "cocoon-hooks-\(UUID().uuidString)"
        try FileManager.default.createDirectory(atPath: out, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(atPath: out) }
        let b = try BundleFixture(args: ["sh", "-c", "echo program"]) { config in
            config["hooks"] = [
                "prestart": [self.hook("cat > \(out)/prestart.json")],
                "createRuntime": [self.hook("cat > \(out)/createRuntime.json")],
                // Before pivot_root the host's paths are still reachable from the container's namespaces.
                "createContainer": [self.hook("cat > \(out)/createContainer.json; readlink /proc/self/ns/mnt > \(out)/createContainer.ns")],
                // After pivot_root: the container's /bin/sh, writing through a bind mount.
                "startContainer": [self.hook("cat > /hooks/startContainer.json")],
                "poststart": [self.hook("cat > \(out)/poststart.json")],
                "poststop": [self.hook("cat > \(out)/poststop.json")],
            ]
            var mounts = config["mounts"] as! [[String: Any]]
            mounts.append(["destination": "/hooks", "type": "bind", "source": out, "options": ["rbind", "rw"]])
            config["mounts"] = mounts
        }
        defer { b.remove() }
        let (status, stdout, err) = try b.cocoon(["run", "-b", b.directory, "hooks-all"])
        #expect(status == 0, "\(err)")
        #expect(stdout == "program\n")
        for (kind, expected) in [("prestart", "creating"), ("createRuntime", "creating"), ("createContainer", "creating"),
                                 ("startContainer", "running"), ("poststart", "running"), ("poststop", "stopped")] {
            let data = FileManager.default.contents(atPath: "\(out)/\(kind).json") ?? Data()
            let state = try? JSONSerialization.jsonObject(with: data) as? [String: Any]
            #expect(state?["id"] as? String == "hooks-all", "\(kind) got the state on stdin")
            #expect(state?["status"] as? String == expected, "\(kind): \(state?["status"] ?? "none")")
        }
        let hostNS = try FileManager.default.destinationOfSymbolicLink(atPath: "/proc/self/ns/mnt")
        let hookNS = (try? String(contentsOfFile: "\(out)/createContainer.ns", encoding: .utf8))?.trimmingCharacters(in: .whitespacesAndNewlines)
        #expect(hookNS != nil && hookNS != hostNS, "createContainer runs in the container's mount namespace")
    }

    @Test func aFailingHookFailsCreateAndLeavesNothing() throws {
        let b = try BundleFixture(args: ["true"]) { config in
            config["hooks"] = ["prestart": [self.hook("echo network setup failed >&2; exit 3")]]
        }
        defer { b.remove() }
        let (status, _, err) = try b.cocoon(["create", "-b", b.directory, "hooks-fail"])
        #expect(status == 1)
        #expect(err.contains("hooks.prestart[0] /bin/sh"), "\(err)")
        #expect(err.contains("exited with status 3"))
        #expect(err.contains("network setup failed"))
        #expect(!BundleFixture.leftovers().contains("hooks-fail"))
        #expect(!FileManager.default.fileExists(atPath: "/sys/fs/cgroup/memory/cocoon/hooks-fail"))
    }

    @Test func aHookPastItsTimeoutIsKilled() throws {
        let b = try BundleFixture(args: ["true"]) { config in
            config["hooks"] = ["createRuntime": [self.hook("sleep 30", timeout: 1)]]
        }
        defer { b.remove() }
        let started = Date()
        let (status, _, err) = try b.cocoon(["create", "-b", b.directory, "hooks-timeout"])
        #expect(status == 1)
        #expect(err.contains("timeout of 1 s"), "\(err)")
        #expect(Date().timeIntervalSince(started) < 15)
        #expect(!BundleFixture.leftovers().contains("hooks-timeout"))
    }
}

/// process.terminal: the console-socket protocol (one message, one fd) and the foreground relay.
@Suite(.serialized, .enabled(if: BundleFixture.skipReason == nil, Comment(rawValue: BundleFixture.skipReason ?? "")))
struct TerminalTests {
    func terminalBundle(_ args: [String]) throws -> BundleFixture {
        try BundleFixture(args: args) { config in
            var process = config["process"] as! [String: Any]
            process["terminal"] = true
            process["consoleSize"] = ["height": 33, "width": 111]
            config["process"] = process
        }
    }

    @Test func consoleSocketReceivesTheMaster() throws {
        let b = try terminalBundle(["sh", "-c", "tty; stty size; read line; echo got:$line; exit 4"])
        defer { b.remove() }
        let socketPath = b.directory + "/console.sock"
        let listener = try StreamSocket.listenUnix(path: socketPath)
        let id = "tty-socket"
        let result = LockedResult()
        let thread = Thread { result.set((try? b.cocoon(["run", "-d", "--console-socket", socketPath, "-b", b.directory, id]))?.0) }
        thread.start()
        let conn = try StreamSocket.accept(listener, until: .after(seconds: 20))
        var name = [CChar](repeating: 0, count: 64)
        let master = cocoon_recv_fd(conn.rawValue, &name, name.count)
        #expect(master >= 0)
        #expect(String(cString: name) == "/dev/ptmx")
        defer { close(master); _ = try? b.cocoon(["delete", "--force", id]) }
        let deadline = Date().addingTimeInterval(20)
        while Date() < deadline, result.get() == nil { usleep(10000) }
        #expect(result.get() == 0)
        let masterFD = FileDescriptor(adopting: dup(master))
        try masterFD.writeAll(Array("hello\n".utf8), until: .after(seconds: 5))
        var output = ""
        while Date() < deadline, !output.contains("got:hello") {
            guard let chunk = try? masterFD.read(upTo: 4096, until: .after(seconds: 5)), !chunk.isEmpty else { break }
            output += String(decoding: chunk, as: UTF8.self)
        }
        #expect(output.contains("/dev/pts/0"), "\(output)")
        #expect(output.contains("33 111"), "consoleSize applied: \(output)")
        #expect(output.contains("got:hello"))
        while Date() < deadline, try b.cocoon(["state", id]).1.contains("\"running\"") { usleep(20000) }
        #expect(try b.cocoon(["state", id]).1.contains("\"stopped\""))
    }

    @Test func foregroundRunRelaysTheTerminal() throws {
        let b = try terminalBundle(["sh", "-c", "read line; echo got:$line; test -t 0 && echo is-a-tty; exit 6"])
        defer { b.remove() }
        let (status, out, err) = try b.cocoon(["run", "-b", b.directory, "tty-relay"], stdin: "typed\n")
        #expect(status == 6, "\(err)")
        #expect(out.contains("got:typed"))
        #expect(out.contains("is-a-tty"))
    }

    @Test func terminalRulesAreRunc() throws {
        let b = try terminalBundle(["true"])
        defer { b.remove() }
        var r = try b.cocoon(["create", "-b", b.directory, "tty-nosocket"])
        #expect(r.0 == 1)
        #expect(r.2.contains("process.terminal is true: a console socket is required"))
        let plain = try BundleFixture(args: ["true"])
        defer { plain.remove() }
        let socketPath = plain.directory + "/console.sock"
        let listener = try StreamSocket.listenUnix(path: socketPath)
        defer { listener.close() }
        r = try plain.cocoon(["create", "--console-socket", socketPath, "-b", plain.directory, "tty-notty"])
        #expect(r.0 == 1)
        #expect(r.2.contains("process.terminal is not true"))
        #expect(!BundleFixture.leftovers().contains("tty-nosocket") && !BundleFixture.leftovers().contains("tty-notty"))
    }
}

@Suite(.serialized, .enabled(if: BundleFixture.skipReason == nil, Comment(rawValue: BundleFixture.skipReason ?? "")))
struct SeccompTests {
    func profile(_ action: String = "SCMP_ACT_ERRNO") -> [String: Any] {
        ["defaultAction": "SCMP_ACT_ALLOW", "architectures": ["SCMP_ARCH_X86_64", "SCMP_ARCH_X86"],
         "syscalls": [["names": ["mkdir", "mkdirat", "no_such_syscall"], "action": action, "errnoRet": 1]]]
    }

    @Test(arguments: [true, false])
    func aProfileDeniesASyscall(noNewPrivileges: Bool) throws {
        let b = try BundleFixture(args: ["sh", "-c", "mkdir /dev/shm/d && echo made-dir; touch /dev/shm/f && echo made-file"]) { config in
            var linux = config["linux"] as! [String: Any]
            linux["seccomp"] = self.profile()
            config["linux"] = linux
            var process = config["process"] as! [String: Any]
            process["noNewPrivileges"] = noNewPrivileges
            config["process"] = process
        }
        defer { b.remove() }
        let (status, out, err) = try b.cocoon(["run", "-b", b.directory, "seccomp-\(noNewPrivileges)"])
        #expect(status == 0, "\(err)")
        #expect(!out.contains("made-dir"))
        #expect(err.contains("Operation not permitted"))
        #expect(out.contains("made-file"), "other syscalls are allowed")
    }

    @Test func unsupportedActionFailsCreate() throws {
        let b = try BundleFixture(args: ["true"]) { config in
            var linux = config["linux"] as! [String: Any]
            linux["seccomp"] = self.profile("SCMP_ACT_NOTIFY")
            config["linux"] = linux
        }
        defer { b.remove() }
        let (status, _, err) = try b.cocoon(["create", "-b", b.directory, "seccomp-notify"])
        #expect(status == 1)
        #expect(err.contains("seccomp: action SCMP_ACT_NOTIFY is not supported"), "\(err)")
        #expect(!BundleFixture.leftovers().contains("seccomp-notify"))
    }
}
