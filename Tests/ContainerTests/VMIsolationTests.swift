import Config
import Foundation
import Testing
import TestSupport

/// VM isolation through the runc command line: the configuration that boots the test kernel and
/// initramfs (from COCOON_CONFIG, as `make test` sets it), with the VMs' run directories under a
/// root of these tests' own.
enum VMCLIFixture {
    static let sandboxRoot = "/run/cocoon-test-vmcli"
    /// Container records: check-leaks reports anything left in `<root>/containers`.
    static let stateRoot = sandboxRoot + "/containers"

    static let loaded: Result<Configuration, Error> = Result { try Configuration.load() }

    static let configFile: String = {
        let path = NSTemporaryDirectory() + "cocoon-test-vm-config-\(getpid()).toml"
        guard case .success(let c) = loaded else { return path }
        let toml = """
            [hypervisor]
            kernel = "\(c.hypervisor.kernel)"
            initrd = "\(c.hypervisor.initrd)"
            image = "\(c.hypervisor.image)"
            boot_from = "\(c.hypervisor.bootFrom.rawValue)"
            boot_timeout_seconds = 60
            [runtime]
            root = "\(sandboxRoot)"
            init = "\(BundleFixture.staticInit)"

            """
        try? toml.write(toFile: path, atomically: true, encoding: .utf8)
        return path
    }()

    static var skipReason: String? {
        if let reason = BundleFixture.skipReason { return reason }
        switch loaded {
        case .failure(let error): return "configuration: \(error)"
        case .success(let c):
            if !FileManager.default.isExecutableFile(atPath: c.hypervisor.path) { return "QEMU \(c.hypervisor.path) is not installed (make deps)" }
            if !FileManager.default.fileExists(atPath: c.hypervisor.kernel) { return "guest kernel \(c.hypervisor.kernel) is not built (make test builds it)" }
            if !FileManager.default.fileExists(atPath: c.hypervisor.initrd) { return "guest initramfs \(c.hypervisor.initrd) is not built (make test builds it)" }
        }
        return nil
    }

