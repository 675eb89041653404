import Config
import Foundation
import Hypervisor
import Logging
import OCI
import Sandbox
import SystemCalls
import Testing
import TestSupport

/// Containers inside real VMs: part of the serialized VM suite, so that only one VM boots at a time.
extension SandboxBootTests {
    static let repository = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent().path

    static let rootfs: String = {
        let dir = NSTemporaryDirectory() + "cocoon-vm-rootfs-\(getpid())"
        let p = Foundation.Process()
        p.executableURL = URL(fileURLWithPath: "/bin/bash")
        p.arguments = [repository + "/tests/fixtures/make-busybox-rootfs.sh", dir]
        try? p.run()
        p.waitUntilExit()
        return dir
    }()

    /// A bundle whose rootfs is the shared busybox tree.
    func bundle(_ args: [String], terminal: Bool = false, edit: (inout Spec) -> Void = { _ in }) throws -> String {
        let dir = NSTemporaryDirectory() + "cocoon-vm-bundle-\(UUID().uuidString.prefix(8))"
        try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
        try FileManager.default.createSymbolicLink(atPath: dir + "/rootfs", withDestinationPath: Self.rootfs)
        var spec = Spec.runcDefault()
        spec.process?.args = args
        spec.process?.terminal = terminal
        edit(&spec)
        try Data(spec.encoded()).write(to: URL(fileURLWithPath: dir + "/config.json"))
        return dir
    }

    /// Pipes standing in for a caller's stdio, read to EOF in the background.
    final class Pipes: @unchecked Sendable {
        let stdinWrite: FileHandle
        let stdio: HostStdio
        private let out = Pipe()
        private let err = Pipe()
        private let input = Pipe()

        init(terminal: Bool = false) {
            stdinWrite = input.fileHandleForWriting
            stdio = HostStdio(stdin: input.fileHandleForReading.fileDescriptor, stdout: out.fileHandleForWriting.fileDescriptor,
                              stderr: err.fileHandleForWriting.fileDescriptor, terminal: terminal)
        }

        /// What was written, once the sandbox side is done with the write ends.
        func outputs() -> (String, String) {
            try? out.fileHandleForWriting.close()
            try? err.fileHandleForWriting.close()
            let o = String(decoding: out.fileHandleForReading.readDataToEndOfFile(), as: UTF8.self)
            let e = String(decoding: err.fileHandleForReading.readDataToEndOfFile(), as: UTF8.self)
            return (o, e)
        }
    }

    func bootWithShare(_ id: String, kind: SharedFilesystemKind = .virtioFS, root: GuestRootKind? = nil) throws -> Sandbox {
        var config = env.configuration
        config.hypervisor.sharedFS = kind
        if let root { config.hypervisor.bootFrom = root }
        var options = Sandbox.BootOptions()
        options.shareFilesystem = true
        return try boot(id, config, options: options)
    }

    func expectNoSharingLeft(_ sandboxID: String, sourceLocation: SourceLocation = #_sourceLocation) {
        let runDirectory = "\(env.configuration.runtime.root)/sandboxes/\(sandboxID)"
        #expect(Files.mountPoints(under: runDirectory).isEmpty, "mounts left", sourceLocation: sourceLocation)
        let virtiofsd = (try? FileManager.default.contentsOfDirectory(atPath: "/proc"))?.compactMap(Int32.init).filter { pid in
            let cmd = FileManager.default.contents(atPath: "/proc/\(pid)/cmdline").map { String(decoding: $0, as: UTF8.self) } ?? ""
            return cmd.contains("virtiofsd") && cmd.contains(runDirectory)
        } ?? []
        #expect(virtiofsd.isEmpty, "virtiofsd left running", sourceLocation: sourceLocation)
        expectNothingLeft(sandboxID, sourceLocation: sourceLocation)
    }

