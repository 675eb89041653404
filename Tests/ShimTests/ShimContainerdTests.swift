import Config
import Foundation
import OCI
import Testing
import TestSupport
@testable import Shim

/// A private containerd with cocoon's shim on its PATH and a cocoon configuration of the tests' own
/// (state under /run/cocoon-test-shim), so that everything the shim leaves behind is attributable.
struct ShimEnvironment {
    static let stateRoot = "/run/cocoon-test-shim"
    /// The CRI suite runs alongside the ctr suite: a root of its own keeps their leak checks apart.
    static let criStateRoot = "/run/cocoon-test-cri"
    static let runtime = "io.containerd.cocoon.v2"
    static let repository = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent().path
    static var shim: String? { BuiltProducts.path(of: "containerd-shim-cocoon-v2") }

    static var skipReason: String? {
        if let reason = PrivateContainerd.missingTools { return reason }
        if shim == nil { return "containerd-shim-cocoon-v2 is not built next to the tests" }
        guard let config = try? Configuration.load() else { return "the cocoon configuration (COCOON_CONFIG) does not load" }
        if !FileManager.default.isExecutableFile(atPath: config.hypervisor.path) { return "QEMU \(config.hypervisor.path) is not installed (make deps)" }
        if !FileManager.default.fileExists(atPath: config.hypervisor.kernel) { return "guest kernel \(config.hypervisor.kernel) is not built (make test builds it)" }
        if !FileManager.default.fileExists(atPath: config.hypervisor.initrd) { return "guest initramfs \(config.hypervisor.initrd) is not built (make test builds it)" }
        return nil
    }

