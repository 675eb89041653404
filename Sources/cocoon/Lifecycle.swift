import ArgumentParser
import CSupport
import Config
import Foundation
import LinuxContainer
import Logging
import OCI
import Processes
import SandboxDaemon
import Sockets
import SystemCalls

/// The runtime for containers on this host (process isolation); VM containers go through
/// `RuntimeChoice` and `VMRuntime`.
func containerRuntime(_ config: Configuration, _ global: GlobalOptions) throws -> ContainerRuntime {
    ContainerRuntime(root: config.runtime.root, initExecutable: try initBinary(config), systemdCgroup: global.systemdCgroup)
}

/// runtime.init, else cocoon-init next to this executable (a build tree) or in ../libexec/cocoon (an installation).
func initBinary(_ config: Configuration) throws -> String {
    if let configured = config.runtime.initBinary {
        guard FileManager.default.isExecutableFile(atPath: configured) else {
            throw CLIError("\(config.source ?? "configuration"): runtime.init: \(configured) is not an executable file (make builds build/bin/cocoon-init)")
        }
        return configured
    }
    let exe = (try? FileManager.default.destinationOfSymbolicLink(atPath: "/proc/self/exe")) ?? CommandLine.arguments[0]
    let dir = URL(fileURLWithPath: exe).deletingLastPathComponent()
    let candidates = [dir.appendingPathComponent("cocoon-init").path,
                      dir.deletingLastPathComponent().appendingPathComponent("libexec/cocoon/cocoon-init").path]
    guard let found = candidates.first(where: { FileManager.default.isExecutableFile(atPath: $0) }) else {
        throw CLIError("cocoon-init not found at \(candidates.joined(separator: " or ")): build it with `make` or install with `make install`")
    }
    return found
}

/// The create options shared by create and run.
struct CreateFlags: ParsableArguments {
    @Option(name: [.short, .long], help: "The bundle directory (holding config.json).")
    var bundle: String = "."

    @Option(help: "Write the container's PID here.")
    var pidFile: String?

    @Option(help: "A unix socket that receives the terminal's master fd (process.terminal).")
    var consoleSocket: String?

    @Flag(help: "Do not use pivot_root (for a rootfs on a ramdisk).")
    var noPivot = false

    @Flag(help: "Accepted for runc compatibility: no session keyring is created.")
    var noNewKeyring = false

    @Option(help: "Pass this many extra file descriptors (3, 4, ...) to the container.")
    var preserveFds: Int = 0

    func options() throws -> ContainerRuntime.CreateOptions {
        guard (0...1000).contains(preserveFds) else { throw CLIError("--preserve-fds must be between 0 and 1000") }
        var o = ContainerRuntime.CreateOptions()
        o.pidFile = pidFile.map { URL(fileURLWithPath: $0).standardizedFileURL.path }
        o.noPivot = noPivot
        o.preserveFDs = preserveFds
        if let consoleSocket {
            do throws(SystemError) {
                o.consoleSocket = try StreamSocket.connectUnix(path: consoleSocket, until: .after(seconds: 10)).detach()
            } catch {
                throw CLIError("--console-socket \(consoleSocket): \(error.message)")
            }
        }
        return o
    }

    func vmOptions() throws -> VMRuntime.CreateOptions {
        if preserveFds != 0 { throw CLIError("--preserve-fds cannot cross into a VM") }
        var o = VMRuntime.CreateOptions()
        o.pidFile = pidFile.map { URL(fileURLWithPath: $0).standardizedFileURL.path }
        if let consoleSocket {
            do throws(SystemError) {
                o.consoleSocket = try StreamSocket.connectUnix(path: consoleSocket, until: .after(seconds: 10)).detach()
            } catch {
                throw CLIError("--console-socket \(consoleSocket): \(error.message)")
            }
        }
        return o
    }
}

struct Create: ParsableCommand {
    static let configuration = CommandConfiguration(commandName: "create", abstract: "Create a container: set it up and leave it waiting for start.")
    @OptionGroup var global: GlobalOptions
    @OptionGroup var flags: CreateFlags
    @Argument(help: "The container id.") var id: String