    /// `cocoon --config <vm> --root <state> ARGS`, stdout and stderr into `output` (which outlives the
    /// command: stand-ins keep writing to it).
    @discardableResult
    static func cocoon(_ args: [String], stdin: String = "", output: String? = nil, root: String = stateRoot,
                       timeout: Double = 120) throws -> (Int32, String) {
        let p = Foundation.Process()
        p.executableURL = URL(fileURLWithPath: try #require(BundleFixture.cocoon))
        p.arguments = ["--config", configFile, "--root", root] + args
        let out = output ?? NSTemporaryDirectory() + "cocoon-vmcli-\(UUID().uuidString).out"
        let input = out + ".in"
        FileManager.default.createFile(atPath: out, contents: nil)
        FileManager.default.createFile(atPath: input, contents: Data(stdin.utf8))
        defer {
            try? FileManager.default.removeItem(atPath: input)
            if output == nil { try? FileManager.default.removeItem(atPath: out) }
        }
        // One open file description for both, so that stdout and stderr append rather than overwrite.
        let handle = FileHandle(forWritingAtPath: out)
        p.standardOutput = handle
        p.standardError = handle
        p.standardInput = FileHandle(forReadingAtPath: input)
        try p.run()
        let deadline = Date().addingTimeInterval(timeout)
        while p.isRunning && Date() < deadline { usleep(5000) }
        if p.isRunning {
            kill(p.processIdentifier, SIGKILL)
            Issue.record("cocoon \(args.joined(separator: " ")) did not finish within \(timeout) s")
        }
        p.waitUntilExit()
        return (p.terminationStatus, (try? String(contentsOfFile: out, encoding: .utf8)) ?? "")
    }

    /// The memory controller's cgroup directory of a process (v1 or hybrid), or its v2 cgroup.
    static func cgroupDirectory(of pid: Int32) -> String? {
        guard let text = try? String(contentsOfFile: "/proc/\(pid)/cgroup", encoding: .utf8) else { return nil }
        let lines = text.split(separator: "\n").map { $0.split(separator: ":", maxSplits: 2, omittingEmptySubsequences: false) }
        if FileManager.default.fileExists(atPath: "/sys/fs/cgroup/memory"),
           let line = lines.first(where: { $0.count == 3 && $0[1].split(separator: ",").contains("memory") }) {
            return "/sys/fs/cgroup/memory" + line[2]
        }
        return lines.first(where: { $0.count == 3 && $0[0] == "0" }).map { "/sys/fs/cgroup" + $0[2] }
    }

    static func state(_ id: String) throws -> [String: Any] {
        let (status, out) = try cocoon(["state", id])
        guard status == 0, let json = try JSONSerialization.jsonObject(with: Data(out.utf8)) as? [String: Any] else {
            throw PrivateContainerd.Failure("cocoon state \(id): \(out)")
        }
        return json
    }

    static func record(_ id: String) throws -> [String: Any] {
        let data = try Data(contentsOf: URL(fileURLWithPath: "\(stateRoot)/\(id)/vm.json"))
        return try #require(try JSONSerialization.jsonObject(with: data) as? [String: Any])
    }

    static func waitFor(_ what: String, seconds: Double = 30, _ condition: () throws -> Bool) rethrows -> Bool {
        let deadline = Date().addingTimeInterval(seconds)
        while Date() < deadline {
            if try condition() { return true }
            usleep(50_000)
        }
        return try condition()
    }

    /// QEMU, virtiofsd, daemons and stand-ins of these tests still running.
    static func leftoverProcesses() -> [String] {
        PrivateContainerd.processes(named: "qemu-system", mentioning: sandboxRoot)
            + PrivateContainerd.processes(named: "virtiofsd", mentioning: sandboxRoot)
            + PrivateContainerd.processes(named: "sandbox-daemon", mentioning: configFile)
            + PrivateContainerd.processes(named: "stand-in", mentioning: configFile)
    }

    static func leftoverState() -> [String] {
        (((try? FileManager.default.contentsOfDirectory(atPath: stateRoot)) ?? []).filter { $0 != "daemons" }
            + ((try? FileManager.default.contentsOfDirectory(atPath: stateRoot + "/daemons")) ?? [])
            + ((try? FileManager.default.contentsOfDirectory(atPath: sandboxRoot + "/sandboxes")) ?? [])).sorted()
    }

    static func expectNothingLeft(_ comment: String) {
        let clean = waitFor("cleanup", seconds: 15) { leftoverProcesses().isEmpty && leftoverState().isEmpty }
        #expect(clean, "\(comment): left \(leftoverProcesses()) \(leftoverState())")
    }
}

/// The VM tests of the runc command line share one sandbox root and check that nothing is left under
/// it, so their suites run one after the other.
@Suite(.serialized) struct VMIsolationTests {}

extension VMIsolationTests {
@Suite(.serialized, .enabled(if: VMCLIFixture.skipReason == nil, Comment(rawValue: VMCLIFixture.skipReason ?? "")))
struct RuncCommandLine {
    @Test func aContainerInAVMThroughTheRuncLifecycle() throws {
        let b = try BundleFixture(args: ["sh", "-c",
            "read line; echo got:$line; echo to-stderr >&2; trap 'echo term; exit 7' TERM; echo waiting; while true; do sleep 0.1; done"])
        defer { b.remove() }
        let id = "vmcli-life"
        let out = NSTemporaryDirectory() + "cocoon-vmcli-\(id).out"
        defer { try? FileManager.default.removeItem(atPath: out) }
        let pidFile = b.directory + "/pid"
        defer { _ = try? VMCLIFixture.cocoon(["delete", "--force", id]) }

        var r = try VMCLIFixture.cocoon(["create", "--bundle", b.directory, "--pid-file", pidFile, id], stdin: "typed\n", output: out)
        #expect(r.0 == 0, "\(r.1)")
        let pid = try #require(Int32((try? String(contentsOfFile: pidFile, encoding: .utf8)) ?? ""))
        var state = try VMCLIFixture.state(id)
        #expect(state["status"] as? String == "created")
        #expect(state["pid"] as? Int == Int(pid))
        // The stand-in holds the container's network namespace (docker's prestart hook opens it).
        let hostNet = try FileManager.default.destinationOfSymbolicLink(atPath: "/proc/self/ns/net")
        #expect(try FileManager.default.destinationOfSymbolicLink(atPath: "/proc/\(pid)/ns/net") != hostNet)
        #expect(!PrivateContainerd.processes(named: "qemu-system", mentioning: VMCLIFixture.sandboxRoot).isEmpty)
        // The container's host cgroup holds the stand-in, the daemon, virtiofsd and QEMU: what the host
        // accounts to the container is what its VM costs.
        let cgroup = try #require(VMCLIFixture.cgroupDirectory(of: pid))
        #expect(cgroup != VMCLIFixture.cgroupDirectory(of: getpid()))
        let members = ((try? String(contentsOfFile: cgroup + "/cgroup.procs", encoding: .utf8)) ?? "").split(separator: "\n")
        #expect(members.count >= 4, "stand-in, daemon, virtiofsd and QEMU in \(cgroup): \(members)")
        // ...limited to the VM's RAM (memory_mib, 256, without a limit in the spec) plus the host overhead (256).
        let limitFile = FileManager.default.fileExists(atPath: cgroup + "/memory.max") ? "/memory.max" : "/memory.limit_in_bytes"
        let limit = ((try? String(contentsOfFile: cgroup + limitFile, encoding: .utf8)) ?? "").trimmingCharacters(in: .whitespacesAndNewlines)
        #expect(limit == "\(512 << 20)", "\(cgroup)\(limitFile): \(limit)")
        // Later commands reach the daemon through its socket under --root.
        let socket = try #require(try VMCLIFixture.record(id)["controlSocket"] as? String)
        #expect(socket.hasPrefix(VMCLIFixture.stateRoot + "/daemons/"), "\(socket)")
        var st = stat()
        #expect(lstat(socket, &st) == 0 && (st.st_mode & S_IFMT) == S_IFSOCK && st.st_mode & 0o777 == 0o600, "\(socket)")

        r = try VMCLIFixture.cocoon(["start", id])
        #expect(r.0 == 0, "\(r.1)")
        #expect(VMCLIFixture.waitFor("output") { ((try? String(contentsOfFile: out, encoding: .utf8)) ?? "").contains("waiting") })
        var output = (try? String(contentsOfFile: out, encoding: .utf8)) ?? ""
        #expect(output.contains("got:typed") && output.contains("to-stderr"), "\(output)")
        state = try VMCLIFixture.state(id)
        #expect(state["status"] as? String == "running")

        r = try VMCLIFixture.cocoon(["ps", "--format", "json", id])
        #expect(r.0 == 0 && r.1.hasPrefix("[") && r.1.count > 3, "\(r.1)")
        r = try VMCLIFixture.cocoon(["exec", id, "sh", "-c", "echo exec-$((6*7)); exit 4"])
        #expect(r.0 == 4 && r.1.contains("exec-42"), "\(r.1)")
        let execPID = b.directory + "/exec.pid"
        r = try VMCLIFixture.cocoon(["exec", "--detach", "--pid-file", execPID, id, "sleep", "1"])
        #expect(r.0 == 0, "\(r.1)")
        let standIn = try #require(Int32((try? String(contentsOfFile: execPID, encoding: .utf8)) ?? ""))
        #expect(VMCLIFixture.waitFor("exec exit", seconds: 20) { !BundleFixture.isRunning(pid: standIn) }, "the exec's stand-in ends with its process")

        #expect(try VMCLIFixture.cocoon(["pause", id]).0 == 0)
        #expect(try VMCLIFixture.state(id)["status"] as? String == "paused")
        #expect(try VMCLIFixture.cocoon(["resume", id]).0 == 0)
        #expect(try VMCLIFixture.state(id)["status"] as? String == "running")
        r = try VMCLIFixture.cocoon(["events", "--stats", id])
        #expect(r.0 == 0 && r.1.contains("\"memory\""), "\(r.1)")

        r = try VMCLIFixture.cocoon(["delete", id])
        #expect(r.0 == 1 && r.1.contains("running"), "delete of a running container fails: \(r.1)")
        r = try VMCLIFixture.cocoon(["kill", id, "TERM"])
        #expect(r.0 == 0, "\(r.1)")
        #expect(VMCLIFixture.waitFor("stop") { (try? VMCLIFixture.state(id)["status"] as? String) == "stopped" })
        #expect(VMCLIFixture.waitFor("stand-in exit", seconds: 15) { !BundleFixture.isRunning(pid: pid) })
        output = (try? String(contentsOfFile: out, encoding: .utf8)) ?? ""
        #expect(output.contains("term"), "\(output)")
        r = try VMCLIFixture.cocoon(["kill", id, "TERM"])
        #expect(r.0 == 1 && r.1.contains("not running"), "kill of a stopped container: \(r.1)")

        r = try VMCLIFixture.cocoon(["delete", id])
        #expect(r.0 == 0, "\(r.1)")
        r = try VMCLIFixture.cocoon(["state", id])
        #expect(r.0 == 1 && r.1.contains("does not exist"), "\(r.1)")
        #expect(!FileManager.default.fileExists(atPath: cgroup), "the host cgroup is removed")
        VMCLIFixture.expectNothingLeft("after delete")
    }

