import AgentAPI
import CSupport
import Foundation
import Logging
import Sandbox
import StatusCodes
import SystemCalls

/// The host-side stand-in for one process in a VM (the container's own, or an exec), started by
/// `cocoon create` or `cocoon exec` and reparented to whoever reaps their orphans (containerd's runc
/// shim, conmon, docker). Its PID is the one `--pid-file` gets: it holds the stdio it was given,
/// relays it to the guest process, forwards every signal it receives, and exits with the guest
/// process's status. The container's stand-in lives in the container's network namespace, so a
/// prestart hook that opens /proc/<pid>/ns/net (docker's) configures the namespace the VM takes over.
public struct StandIn {
    public struct Parameters: Sendable {
        /// The sandbox daemon's control socket.
        public var controlSocket: String
        public var containerID: String
        /// nil: the container's own process, created from `bundle`; else an exec of `processFile`.
        public var execID: String?
        public var bundle: String?
        public var processFile: String?
        public var terminal: Bool
        /// The socket to the command that started this process: "go" in, "ok <pid>" or "error ..." out.
        public var syncDescriptor: Int32
        /// Where the terminal's master goes (runc's console socket), when `terminal`.
        public var consoleDescriptor: Int32?
        /// How long to wait for "go" (the VM boots meanwhile).
        public var startTimeout: Double

        public init(controlSocket: String, containerID: String, execID: String?, bundle: String?, processFile: String?,
                    terminal: Bool, syncDescriptor: Int32, consoleDescriptor: Int32?, startTimeout: Double) {
            self.controlSocket = controlSocket
            self.containerID = containerID
            self.execID = execID
            self.bundle = bundle
            self.processFile = processFile
            self.terminal = terminal
            self.syncDescriptor = syncDescriptor
            self.consoleDescriptor = consoleDescriptor
            self.startTimeout = startTimeout
        }
    }

    /// Every signal a process can catch, except SIGCHLD and SIGPIPE (which concern this process).
    static let forwardedSignals: [Int32] = Array(1...31).filter { ![SIGKILL, SIGSTOP, SIGCHLD, SIGPIPE].contains($0) } + Array(34...64)

    /// Blocks the forwarded signals into a signalfd. Call first thing, before threads are started.
    public static func blockSignals() -> Int32 {
        signal(SIGPIPE, SIG_IGN)
        return forwardedSignals.withUnsafeBufferPointer { cocoon_signalfd($0.baseAddress, Int32($0.count)) }
    }

    let parameters: Parameters
    let signalDescriptor: Int32
    let logger: Logger

    public init(parameters: Parameters, signalDescriptor: Int32, logger: Logger) {
        self.parameters = parameters
        self.signalDescriptor = signalDescriptor
        self.logger = logger
    }

    /// Runs until the guest process ends; returns the exit status for this process.
    public func run() -> Int32 {
        let sync = FileDescriptor(adopting: parameters.syncDescriptor)
        guard Self.readLine(sync, until: .after(seconds: parameters.startTimeout)) == "go" else {
            // The command that started us gave up (its error says why).
            return 1
        }
        let started: Started
        do throws(SandboxDaemonError) {
            started = try start()
        } catch {
            Self.writeLine(sync, "error \(error.code.rawValue) \(error.message)")
            sync.close()
            return 1
        }
        Self.writeLine(sync, "ok \(started.guestPID)")
        sync.close()
        return forwardUntilExit(started)
    }

    struct Started {
        let connection: DaemonConnection
        let relay: StdioRelay
        let guestPID: Int32
        let terminal: Int32?
    }

    private func start() throws(SandboxDaemonError) -> Started {
        let p = parameters
        let connection = try DaemonConnection(controlSocket: p.controlSocket, logger: logger)
        var ok = false
        defer { if !ok { connection.close() } }
        var host = HostStdio(stdin: 0, stdout: 1, stderr: 2, terminal: false)
        var terminal: Int32?
        if p.terminal {
            let slave = try openTerminal()
            terminal = slave
            host = HostStdio(stdin: slave, stdout: slave, stderr: slave, terminal: true)
        }
        let execID = p.execID ?? ""
        let channels: ProcessChannels
        do throws(AgentAPIError) {
            channels = try connection.agent.openStdio(containerID: p.containerID, execID: execID, stdin: true, terminal: p.terminal)
        } catch {
            throw SandboxDaemonError(error, context: "stdio of \(p.containerID)")
        }
        let relay: StdioRelay
        do throws(SandboxError) {
            relay = try StdioRelay(channels: channels, host: host)
        } catch {
            channels.reset(reason: "relay failed")
            throw SandboxDaemonError(error, context: "")
        }
        let pid: Int32
        if let bundle = p.bundle {
            do throws(SandboxDaemonError) {
                pid = try connection.createContainer(id: p.containerID, bundle: bundle, channels: channels.message)
            } catch {
                channels.reset(reason: "create failed")
                throw error
            }
        } else {
            guard let file = p.processFile, let json = FileManager.default.contents(atPath: file) else {
                channels.reset(reason: "exec failed")
                throw SandboxDaemonError(.invalidArgument, "the exec's process file \(p.processFile ?? "(none)") cannot be read")
            }
            unlink(file)
            do throws(AgentAPIError) {
                pid = try connection.agent.execProcess(.with {
                    $0.containerID = p.containerID
                    $0.execID = execID
                    $0.processJson = json
                    $0.stdio = channels.message
                }, timeout: Sandbox.requestTimeout)
            } catch {
                channels.reset(reason: "exec failed")
                throw SandboxDaemonError(error, context: "exec in \(p.containerID)")
            }
        }
        ok = true
        let started = Started(connection: connection, relay: relay, guestPID: pid, terminal: terminal)
        resize(started)
        return started
    }