    /// containerd started with PATH and COCOON_CONFIG pointing at this build.
    static func containerd(cri: Bool = false, cniConfig: String? = nil) throws -> PrivateContainerd {
        let config = try Configuration.load()
        let file = NSTemporaryDirectory() + "cocoon-shim-test-\(getpid())-\(UInt32.random(in: 0...UInt32.max)).toml"
        try """
            [hypervisor]
            kernel = "\(config.hypervisor.kernel)"
            initrd = "\(config.hypervisor.initrd)"
            image = "\(config.hypervisor.image)"
            boot_from = "\(config.hypervisor.bootFrom.rawValue)"
            boot_timeout_seconds = 60
            # memory_mib may be set by a pod, vcpus may not (vmAnnotations... checks both).
            enable_annotations = ["memory_mib"]
            [runtime]
            root = "\(cri ? criStateRoot : stateRoot)"
            """.write(toFile: file, atomically: true, encoding: .utf8)
        let shimDirectory = URL(fileURLWithPath: try #require(shim)).deletingLastPathComponent().path
        let path = shimDirectory + ":" + (ProcessInfo.processInfo.environment["PATH"] ?? "/usr/sbin:/usr/bin:/sbin:/bin")
        return try PrivateContainerd(repository: repository, environment: ["PATH": path, "COCOON_CONFIG": file],
                                     criRuntimes: cri ? ["cocoon": runtime] : [:], cniConfig: cniConfig)
    }

    static func qemus(_ root: String = stateRoot) -> [String] { PrivateContainerd.processes(named: "qemu-system", mentioning: root) }
    static func virtiofsds(_ root: String = stateRoot) -> [String] { PrivateContainerd.processes(named: "virtiofsd", mentioning: root) }

    /// Nothing of the pod is left: no shim, QEMU, virtiofsd, run directory, mount or shim socket.
    static func expectNothingLeft(_ ctd: PrivateContainerd, groups: [String], namespace: String = "default",
                                  stateRoot: String = stateRoot, sourceLocation: SourceLocation = #_sourceLocation) {
        let deadline = Date().addingTimeInterval(15)
        while Date() < deadline && !(ctd.leftoverShims().isEmpty && qemus(stateRoot).isEmpty && virtiofsds(stateRoot).isEmpty) {
            usleep(50000)
        }
        #expect(ctd.leftoverShims().isEmpty, "shims left: \(ctd.leftoverShims())", sourceLocation: sourceLocation)
        #expect(qemus(stateRoot).isEmpty, "QEMU left: \(qemus(stateRoot))", sourceLocation: sourceLocation)
        #expect(virtiofsds(stateRoot).isEmpty, "virtiofsd left: \(virtiofsds(stateRoot))", sourceLocation: sourceLocation)
        let sandboxes = (try? FileManager.default.contentsOfDirectory(atPath: stateRoot + "/sandboxes")) ?? []
        #expect(sandboxes.isEmpty, "sandbox run directories left: \(sandboxes)", sourceLocation: sourceLocation)
        let mounts = (try? String(contentsOfFile: "/proc/self/mountinfo", encoding: .utf8)) ?? ""
        #expect(!mounts.contains(stateRoot), "mounts left under \(stateRoot)", sourceLocation: sourceLocation)
        #expect(!mounts.contains(ctd.directory + "/state"), "rootfs mounts left in containerd's state", sourceLocation: sourceLocation)
        for group in groups {
            let socket = ShimAddress.path(of: ShimAddress.socketAddress(containerdAddress: ctd.socket, namespace: namespace, group: group))
            #expect(!FileManager.default.fileExists(atPath: socket), "shim socket \(socket) left", sourceLocation: sourceLocation)
        }
    }

    static let criClient = repository + "/tests/peers/cri-client/cri_client.py"

    /// The CRI test client runs on Debian's python3 with its grpcio and protobuf.
    static var criSkipReason: String? {
        if let reason = skipReason { return reason }
        guard let (status, _) = try? PrivateContainerd.shell(["-c", "/usr/bin/python3 -c 'import grpc, google.protobuf' && command -v protoc"]),
              status == 0 else {
            return "the CRI test client needs Debian's python3-grpcio, python3-protobuf and protoc (make deps)"
        }
        if !FileManager.default.isExecutableFile(atPath: "/usr/lib/cni/bridge") || !FileManager.default.isExecutableFile(atPath: "/usr/lib/cni/host-local") {
            return "the CRI test needs Debian's containernetworking-plugins (bridge, host-local) (make deps)"
        }
        return VethPair.unavailableReason
    }

    static func waitFor(_ what: String, timeout: Double = 20, _ condition: () throws -> Bool) rethrows -> Bool {
        let deadline = Date().addingTimeInterval(timeout)
        while Date() < deadline {
            if try condition() { return true }
            usleep(100_000)
        }
        return try condition()
    }
}

/// containerd 1.6 runs containers in cocoon VMs through containerd-shim-cocoon-v2, driven by ctr.
@Suite(.serialized, .enabled(if: ShimEnvironment.skipReason == nil, Comment(rawValue: ShimEnvironment.skipReason ?? "")))
struct ShimContainerdTests {
    let runtime = ["--runtime", ShimEnvironment.runtime]

    @Test func ctrRunPrintsOutputAndReturnsTheExitStatus() throws {
        let ctd = try ShimEnvironment.containerd()
        defer { ctd.stop() }
        let r = try ctd.ctr(["run", "--rm"] + runtime + [ctd.image, "shim-once", "sh", "-c",
                                                          "echo out-$(uname -r); echo err-line >&2; exit 3"], timeout: 120)
        #expect(r.0 == 3, "\(r.1)\n\(((try? String(contentsOfFile: ctd.logPath, encoding: .utf8)) ?? "").suffix(3000))")
        #expect(r.1.contains("out-6.1"), "the container ran on the guest kernel: \(r.1)")
        #expect(r.1.contains("err-line"))
        ShimEnvironment.expectNothingLeft(ctd, groups: ["shim-once"])
    }

