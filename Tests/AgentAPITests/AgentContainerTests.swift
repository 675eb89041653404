import AgentAPI
import Foundation
import Logging
import Mux
import OCI
import Sockets
import SystemCalls
import Testing

/// The agent's container API without a VM: the static cocoon-agent (the one that is /init in the
/// guest) runs as a host process on a unix socket and runs busybox containers on this host with
/// the container library. Only the transport differs from the guest.
@Suite(.serialized) struct AgentContainerTests {
    static let repository = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent().path
    /// Static: `exec` runs the agent binary inside the container's mount namespace.
    static let staticAgent = repository + "/build/guest/cocoon-agent"
    static let stateRoot = "/run/cocoon-test-agent"

    static var skipReason: String? {
        if geteuid() != 0 { return "agent container tests need root" }
        if !FileManager.default.isExecutableFile(atPath: staticAgent) { return "\(staticAgent) is not built (make agent builds it)" }
        if !FileManager.default.isExecutableFile(atPath: "/bin/busybox") { return "busybox-static is not installed (make deps)" }
        return nil
    }
    static var ready: Bool {
        if let reason = skipReason { print("AgentContainerTests skipped: \(reason)") }
        return skipReason == nil
    }

    static let rootfs: String = {
        let dir = NSTemporaryDirectory() + "cocoon-agent-rootfs-\(getpid())"
        let p = Foundation.Process()
        p.executableURL = URL(fileURLWithPath: "/bin/bash")
        p.arguments = [repository + "/tests/fixtures/make-busybox-rootfs.sh", dir]
        try? p.run()
        p.waitUntilExit()
        return dir
    }()

    let logger = Logger(label: "test") { _ in SwiftLogNoOpLogHandler() }

    /// A running agent process and a client connected to it.
    final class Agent {
        let process: Foundation.Process
        let client: AgentClient
        let socket: String

        init(logger: Logger) throws {
            socket = NSTemporaryDirectory() + "cocoon-agent-\(UUID().uuidString.prefix(8)).sock"
            process = Foundation.Process()
            process.executableURL = URL(fileURLWithPath: AgentContainerTests.staticAgent)
            process.arguments = ["--listen", "unix:\(socket)", "--log-level", "error", "--state-root", AgentContainerTests.stateRoot]
            try process.run()
            let fd = try StreamSocket.connectUnix(path: socket, until: .after(seconds: 10))
            client = try AgentClient(stream: DescriptorStream(fd), logger: logger)
        }

        func stop() {
            try? client.shutdown(timeout: 10)
            client.close()
            let deadline = Deadline.after(seconds: 10)
            while process.isRunning && !deadline.hasPassed { usleep(10_000) }
            if process.isRunning { process.terminate() }
            unlink(socket)
        }
    }

    func spec(_ args: [String], terminal: Bool = false, edit: (inout Spec) -> Void = { _ in }) -> [UInt8] {
        var s = Spec.runcDefault()
        s.process?.args = args
        s.process?.terminal = terminal
        edit(&s)
        return s.encoded()
    }

    func create(_ agent: Agent, _ id: String, _ args: [String], stdin: Bool = false, terminal: Bool = false,
                edit: (inout Spec) -> Void = { _ in }) throws -> ProcessChannels {
        let io = try agent.client.openStdio(containerID: id, stdin: stdin, terminal: terminal)
        _ = try agent.client.createContainer(.with {
            $0.containerID = id
            $0.ociSpecJson = Data(spec(args, terminal: terminal, edit: edit))
            $0.rootfsPath = Self.rootfs
            $0.stdio = io.message
        }, timeout: 30)
        return io
    }

    /// Everything a channel carries until its EOF.
    func readAll(_ channel: MuxChannel?) throws -> String {
        guard let channel else { return "" }
        var out: [UInt8] = []
        let deadline = Deadline.after(seconds: 30)
        while true {
            let chunk = try channel.readBytes(upTo: 65536, until: deadline)
            if chunk.isEmpty { break }
            out += chunk
        }
        return String(decoding: out, as: UTF8.self)
    }

    func leftovers(_ id: String) -> [String] {
        ["\(Self.stateRoot)/containers/\(id)", "\(Self.stateRoot)/bundles/\(id)"].filter { FileManager.default.fileExists(atPath: $0) }
    }