    func run() throws {
        try runtimeCommand(global) { config, logger in
            switch try RuntimeChoice.forNew(config, global, logger) {
            case .process(let runtime):
                try vmRuntime(config, global, logger).store.checkNotReserved(id)
                _ = try runtime.create(id: id, bundle: flags.bundle, options: try flags.options())
            case .vm(let runtime):
                try runtime.create(id: id, bundle: flags.bundle, options: try flags.vmOptions())
            }
        }
    }
}

struct Start: ParsableCommand {
    static let configuration = CommandConfiguration(commandName: "start", abstract: "Start the program of a created container.")
    @OptionGroup var global: GlobalOptions
    @Argument(help: "The container id.") var id: String

    func run() throws {
        try runtimeCommand(global) { config, logger in
            switch try RuntimeChoice.forExisting(id, config, global, logger) {
            case .process(let runtime): try runtime.start(id)
            case .vm(let runtime): try runtime.start(id)
            }
        }
    }
}

struct State: ParsableCommand {
    static let configuration = CommandConfiguration(commandName: "state", abstract: "Print a container's state as JSON.")
    @OptionGroup var global: GlobalOptions
    @Argument(help: "The container id.") var id: String

    func run() throws {
        try runtimeCommand(global) { config, logger in
            let state: OCI.State
            switch try RuntimeChoice.forExisting(id, config, global, logger) {
            case .process(let runtime): state = try runtime.state(id)
            case .vm(let runtime): state = try runtime.state(id)
            }
            let encoder = JSONEncoder()
            encoder.outputFormatting = [.prettyPrinted, .sortedKeys, .withoutEscapingSlashes]
            print(String(decoding: try encoder.encode(state), as: UTF8.self))
        }
    }
}

struct Kill: ParsableCommand {
    static let configuration = CommandConfiguration(commandName: "kill", abstract: "Send a signal (default SIGTERM) to a container's init process.")
    @OptionGroup var global: GlobalOptions
    @Flag(help: "Signal every process of the container.") var all = false
    @Argument(help: "The container id.") var id: String
    @Argument(help: "Signal name or number (TERM, SIGKILL, 9).") var signal: String = "SIGTERM"

    func run() throws {
        try runtimeCommand(global) { config, logger in
            guard let sig = Signals.parse(signal) else {
                throw CLIError("invalid signal '\(signal)': use a name such as TERM or SIGKILL, or a number from 1 to 64")
            }
            switch try RuntimeChoice.forExisting(id, config, global, logger) {
            case .process(let runtime): try runtime.kill(id, signal: sig, all: all)
            case .vm(let runtime): try runtime.kill(id, signal: sig, all: all)
            }
        }
    }
}

struct Delete: ParsableCommand {
    static let configuration = CommandConfiguration(commandName: "delete", abstract: "Delete a stopped container (--force: also a running one).")
    @OptionGroup var global: GlobalOptions
    @Flag(name: [.short, .long], help: "Kill the container first if it runs.") var force = false
    @Argument(help: "The container id.") var id: String

    func run() throws {
        try runtimeCommand(global) { config, logger in
            switch try RuntimeChoice.forExisting(id, config, global, logger) {
            case .process(let runtime): try runtime.delete(id, force: force)
            case .vm(let runtime): try runtime.delete(id, force: force)
            }
        }
    }
}

struct Run: ParsableCommand {
    static let configuration = CommandConfiguration(commandName: "run",
        abstract: "Create and start a container; without --detach wait for it and exit with its status.")
    @OptionGroup var global: GlobalOptions
    @OptionGroup var flags: CreateFlags
    @Flag(name: [.short, .long], help: "Return once the container started.") var detach = false
    @Flag(help: "Keep the container's state after it exits.") var keep = false
    @Argument(help: "The container id.") var id: String

