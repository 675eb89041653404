import Foundation
import Testing

/// A private containerd (Debian's 1.6) driving cocoon through its runc shim: `ctr --runc-binary`.
final class PrivateContainerd: @unchecked Sendable {
    let directory: String
    let socket: String
    let wrapper: String
    let process: Foundation.Process

    static var skipReason: String? {
        if let reason = BundleFixture.skipReason { return reason }
        for tool in ["/usr/bin/containerd", "/usr/bin/ctr", "/usr/bin/containerd-shim-runc-v2", "/usr/bin/umoci"]
        where !FileManager.default.isExecutableFile(atPath: tool) {
            return "\(tool) is not installed (make deps installs containerd and umoci)"
        }
        return nil
    }

    init() throws {
        directory = "/tmp/cocoon-ctd-\(getpid())-\(UInt32.random(in: 0...UInt32.max))"
        socket = directory + "/containerd.sock"
        try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true)
        let config = """
            version = 2
            root = "\(directory)/root"
            state = "\(directory)/state"
            disabled_plugins = ["io.containerd.grpc.v1.cri"]
            [grpc]
              address = "\(socket)"
            [ttrpc]
              address = "\(socket).ttrpc"
            """
        try config.write(toFile: directory + "/config.toml", atomically: true, encoding: .utf8)
        // ctr --runc-binary takes a path, not arguments: a wrapper selects process isolation.
        wrapper = directory + "/cocoon-process"
        try "#!/bin/sh\nexec \(try #require(BundleFixture.cocoon)) --config \(BundleFixture.configFile) --isolation process \"$@\"\n"
            .write(toFile: wrapper, atomically: true, encoding: .utf8)
        chmod(wrapper, 0o755)
        process = Foundation.Process()
        process.executableURL = URL(fileURLWithPath: "/usr/bin/containerd")
        process.arguments = ["--config", directory + "/config.toml"]
        process.standardOutput = FileHandle(forWritingAtPath: "/dev/null")
        FileManager.default.createFile(atPath: directory + "/containerd.log", contents: nil)
        process.standardError = FileHandle(forWritingAtPath: directory + "/containerd.log")
        try process.run()
        let deadline = Date().addingTimeInterval(20)
        while !FileManager.default.fileExists(atPath: socket) && Date() < deadline { usleep(20000) }
        guard try ctr(["version"]).0 == 0 else {
            stop()
            throw CLIFailure("containerd did not come up; its log is \(directory)/containerd.log")
        }
        let image = directory + "/busybox.tar"
        let (status, out) = try Self.shell([BundleFixture.repository + "/tests/fixtures/make-busybox-image.sh", image])
        guard status == 0 else { stop(); throw CLIFailure("make-busybox-image: \(out)") }
        guard try ctr(["images", "import", image]).0 == 0 else { stop(); throw CLIFailure("ctr images import failed") }
    }

    struct CLIFailure: Error, CustomStringConvertible {
        let description: String
        init(_ d: String) { description = d }
    }

    static func shell(_ args: [String], timeout: Double = 60) throws -> (Int32, String) {
        let p = Foundation.Process()
        p.executableURL = URL(fileURLWithPath: "/bin/bash")
        p.arguments = args
        let out = FileManager.default.temporaryDirectory.appendingPathComponent(UUID().uuidString).path
        FileManager.default.createFile(atPath: out, contents: nil)
        defer { try? FileManager.default.removeItem(atPath: out) }
        p.standardOutput = FileHandle(forWritingAtPath: out)
        p.standardError = FileHandle(forWritingAtPath: out)
        try p.run()
        let deadline = Date().addingTimeInterval(timeout)
        while p.isRunning && Date() < deadline { usleep(10000) }
        if p.isRunning { kill(p.processIdentifier, SIGKILL) }
        p.waitUntilExit()
        return (p.terminationStatus, (try? String(contentsOfFile: out, encoding: .utf8)) ?? "")
    }

    /// `ctr -a <ours> ARGS` with a deadline: (status, stdout+stderr).
    func ctr(_ args: [String], timeout: Double = 60) throws -> (Int32, String) {
        let quoted = (["/usr/bin/ctr", "-a", socket] + args).map { "'" + $0.replacingOccurrences(of: "'", with: "'\\''") + "'" }
        return try Self.shell(["-c", quoted.joined(separator: " ") + " </dev/null"], timeout: timeout)
    }

    /// Processes still running that belong to this containerd (its shims).
    func leftoverShims() -> [String] {
        ((try? FileManager.default.contentsOfDirectory(atPath: "/proc")) ?? []).compactMap { pid -> String? in
            guard Int32(pid) != nil, let data = FileManager.default.contents(atPath: "/proc/\(pid)/cmdline") else { return nil }
            let cmdline = String(decoding: data.map { $0 == 0 ? 0x20 : $0 }, as: UTF8.self)
            return cmdline.contains("containerd-shim") && cmdline.contains(socket) ? cmdline : nil
        }
    }

    func stop() {
        if process.isRunning {
            process.terminate()
            let deadline = Date().addingTimeInterval(10)
            while process.isRunning && Date() < deadline { usleep(20000) }
            if process.isRunning { kill(process.processIdentifier, SIGKILL) }
        }
        process.waitUntilExit()
        // Unmount what containerd's snapshotter left mounted under our root, then remove it all.
        _ = try? Self.shell(["-c", "grep -o ' \(directory)[^ ]*' /proc/self/mounts | sort -r | xargs -r -n1 umount -l"])
        try? FileManager.default.removeItem(atPath: directory)
    }
}