    @Test func theShimRunsTheHostHooksInThePodNetworkNamespace() throws {
        // A whole spec (`ctr run --config`) with host hooks and a network namespace path: prestart and
        // createRuntime before the VM takes the namespace over, poststart after start, poststop after delete,
        // each with the state on stdin and inside that namespace.
        let ctd = try ShimEnvironment.containerd()
        defer { ctd.stop() }
        let work = ctd.directory + "/hooks"
        let netns = "cocoon-hk\(getpid() % 10000)"
        _ = try PrivateContainerd.shell(["-c", "ip netns add \(netns)"])
        defer { _ = try? PrivateContainerd.shell(["-c", "ip netns del \(netns)"]) }
        let (made, madeOut) = try PrivateContainerd.shell([ShimEnvironment.repository + "/tests/fixtures/make-busybox-rootfs.sh", work + "/rootfs"])
        #expect(made == 0, "\(madeOut)")
        var spec = OCI.Spec.runcDefault()
        spec.root = Root(path: work + "/rootfs", readonly: true)
        spec.process?.args = ["sh", "-c", "echo hooked-run; exit 4"]
        spec.process?.terminal = false
        let namespaces = (spec.linux?.namespaces ?? []).map {
            $0.type == .network ? OCI.Namespace(type: .network, path: "/var/run/netns/\(netns)") : $0
        }
        spec.linux?.namespaces = namespaces
        func hook(_ kind: String) -> Hook {
            Hook(path: "/bin/sh", args: ["sh", "-c", "cat > \(work)/\(kind).json; readlink /proc/self/ns/net > \(work)/\(kind).net"])
        }
        var hooks = Hooks()
        hooks.prestart = [hook("prestart")]
        hooks.createRuntime = [hook("createRuntime")]
        hooks.poststart = [hook("poststart")]
        hooks.poststop = [hook("poststop")]
        spec.hooks = hooks
        try JSONEncoder().encode(spec).write(to: URL(fileURLWithPath: work + "/config.json"))
        let r = try ctd.ctr(["run", "--rm"] + runtime + ["--config", work + "/config.json", "shim-hooks"], timeout: 120)
        #expect(r.0 == 4 && r.1.contains("hooked-run"), "\(r.1)")
        let inode = try PrivateContainerd.shell(["-c", "stat -L -c %i /var/run/netns/\(netns)"]).1.trimmingCharacters(in: .whitespacesAndNewlines)
        for (kind, status) in [("prestart", "creating"), ("createRuntime", "creating"), ("poststart", "running"), ("poststop", "stopped")] {
            let data = FileManager.default.contents(atPath: "\(work)/\(kind).json") ?? Data()
            let state = try? JSONSerialization.jsonObject(with: data) as? [String: Any]
            #expect(state?["id"] as? String == "shim-hooks" && state?["status"] as? String == status, "\(kind): \(String(describing: state))")
            let net = ((try? String(contentsOfFile: "\(work)/\(kind).net", encoding: .utf8)) ?? "").trimmingCharacters(in: .whitespacesAndNewlines)
            #expect(!inode.isEmpty && net == "net:[\(inode)]", "\(kind) ran in the pod's network namespace: \(net) vs \(inode)")
        }
        ShimEnvironment.expectNothingLeft(ctd, groups: ["shim-hooks"])
    }

    @Test func ctrRunWithATerminal() throws {
        let ctd = try ShimEnvironment.containerd()
        defer { ctd.stop() }
        // ctr -t needs a real terminal: it runs under script(1), whose terminal is made 30x100 first;
        // ctr passes that size on (ResizePty) and the container's terminal has it.
        let command = "stty rows 30 cols 100; /usr/bin/ctr -a \(ctd.socket) run --rm -t --runtime \(ShimEnvironment.runtime) \(ctd.image) shim-tty sh"
        let typed = "tty; stty size; echo in-tty-$((6*7)); exit 9"
        let r = try PrivateContainerd.shell(["-c", "(sleep 8; printf '\(typed)\\r') | script -qec '\(command)' /dev/null"],
                                            timeout: 120)
        #expect(r.0 == 9, "\(r.1)")
        #expect(r.1.contains("/dev/pts/0"))
        #expect(r.1.contains("30 100"), "the terminal size reached the container: \(r.1)")
        #expect(r.1.contains("in-tty-42"))
        ShimEnvironment.expectNothingLeft(ctd, groups: ["shim-tty"])
    }