    func run() throws {
        var status: Int32 = 0
        try runtimeCommand(global) { config, logger in
            if config.runtime.isolation == .vm {
                status = try runInVM(config, logger)
                return
            }
            try vmRuntime(config, global, logger).store.checkNotReserved(id)
            let runtime = try containerRuntime(config, global)
            // Read once: whether to relay a terminal, and what create runs (a bad file is reported by create).
            let spec = try? OCI.Spec.load(bundle: ContainerRuntime.absolutePath(flags.bundle))
            let foreground = try Foreground(wantsTerminal: spec?.process?.terminal == true && !detach)
            var options = try flags.options()
            if options.consoleSocket == nil { options.consoleSocket = foreground.consoleSocket }
            let created = try runtime.create(id: id, bundle: flags.bundle, loaded: spec, options: options)
            foreground.created()
            do {
                try runtime.start(id)
            } catch {
                try? runtime.delete(id, force: true)
                throw error
            }
            if detach { return }
            status = try foreground.wait(for: created.process) { try? runtime.kill(id, signal: $0) }
            if !keep { try runtime.delete(id, force: true) }
        }
        if status != 0 { throw ExitCode(status) }
    }
}

extension Run {
    func runInVM(_ config: Configuration, _ logger: Logger) throws -> Int32 {
        if flags.preserveFds != 0 { throw CLIError("--preserve-fds cannot cross into a VM") }
        // Host hooks need what create gives them: a stand-in's PID in the container's network namespace.
        let spec = try? OCI.Spec.load(bundle: URL(fileURLWithPath: flags.bundle).standardizedFileURL.path)
        let hostHooks = spec?.hooks.map { h in
            [h.prestart, h.createRuntime, h.poststart, h.poststop].contains { $0?.isEmpty == false }
        } ?? false
        let terminal = spec?.process?.terminal == true
        if detach || flags.pidFile != nil || flags.consoleSocket != nil || hostHooks {
            // What the caller tracks by PID, or leaves running, or hooks need: the daemon and a stand-in, as
            // create does. In the foreground without a console socket, a terminal is relayed from here.
            // Signals are blocked before the first thread (the daemon connection's) starts.
            let foreground = detach ? nil : try Foreground(wantsTerminal: terminal && flags.consoleSocket == nil)
            let runtime = vmRuntime(config, global, logger)
            var options = try flags.vmOptions()
            if options.consoleSocket == nil { options.consoleSocket = foreground?.consoleSocket }
            try runtime.create(id: id, bundle: flags.bundle, options: options)
            foreground?.created()
            do {
                try runtime.start(id)
            } catch {
                try? runtime.delete(id, force: true)
                throw error
            }
            guard let foreground else { return 0 }
            let record = try runtime.store.load(id)
            let status = try foreground.waitForChild(pid: record.standInPID) { try? runtime.kill(id, signal: $0, all: false) }
            if !keep { try runtime.delete(id, force: true) }
            return status
        }
        let foreground = try Foreground(wantsTerminal: false)
        return try VMRun(config: config, logger: logger, id: id, bundle: flags.bundle, foreground: foreground).run()
    }
}

struct List: ParsableCommand {
    static let configuration = CommandConfiguration(commandName: "list", abstract: "List containers.")
    @OptionGroup var global: GlobalOptions
    @Option(name: [.short, .long], help: "table or json.") var format: String = "table"
    @Flag(name: [.short, .long], help: "Only ids.") var quiet = false

    func run() throws {
        try runtimeCommand(global) { config, logger in
            guard ["table", "json"].contains(format) else { throw CLIError("--format must be table or json, not '\(format)'") }
            let vm = vmRuntime(config, global, logger)
            var states = vm.store.list().compactMap { try? vm.state($0) }
            if let runtime = try? ContainerRuntime(root: config.runtime.root, initExecutable: initBinary(config)) {
                states += runtime.store.list().compactMap { try? runtime.state($0) }
            }
            states.sort { $0.id < $1.id }
            if quiet {
                states.forEach { print($0.id) }
            } else if format == "json" {
                let encoder = JSONEncoder()
                encoder.outputFormatting = [.sortedKeys, .withoutEscapingSlashes]
                print(String(decoding: try encoder.encode(states), as: UTF8.self))
            } else {
                print("ID\tPID\tSTATUS\tBUNDLE\tCREATED\tOWNER")
                for s in states {
                    print("\(s.id)\t\(s.status == .stopped ? 0 : s.pid)\t\(s.status.rawValue)\t\(s.bundle)\t\(s.created)\t\(s.owner)")
                }
            }
        }
    }
}