@Suite(.serialized, .enabled(if: PrivateContainerd.skipReason == nil, Comment(rawValue: PrivateContainerd.skipReason ?? "")))
struct ContainerdRuncShimTests {
    let image = "docker.io/library/busybox:cocoon"

    @Test func ctrRunThroughTheRuncShim() throws {
        let ctd = try PrivateContainerd()
        defer { ctd.stop() }
        let runtime = ["--runc-binary", ctd.wrapper]

        // Output and exit status.
        var r = try ctd.ctr(["run", "--rm"] + runtime + [image, "ctr-once", "sh", "-c", "echo hello from cocoon; exit 5"])
        #expect(r.0 == 5, "\(r.1)")
        #expect(r.1.contains("hello from cocoon"))

        // A terminal: ctr -t insists on a real one, so it runs under script(1); the shim passes the pty
        // through cocoon's console socket.
        let ctrTTY = "/usr/bin/ctr -a \(ctd.socket) run --rm -t --runc-binary \(ctd.wrapper) \(image) ctr-tty sh"
        r = try PrivateContainerd.shell(["-c", "(sleep 1; printf 'tty; echo in-tty-$((6*7)); exit 9\\r') | script -qec '\(ctrTTY)' /dev/null"])
        #expect(r.0 == 9, "\(r.1)")
        #expect(r.1.contains("/dev/pts/0"))
        #expect(r.1.contains("in-tty-42"))

        // A detached task: ps, pause/resume, metrics, kill with a signal, its exit status, removal.
        r = try ctd.ctr(["run", "-d"] + runtime + [image, "ctr-task", "sh", "-c", "trap 'exit 7' TERM; while true; do sleep 0.1; done"])
        #expect(r.0 == 0, "\(r.1)")
        r = try ctd.ctr(["task", "ps", "ctr-task"])
        #expect(r.0 == 0, "\(r.1)")
        #expect(r.1.split(separator: "\n").count >= 2, "ps lists the container's processes: \(r.1)")
        r = try ctd.ctr(["task", "exec", "--exec-id", "e1", "ctr-task", "sh", "-c", "echo exec-in-$(hostname); exit 3"])
        #expect(r.0 == 3, "\(r.1)")
        #expect(r.1.contains("exec-in-"))
        #expect(try ctd.ctr(["task", "pause", "ctr-task"]).0 == 0)
        #expect(try ctd.ctr(["task", "ls"]).1.contains("PAUSED"))
        #expect(try ctd.ctr(["task", "resume", "ctr-task"]).0 == 0)
        #expect(try ctd.ctr(["task", "ls"]).1.contains("RUNNING"))
        r = try ctd.ctr(["task", "metrics", "ctr-task"])
        #expect(r.0 == 0 && r.1.contains("memory.usage_in_bytes"), "\(r.1)")
        #expect(try ctd.ctr(["task", "kill", "-s", "TERM", "ctr-task"]).0 == 0)
        let deadline = Date().addingTimeInterval(15)
        while Date() < deadline, !(try ctd.ctr(["task", "ls"]).1.contains("STOPPED")) { usleep(50000) }
        #expect(try ctd.ctr(["task", "ls"]).1.contains("STOPPED"))
        r = try ctd.ctr(["task", "rm", "ctr-task"])
        #expect(r.0 == 0, "\(r.1)")
        #expect(try ctd.ctr(["containers", "rm", "ctr-task"]).0 == 0)

        // Nothing of ours is left: no shim, no container state under containerd's runc root.
        let shimDeadline = Date().addingTimeInterval(10)
        while !ctd.leftoverShims().isEmpty && Date() < shimDeadline { usleep(50000) }
        #expect(ctd.leftoverShims().isEmpty, "\(ctd.leftoverShims())")
        let runcRoot = "/run/containerd/runc/default"
        let left = ((try? FileManager.default.contentsOfDirectory(atPath: runcRoot)) ?? []).filter { $0.hasPrefix("ctr-") }
        #expect(left.isEmpty, "container state left in \(runcRoot): \(left)")
    }
}
