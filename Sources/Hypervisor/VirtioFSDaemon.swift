import Logging
import Processes
import SystemCalls
#if canImport(Glibc)
import Glibc
#endif

/// virtiofsd serving one sandbox's shared directory on a vhost-user socket. Started before QEMU,
/// which connects to the socket at startup; stopped after QEMU exits.
public final class VirtioFSDaemon: @unchecked Sendable {
    public let process: ChildProcess
    public let socketPath: String
    let logPath: String

    public static func start(binary: String, sharedDirectory: String, socketPath: String, logPath: String,
                             until deadline: Deadline, logger: Logger) throws(HypervisorError) -> VirtioFSDaemon {
        guard Files.isExecutable(binary) else {
            throw HypervisorError(.notFound, "virtiofsd \(binary) not found: install Debian's qemu-system-common (make deps), "
                + "set hypervisor.virtiofsd, or use hypervisor.shared_fs = \"9p\"")
        }
        let args = [
            "--socket-path=\(socketPath)",
            "-o", "source=\(sharedDirectory)",
            // The guest's page cache is trusted for metadata for a second; containers' writes go through.
            "-o", "cache=auto",
            "-o", "sandbox=namespace",
            "--thread-pool-size=4",
        ]
        let process: ChildProcess
        do throws(SystemError) {
            let devNull = try FileDescriptor.open("/dev/null", O_RDONLY)
            let log = try FileDescriptor.open(logPath, O_WRONLY | O_CREAT | O_TRUNC | O_APPEND, mode: 0o600)
            var options = ChildProcess.Options()
            options.fds = [devNull.rawValue, log.rawValue, log.rawValue]
            options.environment = ["PATH": "/usr/sbin:/usr/bin:/sbin:/bin"]
            process = try ChildProcess.spawn(binary, args, options: options)
        } catch {
            throw HypervisorError(.internal, "cannot start virtiofsd \(binary): \(error.message)")
        }
        let daemon = VirtioFSDaemon(process: process, socketPath: socketPath, logPath: logPath)
        // QEMU must not start before the socket listens.
        while !Files.exists(socketPath) {
            if let t = process.poll() {
                throw HypervisorError(.internal, "virtiofsd \(t) at start: \(Files.tailLines(logPath, count: 5).joined(separator: "; "))")
            }
            if deadline.hasPassed {
                daemon.stop()
                throw HypervisorError(.deadlineExceeded, "virtiofsd did not create \(socketPath) in time")
            }
            sleep(seconds: 0.005)
        }
        logger.debug("virtiofsd started", metadata: ["pid": "\(process.pid)", "source": "\(sharedDirectory)"])
        return daemon
    }

    private init(process: ChildProcess, socketPath: String, logPath: String) {
        self.process = process
        self.socketPath = socketPath
        self.logPath = logPath
    }

    public var exited: Termination? { process.poll() }

    public func logTail(_ lines: Int = 5) -> [String] { Files.tailLines(logPath, count: lines) }

    /// virtiofsd exits by itself when QEMU disconnects; this makes sure, and reaps it.
    @discardableResult
    public func stop(grace: Double = 1) -> Termination {
        if let t = (try? process.wait(until: .after(seconds: grace))) ?? nil { return t }
        return process.terminate(grace: grace)
    }
}
