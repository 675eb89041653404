import Foundation

/// A containerd of the test's own (Debian's 1.6): private config, root, state and sockets, started
/// with the environment the test gives it (so shims it starts see the test's PATH and config),
/// stopped by `stop`, which also unmounts and removes everything under its directory.
public final class PrivateContainerd: @unchecked Sendable {
    public let directory: String
    public let socket: String
    public let image = "docker.io/library/busybox:cocoon"
    let configPath: String
    let environment: [String: String]
    private var process: Foundation.Process?

    public struct Failure: Error, CustomStringConvertible {
        public let description: String
        public init(_ d: String) { description = d }
    }

    /// Why these tests cannot run here, or nil.
    public static var missingTools: String? {
        if geteuid() != 0 { return "containerd tests need root" }
        for tool in ["/usr/bin/containerd", "/usr/bin/ctr", "/usr/bin/umoci", "/bin/busybox"]
        where !FileManager.default.isExecutableFile(atPath: tool) {
            return "\(tool) is not installed (make deps installs containerd, umoci and busybox-static)"
        }
        return nil
    }

    /// Starts containerd and imports the offline busybox image (tests/fixtures/make-busybox-image.sh).
    /// The pause image a CRI-enabled containerd uses for pod sandboxes (busybox sleeping).
    public let pauseImage = "docker.io/library/busybox:cocoon-pause"

