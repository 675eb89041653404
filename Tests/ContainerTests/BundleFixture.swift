import Foundation
import Testing
import TestSupport

/// A busybox bundle made offline from Debian's busybox-static, and the `cocoon` binary to drive.
struct BundleFixture {
    static let repository = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent().path

    static var cocoon: String? { BuiltProducts.path(of: "cocoon") }

    /// The static init stage `make` builds: exec needs it (a dynamically linked one cannot run
    /// inside a container's root).
    static let staticInit = repository + "/build/bin/cocoon-init"

    /// A configuration naming it, passed to every cocoon the tests run, whatever the environment holds.
    static let configFile: String = {
        let path = NSTemporaryDirectory() + "cocoon-test-config-\(getpid()).toml"
        try? "[runtime]\ninit = \"\(staticInit)\"\n".write(toFile: path, atomically: true, encoding: .utf8)
        return path
    }()

    static var skipReason: String? {
        if geteuid() != 0 { return "container tests need root" }
        if cocoon == nil { return "the cocoon binary is not built next to the tests (swift build)" }
        if !FileManager.default.isExecutableFile(atPath: staticInit) { return "\(staticInit) is not built (make builds it)" }
        if !FileManager.default.isExecutableFile(atPath: "/bin/busybox") { return "busybox-static is not installed (make deps)" }
        return nil
    }

    /// A rootfs shared by all tests (read-only in the default spec), built once per test process.
    static let sharedRootfs: String = {
        let dir = NSTemporaryDirectory() + "cocoon-rootfs-\(getpid())"
        let p = Foundation.Process()
        p.executableURL = URL(fileURLWithPath: "/bin/bash")
        p.arguments = [repository + "/tests/fixtures/make-busybox-rootfs.sh", dir]
        try? p.run()
        p.waitUntilExit()
        return dir
    }()

    let directory: String
    let stateRoot: String

    /// A bundle whose config.json is `cocoon spec`'s default with `args` and any edits.
    init(args: [String], edit: (inout [String: Any]) -> Void = { _ in }) throws {
        directory = NSTemporaryDirectory() + "cocoon-bundle-\(UUID().uuidString)"
        stateRoot = "/run/cocoon-test-containers"
        try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true)
        try FileManager.default.createSymbolicLink(atPath: directory + "/rootfs", withDestinationPath: Self.sharedRootfs)
        let (status, _, err) = try Self.run(["--config", Self.configFile, "spec", "--bundle", directory])
        #expect(status == 0, "cocoon spec: \(err)")
        let data = try Data(contentsOf: URL(fileURLWithPath: directory + "/config.json"))
        var config = try JSONSerialization.jsonObject(with: data) as! [String: Any]
        var process = config["process"] as! [String: Any]
        process["args"] = args
        config["process"] = process
        edit(&config)
        try JSONSerialization.data(withJSONObject: config).write(to: URL(fileURLWithPath: directory + "/config.json"))
    }

    func remove() { try? FileManager.default.removeItem(atPath: directory) }

    /// Runs `cocoon --isolation process --root <state> ARGS` with a deadline.
    func cocoon(_ args: [String], stdin: String? = nil, timeout: Double = 30) throws -> (Int32, String, String) {
        try Self.run(["--config", Self.configFile, "--isolation", "process", "--root", stateRoot] + args, stdin: stdin, timeout: timeout)
    }

    static func run(_ args: [String], stdin: String? = nil, timeout: Double = 30) throws -> (Int32, String, String) {
        let p = Foundation.Process()
        p.executableURL = URL(fileURLWithPath: try #require(cocoon))
        p.arguments = args
        // Files, not pipes: nothing to drain concurrently, and a container that keeps a pipe open cannot hang us.
        let base = NSTemporaryDirectory() + "cocoon-cli-\(UUID().uuidString)"
        FileManager.default.createFile(atPath: base + ".out", contents: nil)
        FileManager.default.createFile(atPath: base + ".err", contents: nil)
        FileManager.default.createFile(atPath: base + ".in", contents: Data((stdin ?? "").utf8))
        defer { for s in [".out", ".err", ".in"] { try? FileManager.default.removeItem(atPath: base + s) } }
        p.standardOutput = FileHandle(forWritingAtPath: base + ".out")
        p.standardError = FileHandle(forWritingAtPath: base + ".err")
        p.standardInput = FileHandle(forReadingAtPath: base + ".in")
        try p.run()
        let deadline = Date().addingTimeInterval(timeout)
        while p.isRunning && Date() < deadline { usleep(5000) }
        if p.isRunning {
            kill(p.processIdentifier, SIGKILL)
            Issue.record("cocoon \(args.joined(separator: " ")) did not finish within \(timeout) s")
        }
        p.waitUntilExit()
        let out = (try? String(contentsOfFile: base + ".out", encoding: .utf8)) ?? ""
        let err = (try? String(contentsOfFile: base + ".err", encoding: .utf8)) ?? ""
        return (p.terminationStatus, out, err)
    }

    /// Alive and not a zombie (an orphan nobody reaped has still exited).
    static func isRunning(pid: Int32) -> Bool {
        guard let stat = try? String(contentsOfFile: "/proc/\(pid)/stat", encoding: .utf8),
              let close = stat.lastIndex(of: ")") else { return false }
        return !stat[stat.index(after: close)...].hasPrefix(" Z")
    }

    /// Container state directories left under the test state root.
    static func leftovers() -> [String] {
        ((try? FileManager.default.contentsOfDirectory(atPath: "/run/cocoon-test-containers")) ?? []).sorted()
    }
}