    // Both shared filesystems, and both guest roots: the read-only image, and the initramfs (whose
    // root the agent moves so that containers can pivot_root away from it).
    @Test(arguments: zip([SharedFilesystemKind.virtioFS, .ninep], [GuestRootKind.image, .initrd]))
    func containerStdioAndExitStatus(kind: SharedFilesystemKind, root: GuestRootKind) throws {
        let id = "ctr-\(kind == .virtioFS ? "vfs" : "9p")"
        let sandbox = try bootWithShare(id, kind: kind, root: root)
        defer { sandbox.shutdown() }
        let qemu = String(decoding: FileManager.default.contents(atPath: "/proc/\(sandbox.vm.process.pid)/cmdline") ?? Data(), as: UTF8.self)
        #expect(qemu.contains(root == .image ? "id=agentroot" : "-initrd"), "booted from the \(root.rawValue)")
        // Only the read-only image lets the agent run containers' init stage without a sealed copy of itself.
        let console = String(decoding: FileManager.default.contents(atPath: sandbox.runDirectory + "/console.log") ?? Data(), as: UTF8.self)
        #expect(console.contains(root == .image ? "from=the read-only image" : "from=a sealed copy"), "\(console.suffix(800))")
        let dir = try bundle(["sh", "-c", "echo out; echo err >&2; cat; test -e /bin/busybox && exit 3"])
        let pipes = Pipes()
        try sandbox.createContainer(id: "c1", bundle: dir, stdio: pipes.stdio)
        try sandbox.startContainer("c1")
        pipes.stdinWrite.write(Data("from stdin\n".utf8))
        try pipes.stdinWrite.close()
        #expect(try sandbox.wait(containerID: "c1", timeout: 60) == 3)
        let (out, err) = pipes.outputs()
        #expect(out == "out\nfrom stdin\n")
        #expect(err == "err\n")
        try sandbox.removeContainer("c1", force: false)
        #expect(Files.mountPoints(under: sandbox.runDirectory + "/shared/c1").isEmpty)
        sandbox.shutdown()
        expectNoSharingLeft(id)
    }

    @Test func podOfTwoContainersWithExecSignalsAndBindMounts() throws {
        let sandbox = try bootWithShare("ctr-pod")
        defer { sandbox.shutdown() }
        let data = NSTemporaryDirectory() + "cocoon-vm-data-\(UUID().uuidString.prefix(8))"
        let out = data + "-rw"
        try FileManager.default.createDirectory(atPath: data, withIntermediateDirectories: true)
        try FileManager.default.createDirectory(atPath: out, withIntermediateDirectories: true)
        try "host data\n".write(toFile: data + "/in.txt", atomically: true, encoding: .utf8)
        defer {
            try? FileManager.default.removeItem(atPath: data)
            try? FileManager.default.removeItem(atPath: out)
        }
        let server = try bundle(["sh", "-c", "trap 'echo stopping; exit 7' TERM; echo up; while true; do sleep 0.1; done"])
        let client = try bundle(["sh", "-c", "cat /data/in.txt; echo from-guest > /out/result.txt; (echo x > /data/new) 2>/dev/null || echo ro-refused"]) {
            $0.mounts?.append(Mount(destination: "/data", type: "bind", source: data, options: ["rbind", "ro"]))
            $0.mounts?.append(Mount(destination: "/out", type: "bind", source: out, options: ["rbind", "rw"]))
        }
        let serverIO = Pipes()
        try sandbox.createContainer(id: "server", bundle: server, stdio: serverIO.stdio)
        try sandbox.startContainer("server")
        let clientIO = Pipes()
        try sandbox.createContainer(id: "client", bundle: client, stdio: clientIO.stdio)
        try sandbox.startContainer("client")
        try? clientIO.stdinWrite.close()
        #expect(try sandbox.wait(containerID: "client", timeout: 60) == 0)
        #expect(clientIO.outputs().0 == "host data\nro-refused\n")
        #expect((try? String(contentsOfFile: out + "/result.txt", encoding: .utf8)) == "from-guest\n")
        #expect(!FileManager.default.fileExists(atPath: data + "/new"))

        // exec into the running container, with its own stdio.
        let execIO = Pipes()
        var process = Spec.runcDefault().process!
        process.args = ["sh", "-c", "echo exec in $(hostname); exit 4"]
        try sandbox.exec(containerID: "server", execID: "e1", process: process, stdio: execIO.stdio)
        try? execIO.stdinWrite.close()
        #expect(try sandbox.wait(containerID: "server", execID: "e1", timeout: 60) == 4)
        #expect(execIO.outputs().0 == "exec in cocoon\n")

        try sandbox.signal(containerID: "server", signal: SIGTERM)
        try? serverIO.stdinWrite.close()
        #expect(try sandbox.wait(containerID: "server", timeout: 60) == 7)
        #expect(serverIO.outputs().0 == "up\nstopping\n")
        try sandbox.removeContainer("server", force: false)
        try sandbox.removeContainer("client", force: false)
        sandbox.shutdown()
        expectNoSharingLeft("ctr-pod")
        #expect((try? String(contentsOfFile: data + "/in.txt", encoding: .utf8)) == "host data\n", "the shared source is intact")
    }