    @Test func runWithAPidFileWaitsForTheStandInAndReturnsTheGuestStatus() throws {
        let b = try BundleFixture(args: ["sh", "-c", "read x; echo run-$x; exit 5"])
        defer { b.remove() }
        // A --root as long as docker's and containerd's with a 64-character id: the control socket's
        // path is longer than a unix socket address holds.
        let root = VMCLIFixture.stateRoot + "/" + String(repeating: "long-root-", count: 9)
        let id = "vmcli-run-" + String(repeating: "0123456789abcdef", count: 3)
        // <root>/daemons/<23 characters of the id>-<8 hex>.sock
        #expect((root + "/daemons/").utf8.count + 32 + 5 > 107)
        defer { try? FileManager.default.removeItem(atPath: root) }
        let r = try VMCLIFixture.cocoon(["run", "--pid-file", b.directory + "/pid", "--bundle", b.directory, id], stdin: "in\n", root: root)
        #expect(r.0 == 5, "\(r.1)")
        #expect(r.1.contains("run-in"), "\(r.1)")
        #expect(((try? FileManager.default.contentsOfDirectory(atPath: root + "/daemons")) ?? []).isEmpty, "the daemon removed its socket")
        try? FileManager.default.removeItem(atPath: root)
        VMCLIFixture.expectNothingLeft("after run")
    }

