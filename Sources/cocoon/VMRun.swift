import CSupport
import Config
import Foundation
import Logging
import OCI
import Sandbox
import SystemCalls
import AgentAPI
import SandboxDaemon
import Sockets

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
        options.networkNamespace = Sandbox.BootOptions.networkNamespace(of: spec)
        let sandbox: Sandbox
        // The run directory's sockets stay under the configured runtime.root whatever --root says.
        var config = config
        config.runtime.root = config.runtime.sandboxBase
        do throws(SandboxError) {
            sandbox = try Sandbox.boot(id: id, configuration: config, options: options, logger: logger)
        } catch {
            throw CLIError("cannot boot the VM for \(id): \(error.description)")
        }
        defer { sandbox.shutdown() }
        // A VM that dies or an agent that hangs ends the run with the reason instead of a hang.
        sandbox.startMonitor()
        // `cocoon exec` from other processes comes in through here.
        let bundlePath = URL(fileURLWithPath: bundle).standardizedFileURL.path
        try? bundlePath.write(toFile: sandbox.runDirectory + "/bundle", atomically: true, encoding: .utf8)
        do throws(SandboxError) { try sandbox.serveControlSocket() } catch {
            logger.warning("cocoon exec will not reach \(id): \(error.message)")
        }
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
        let containerID = id
        return try ForegroundWait(signalFD: foreground.signalFD, logger: logger).run(
            wait: { () throws(SandboxError) -> Int32 in try sandbox.wait(containerID: containerID) },
            signal: { sig throws(SandboxError) in try sandbox.signal(containerID: containerID, signal: sig) },
            resize: { if interactive { resize(sandbox) } })
    }

    func resize(_ sandbox: Sandbox) {
        var rows: UInt32 = 0
        var cols: UInt32 = 0
        guard cocoon_get_winsize(0, &rows, &cols) == 0, rows > 0, cols > 0 else { return }
        try? sandbox.resizeTerminal(containerID: id, rows: rows, columns: cols)
    }
}

/// The wait runs on its own thread; this one forwards signals until it reports.
struct ForegroundWait {
    let signalFD: Int32
    let logger: Logger

