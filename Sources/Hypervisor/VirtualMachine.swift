import Foundation
import Logging
import Processes
import Sockets
import SystemCalls

/// One running QEMU, supervised: it dies with us (parent-death signal), its exit is observed
/// through a pidfd, and stop() always leaves no process behind.
public final class VirtualMachine: @unchecked Sendable {
    public let spec: VMSpec
    public let process: ChildProcess
    public let qemuLogPath: String
    private let logger: Logger
    private let lock = NSLockLite()
    private var qmp: QMPClient?  // guarded by lock

    /// Checks the inputs, then starts QEMU. `qemuLogPath` receives QEMU's own stdout/stderr.
    public static func launch(_ spec: VMSpec, qemuLogPath: String, logger: Logger) throws(HypervisorError) -> VirtualMachine {
        try checkFile(spec.qemuPath, what: "QEMU", hint: "install Debian's qemu-system-x86 (make deps), or set hypervisor.path", executable: true)
        try checkFile(spec.kernelPath, what: "guest kernel", hint: "build it with 'make kernel' or install it with 'make install', or set hypervisor.kernel")
        if let image = spec.rootImagePath {
            try checkFile(image, what: "guest image", hint: "build it with 'make image' or install it with 'make install', or set hypervisor.image (or hypervisor.boot_from = \"initrd\")")
        } else {
            try checkFile(spec.initrdPath, what: "guest initramfs", hint: "build it with 'make initramfs' or install it with 'make install', or set hypervisor.initrd")
        }
        let args = QEMUCommandLine.arguments(for: spec)
        logger.debug("starting QEMU", metadata: ["command": "\(([spec.qemuPath] + args).joined(separator: " "))"])
        let process: ChildProcess
        do throws(SystemError) {
            let devNull = try FileDescriptor.open("/dev/null", O_RDONLY)
            let log = try FileDescriptor.open(qemuLogPath, O_WRONLY | O_CREAT | O_TRUNC | O_APPEND, mode: 0o600)
            var options = ChildProcess.Options()
            options.fds = [devNull.rawValue, log.rawValue, log.rawValue] + spec.networkDevices.map(\.tapDescriptor)
            options.environment = ["PATH": "/usr/sbin:/usr/bin:/sbin:/bin"]
            process = try ChildProcess.spawn(spec.qemuPath, args, options: options)
        } catch {
            throw HypervisorError(.internal, "cannot start QEMU \(spec.qemuPath): \(error.message)")
        }
        logger.debug("QEMU started", metadata: ["pid": "\(process.pid)"])
        return VirtualMachine(spec: spec, process: process, qemuLogPath: qemuLogPath, logger: logger)
    }

    private static func checkFile(_ path: String, what: String, hint: String, executable: Bool = false) throws(HypervisorError) {
        let ok = executable ? Files.isExecutable(path) : Files.exists(path)
        if !ok { throw HypervisorError(.notFound, "\(what) \(path) not found: \(hint)") }
    }

    private init(spec: VMSpec, process: ChildProcess, qemuLogPath: String, logger: Logger) {
        self.spec = spec
        self.process = process
        self.qemuLogPath = qemuLogPath
        self.logger = logger
    }

    /// The QMP connection, opened on first use.
    public func qmpClient(until deadline: Deadline) throws(HypervisorError) -> QMPClient {
        if let existing = lock.withLock({ qmp }) { return existing }
        let client = try QMPClient.connect(path: spec.qmpSocketPath, until: deadline)
        lock.withLock { qmp = client }
        return client
    }

    public var exited: Termination? { process.poll() }

    public func consoleTail(_ lines: Int = 15) -> [String] { Files.tailLines(spec.consoleLogPath, count: lines) }

    /// What QEMU itself printed (bad options, missing devices).
    public func qemuLogTail(_ lines: Int = 5) -> [String] { Files.tailLines(qemuLogPath, count: lines) }

    /// An error for a QEMU that exited when it should not have, quoting QEMU and the guest.
    public func unexpectedExitError(_ termination: Termination, while doing: String) -> HypervisorError {
        let qemuSays = qemuLogTail().joined(separator: "; ")
        var message = "QEMU \(termination) while \(doing)"
        if !qemuSays.isEmpty { message += ": \(qemuSays)" }
        return HypervisorError(.unavailable, message, consoleTail: consoleTail())
    }

    /// Waits for QEMU to exit by itself (after the guest rebooted).
    public func waitForExit(until deadline: Deadline) -> Termination? {
        (try? process.wait(until: deadline)) ?? nil
    }

    /// Ends QEMU for certain: QMP `quit`, then SIGKILL when that does not work within `grace`.
    @discardableResult
    public func stop(grace: Double = 3) -> Termination {
        if let t = exited { closeQMP(); return t }
        let deadline = Deadline.after(seconds: grace)
        if let client = try? qmpClient(until: .after(seconds: min(1, grace))) {
            _ = try? client.execute("quit", until: deadline)
        }
        closeQMP()
        if let t = waitForExit(until: deadline) { return t }
        logger.warning("QEMU did not quit in time; killing it", metadata: ["pid": "\(process.pid)"])
        return process.kill()
    }

    private func closeQMP() {
        lock.withLock {
            qmp?.close()
            qmp = nil
        }
    }
}