    @Test func aKilledDaemonLeavesAStoppedContainerThatDeleteCleansUp() throws {
        let b = try BundleFixture(args: ["sh", "-c", "while true; do sleep 0.1; done"])
        defer { b.remove() }
        let id = "vmcli-stale"
        defer { _ = try? VMCLIFixture.cocoon(["delete", "--force", id]) }
        var r = try VMCLIFixture.cocoon(["run", "--detach", "--bundle", b.directory, id])
        #expect(r.0 == 0, "\(r.1)")
        #expect(try VMCLIFixture.state(id)["status"] as? String == "running")
        let daemon = try #require(try VMCLIFixture.record(id)["daemonPID"] as? Int)
        kill(Int32(daemon), SIGKILL)
        #expect(VMCLIFixture.waitFor("stale") { (try? VMCLIFixture.state(id)["status"] as? String) == "stopped" })
        r = try VMCLIFixture.cocoon(["delete", id])
        #expect(r.0 == 0, "\(r.1)")
        VMCLIFixture.expectNothingLeft("after the daemon was killed")
    }

    @Test func aPodsContainersShareTheVMOfTheirSandboxContainer() throws {
        // CRI-O's `oci` runtime type marks a pod's containers with the sandbox's id.
        let sandbox = try BundleFixture(args: ["sh", "-c", "while true; do sleep 0.1; done"])
        defer { sandbox.remove() }
        let member = try BundleFixture(args: ["sh", "-c", "uname -n; cat /proc/uptime; while true; do sleep 0.1; done"]) { config in
            config["annotations"] = ["io.kubernetes.cri-o.ContainerType": "container", "io.kubernetes.cri-o.SandboxID": "vmcli-pod"]
        }
        defer { member.remove() }
        defer {
            _ = try? VMCLIFixture.cocoon(["delete", "--force", "vmcli-pod-c1"])
            _ = try? VMCLIFixture.cocoon(["delete", "--force", "vmcli-pod"])
        }
        var r = try VMCLIFixture.cocoon(["run", "--detach", "--bundle", sandbox.directory, "vmcli-pod"])
        #expect(r.0 == 0, "\(r.1)")
        r = try VMCLIFixture.cocoon(["run", "--detach", "--bundle", member.directory, "vmcli-pod-c1"])
        #expect(r.0 == 0, "\(r.1)")
        let first = try VMCLIFixture.record("vmcli-pod")
        let second = try VMCLIFixture.record("vmcli-pod-c1")
        #expect(first["daemonPID"] as? Int == second["daemonPID"] as? Int, "one daemon, one VM")
        #expect(first["runDirectory"] as? String == second["runDirectory"] as? String)
        let runDirectory = try #require(first["runDirectory"] as? String)
        #expect(PrivateContainerd.processes(named: "qemu-system", mentioning: runDirectory).count == 1)

        // The member goes first: the VM stays for the sandbox container.
        r = try VMCLIFixture.cocoon(["delete", "--force", "vmcli-pod-c1"])
        #expect(r.0 == 0, "\(r.1)")
        #expect(try VMCLIFixture.state("vmcli-pod")["status"] as? String == "running")
        r = try VMCLIFixture.cocoon(["exec", "vmcli-pod", "true"])
        #expect(r.0 == 0, "\(r.1)")
        r = try VMCLIFixture.cocoon(["delete", "--force", "vmcli-pod"])
        #expect(r.0 == 0, "\(r.1)")
        VMCLIFixture.expectNothingLeft("after the pod")

        // A member whose sandbox is not there is a clear error.
        r = try VMCLIFixture.cocoon(["create", "--bundle", member.directory, "vmcli-orphan"])
        #expect(r.0 == 1 && r.1.contains("vmcli-pod") && r.1.contains("does not exist"), "\(r.1)")
        VMCLIFixture.expectNothingLeft("after the orphan")
    }