/// What a foreground `run` or `exec` does while its process lives: forward signals, relay a terminal
/// when there is no console socket, and return the exit status.
struct Foreground {
    let signalFD: Int32
    /// Our end of the socket pair whose other end is the process's console socket.
    let relayEnd: Int32?
    let consoleSocket: Int32?

    /// Blocks the forwarded signals into a signalfd (before any thread exists) and, for a terminal,
    /// makes the socket pair that receives the pty master.
    init(wantsTerminal: Bool) throws {
        let forwarded: [Int32] = [SIGINT, SIGTERM, SIGHUP, SIGQUIT, SIGUSR1, SIGUSR2, SIGWINCH]
        signalFD = forwarded.withUnsafeBufferPointer { cocoon_signalfd($0.baseAddress, Int32($0.count)) }
        guard wantsTerminal else {
            relayEnd = nil
            consoleSocket = nil
            return
        }
        var pair: [Int32] = [0, 0]
        guard socketpair(AF_UNIX, Int32(SOCK_STREAM.rawValue), 0, &pair) == 0 else {
            throw CLIError("socketpair for the terminal: \(String(cString: strerror(errno)))")
        }
        _ = cocoon_set_cloexec(pair[0])
        _ = cocoon_set_cloexec(pair[1])
        relayEnd = pair[0]
        consoleSocket = pair[1]
    }

    /// The process has its end of the console socket: ours must not keep it open.
    func created() {
        if relayEnd != nil, let consoleSocket { close(consoleSocket) }
    }

    /// For a child this process started without keeping its ChildProcess (a stand-in).
    func waitForChild(pid: Int32, forward: (Int32) -> Void) throws -> Int32 {
        let pidfd = cocoon_pidfd_open(pid)
        guard pidfd >= 0 else { throw CLIError("process \(pid) is gone: \(String(cString: strerror(errno)))") }
        defer { close(pidfd) }
        if let relayEnd {
            // The stand-in sent its terminal's master here at create.
            let relay = try TerminalRelay.receive(on: relayEnd, until: .after(seconds: 10))
            close(relayEnd)
            return try relay.run(exitFD: pidfd, signalFD: signalFD, onSignal: forward, exited: {
                var status: Int32 = 0
                guard waitpid(pid, &status, WNOHANG) == pid else { return nil }
                return Termination(waitStatus: status).exitStatus
            })
        }
        while true {
            let ready = try Poll.wait(for: [pidfd, signalFD], events: Int16(POLLIN), until: .after(seconds: 3600))
            if ready == 1 {
                let sig = cocoon_signalfd_read(signalFD)
                if sig > 0 { forward(sig) }
                continue
            }
            guard ready == 0 else { continue }
            var status: Int32 = 0
            guard waitpid(pid, &status, 0) == pid else { throw CLIError("wait for \(pid): \(String(cString: strerror(errno)))") }
            return Termination(waitStatus: status).exitStatus
        }
    }

    func wait(for process: ChildProcess, forward: (Int32) -> Void) throws -> Int32 {
        if let relayEnd {
            let relay = try TerminalRelay.receive(on: relayEnd, until: .after(seconds: 10))
            close(relayEnd)
            return try relay.run(exitFD: process.exitDescriptor, signalFD: signalFD, onSignal: forward,
                                 exited: { process.poll()?.exitStatus })
        }
        while true {
            // The process runs as long as it runs; the poll wakes for its exit or a signal.
            let ready = try Poll.wait(for: [process.exitDescriptor, signalFD], events: Int16(POLLIN), until: .after(seconds: 3600))
            if ready == 1 {
                let sig = cocoon_signalfd_read(signalFD)
                if sig > 0 { forward(sig) }
                continue
            }
            if let t = process.poll() { return t.exitStatus }
        }
    }
}