    /// A host pty: its master goes to the console socket, its slave is relayed (raw: the guest's pty
    /// does the line discipline) and is this process's controlling terminal, so that a resize of the
    /// master reaches us as SIGWINCH.
    private func openTerminal() throws(SandboxDaemonError) -> Int32 {
        guard let console = parameters.consoleDescriptor else {
            throw SandboxDaemonError(.invalidArgument, "process.terminal is true: a console socket is required (--console-socket)")
        }
        var master: Int32 = -1
        var name = [CChar](repeating: 0, count: 128)
        guard cocoon_open_pty(&master, &name, name.count) == 0 else {
            throw SandboxDaemonError(.resourceExhausted, "open /dev/ptmx: \(String(cString: strerror(errno)))")
        }
        defer { close(master) }
        let slavePath = String(cString: name)
        let slave = open(slavePath, O_RDWR | O_NOCTTY | O_CLOEXEC)
        guard slave >= 0 else {
            throw SandboxDaemonError(.internal, "open \(slavePath): \(String(cString: strerror(errno)))")
        }
        _ = cocoon_make_raw(slave)
        if cocoon_set_ctty(slave) != 0 {
            logger.debug("\(slavePath) is not our controlling terminal (\(String(cString: strerror(errno)))): resizes are not forwarded")
        }
        guard cocoon_send_fd(console, master, "/dev/ptmx") == 0 else {
            close(slave)
            throw SandboxDaemonError(.unavailable, "send the terminal to the console socket: \(String(cString: strerror(errno)))")
        }
        close(console)
        return slave
    }

    private func resize(_ s: Started) {
        guard let fd = s.terminal else { return }
        var rows: UInt32 = 0
        var cols: UInt32 = 0
        guard cocoon_get_winsize(fd, &rows, &cols) == 0, rows > 0, cols > 0 else { return }
        try? s.connection.agent.resizeTTY(parameters.containerID, execID: parameters.execID ?? "", rows: rows, columns: cols, timeout: 10)
    }

    private func forwardUntilExit(_ s: Started) -> Int32 {
        let p = parameters
        let execID = p.execID ?? ""
        let result = ExitResult()
        let notify: (read: FileDescriptor, write: FileDescriptor)
        do throws(SystemError) {
            notify = try FileDescriptor.pipe()
        } catch {
            logger.error("stand-in for \(p.containerID): \(error.message)")
            return 255
        }
        let logger = self.logger
        do {
            try startDetachedThread {
                var status: Int32 = 255
                do throws(AgentAPIError) {
                    status = try s.connection.agent.wait(p.containerID, execID: execID, timeout: nil)
                } catch {
                    logger.error("lost the guest process of \(p.containerID) \(execID): \(error.message)")
                }
                if !s.relay.waitForOutput(until: .after(seconds: 10)) {
                    logger.warning("output of \(p.containerID) \(execID) did not finish within 10 s after the exit")
                }
                result.set(status)
                var one: UInt8 = 1
                _ = write(notify.write.rawValue, &one, 1)
            }
        } catch {
            logger.error("stand-in for \(p.containerID): cannot start the waiter: \(error)")
            return 255
        }
        while true {
            guard let ready = try? Poll.wait(for: [notify.read.rawValue, signalDescriptor], events: Int16(POLLIN), until: .after(seconds: 3600)) else { continue }
            if ready == 0 { break }
            let sig = cocoon_signalfd_read(signalDescriptor)
            if sig == SIGWINCH && s.terminal != nil {
                resize(s)
            } else if sig > 0 {
                do throws(AgentAPIError) {
                    try s.connection.agent.signal(p.containerID, execID: execID, signal: sig, timeout: 10)
                } catch {
                    logger.debug("forwarding signal \(sig) to \(p.containerID) \(execID): \(error.message)")
                }
            }
        }
        s.relay.stopInput()
        s.connection.close()
        return result.get() ?? 255
    }

    // MARK: The sync socket

    static func readLine(_ fd: FileDescriptor, until deadline: Deadline) -> String? {
        var bytes: [UInt8] = []
        while bytes.count < 64 * 1024 {
            guard let chunk = try? fd.read(upTo: 4096, until: deadline), !chunk.isEmpty else { break }
            bytes += chunk
            if let nl = bytes.firstIndex(of: 10) { return String(decoding: bytes[..<nl], as: UTF8.self) }
        }
        return bytes.isEmpty ? nil : String(decoding: bytes, as: UTF8.self)
    }

    /// False when the line did not go out whole (the reader is gone).
    @discardableResult
    static func writeLine(_ fd: FileDescriptor, _ line: String) -> Bool {
        let bytes = Array((line.replacingOccurrences(of: "\n", with: " ") + "\n").utf8)
        return bytes.withUnsafeBytes { write(fd.rawValue, $0.baseAddress, $0.count) } == bytes.count
    }
}

final class ExitResult: @unchecked Sendable {
    private let lock = NSLock()
    private var value: Int32?
    func set(_ v: Int32) { lock.withLock { value = v } }
    func get() -> Int32? { lock.withLock { value } }
}