    @Test(arguments: [false, true])
    func aForegroundRunRunsTheHostHooks(terminal: Bool) throws {
        // prestart, createRuntime and poststart on the host with the stand-in's PID (in the container's
        // network namespace), poststop after the exit: as `create`, `start` and `delete` run them. With a
        // terminal, `run` relays the stand-in's pty.
        let out = NSTemporaryDirectory() + "cocoon-vmcli-hooks-\(UUID().uuidString)"
        try FileManager.default.createDirectory(atPath: out, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(atPath: out) }
        func hook(_ name: String) -> [String: Any] {
            // The state on stdin; for prestart also the network namespace of the PID it names.
            ["path": "/bin/sh", "args": ["sh", "-c",
                "cat > \(out)/\(name).json; pid=$(sed 's/.*\"pid\":\\([0-9]*\\).*/\\1/' \(out)/\(name).json); "
                + "readlink /proc/$pid/ns/net > \(out)/\(name).net 2>/dev/null; true"]]
        }
        let b = try BundleFixture(args: ["sh", "-c", "test -t 1 && echo on-a-tty; echo from-the-vm; exit 6"]) { config in
            config["hooks"] = ["prestart": [hook("prestart")], "createRuntime": [hook("createRuntime")],
                               "poststart": [hook("poststart")], "poststop": [hook("poststop")]]
            var process = config["process"] as! [String: Any]
            process["terminal"] = terminal
            config["process"] = process
        }
        defer { b.remove() }
        let r = try VMCLIFixture.cocoon(["run", "--bundle", b.directory, "vmcli-hooks"])
        #expect(r.0 == 6 && r.1.contains("from-the-vm"), "\(r.1)")
        #expect(r.1.contains("on-a-tty") == terminal, "\(r.1)")
        #expect(!r.1.contains("hooks are not run"), "\(r.1)")
        for (kind, expected) in [("prestart", "creating"), ("createRuntime", "creating"), ("poststart", "running"), ("poststop", "stopped")] {
            let data = FileManager.default.contents(atPath: "\(out)/\(kind).json") ?? Data()
            let state = try? JSONSerialization.jsonObject(with: data) as? [String: Any]
            #expect(state?["id"] as? String == "vmcli-hooks" && state?["status"] as? String == expected, "\(kind): \(String(describing: state))")
        }
        let hostNet = try FileManager.default.destinationOfSymbolicLink(atPath: "/proc/self/ns/net")
        let hookNet = ((try? String(contentsOfFile: "\(out)/prestart.net", encoding: .utf8)) ?? "").trimmingCharacters(in: .whitespacesAndNewlines)
        #expect(hookNet.hasPrefix("net:[") && hookNet != hostNet, "prestart's PID lives in the container's network namespace: \(hookNet)")
        VMCLIFixture.expectNothingLeft("after a run with hooks")
    }

    @Test func badInputIsReportedWithoutLeavingAnything() throws {
        let b = try BundleFixture(args: ["true"]) { config in
            var process = config["process"] as! [String: Any]
            process["terminal"] = true
            config["process"] = process
        }
        defer { b.remove() }
        var r = try VMCLIFixture.cocoon(["create", "--bundle", b.directory, "vmcli-bad"])
        #expect(r.0 == 1 && r.1.contains("--console-socket"), "\(r.1)")
        r = try VMCLIFixture.cocoon(["create", "--bundle", b.directory, "bad/id"])
        #expect(r.0 == 1 && r.1.contains("invalid"), "\(r.1)")
        r = try VMCLIFixture.cocoon(["start", "vmcli-missing"])
        #expect(r.0 == 1 && r.1.contains("does not exist"), "\(r.1)")
        VMCLIFixture.expectNothingLeft("after bad input")
    }
}

/// containerd's own runc shim and dockerd driving cocoon with VM isolation, as they drive runc.
}

extension VMIsolationTests {
@Suite(.serialized, .enabled(if: VMCLIFixture.skipReason == nil && PrivateDockerd.skipReason == nil,
                             Comment(rawValue: VMCLIFixture.skipReason ?? PrivateDockerd.skipReason ?? "")))
struct Clients {
    let image = "docker.io/library/busybox:cocoon"

