import CSupport
import Config
import Foundation
import Logging
import OCI
import Sandbox
import SystemCalls

/// `cocoon run` with VM isolation: a fresh VM for the bundle, the container in it in the foreground
/// (stdio relayed, signals forwarded, the terminal in raw mode and kept the right size), the
/// container's exit status returned, and the VM gone afterwards on every path.
struct VMRun {
    let config: Configuration
    let logger: Logger
    let id: String
    let bundle: String
    let foreground: Foreground

    func run() throws -> Int32 {
        let spec: OCI.Spec
        do throws(OCIError) {
            spec = try OCI.Spec.load(bundle: URL(fileURLWithPath: bundle).standardizedFileURL.path)
        } catch {
            throw CLIError(error.message)
        }
        let terminal = spec.process?.terminal == true
        var options = Sandbox.BootOptions()
        options.shareFilesystem = true
        let size = VMSizing.size(for: spec.linux?.resources, config: config.hypervisor)
        options.memoryMiB = size.memoryMiB
        options.vcpus = size.vcpus
        let sandbox: Sandbox
        do throws(SandboxError) {
            sandbox = try Sandbox.boot(id: id, configuration: config, options: options, logger: logger)
        } catch {
            throw CLIError("cannot boot the VM for \(id): \(error.description)")
        }
        defer { sandbox.shutdown() }
        // A VM that dies or an agent that hangs ends the run with the reason instead of a hang.
        sandbox.startMonitor()
        let interactive = terminal && isatty(0) == 1
        if interactive { _ = cocoon_make_raw(0) }
        defer { if interactive { cocoon_restore_terminal() } }
        do throws(SandboxError) {
            try sandbox.createContainer(id: id, bundle: bundle, stdio: HostStdio(stdin: 0, stdout: 1, stderr: 2, terminal: terminal))
            if interactive { resize(sandbox) }
            try sandbox.startContainer(id)
        } catch {
            throw CLIError(error.description)
        }
        return try waitForwardingSignals(sandbox, interactive: interactive)
    }

    func resize(_ sandbox: Sandbox) {
        var rows: UInt32 = 0
        var cols: UInt32 = 0
        guard cocoon_get_winsize(0, &rows, &cols) == 0, rows > 0, cols > 0 else { return }
        try? sandbox.resizeTerminal(containerID: id, rows: rows, columns: cols)
    }

    /// The wait runs on its own thread; this one forwards signals until it reports.
    func waitForwardingSignals(_ sandbox: Sandbox, interactive: Bool) throws -> Int32 {
        var pipeFDs: [Int32] = [0, 0]
        guard pipe(&pipeFDs) == 0 else { throw CLIError("pipe: \(String(cString: strerror(errno)))") }
        defer { close(pipeFDs[0]); close(pipeFDs[1]) }
        let result = WaitResult()
        let notify = pipeFDs[1]
        let containerID = id
        try startDetachedThread {
            result.set(Result { () throws(SandboxError) -> Int32 in try sandbox.wait(containerID: containerID) })
            var one: UInt8 = 1
            _ = write(notify, &one, 1)
        }
        while true {
            let ready = try Poll.wait(for: [pipeFDs[0], foreground.signalFD], events: Int16(POLLIN), until: .after(seconds: 3600))
            if ready == 0 { break }
            guard ready == 1 else { continue }
            let sig = cocoon_signalfd_read(foreground.signalFD)
            if sig == SIGWINCH {
                if interactive { resize(sandbox) }
            } else if sig > 0 {
                do throws(SandboxError) {
                    try sandbox.signal(containerID: id, signal: sig)
                } catch {
                    logger.debug("forwarding signal \(sig): \(error.message)")
                }
            }
        }
        switch result.get() {
        case .success(let status): return status
        case .failure(let error): throw CLIError(error.description)
        case nil: throw CLIError("internal: the wait ended without a result")
        }
    }
}

final class WaitResult: @unchecked Sendable {
    private let lock = NSLock()
    private var value: Result<Int32, SandboxError>?
    func set(_ v: Result<Int32, SandboxError>) { lock.withLock { value = v } }
    func get() -> Result<Int32, SandboxError>? { lock.withLock { value } }
}