    func run(wait: @escaping @Sendable () throws(SandboxError) -> Int32, signal: (Int32) throws(SandboxError) -> Void,
             resize: () -> Void) throws -> Int32 {
        var pipeFDs: [Int32] = [0, 0]
        guard pipe(&pipeFDs) == 0 else { throw CLIError("pipe: \(String(cString: strerror(errno)))") }
        defer { close(pipeFDs[0]); close(pipeFDs[1]) }
        let result = WaitResult()
        let notify = pipeFDs[1]
        try startDetachedThread {
            result.set(Result { () throws(SandboxError) -> Int32 in try wait() })
            var one: UInt8 = 1
            _ = write(notify, &one, 1)
        }
        while true {
            let ready = try Poll.wait(for: [pipeFDs[0], signalFD], events: Int16(POLLIN), until: .after(seconds: 3600))
            if ready == 0 { break }
            guard ready == 1 else { continue }
            let sig = cocoon_signalfd_read(signalFD)
            if sig == SIGWINCH {
                resize()
            } else if sig > 0 {
                do throws(SandboxError) { try signal(sig) } catch {
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

extension Exec {
    /// exec into a container that `cocoon run` holds in a VM: through that process's control socket,
    /// with the same stdio, terminal and signal handling as run.
    func execInVM(_ config: Configuration, _ logger: Logger) throws -> Int32 {
        // A container of `cocoon create` (a daemon holds its VM), or of a foreground `cocoon run`.
        let runtime = vmRuntime(config, global, logger)
        let record = try? runtime.store.load(id)
        if detach || pidFile != nil || consoleSocket != nil {
            guard let record else {
                throw CLIError("exec --detach, --pid-file and --console-socket need a container made by `cocoon create` or `run --detach`; \(id) is not one under \(config.runtime.root)")
            }
            let foreground = detach ? nil : try Foreground(wantsTerminal: false)
            let process = try makeProcess { try Self.template(bundle: record.bundle) }
            var options = VMRuntime.ExecOptions()
            options.pidFile = pidFile.map { URL(fileURLWithPath: $0).standardizedFileURL.path }
            options.detach = detach
            if let consoleSocket {
                guard process.terminal == true else { throw CLIError("--console-socket was given but the process has no terminal") }
                do throws(SystemError) {
                    options.consoleSocket = try StreamSocket.connectUnix(path: consoleSocket, until: .after(seconds: 10)).detach()
                } catch {
                    throw CLIError("--console-socket \(consoleSocket): \(error.message)")
                }
            }
            let child = try runtime.exec(id, process: process, options: options)
            guard let foreground else { return 0 }
            return try foreground.wait(for: child) { child.signal($0) }
        }
        let runDirectory = record?.runDirectory ?? "\(config.runtime.sandboxBase)/sandboxes/\(id)"
        let process = try makeProcess {
            if let record { return try Self.template(bundle: record.bundle) }
            guard let bundle = try? String(contentsOfFile: runDirectory + "/bundle", encoding: .utf8) else {
                throw CLIError("container \(id) does not exist (no \(runtime.store.path(id)) and no VM at \(runDirectory))")
            }
            do throws(OCIError) {
                return try OCI.Spec.load(bundle: bundle).process ?? OCI.Process()
            } catch {
                throw CLIError(error.message)
            }
        }
        let terminal = process.terminal == true
        let foreground = try Foreground(wantsTerminal: false)
        let agent: AgentClient
        do throws(SandboxError) {
            agent = try Sandbox.connectControl(socket: record?.controlSocketPath ?? Sandbox.controlSocketPath(runDirectory: runDirectory),
                                               logger: logger)
        } catch {
            throw CLIError("container \(id) is not running in a VM: \(error.message)")
        }
        defer { agent.close() }
        let execID = "exec-\(getpid())-\(UInt32.random(in: 0...UInt32.max))"
        let containerID = id
        let interactive = terminal && isatty(0) == 1
        if interactive { _ = cocoon_make_raw(0) }
        defer { if interactive { cocoon_restore_terminal() } }
        let relay: StdioRelay
        do throws(SandboxError) {
            let channels: ProcessChannels
            do throws(AgentAPIError) {
                channels = try agent.openStdio(containerID: containerID, execID: execID, stdin: true, terminal: terminal)
            } catch {
                throw SandboxError(error.code, error.message)
            }
            relay = try StdioRelay(channels: channels, host: HostStdio(stdin: 0, stdout: 1, stderr: 2, terminal: terminal))
            do throws(AgentAPIError) {
                _ = try agent.execProcess(.with {
                    $0.containerID = containerID
                    $0.execID = execID
                    $0.processJson = (try? JSONEncoder().encode(process)) ?? Data()
                    $0.stdio = channels.message
                }, timeout: Sandbox.requestTimeout)
            } catch {
                channels.reset(reason: "exec failed")
                throw SandboxError(error.code, error.message)
            }
        } catch {
            throw CLIError(error.description)
        }
        func resize() {
            var rows: UInt32 = 0, cols: UInt32 = 0
            guard interactive, cocoon_get_winsize(0, &rows, &cols) == 0 else { return }
            try? agent.resizeTTY(containerID, execID: execID, rows: rows, columns: cols, timeout: 10)
        }
        resize()
        return try ForegroundWait(signalFD: foreground.signalFD, logger: logger).run(
            wait: { () throws(SandboxError) -> Int32 in
                let status: Int32
                do throws(AgentAPIError) {
                    status = try agent.wait(containerID, execID: execID, timeout: nil)
                } catch {
                    throw SandboxError(error.code, "exec in \(containerID): \(error.message)")
                }
                _ = relay.waitForOutput(until: .after(seconds: 10))
                return status
            },
            signal: { sig throws(SandboxError) in
                do throws(AgentAPIError) { try agent.signal(containerID, execID: execID, signal: sig, timeout: 10) } catch {
                    throw SandboxError(error.code, error.message)
                }
            },
            resize: resize)
    }
}

extension Exec {
    static func template(bundle: String) throws -> OCI.Process {
        do throws(OCIError) {
            return try OCI.Spec.load(bundle: bundle).process ?? OCI.Process()
        } catch {
            throw CLIError(error.message)
        }
    }
}
