import Foundation
import Testing
import TestSupport

/// The test's own containerd, plus a wrapper that makes `ctr --runc-binary` run cocoon with
/// process isolation (`--runc-binary` takes a path, not arguments).
extension PrivateContainerd {
    static var skipReason: String? {
        if let reason = BundleFixture.skipReason { return reason }
        if let reason = missingTools { return reason }
        if !FileManager.default.isExecutableFile(atPath: "/usr/bin/containerd-shim-runc-v2") {
            return "/usr/bin/containerd-shim-runc-v2 is not installed (make deps installs containerd)"
        }
        return nil
    }

    static func forRuncShim() throws -> PrivateContainerd {
        try PrivateContainerd(repository: BundleFixture.repository)
    }

    var wrapper: String { directory + "/cocoon-process" }

    func writeWrapper() throws {
        try "#!/bin/sh\nexec \(try #require(BundleFixture.cocoon)) --config \(BundleFixture.configFile) --isolation process \"$@\"\n"
            .write(toFile: wrapper, atomically: true, encoding: .utf8)
        chmod(wrapper, 0o755)
    }
}

@Suite(.serialized, .enabled(if: PrivateContainerd.skipReason == nil, Comment(rawValue: PrivateContainerd.skipReason ?? "")))
struct ContainerdRuncShimTests {
    let image = "docker.io/library/busybox:cocoon"

    @Test func ctrRunThroughTheRuncShim() throws {
        let ctd = try PrivateContainerd.forRuncShim()
        defer { ctd.stop() }
        try ctd.writeWrapper()
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