struct Exec: ParsableCommand {
    static let configuration = CommandConfiguration(commandName: "exec", abstract: "Run a new process in a running container.")
    @OptionGroup var global: GlobalOptions
    @Option(name: [.short, .long], help: "A process.json (runtime-spec process) instead of arguments.") var process: String?
    @Flag(name: [.short, .long], help: "Allocate a terminal.") var tty = false
    @Option(help: "A unix socket that receives the terminal's master fd.") var consoleSocket: String?
    @Option(help: "Working directory in the container.") var cwd: String?
    @Option(name: [.short, .long], help: "KEY=value, added to the environment (repeatable).") var env: [String] = []
    @Option(name: [.short, .long], help: "uid[:gid] to run as.") var user: String?
    @Option(name: [.customShort("g"), .long], help: "Additional group id (repeatable).") var additionalGids: [UInt32] = []
    @Flag(help: "Set no_new_privs for the process.") var noNewPrivs = false
    @Flag(name: [.short, .long], help: "Return once the process started.") var detach = false
    @Option(help: "Write the process's PID here.") var pidFile: String?
    @Argument(help: "The container id.") var id: String
    @Argument(parsing: .captureForPassthrough, help: "The command and its arguments.") var command: [String] = []

    func run() throws {
        var status: Int32 = 0
        try runtimeCommand(global) { config, logger in
            let runtime: ContainerRuntime
            switch try RuntimeChoice.forExisting(id, config, global, logger) {
            case .vm:
                status = try execInVM(config, logger)
                return
            case .process(let r):
                runtime = r
            }
            let p = try makeProcess { try runtime.execTemplate(id) }
            let terminal = p.terminal == true
            if terminal && detach && consoleSocket == nil {
                throw CLIError("exec --detach with a terminal needs --console-socket")
            }
            let foreground = try Foreground(wantsTerminal: terminal && consoleSocket == nil)
            var options = ContainerRuntime.ExecOptions()
            options.pidFile = pidFile.map { URL(fileURLWithPath: $0).standardizedFileURL.path }
            if let consoleSocket {
                guard terminal else { throw CLIError("--console-socket was given but the process has no terminal") }
                do throws(SystemError) {
                    options.consoleSocket = try StreamSocket.connectUnix(path: consoleSocket, until: .after(seconds: 10)).detach()
                } catch {
                    throw CLIError("--console-socket \(consoleSocket): \(error.message)")
                }
            } else {
                options.consoleSocket = foreground.consoleSocket
            }
            let child = try runtime.exec(id, process: p, options: options)
            foreground.created()
            if detach { return }
            status = try foreground.wait(for: child) { child.signal($0) }
        }
        if status != 0 { throw ExitCode(status) }
    }

    /// The process from --process, or the container's own with the arguments and flags applied.
    func makeProcess(template: () throws -> OCI.Process) throws -> OCI.Process {
            var p: OCI.Process
            if let process {
                let data = process == "-" ? FileHandle.standardInput.readDataToEndOfFile() : try Data(contentsOf: URL(fileURLWithPath: process))
                do { p = try JSONDecoder().decode(OCI.Process.self, from: data) } catch {
                    throw CLIError("--process \(process): not a valid runtime-spec process: \(error)")
                }
            } else {
                guard !command.isEmpty else { throw CLIError("exec needs a command after the container id, or --process") }
                p = try template()
                p.args = command
                p.terminal = tty
                p.consoleSize = nil
            }
            if !env.isEmpty { p.env = (p.env ?? []) + env }
            if let cwd { p.cwd = cwd }
            if let user {
                let parts = user.split(separator: ":", omittingEmptySubsequences: false)
                guard (1...2).contains(parts.count), let uid = UInt32(parts[0]), parts.count == 1 || UInt32(parts[1]) != nil else {
                    throw CLIError("--user '\(user)' must be uid or uid:gid (numbers)")
                }
                p.user = User(uid: uid, gid: parts.count == 2 ? UInt32(parts[1])! : 0, umask: p.user.umask)
            }
            if !additionalGids.isEmpty { p.user.additionalGids = additionalGids }
            if noNewPrivs { p.noNewPrivileges = true }
            if tty { p.terminal = true }
            return p
    }
}