    @Test func memoryLimitIsEnforcedInTheGuest() throws {
        let sandbox = try bootWithShare("ctr-mem")
        defer { sandbox.shutdown() }
        let dir = try bundle(["sh", "-c", "cat /sys/fs/cgroup/memory.max; awk 'BEGIN { s = \"0123456789abcdef\"; while (1) s = s s }'; echo status=$?"]) {
            $0.linux?.resources = Resources(memory: MemoryResources(limit: 32 << 20))
        }
        let io = Pipes()
        try sandbox.createContainer(id: "hog", bundle: dir, stdio: io.stdio)
        try sandbox.startContainer("hog")
        try? io.stdinWrite.close()
        #expect(try sandbox.wait(containerID: "hog", timeout: 120) == 0)
        #expect(io.outputs().0 == "33554432\nstatus=137\n", "the memory cgroup's OOM killer stopped the hog, not the guest")
        #expect(try sandbox.health().pid == 1, "the agent survived")
        sandbox.shutdown()
        expectNoSharingLeft("ctr-mem")
    }

    @Test func badBundlesAreRefusedWithTheField() throws {
        let sandbox = try bootWithShare("ctr-bad")
        defer { sandbox.shutdown() }
        let missing = try bundle(["true"]) { $0.mounts?.append(Mount(destination: "/x", type: "bind", source: "/nonexistent/src", options: ["bind"])) }
        let e1 = #expect(throws: SandboxError.self) { try sandbox.createContainer(id: "bad", bundle: missing, stdio: Pipes().stdio) }
        #expect(e1?.message.contains("mounts[") == true)
        let terminal = try bundle(["true"], terminal: true)
        let e2 = #expect(throws: SandboxError.self) { try sandbox.createContainer(id: "bad", bundle: terminal, stdio: Pipes().stdio) }
        #expect(e2?.message.contains("process.terminal") == true)
        let e3 = #expect(throws: SandboxError.self) { try sandbox.createContainer(id: "../x", bundle: terminal, stdio: Pipes().stdio) }
        #expect(e3?.code == .invalidArgument)
        #expect(Files.mountPoints(under: sandbox.runDirectory + "/shared/bad").isEmpty)
        #expect(try sandbox.health().pid == 1)
        sandbox.shutdown()
        expectNoSharingLeft("ctr-bad")
    }