    @Test func ctrWithCocoonAsTheRuncBinaryRunsVMs() throws {
        let ctd = try PrivateContainerd.forRuncShim()
        defer { ctd.stop() }
        let wrapper = ctd.directory + "/cocoon-vm"
        try "#!/bin/sh\nexec \(try #require(BundleFixture.cocoon)) --config \(VMCLIFixture.configFile) \"$@\"\n"
            .write(toFile: wrapper, atomically: true, encoding: .utf8)
        chmod(wrapper, 0o755)
        let runtime = ["--runc-binary", wrapper]

        // Output and exit status, from a kernel of its own.
        var r = try ctd.ctr(["run", "--rm"] + runtime + [image, "ctr-vm-once", "sh", "-c", "echo kernel-$(uname -r); exit 5"])
        #expect(r.0 == 5, "\(r.1)")
        let hostKernel = try String(contentsOfFile: "/proc/sys/kernel/osrelease", encoding: .utf8).trimmingCharacters(in: .whitespacesAndNewlines)
        #expect(r.1.contains("kernel-") && !r.1.contains("kernel-\(hostKernel)"), "\(r.1)")

        // stdin through the stand-in, and a memory limit enforced in the guest.
        r = try PrivateContainerd.shell(["-c", "echo typed | /usr/bin/ctr -a \(ctd.socket) run --rm --runc-binary \(wrapper) \(image) ctr-vm-in sh -c 'read x; echo got:$x'"], timeout: 120)
        #expect(r.0 == 0 && r.1.contains("got:typed"), "\(r.1)")
        r = try ctd.ctr(["run", "--rm", "--memory-limit", "33554432"] + runtime + [image, "ctr-vm-mem", "dd", "if=/dev/zero", "of=/dev/null", "bs=64M", "count=1"])
        #expect(r.0 == 137, "\(r.1)")

        // A terminal through the console socket: the stand-in's pty.
        let ctrTTY = "/usr/bin/ctr -a \(ctd.socket) run --rm -t --runc-binary \(wrapper) \(image) ctr-vm-tty sh"
        r = try PrivateContainerd.shell(["-c", "(sleep 4; printf 'tty; echo in-tty-$((6*7)); exit 9\\r') | script -qec '\(ctrTTY)' /dev/null"], timeout: 120)
        #expect(r.0 == 9, "\(r.1)")
        #expect(r.1.contains("/dev/pts/0") && r.1.contains("in-tty-42"), "\(r.1)")

        // A detached task: ps, exec, pause/resume, kill with a signal, its exit status, removal.
        r = try ctd.ctr(["run", "-d"] + runtime + [image, "ctr-vm-task", "sh", "-c", "trap 'exit 7' TERM; while true; do sleep 0.1; done"])
        #expect(r.0 == 0, "\(r.1)")
        r = try ctd.ctr(["task", "exec", "--exec-id", "e1", "ctr-vm-task", "sh", "-c", "echo exec-in-vm; exit 3"])
        #expect(r.0 == 3 && r.1.contains("exec-in-vm"), "\(r.1)")
        r = try ctd.ctr(["task", "metrics", "ctr-vm-task"])
        #expect(r.0 == 0 && r.1.contains("memory.usage_in_bytes"), "\(r.1)")
        #expect(try ctd.ctr(["task", "pause", "ctr-vm-task"]).0 == 0)
        #expect(try ctd.ctr(["task", "ls"]).1.contains("PAUSED"))
        #expect(try ctd.ctr(["task", "resume", "ctr-vm-task"]).0 == 0)
        #expect(try ctd.ctr(["task", "ls"]).1.contains("RUNNING"))
        #expect(try ctd.ctr(["task", "kill", "-s", "TERM", "ctr-vm-task"]).0 == 0)
        #expect(VMCLIFixture.waitFor("stopped") { (try? ctd.ctr(["task", "ls"]).1.contains("STOPPED")) == true })
        r = try ctd.ctr(["task", "ls"])
        #expect(r.1.contains("STOPPED"), "\(r.1)")
        r = try ctd.ctr(["task", "rm", "ctr-vm-task"])
        #expect(r.0 == 0, "\(r.1)")
        #expect(try ctd.ctr(["containers", "rm", "ctr-vm-task"]).0 == 0)
        #expect(VMCLIFixture.waitFor("shims", seconds: 10) { ctd.leftoverShims().isEmpty }, "\(ctd.leftoverShims())")
        let vmLeft = VMCLIFixture.waitFor("cleanup", seconds: 15) {
            PrivateContainerd.processes(named: "qemu-system", mentioning: VMCLIFixture.sandboxRoot).isEmpty
                && PrivateContainerd.processes(named: "sandbox-daemon", mentioning: VMCLIFixture.configFile).isEmpty
        }
        #expect(vmLeft, "no VM or daemon outlives its containers")
    }