    /// With `criRuntimes` (handler name -> runtime_type), containerd's CRI plugin is enabled with
    /// those runtime handlers, no CNI plugins (pods use the host network) and the busybox pause
    /// image, and the images are imported into the "k8s.io" namespace as well.
    /// `cniConfig`: a CNI .conflist for the CRI plugin, run with Debian's plugins from /usr/lib/cni.
    public init(repository: String, environment: [String: String] = [:], criRuntimes: [String: String] = [:],
                cniConfig: String? = nil) throws {
        directory = "/tmp/cocoon-ctd-\(getpid())-\(UInt32.random(in: 0...UInt32.max))"
        socket = directory + "/containerd.sock"
        configPath = directory + "/config.toml"
        self.environment = environment
        try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true)
        let config = """
            version = 2
            root = "\(directory)/root"
            state = "\(directory)/state"
            \(criRuntimes.isEmpty ? "disabled_plugins = [\"io.containerd.grpc.v1.cri\"]" : "")
            [grpc]
              address = "\(socket)"
            [ttrpc]
              address = "\(socket).ttrpc"
            """ + (criRuntimes.isEmpty ? "" : """

            [plugins."io.containerd.grpc.v1.cri"]
              sandbox_image = "\(pauseImage)"
              [plugins."io.containerd.grpc.v1.cri".cni]
                bin_dir = "\(cniConfig == nil ? directory + "/cni/bin" : "/usr/lib/cni")"
                conf_dir = "\(directory)/cni/conf"
              [plugins."io.containerd.grpc.v1.cri".containerd]
                default_runtime_name = "\(criRuntimes.keys.sorted().first ?? "")"
            """ + criRuntimes.sorted { $0.key < $1.key }.map { name, type in """

                [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.\(name)]
                  runtime_type = "\(type)"
            """ }.joined())
        try config.write(toFile: configPath, atomically: true, encoding: .utf8)
        if let cniConfig {
            try FileManager.default.createDirectory(atPath: directory + "/cni/conf", withIntermediateDirectories: true)
            try cniConfig.write(toFile: directory + "/cni/conf/10-cocoon-test.conflist", atomically: true, encoding: .utf8)
        }
        FileManager.default.createFile(atPath: logPath, contents: nil)
        try start()
        let image = directory + "/busybox.tar"
        let (status, out) = try Self.shell([repository + "/tests/fixtures/make-busybox-image.sh", image])
        guard status == 0 else { stop(); throw Failure("make-busybox-image: \(out)") }
        guard try ctr(["images", "import", image]).0 == 0 else { stop(); throw Failure("ctr images import failed") }
        if !criRuntimes.isEmpty {
            let pause = directory + "/pause.tar"
            let (status, out) = try Self.shell([repository + "/tests/fixtures/make-busybox-image.sh", pause, pauseImage, "sleep", "86400"])
            guard status == 0 else { stop(); throw Failure("make-busybox-image: \(out)") }
            for tar in [image, pause] {
                let (status, out) = try ctr(["-n", "k8s.io", "images", "import", tar])
                guard status == 0 else { stop(); throw Failure("ctr -n k8s.io images import: \(out)") }
            }
        }
    }

    public var logPath: String { directory + "/containerd.log" }

    /// Starts (or restarts) the daemon and waits until it answers.
    public func start() throws {
        let p = Foundation.Process()
        p.executableURL = URL(fileURLWithPath: "/usr/bin/containerd")
        p.arguments = ["--config", configPath]
        p.environment = ProcessInfo.processInfo.environment.merging(environment) { _, new in new }
        p.standardOutput = FileHandle(forWritingAtPath: "/dev/null")
        let log = FileHandle(forWritingAtPath: logPath)
        log?.seekToEndOfFile()
        p.standardError = log
        try p.run()
        process = p
        let deadline = Date().addingTimeInterval(20)
        while Date() < deadline {
            if FileManager.default.fileExists(atPath: socket), try ctr(["version"], timeout: 5).0 == 0 { return }
            usleep(50000)
        }
        stop()
        throw Failure("containerd did not come up; its log is \(logPath)")
    }

    /// Stops the daemon only (its shims keep running), as a containerd restart does.
    public func stopDaemon() {
        guard let p = process else { return }
        if p.isRunning {
            p.terminate()
            let deadline = Date().addingTimeInterval(10)
            while p.isRunning && Date() < deadline { usleep(20000) }
            if p.isRunning { kill(p.processIdentifier, SIGKILL) }
        }
        p.waitUntilExit()
        process = nil
    }

    public static func shell(_ args: [String], timeout: Double = 60) throws -> (Int32, String) {
        let p = Foundation.Process()
        p.executableURL = URL(fileURLWithPath: "/bin/bash")
        p.arguments = args
        let out = FileManager.default.temporaryDirectory.appendingPathComponent(UUID().uuidString).path
        FileManager.default.createFile(atPath: out, contents: nil)
        defer { try? FileManager.default.removeItem(atPath: out) }
        // One handle for both: two would each write from offset 0 over the other's output.
        let handle = FileHandle(forWritingAtPath: out)
        p.standardOutput = handle
        p.standardError = handle
        try p.run()
        let deadline = Date().addingTimeInterval(timeout)
        while p.isRunning && Date() < deadline { usleep(10000) }
        if p.isRunning { kill(p.processIdentifier, SIGKILL) }
        p.waitUntilExit()
        return (p.terminationStatus, (try? String(contentsOfFile: out, encoding: .utf8)) ?? "")
    }

    public static func quote(_ args: [String]) -> String {
        args.map { "'" + $0.replacingOccurrences(of: "'", with: "'\\''") + "'" }.joined(separator: " ")
    }

    /// `ctr -a <ours> ARGS` with a deadline and stdin from /dev/null: (status, stdout+stderr).
    public func ctr(_ args: [String], timeout: Double = 60) throws -> (Int32, String) {
        try Self.shell(["-c", Self.quote(["/usr/bin/ctr", "-a", socket] + args) + " </dev/null"], timeout: timeout)
    }

    /// Command lines of running processes that mention `text` and contain `name`.
    public static func processes(named name: String, mentioning text: String) -> [String] {
        ((try? FileManager.default.contentsOfDirectory(atPath: "/proc")) ?? []).compactMap { pid -> String? in
            guard Int32(pid) != nil, Int32(pid) != getpid(),
                  let data = FileManager.default.contents(atPath: "/proc/\(pid)/cmdline") else { return nil }
            let cmdline = String(decoding: data.map { $0 == 0 ? 0x20 : $0 }, as: UTF8.self)
            return cmdline.contains(name) && cmdline.contains(text) ? cmdline : nil
        }
    }

    /// Shims of this containerd still running.
    public func leftoverShims() -> [String] { Self.processes(named: "containerd-shim", mentioning: socket) }

    public func stop() {
        stopDaemon()
        // Unmount what containerd's snapshotter left mounted under our root, then remove it all.
        _ = try? Self.shell(["-c", "grep -o ' \(directory)[^ ]*' /proc/self/mounts | sort -r | xargs -r -n1 umount -l"])
        try? FileManager.default.removeItem(atPath: directory)
    }
}