    @Test func aSilentAgentFailsTheSandboxInsteadOfHanging() throws {
        let sandbox = try bootWithShare("ctr-hang")
        defer { sandbox.shutdown() }
        let dir = try bundle(["sh", "-c", "while true; do sleep 1; done"])
        let io = Pipes()
        try sandbox.createContainer(id: "loop", bundle: dir, stdio: io.stdio)
        try sandbox.startContainer("loop")
        sandbox.startMonitor(interval: 0.5, healthTimeout: 1, allowedMisses: 2)
        // A frozen VM: the agent can no longer answer anything.
        kill(sandbox.vm.process.pid, SIGSTOP)
        let watch = Stopwatch()
        let error = #expect(throws: SandboxError.self) { _ = try sandbox.wait(containerID: "loop", timeout: 60) }
        #expect(watch.elapsedSeconds < 20)
        #expect(error?.code == .unavailable)
        #expect(error?.message.contains("health checks") == true, "\(error?.message ?? "")")
        let qemu = sandbox.vm.process.pid
        sandbox.shutdown()
        #expect(kill(qemu, 0) != 0, "the frozen QEMU was killed and reaped")
        expectNoSharingLeft("ctr-hang")
    }

    @Test(arguments: ["qemu", "virtiofsd"])
    func aDeadHelperEndsTheContainerWithTheReason(victim: String) throws {
        let sandbox = try bootWithShare("ctr-kill-\(victim)")
        defer { sandbox.shutdown() }
        let dir = try bundle(["sh", "-c", "while true; do sleep 1; done"])
        let io = Pipes()
        try sandbox.createContainer(id: "loop", bundle: dir, stdio: io.stdio)
        try sandbox.startContainer("loop")
        sandbox.startMonitor(interval: 0.5, healthTimeout: 2, allowedMisses: 2)
        let pid = victim == "qemu" ? sandbox.vm.process.pid : try #require(sandbox.virtiofsd).process.pid
        kill(pid, SIGKILL)
        let watch = Stopwatch()
        let error = #expect(throws: SandboxError.self) { _ = try sandbox.wait(containerID: "loop", timeout: 60) }
        #expect(watch.elapsedSeconds < 20)
        #expect(error?.code == .unavailable)
        #expect(error?.message.lowercased().contains(victim) == true, "\(error?.message ?? "")")
        sandbox.shutdown()
        expectNoSharingLeft("ctr-kill-\(victim)")
    }

    // MARK: - The command line

    static var cocoon: String? { BuiltProducts.path(of: "cocoon") }