    @Test func dockerRunsVMContainersWithCocoon() throws {
        let d = try PrivateDockerd(runtimeArgs: ["--config", VMCLIFixture.configFile])
        defer { d.stop() }
        let run = ["run", "--runtime=cocoon", "--network", "none"]

        var r = try d.docker(run + ["--rm", d.image, "sh", "-c", "echo hello from a vm; uname -r; exit 6"], timeout: 120)
        #expect(r.0 == 6, "\(r.1)")
        #expect(r.1.contains("hello from a vm"), "\(r.1)")

        r = try d.docker(run + ["--rm", "-i", d.image, "sh", "-c", "read x; echo got:$x"], stdin: "typed\n", timeout: 120)
        #expect(r.1.contains("got:typed"), "\(r.1)")

        let it = "/usr/bin/docker -H unix://\(d.socket) run --rm -it --runtime=cocoon --network none \(d.image) sh"
        r = try PrivateContainerd.shell(["-c", "(sleep 5; printf 'tty; echo it-$((6*7)); exit 4\\r') | script -qec '\(it)' /dev/null"], timeout: 120)
        #expect(r.0 == 4, "\(r.1)")
        #expect(r.1.contains("it-42") && r.1.contains("/dev/pts/0"), "\(r.1)")

        // --memory reaches the guest's cgroup (and sizes the VM): a 64 MiB buffer under 32 MiB is OOM-killed.
        r = try d.docker(run + ["--rm", "--memory", "32m", d.image, "dd", "if=/dev/zero", "of=/dev/null", "bs=64M", "count=1"], timeout: 120)
        #expect(r.0 == 137, "\(r.1)")

        // docker's networking: its prestart hook moves a veth into the stand-in's namespace, which the
        // VM takes over; the container gets docker's address and reaches the bridge.
        let bridge = "cocoon-dbr\(getpid() % 100_000)"
        r = try d.docker(["network", "create", "--subnet", "198.18.20.0/24", "--gateway", "198.18.20.1",
                          "-o", "com.docker.network.bridge.name=\(bridge)", "cocoon-vmnet"])
        #expect(r.0 == 0, "\(r.1)")
        r = try d.docker(["run", "--rm", "--runtime=cocoon", "--network", "cocoon-vmnet", "--ip", "198.18.20.7", d.image, "sh", "-c",
                          "ip -4 addr show eth0; ping -c 1 -W 10 198.18.20.1 && echo bridge-reached"], timeout: 120)
        #expect(r.0 == 0 && r.1.contains("198.18.20.7/24") && r.1.contains("bridge-reached"), "\(r.1)")
        #expect(try d.docker(["network", "rm", "cocoon-vmnet"]).0 == 0)

        // A detached container: exec, logs, stop (SIGTERM), kill -s, restart, rm -f.
        r = try d.docker(run + ["-d", "--name", "vk", d.image, "sh", "-c", "trap 'echo bye; exit 0' TERM; echo started; while true; do sleep 0.1; done"], timeout: 120)
        #expect(r.0 == 0, "\(r.1)")
        // --cpus and --pids-limit reach the guest (a quota of 1.5 CPUs gets 2 vCPUs); docker update changes them.
        r = try d.docker(run + ["--rm", "--cpus", "1.5", "--pids-limit", "20", d.image, "sh", "-c",
                                "nproc; cat /sys/fs/cgroup/cocoon/*/pids.max /sys/fs/cgroup/cocoon/*/cpu.max 2>/dev/null"], timeout: 120)
        #expect(r.0 == 0 && r.1.hasPrefix("2") && r.1.contains("20") && r.1.contains("150000 100000"), "\(r.1)")
        #expect(try d.docker(["update", "--pids-limit", "33", "vk"]).0 == 0)
        r = try d.docker(["exec", "vk", "sh", "-c", "cat /sys/fs/cgroup/cocoon/*/pids.max"])
        #expect(r.1.contains("33"), "\(r.1)")

        // docker stats reads the container's host cgroup, which holds its VM: QEMU's memory shows.
        r = try d.docker(["stats", "--no-stream", "--format", "{{.MemUsage}}", "vk"])
        #expect(r.0 == 0 && r.1.contains("MiB /"), "\(r.1)")
        let mib = Double(r.1.split(separator: "M").first.map(String.init) ?? "") ?? 0
        #expect(mib >= 16, "the VM's memory is accounted to the container: \(r.1)")
        // Its limit is the VM's RAM (256 MiB) plus the host overhead (256 MiB).
        #expect(r.1.contains("/ 512MiB"), "\(r.1)")
        r = try d.docker(["exec", "vk", "sh", "-c", "echo exec-ok; exit 3"])
        #expect(r.0 == 3 && r.1.contains("exec-ok"), "\(r.1)")
        #expect(try d.docker(["stop", "-t", "10", "vk"]).0 == 0)
        #expect(try d.docker(["inspect", "-f", "{{.State.ExitCode}}", "vk"]).1.hasPrefix("0"))
        r = try d.docker(["logs", "vk"])
        #expect(r.1.contains("started") && r.1.contains("bye"), "\(r.1)")
        #expect(try d.docker(["start", "vk"], timeout: 120).0 == 0)
        #expect(try d.docker(["restart", "-t", "1", "vk"], timeout: 120).0 == 0)
        #expect(try d.docker(["inspect", "-f", "{{.State.Running}}", "vk"]).1.hasPrefix("true"), "survives a restart")
        #expect(try d.docker(["kill", "-s", "KILL", "vk"]).0 == 0)
        #expect(try d.docker(["inspect", "-f", "{{.State.ExitCode}}", "vk"]).1.hasPrefix("137"))
        #expect(try d.docker(["rm", "-f", "vk"]).0 == 0)

        // stop of a container that ignores SIGTERM: SIGKILL after the timeout; rm -f of a running one.
        r = try d.docker(run + ["-d", "--name", "vstubborn", d.image, "sh", "-c", "trap '' TERM; while true; do sleep 0.1; done"], timeout: 120)
        let started = Date()
        #expect(try d.docker(["stop", "-t", "1", "vstubborn"]).0 == 0)
        #expect(Date().timeIntervalSince(started) < 20)
        #expect(try d.docker(["inspect", "-f", "{{.State.ExitCode}}", "vstubborn"]).1.hasPrefix("137"))
        #expect(try d.docker(["start", "vstubborn"], timeout: 120).0 == 0)
        #expect(try d.docker(["rm", "-f", "vstubborn"]).0 == 0)

        #expect(VMCLIFixture.waitFor("shims", seconds: 10) { d.containerd.leftoverShims().isEmpty }, "\(d.containerd.leftoverShims())")
        let vmLeft = VMCLIFixture.waitFor("cleanup", seconds: 15) {
            PrivateContainerd.processes(named: "qemu-system", mentioning: VMCLIFixture.sandboxRoot).isEmpty
                && PrivateContainerd.processes(named: "sandbox-daemon", mentioning: VMCLIFixture.configFile).isEmpty
                && PrivateContainerd.processes(named: "stand-in", mentioning: VMCLIFixture.configFile).isEmpty
        }
        #expect(vmLeft, "no VM, daemon or stand-in outlives its containers")
    }
}

/// Debian's podman 4.3 (with conmon) on private storage and run roots, cocoon as its OCI runtime.
final class PrivatePodman: @unchecked Sendable {
    let directory = "/tmp/cocoon-podman-\(getpid())-\(UInt32.random(in: 0...UInt32.max))"
    let image = "localhost/busybox:cocoon"