    @Test func aDetachedTaskExecPsMetricsPauseResumeAndKill() throws {
        let ctd = try ShimEnvironment.containerd()
        defer { ctd.stop() }
        var r = try ctd.ctr(["run", "-d"] + runtime + [ctd.image, "shim-task", "sh", "-c",
                                                        "trap 'exit 7' TERM; while true; do sleep 0.1; done"], timeout: 120)
        #expect(r.0 == 0, "\(r.1)")
        #expect(ShimEnvironment.qemus().count == 1)
        r = try ctd.ctr(["task", "ps", "shim-task"])
        #expect(r.0 == 0 && r.1.split(separator: "\n").count >= 2, "ps lists the container's processes: \(r.1)")
        r = try ctd.ctr(["task", "exec", "--exec-id", "e1", "shim-task", "sh", "-c", "echo exec-in-$(hostname); exit 4"])
        #expect(r.0 == 4, "\(r.1)")
        #expect(r.1.contains("exec-in-shim-task"))
        // stdin from a pipe: ctr copies it into the FIFO, then closes it with CloseIO; cat sees the end.
        r = try PrivateContainerd.shell(["-c", "echo piped-stdin | " + PrivateContainerd.quote(
            ["/usr/bin/ctr", "-a", ctd.socket, "task", "exec", "--exec-id", "in", "shim-task", "sh", "-c", "cat; echo cat-done"])], timeout: 60)
        #expect(r.0 == 0 && r.1.contains("piped-stdin") && r.1.contains("cat-done"), "\(r.1)")
        // A network namespace of its own, with loopback up (as runc leaves it).
        r = try ctd.ctr(["task", "exec", "--exec-id", "lo", "shim-task", "ip", "-o", "link", "show", "lo"])
        #expect(r.0 == 0 && r.1.contains("LOOPBACK,UP"), "\(r.1)")
        r = try ctd.ctr(["task", "metrics", "shim-task"])

        #expect(r.0 == 0 && r.1.contains("memory.usage") && r.1.contains("pids.current"), "\(r.1)")
        #expect(try ctd.ctr(["task", "pause", "shim-task"]).0 == 0)
        #expect(try ctd.ctr(["task", "ls"]).1.contains("PAUSED"))
        #expect(try ctd.ctr(["task", "resume", "shim-task"]).0 == 0)
        #expect(try ctd.ctr(["task", "ls"]).1.contains("RUNNING"))
        #expect(try ctd.ctr(["task", "kill", "-s", "TERM", "shim-task"]).0 == 0)
        #expect(try ShimEnvironment.waitFor("STOPPED") { try ctd.ctr(["task", "ls"]).1.contains("STOPPED") })
        r = try ctd.ctr(["task", "rm", "shim-task"])
        #expect(r.0 == 0, "\(r.1)")
        // The exit status containerd recorded is the trap's (ctr warns about it on removal).
        #expect(r.1.contains("exit code 7"), "\(r.1)")
        #expect(try ctd.ctr(["containers", "rm", "shim-task"]).0 == 0)
        ShimEnvironment.expectNothingLeft(ctd, groups: ["shim-task"])
    }

