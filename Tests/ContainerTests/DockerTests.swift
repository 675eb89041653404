import Foundation
import Testing
import TestSupport

/// Debian's dockerd 20.10 on private data-root, exec-root and socket, against the test's own
/// containerd, with cocoon registered as a runtime (process isolation through runtimeArgs).
final class PrivateDockerd: @unchecked Sendable {
    let containerd: PrivateContainerd
    let directory: String
    let socket: String
    let process: Foundation.Process
    let image = "busybox:cocoon"

    static var skipReason: String? {
        if let reason = PrivateContainerd.skipReason { return reason }
        for tool in ["/usr/sbin/dockerd", "/usr/bin/docker", "/usr/bin/script"] where !FileManager.default.isExecutableFile(atPath: tool) {
            return "\(tool) is not installed (make deps installs docker.io)"
        }
        return nil
    }

    /// `runtimeArgs`: how dockerd runs cocoon (process isolation unless told otherwise).
    init(runtimeArgs: [String] = ["--config", BundleFixture.configFile, "--isolation", "process"]) throws {
        containerd = try PrivateContainerd.forRuncShim()
        directory = containerd.directory + "/docker"
        socket = directory + "/docker.sock"
        try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true)
        let daemon: [String: Any] = [
            "runtimes": ["cocoon": ["path": try #require(BundleFixture.cocoon),
                                    "runtimeArgs": runtimeArgs]],
            "iptables": false, "bridge": "none", "ip-forward": false, "ip-masq": false,
            "data-root": directory + "/data", "exec-root": directory + "/exec", "pidfile": directory + "/docker.pid",
            "hosts": ["unix://" + socket], "containerd": containerd.socket, "storage-driver": "vfs",
        ]
        try JSONSerialization.data(withJSONObject: daemon).write(to: URL(fileURLWithPath: directory + "/daemon.json"))
        process = Foundation.Process()
        process.executableURL = URL(fileURLWithPath: "/usr/sbin/dockerd")
        process.arguments = ["--config-file", directory + "/daemon.json"]
        FileManager.default.createFile(atPath: directory + "/dockerd.log", contents: nil)
        process.standardOutput = FileHandle(forWritingAtPath: directory + "/dockerd.log")
        process.standardError = FileHandle(forWritingAtPath: directory + "/dockerd.log")
        try process.run()
        let deadline = Date().addingTimeInterval(30)
        while Date() < deadline, (try? docker(["version"]).0) != 0 { usleep(100_000) }
        guard try docker(["version"]).0 == 0 else { stop(); throw PrivateContainerd.Failure("dockerd did not come up: \(directory)/dockerd.log") }
        let (status, out) = try PrivateContainerd.shell(["-c", "tar -C \(BundleFixture.sharedRootfs) -c . | /usr/bin/docker -H unix://\(socket) import - \(image)"])
        guard status == 0 else { stop(); throw PrivateContainerd.Failure("docker import: \(out)") }
    }

    func docker(_ args: [String], stdin: String? = nil, timeout: Double = 60) throws -> (Int32, String) {
        let quoted = (["/usr/bin/docker", "-H", "unix://" + socket] + args).map { "'" + $0.replacingOccurrences(of: "'", with: "'\\''") + "'" }
        let input = stdin.map { "printf '%s' '" + $0.replacingOccurrences(of: "'", with: "'\\''") + "' | " } ?? ""
        return try PrivateContainerd.shell(["-c", input + quoted.joined(separator: " ") + (stdin == nil ? " </dev/null" : "")], timeout: timeout)
    }

    func stop() {
        _ = try? PrivateContainerd.shell(["-c", "/usr/bin/docker -H unix://\(socket) rm -f $(/usr/bin/docker -H unix://\(socket) ps -aq) 2>/dev/null"], timeout: 60)
        if process.isRunning {
            process.terminate()
            let deadline = Date().addingTimeInterval(20)
            while process.isRunning && Date() < deadline { usleep(50000) }
            if process.isRunning { kill(process.processIdentifier, SIGKILL) }
        }
        process.waitUntilExit()
        containerd.stop()
    }
}