    static var skipReason: String? {
        for tool in ["/usr/bin/podman", "/usr/bin/conmon", "/usr/bin/script"] where !FileManager.default.isExecutableFile(atPath: tool) {
            return "\(tool) is not installed (make deps installs podman)"
        }
        return nil
    }

    var base: [String] {
        ["/usr/bin/podman", "--root", directory + "/storage", "--runroot", directory + "/run", "--storage-driver", "vfs",
         "--cgroup-manager", "cgroupfs", "--events-backend", "file", "--runtime", directory + "/cocoon-vm"]
    }

    init() throws {
        try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true)
        try "#!/bin/sh\nexec \(try #require(BundleFixture.cocoon)) --config \(VMCLIFixture.configFile) \"$@\"\n"
            .write(toFile: directory + "/cocoon-vm", atomically: true, encoding: .utf8)
        chmod(directory + "/cocoon-vm", 0o755)
        let (status, out) = try Subprocess.bash("tar -C \(BundleFixture.sharedRootfs) -c . | \(PrivateContainerd.quote(base)) import - \(image)")
        guard status == 0 else { stop(); throw PrivateContainerd.Failure("podman import: \(out)") }
    }

    func podman(_ args: [String], timeout: Double = 120) throws -> (Int32, String) {
        try Subprocess.bash(PrivateContainerd.quote(base + args), timeout: timeout)
    }

    func stop() {
        _ = try? podman(["rm", "-af", "-t", "1"])
        _ = try? Subprocess.bash("grep -o ' \(directory)[^ ]*' /proc/self/mounts | sort -r | xargs -r -n1 umount -l")
        try? FileManager.default.removeItem(atPath: directory)
    }
}

}

extension VMIsolationTests {
@Suite(.serialized, .enabled(if: VMCLIFixture.skipReason == nil && PrivatePodman.skipReason == nil,
                             Comment(rawValue: VMCLIFixture.skipReason ?? PrivatePodman.skipReason ?? "")))
struct Podman {
    @Test func podmanRunsVMContainersWithCocoon() throws {
        let p = try PrivatePodman()
        defer { p.stop() }
        let run = ["run", "--network", "none"]
        var r = try p.podman(run + ["--rm", p.image, "sh", "-c", "echo hello from podman; exit 3"])
        #expect(r.0 == 3 && r.1.contains("hello from podman"), "\(r.1)")

        let it = PrivateContainerd.quote(p.base + ["run", "--rm", "-it", "--network", "none", p.image, "sh"])
        r = try Subprocess.bash("(sleep 5; printf 'tty; echo it-$((6*7)); exit 4\\r') | script -qec \"\(it)\" /dev/null", timeout: 120)
        #expect(r.0 == 4 && r.1.contains("it-42") && r.1.contains("/dev/pts/0"), "\(r.1)")

        r = try p.podman(run + ["-d", "--name", "pk", p.image, "sh", "-c", "trap 'echo bye; exit 0' TERM; echo started; while true; do sleep 0.1; done"])
        #expect(r.0 == 0, "\(r.1)")
        r = try p.podman(["exec", "pk", "sh", "-c", "echo exec-ok; exit 3"])
        #expect(r.0 == 3 && r.1.contains("exec-ok"), "\(r.1)")
        #expect(try p.podman(["stop", "-t", "10", "pk"]).0 == 0)
        r = try p.podman(["inspect", "-f", "{{.State.ExitCode}}", "pk"])
        #expect(r.1.hasPrefix("0"), "\(r.1)")
        r = try p.podman(["logs", "pk"])
        #expect(r.1.contains("started") && r.1.contains("bye"), "\(r.1)")
        #expect(try p.podman(["start", "pk"]).0 == 0)
        #expect(try p.podman(["rm", "-f", "pk"]).0 == 0)

        let vmLeft = VMCLIFixture.waitFor("cleanup", seconds: 15) {
            PrivateContainerd.processes(named: "qemu-system", mentioning: VMCLIFixture.sandboxRoot).isEmpty
                && PrivateContainerd.processes(named: "sandbox-daemon", mentioning: VMCLIFixture.configFile).isEmpty
                && PrivateContainerd.processes(named: "stand-in", mentioning: VMCLIFixture.configFile).isEmpty
        }
        #expect(vmLeft, "no VM, daemon or stand-in outlives its containers")
    }
}
}