    @Test func outputToAFileAndToABinaryLoggingDriver() throws {
        let ctd = try ShimEnvironment.containerd()
        defer { ctd.stop() }
        let file = ctd.directory + "/logs/file.log"
        var r = try ctd.ctr(["run", "--rm"] + runtime + ["--log-uri", "file://" + file, ctd.image, "shim-file",
                                                          "sh", "-c", "echo to-file; echo err-to-file >&2"], timeout: 120)
        #expect(r.0 == 0, "\(r.1)")
        let logged = (try? String(contentsOfFile: file, encoding: .utf8)) ?? ""
        #expect(logged.contains("to-file") && logged.contains("err-to-file"), "\(logged)")
        // containerd's binary protocol: stdout on fd 3, stderr on fd 4, ready when fd 5 closes; the
        // query becomes arguments.
        let driver = ctd.directory + "/log-driver"
        let out = ctd.directory + "/driver.out"
        try "#!/bin/sh\nexec 5>&-\necho \"$CONTAINER_NAMESPACE/$CONTAINER_ID $1=$2\" > \"$2\"\ncat <&3 >> \"$2\"\ncat <&4 >> \"$2\"\n"
            .write(toFile: driver, atomically: true, encoding: .utf8)
        chmod(driver, 0o755)
        r = try ctd.ctr(["run", "--rm"] + runtime + ["--log-uri", "binary://\(driver)?out=\(out)", ctd.image, "shim-binary",
                                                      "sh", "-c", "echo to-driver; echo err-to-driver >&2"], timeout: 120)
        #expect(r.0 == 0, "\(r.1)")
        let driven = (try? String(contentsOfFile: out, encoding: .utf8)) ?? ""
        #expect(driven.contains("default/shim-binary out=\(out)") && driven.contains("to-driver") && driven.contains("err-to-driver"),
                "\(driven)")
        ShimEnvironment.expectNothingLeft(ctd, groups: ["shim-file", "shim-binary"])
    }

    @Test func anOOMKillIsReportedToContainerd() throws {
        let ctd = try ShimEnvironment.containerd()
        defer { ctd.stop() }
        // `ctr events` prints every event containerd receives, the shim's forwarded ones included.
        let eventsLog = ctd.directory + "/events.log"
        let events = Foundation.Process()
        events.executableURL = URL(fileURLWithPath: "/usr/bin/ctr")
        events.arguments = ["-a", ctd.socket, "events"]
        FileManager.default.createFile(atPath: eventsLog, contents: nil)
        events.standardOutput = FileHandle(forWritingAtPath: eventsLog)
        try events.run()
        defer {
            events.terminate()
            events.waitUntilExit()
        }
        let r = try ctd.ctr(["run", "--rm", "--memory-limit", "\(32 << 20)"] + runtime + [ctd.image, "shim-oom", "sh", "-c",
                              "awk 'BEGIN { s = \"0123456789abcdef\"; while (1) s = s s }'; echo awk=$?"], timeout: 120)
        #expect(r.1.contains("awk=137"), "the OOM killer ended awk: \(r.1)")
        let seen = ShimEnvironment.waitFor("events", timeout: 10) {
            let text = (try? String(contentsOfFile: eventsLog, encoding: .utf8)) ?? ""
            return text.contains("/tasks/delete") && text.contains("shim-oom")
        }
        let text = (try? String(contentsOfFile: eventsLog, encoding: .utf8)) ?? ""
        #expect(seen, "\(text)")
        let topics = text.split(separator: "\n").filter { $0.contains("shim-oom") }.compactMap { line in
            line.split(separator: " ").first { $0.hasPrefix("/tasks/") }.map(String.init)
        }
        // In order, as containerd's own shims send them.
        #expect(topics == ["/tasks/create", "/tasks/start", "/tasks/oom", "/tasks/exit", "/tasks/delete"], "\(text)")
        ShimEnvironment.expectNothingLeft(ctd, groups: ["shim-oom"])
    }

    @Test func vmAnnotationsWorkOnlyWhereTheConfigurationAllowsThem() throws {
        let ctd = try ShimEnvironment.containerd()
        defer { ctd.stop() }
        var r = try ctd.ctr(["run", "--rm"] + runtime + ["--annotation", "io.cocoon.vm.vcpus=2",
                                                          ctd.image, "shim-refused", "true"], timeout: 120)
        #expect(r.0 != 0)
        #expect(r.1.contains("io.cocoon.vm.vcpus") && r.1.contains("hypervisor.enable_annotations"), "\(r.1)")
        _ = try ctd.ctr(["containers", "rm", "shim-refused"])
        // Allowed: the guest gets the memory the pod asked for (MemTotal is a little under it).
        r = try ctd.ctr(["run", "--rm"] + runtime + ["--annotation", "io.cocoon.vm.memory_mib=640",
                                                      ctd.image, "shim-sized", "sh", "-c", "grep MemTotal /proc/meminfo"], timeout: 120)
        #expect(r.0 == 0, "\(r.1)")
        let kib = r.1.split(whereSeparator: { !$0.isNumber }).compactMap { Int($0) }.first ?? 0
        #expect((560 * 1024...640 * 1024).contains(kib), "\(r.1)")
        ShimEnvironment.expectNothingLeft(ctd, groups: ["shim-refused", "shim-sized"])
    }