@Suite(.serialized, .enabled(if: PrivateDockerd.skipReason == nil, Comment(rawValue: PrivateDockerd.skipReason ?? "")))
struct DockerTests {
    @Test func dockerRunsContainersWithCocoon() throws {
        let d = try PrivateDockerd()
        defer { d.stop() }
        let run = ["run", "--runtime=cocoon", "--network", "none"]

        var r = try d.docker(run + ["--rm", d.image, "sh", "-c", "echo hello from docker; exit 6"])
        #expect(r.0 == 6, "\(r.1)")
        #expect(r.1.contains("hello from docker"))

        r = try d.docker(run + ["--rm", "-i", d.image, "sh", "-c", "read x; echo got:$x"], stdin: "typed\n")
        #expect(r.1.contains("got:typed"), "\(r.1)")

        // -it needs a terminal on docker's side: script(1) provides one.
        let it = "/usr/bin/docker -H unix://\(d.socket) run --rm -it --runtime=cocoon --network none \(d.image) sh"
        r = try PrivateContainerd.shell(["-c", "(sleep 1; printf 'tty; echo it-$((6*7)); exit 4\\r') | script -qec '\(it)' /dev/null"])
        #expect(r.0 == 4, "\(r.1)")
        #expect(r.1.contains("it-42") && r.1.contains("/dev/pts/0"))

        // --memory is enforced: a 64 MiB allocation under 32 MiB is OOM-killed.
        r = try d.docker(run + ["--rm", "--memory", "32m", d.image, "dd", "if=/dev/zero", "of=/dev/null", "bs=64M", "count=1"])
        #expect(r.0 == 137, "\(r.1)")

        // A detached container: exec, logs, stop (SIGTERM), kill -s, restart, rm -f.
        r = try d.docker(run + ["-d", "--name", "dk", d.image, "sh", "-c", "trap 'echo bye; exit 0' TERM; echo started; while true; do sleep 0.1; done"])
        #expect(r.0 == 0, "\(r.1)")
        r = try d.docker(["exec", "dk", "sh", "-c", "echo exec-ok; exit 3"])
        #expect(r.0 == 3 && r.1.contains("exec-ok"), "\(r.1)")
        #expect(try d.docker(["stop", "-t", "10", "dk"]).0 == 0)
        #expect(try d.docker(["inspect", "-f", "{{.State.ExitCode}}", "dk"]).1.hasPrefix("0"))
        r = try d.docker(["logs", "dk"])
        #expect(r.1.contains("started") && r.1.contains("bye"), "\(r.1)")
        #expect(try d.docker(["start", "dk"]).0 == 0)
        #expect(try d.docker(["restart", "-t", "1", "dk"]).0 == 0)
        #expect(try d.docker(["inspect", "-f", "{{.State.Running}}", "dk"]).1.hasPrefix("true"), "survives a restart")
        #expect(try d.docker(["kill", "-s", "KILL", "dk"]).0 == 0)
        #expect(try d.docker(["inspect", "-f", "{{.State.ExitCode}}", "dk"]).1.hasPrefix("137"))
        #expect(try d.docker(["rm", "-f", "dk"]).0 == 0)

        // stop of a container that ignores SIGTERM: SIGKILL after the timeout.
        r = try d.docker(run + ["-d", "--name", "stubborn", d.image, "sh", "-c", "trap '' TERM; while true; do sleep 0.1; done"])
        let started = Date()
        #expect(try d.docker(["stop", "-t", "1", "stubborn"]).0 == 0)
        #expect(Date().timeIntervalSince(started) < 15)
        #expect(try d.docker(["inspect", "-f", "{{.State.ExitCode}}", "stubborn"]).1.hasPrefix("137"))
        #expect(try d.docker(["rm", "-f", "stubborn"]).0 == 0)

        #expect(d.containerd.leftoverShims().isEmpty, "\(d.containerd.leftoverShims())")
    }
}