    @Test(.enabled(if: ready)) func stdoutStderrStdinAndExitStatus() throws {
        let agent = try Agent(logger: logger)
        defer { agent.stop() }
        let id = "agent-io-\(getpid())"
        let io = try create(agent, id, ["sh", "-c", "echo out; echo err >&2; cat; exit 3"], stdin: true)
        try agent.client.startContainer(id, timeout: 30)
        try io.stdin!.writeBytes(Array("from stdin\n".utf8))
        io.stdin!.closeWrite()
        let status = try agent.client.wait(id, timeout: 30)
        #expect(status == 3)
        #expect(try readAll(io.stdout) == "out\nfrom stdin\n")
        #expect(try readAll(io.stderr) == "err\n")
        try agent.client.removeContainer(id, force: false, timeout: 30)
        #expect(leftovers(id).isEmpty)
        // Waiting on a removed container is an error, not a hang.
        let gone = #expect(throws: AgentAPIError.self) { _ = try agent.client.wait(id, timeout: 5) }
        #expect(gone?.code == .notFound)
    }

    /// CRI puts a pod's containers into the sandbox container's IPC namespace by path,
    /// /proc/<its pid>/ns/ipc; the agent allows exactly that, and never a namespace of its own.
    @Test(.enabled(if: ready)) func aPodContainerJoinsTheSandboxContainersIPCNamespace() throws {
        let agent = try Agent(logger: logger)
        defer { agent.stop() }
        let sandbox = "agent-pause-\(getpid())"
        let app = "agent-app-\(getpid())"
        let sandboxIO = try create(agent, sandbox, ["sh", "-c", "readlink /proc/self/ns/ipc; exec sleep 1000"])
        try agent.client.startContainer(sandbox, timeout: 30)
        let pid = try #require(try agent.client.listProcesses(sandbox, timeout: 10).first)
        func joining(_ path: String) -> (inout Spec) -> Void {
            { spec in
                let others = (spec.linux?.namespaces ?? []).filter { $0.type != .ipc }
                spec.linux?.namespaces = others + [.init(type: .ipc, path: path)]
            }
        }
        let appIO = try create(agent, app, ["readlink", "/proc/self/ns/ipc"], edit: joining("/proc/\(pid)/ns/ipc"))
        try agent.client.startContainer(app, timeout: 30)
        #expect(try agent.client.wait(app, timeout: 30) == 0)
        let appNamespace = try readAll(appIO.stdout)
        try agent.client.signal(sandbox, signal: SIGKILL, timeout: 10)
        _ = try agent.client.wait(sandbox, timeout: 30)
        let sandboxNamespace = try readAll(sandboxIO.stdout)
        #expect(!appNamespace.isEmpty && appNamespace == sandboxNamespace)
        for id in [app, sandbox] { try agent.client.removeContainer(id, force: true, timeout: 30) }

        // The agent's own namespaces, and paths that are not a container's, are refused by name.
        for path in ["/proc/1/ns/ipc", "/proc/\(getpid())/ns/ipc", "/proc/\(pid)/ns/ipc", "/run/netns/x"] {
            let refused = #expect(throws: AgentAPIError.self) {
                _ = try create(agent, "agent-join-\(getpid())", ["true"], edit: joining(path))
            }
            #expect(refused?.message.contains("linux.namespaces") == true, "\(path): \(refused?.message ?? "")")
        }
        #expect(leftovers(app).isEmpty && leftovers(sandbox).isEmpty)
    }

    /// A new network namespace gets its loopback up, as runc leaves it.
    @Test(.enabled(if: ready)) func aNewNetworkNamespaceHasLoopbackUp() throws {
        let agent = try Agent(logger: logger)
        defer { agent.stop() }
        let id = "agent-lo-\(getpid())"
        let io = try create(agent, id, ["ip", "-o", "link", "show", "lo"])
        try agent.client.startContainer(id, timeout: 30)
        #expect(try agent.client.wait(id, timeout: 30) == 0)
        let out = try readAll(io.stdout)
        #expect(out.contains("LOOPBACK,UP"), "\(out)")
        try agent.client.removeContainer(id, force: false, timeout: 30)
    }

    @Test(.enabled(if: ready)) func signalExecAndProcessList() throws {
        let agent = try Agent(logger: logger)
        defer { agent.stop() }
        let id = "agent-sig-\(getpid())"
        let io = try create(agent, id, ["sh", "-c", "trap 'echo term; exit 7' TERM; while true; do sleep 0.1; done"])
        // Removing a running container without force is refused.
        try agent.client.startContainer(id, timeout: 30)
        let refused = #expect(throws: AgentAPIError.self) { try agent.client.removeContainer(id, force: false, timeout: 10) }
        #expect(refused?.code == .failedPrecondition)

        let execIO = try agent.client.openStdio(containerID: id, execID: "e1", stdin: false, terminal: false)
        var process = Spec.runcDefault().process!
        process.args = ["sh", "-c", "echo exec-$((6*7)); exit 5"]
        _ = try agent.client.execProcess(.with {
            $0.containerID = id
            $0.execID = "e1"
            $0.processJson = Data(try JSONEncoder().encode(process))
            $0.stdio = execIO.message
        }, timeout: 30)
        #expect(try agent.client.wait(id, execID: "e1", timeout: 30) == 5)
        #expect(try readAll(execIO.stdout) == "exec-42\n")
        #expect(try agent.client.listProcesses(id, timeout: 10).count >= 1)

        try agent.client.signal(id, signal: SIGTERM, timeout: 10)
        #expect(try agent.client.wait(id, timeout: 30) == 7)
        #expect(try readAll(io.stdout) == "term\n")
        try agent.client.removeContainer(id, force: false, timeout: 30)
        #expect(leftovers(id).isEmpty)
    }

    @Test(.enabled(if: ready)) func terminalSession() throws {
        let agent = try Agent(logger: logger)
        defer { agent.stop() }
        let id = "agent-tty-\(getpid())"
        let io = try create(agent, id, ["sh", "-c", "tty; stty size; read line; echo got:$line"], stdin: true, terminal: true)
        #expect(io.stderr == nil)
        try agent.client.resizeTTY(id, rows: 33, columns: 101, timeout: 10)
        try agent.client.startContainer(id, timeout: 30)
        try io.stdin!.writeBytes(Array("hello\n".utf8))
        #expect(try agent.client.wait(id, timeout: 30) == 0)
        let out = try readAll(io.stdout).replacingOccurrences(of: "\r", with: "")
        #expect(out.contains("/dev/pts/"))
        #expect(out.contains("33 101"))
        #expect(out.contains("got:hello"))
        try agent.client.removeContainer(id, force: true, timeout: 30)
    }

    @Test(.enabled(if: ready)) func badRequestsNameTheField() throws {
        let agent = try Agent(logger: logger)
        defer { agent.stop() }
        func createError(_ body: (inout Cocoon_Agent_V1_CreateContainerRequest) -> Void) -> AgentAPIError? {
            var r = Cocoon_Agent_V1_CreateContainerRequest()
            r.containerID = "agent-bad-\(getpid())"
            r.ociSpecJson = Data(spec(["true"]))
            r.rootfsPath = Self.rootfs
            body(&r)
            return #expect(throws: AgentAPIError.self) { _ = try agent.client.createContainer(r, timeout: 30) }
        }
        let json = createError { $0.ociSpecJson = Data("{\"ociVersion\": 5}".utf8) }
        #expect(json?.code == .invalidArgument)
        #expect(json?.message.contains("ociVersion") == true)
        let id = createError { $0.containerID = "../escape" }
        #expect(id?.message.contains("container_id") == true)
        let rootfs = createError { $0.rootfsPath = "relative/rootfs" }
        #expect(rootfs?.message.contains("rootfs_path") == true)
        let missing = createError { $0.rootfsPath = "/nonexistent/rootfs" }
        #expect(missing?.code == .notFound)
        let channel = createError { $0.stdio = .with { $0.stdout = "stdout/never-opened" } }
        #expect(channel?.code == .failedPrecondition)
        #expect(channel?.message.contains("stdio.stdout") == true)
        let netns = createError {
            $0.ociSpecJson = Data(spec(["true"]) { $0.linux?.namespaces?.append(.init(type: .ipc, path: "/proc/1/ns/ipc")) })
        }
        #expect(netns?.message.contains("linux.namespaces") == true)
        let signal = #expect(throws: AgentAPIError.self) { try agent.client.signal("nope", signal: 99, timeout: 5) }
        #expect(signal?.code == .invalidArgument)
        let unknown = #expect(throws: AgentAPIError.self) { try agent.client.startContainer("nope", timeout: 5) }
        #expect(unknown?.code == .notFound)
        // The agent is still serving after all that.
        #expect(try agent.client.health(timeout: 10).pid == agent.process.processIdentifier)
        #expect(leftovers("agent-bad-\(getpid())").isEmpty)
    }
}