    /// SIGKILL, then the task and the container removed.
    func remove(_ id: String, from ctd: PrivateContainerd) throws {
        #expect(try ctd.ctr(["task", "kill", "-s", "KILL", id]).0 == 0)
        #expect(try ShimEnvironment.waitFor("\(id) stopped") { try ctd.ctr(["task", "rm", id]).0 == 0 })
        #expect(try ctd.ctr(["containers", "rm", id]).0 == 0)
    }

    /// `sandboxFirst`: not CRI's order, but containerd's API allows it; the VM stays until the pod's last
    /// container goes either way.
    @Test(arguments: [false, true])
    func containersOfOnePodShareOneShimAndOneVM(sandboxFirst: Bool) throws {
        let ctd = try ShimEnvironment.containerd()
        defer { ctd.stop() }
        let (sandbox, app) = sandboxFirst ? ("shim-first", "shim-second") : ("shim-pod", "shim-app")
        let pod = ["--annotation", "io.kubernetes.cri.sandbox-id=\(sandbox)"]
        for (id, type) in [(sandbox, "sandbox"), (app, "container")] {
            let r = try ctd.ctr(["run", "-d"] + runtime + pod + ["--annotation", "io.kubernetes.cri.container-type=\(type)",
                                                                  ctd.image, id, "sleep", "1000"], timeout: 120)
            #expect(r.0 == 0, "\(r.1)")
        }
        #expect(ctd.leftoverShims().count == 1, "one shim for the pod: \(ctd.leftoverShims())")
        #expect(ShimEnvironment.qemus().count == 1, "one VM for the pod: \(ShimEnvironment.qemus())")
        // Both containers see the same kernel boot: the same VM.
        let bootA = try ctd.ctr(["task", "exec", "--exec-id", "b1", sandbox, "cat", "/proc/sys/kernel/random/boot_id"]).1
        let bootB = try ctd.ctr(["task", "exec", "--exec-id", "b2", app, "cat", "/proc/sys/kernel/random/boot_id"]).1
        #expect(!bootA.isEmpty && bootA == bootB, "\(bootA) vs \(bootB)")
        // Deleting one container keeps the VM for the other.
        let (first, last) = sandboxFirst ? (sandbox, app) : (app, sandbox)
        try remove(first, from: ctd)
        #expect(ShimEnvironment.qemus().count == 1, "the VM stays while \(last) lives")
        let r = try ctd.ctr(["task", "exec", "--exec-id", "b3", last, "echo", "still-here"])
        #expect(r.0 == 0 && r.1.contains("still-here"), "\(r.1)")
        try remove(last, from: ctd)
        ShimEnvironment.expectNothingLeft(ctd, groups: [sandbox])
    }

    @Test func theContainerOutlivesAContainerdRestart() throws {
        let ctd = try ShimEnvironment.containerd()
        defer { ctd.stop() }
        var r = try ctd.ctr(["run", "-d"] + runtime + [ctd.image, "shim-restart", "sh", "-c",
                                                        "trap 'exit 7' TERM; while true; do sleep 0.1; done"], timeout: 120)
        #expect(r.0 == 0, "\(r.1)")
        ctd.stopDaemon()
        #expect(ctd.leftoverShims().count == 1, "the shim keeps running without containerd")
        try ctd.start()
        r = try ctd.ctr(["task", "ls"])
        #expect(r.1.contains("shim-restart") && r.1.contains("RUNNING"), "\(r.1)")
        r = try ctd.ctr(["task", "exec", "--exec-id", "after", "shim-restart", "echo", "after-restart"])
        #expect(r.0 == 0 && r.1.contains("after-restart"), "\(r.1)")
        #expect(try ctd.ctr(["task", "kill", "shim-restart"]).0 == 0)
        #expect(try ShimEnvironment.waitFor("stopped") { try ctd.ctr(["task", "rm", "shim-restart"]).0 == 0 })
        #expect(try ctd.ctr(["containers", "rm", "shim-restart"]).0 == 0)
        ShimEnvironment.expectNothingLeft(ctd, groups: ["shim-restart"])
    }