    /// Runs `cocoon run` in VM mode on a bundle; returns (status, stdout, stderr).
    func cocoonRun(_ id: String, bundle: String, input: String?, signalAfter: Double? = nil) throws -> (Int32, String, String) {
        let p = Foundation.Process()
        p.executableURL = URL(fileURLWithPath: try #require(Self.cocoon))
        p.arguments = ["--root", env.configuration.runtime.root, "run", "--bundle", bundle, id]
        let out = Pipe(), err = Pipe(), inp = Pipe()
        p.standardOutput = out
        p.standardError = err
        p.standardInput = inp
        try p.run()
        if let input { inp.fileHandleForWriting.write(Data(input.utf8)) }
        try inp.fileHandleForWriting.close()
        if let signalAfter {
            // After the container said it is up, so that its trap is in place.
            let deadline = Deadline.after(seconds: 60)
            var seen = Data()
            while !String(decoding: seen, as: UTF8.self).contains("up") && !deadline.hasPassed {
                seen += out.fileHandleForReading.availableData
            }
            usleep(UInt32(signalAfter * 1e6))
            kill(p.processIdentifier, SIGTERM)
            p.waitUntilExit()
            return (p.terminationStatus, String(decoding: seen + out.fileHandleForReading.readDataToEndOfFile(), as: UTF8.self),
                    String(decoding: err.fileHandleForReading.readDataToEndOfFile(), as: UTF8.self))
        }
        let o = out.fileHandleForReading.readDataToEndOfFile()
        let e = err.fileHandleForReading.readDataToEndOfFile()
        p.waitUntilExit()
        return (p.terminationStatus, String(decoding: o, as: UTF8.self), String(decoding: e, as: UTF8.self))
    }

    @Test(.enabled(if: cocoon != nil, "the cocoon binary is not built next to the tests"))
    func cocoonRunInAVM() throws {
        let plain = try bundle(["sh", "-c", "echo out; echo err >&2; cat; exit 3"])
        let (status, out, err) = try cocoonRun("cli-run", bundle: plain, input: "piped\n")
        #expect(status == 3)
        #expect(out == "out\npiped\n")
        #expect(err.hasSuffix("err\n"), "stderr: \(err)")
        expectNoSharingLeft("cli-run")

        let tty = try bundle(["sh", "-c", "tty; read line; echo got:$line"], terminal: true)
        let (ttyStatus, ttyOut, _) = try cocoonRun("cli-tty", bundle: tty, input: "typed\n")
        #expect(ttyStatus == 0)
        #expect(ttyOut.contains("/dev/pts/0\r\n"))
        #expect(ttyOut.contains("got:typed\r\n"))
        expectNoSharingLeft("cli-tty")

        let trap = try bundle(["sh", "-c", "trap 'echo got-term; exit 9' TERM; echo up; while true; do sleep 0.1; done"])
        let (termStatus, termOut, _) = try cocoonRun("cli-term", bundle: trap, input: nil, signalAfter: 0.3)
        #expect(termStatus == 9, "SIGTERM reached the container's trap")
        #expect(termOut == "up\ngot-term\n")
        expectNoSharingLeft("cli-term")
    }

    @Test(.enabled(if: cocoon != nil, "the cocoon binary is not built next to the tests"))
    func cocoonExecIntoARunningVMContainer() throws {
        let loop = try bundle(["sh", "-c", "trap 'exit 0' TERM; echo up; while true; do sleep 0.1; done"])
        let run = Foundation.Process()
        run.executableURL = URL(fileURLWithPath: try #require(Self.cocoon))
        run.arguments = ["--root", env.configuration.runtime.root, "run", "--bundle", loop, "cli-exec"]
        let runOut = Pipe()
        run.standardOutput = runOut
        run.standardError = FileHandle.nullDevice
        run.standardInput = FileHandle.nullDevice
        try run.run()
        defer { if run.isRunning { run.terminate() } }
        var seen = Data()
        let deadline = Deadline.after(seconds: 60)
        while !String(decoding: seen, as: UTF8.self).contains("up") && !deadline.hasPassed {
            seen += runOut.fileHandleForReading.availableData
        }
        #expect(String(decoding: seen, as: UTF8.self) == "up\n")

        func exec(_ args: [String], input: String) throws -> (Int32, String, String) {
            let p = Foundation.Process()
            p.executableURL = URL(fileURLWithPath: try #require(Self.cocoon))
            p.arguments = ["--root", env.configuration.runtime.root, "exec"] + args
            let out = Pipe(), err = Pipe(), inp = Pipe()
            p.standardOutput = out
            p.standardError = err
            p.standardInput = inp
            try p.run()
            inp.fileHandleForWriting.write(Data(input.utf8))
            try inp.fileHandleForWriting.close()
            let o = out.fileHandleForReading.readDataToEndOfFile()
            let e = err.fileHandleForReading.readDataToEndOfFile()
            p.waitUntilExit()
            return (p.terminationStatus, String(decoding: o, as: UTF8.self), String(decoding: e, as: UTF8.self))
        }
        let (status, out, err) = try exec(["cli-exec", "sh", "-c", "echo got $(cat) in $(hostname); echo oops >&2; exit 6"], input: "words")
        #expect(status == 6)
        #expect(out == "got words in cocoon\n")
        #expect(err == "oops\n")
        let (ttyStatus, ttyOut, _) = try exec(["-t", "cli-exec", "tty"], input: "")
        #expect(ttyStatus == 0)
        #expect(ttyOut.hasPrefix("/dev/pts/"))
        let (missing, _, missingErr) = try exec(["no-such-container", "true"], input: "")
        #expect(missing == 1)
        #expect(missingErr.contains("no-such-container"))

        kill(run.processIdentifier, SIGTERM)
        run.waitUntilExit()
        #expect(run.terminationStatus == 0, "the container's trap exited 0")
        expectNoSharingLeft("cli-exec")
    }
}