    @Test func aKilledShimTakesItsVMAndMountsWithIt() throws {
        let ctd = try ShimEnvironment.containerd()
        defer { ctd.stop() }
        let r = try ctd.ctr(["run", "-d"] + runtime + [ctd.image, "shim-killed", "sleep", "1000"], timeout: 120)
        #expect(r.0 == 0, "\(r.1)")
        #expect(ShimEnvironment.qemus().count == 1)
        #expect(!ShimEnvironment.virtiofsds().isEmpty)
        let shims = ctd.leftoverShims()
        #expect(shims.count == 1, "\(shims)")
        for line in shims { if let pid = pidOf(line) { kill(pid, SIGKILL) } }
        // containerd notices, runs `shim delete`, and forgets the task.
        #expect(try ShimEnvironment.waitFor("task gone") { !(try ctd.ctr(["task", "ls"]).1.contains("shim-killed")) })
        #expect(try ctd.ctr(["containers", "rm", "shim-killed"]).0 == 0)
        ShimEnvironment.expectNothingLeft(ctd, groups: ["shim-killed"])
    }

    private func pidOf(_ cmdline: String) -> Int32? {
        for entry in (try? FileManager.default.contentsOfDirectory(atPath: "/proc")) ?? [] {
            guard let pid = Int32(entry), let data = FileManager.default.contents(atPath: "/proc/\(entry)/cmdline") else { continue }
            if String(decoding: data.map { $0 == 0 ? 0x20 : $0 }, as: UTF8.self) == cmdline { return pid }
        }
        return nil
    }
}

/// containerd's CRI plugin (what the kubelet talks to) with a `cocoon` runtime handler, driven by the
/// project's own CRI client: a pod of two containers, both in the pod's one VM.
@Suite(.serialized, .enabled(if: ShimEnvironment.criSkipReason == nil, Comment(rawValue: ShimEnvironment.criSkipReason ?? "")))
struct ShimCRITests {
    @Test func aPodOfTwoContainersRunsInOneVMThroughCRI() throws {
        // Pod networking as a cluster has it: Debian's CNI bridge plugin with host-local IPAM. The bridge
        // is made here with the host side's address (so the plugin need not turn on IP forwarding), and a
        // web server on that address plays the node.
        let bridge = "cocoon-br\(getpid() % 10000)"
        let work = NSTemporaryDirectory() + "cocoon-cri-net-\(getpid())"
        try FileManager.default.createDirectory(atPath: work + "/www", withIntermediateDirectories: true)
        try "from-the-node\n".write(toFile: work + "/www/index.html", atomically: true, encoding: .utf8)
        #expect(VethPair.shell("ip link add \(bridge) type bridge && ip addr add 198.18.9.1/24 dev \(bridge) && ip link set \(bridge) up").0 == 0)
        let server = Foundation.Process()
        server.executableURL = URL(fileURLWithPath: "/bin/busybox")
        server.arguments = ["httpd", "-f", "-p", "198.18.9.1:8080", "-h", work + "/www"]
        try server.run()
        defer {
            kill(server.processIdentifier, SIGKILL)
            server.waitUntilExit()
            VethPair.shell("ip link del \(bridge)")
            try? FileManager.default.removeItem(atPath: work)
        }
        let cni = """
            {"cniVersion": "0.4.0", "name": "cocoon-test", "plugins": [{
              "type": "bridge", "bridge": "\(bridge)", "isGateway": false, "ipMasq": false,
              "ipam": {"type": "host-local", "ranges": [[{"subnet": "198.18.9.0/24", "rangeStart": "198.18.9.10"}]],
                       "routes": [{"dst": "198.18.0.0/15", "gw": "198.18.9.1"}], "dataDir": "\(work)/ipam"}}]}
            """
        let ctd = try ShimEnvironment.containerd(cri: true, cniConfig: cni)
        defer { ctd.stop() }
        let logs = ctd.directory + "/pod-logs"
        try FileManager.default.createDirectory(atPath: logs, withIntermediateDirectories: true)
        let r = try PrivateContainerd.shell(["-c", PrivateContainerd.quote([
            "/usr/bin/python3", ShimEnvironment.criClient, "--socket", ctd.socket, "--handler", "cocoon",
            "--image", ctd.image, "--logs", logs, "--network", "pod", "--probe", "http://198.18.9.1:8080/"])], timeout: 300)
        let log = ((try? String(contentsOfFile: ctd.logPath, encoding: .utf8)) ?? "").suffix(4000)
        #expect(r.0 == 0, "\(r.1)\ncontainerd log:\n\(log)")
        guard let start = r.1.firstIndex(of: "{"),
              let json = try? JSONSerialization.jsonObject(with: Data(r.1[start...].utf8)) as? [String: Any] else {
            Issue.record("no JSON from the CRI client: \(r.1)")
            return
        }
        let pod = json["pod"] as? String ?? ""
        let texts = json["logs"] as? [String: String] ?? [:]
        #expect(texts["app1"]?.contains("hello from app1") == true, "\(texts)")
        #expect(texts["app2"]?.contains("hello from app2") == true, "\(texts)")
        func line(_ name: String, _ prefix: String) -> String? {
            texts[name]?.split(separator: "\n").first { $0.hasPrefix(prefix) }.map(String.init)
        }
        // One VM: the same kernel boot; one pod: the same IPC namespace.
        #expect(line("app1", "boot ") != nil && line("app1", "boot ") == line("app2", "boot "), "\(texts)")
        #expect(line("app1", "ipc ") != nil && line("app1", "ipc ") == line("app2", "ipc "), "\(texts)")
        // The pod's CNI address is the VM's, and from the VM the pod reaches the node.
        let podIP = json["pod_ip"] as? String ?? ""
        #expect(podIP.hasPrefix("198.18.9."), "\(json)")
        for app in ["app1", "app2"] {
            #expect(line(app, "addr ") == "addr \(podIP)/24", "\(texts)")
            #expect(line(app, "probe ") == "probe from-the-node", "\(texts)")
        }
        #expect((json["running"] as? [String: String])?.values.allSatisfy { $0 == "CONTAINER_RUNNING" } == true, "\(json)")
        // ExecSync (stdout, stderr and exit code apart), then UpdateContainerResources: the guest cgroup's limit
        // goes from the 64 MiB of create to 48 MiB.
        let execs = json["exec"] as? [[String: Any]] ?? []
        #expect(execs.count == 2, "\(json)")
        if execs.count == 2 {
            #expect((execs[0]["stdout"] as? String)?.hasPrefix("\(64 << 20)") == true, "\(execs)")
            #expect(execs[0]["stderr"] as? String == "to-stderr\n" && execs[0]["exit_code"] as? Int == 3, "\(execs)")
            #expect((execs[1]["stdout"] as? String)?.hasPrefix("\(48 << 20)") == true, "\(execs)")
        }
        let stopped = json["stopped"] as? [String: [String: Any]] ?? [:]
        #expect(stopped.count == 2 && stopped.values.allSatisfy { $0["state"] as? String == "CONTAINER_EXITED" }, "\(stopped)")
        #expect((json["steps"] as? [String])?.last == "StopPodSandbox, RemovePodSandbox", "\(json)")
        print("CRI client: \(r.1)")
        ShimEnvironment.expectNothingLeft(ctd, groups: [pod], namespace: "k8s.io", stateRoot: ShimEnvironment.criStateRoot)
        // CNI's DEL removed the pod's veth: nothing is left on the bridge.
        #expect(VethPair.shell("ip -o link show master \(bridge)").1.isEmpty)
    }
}
