import ArgumentParser
import CSupport
import Config
import Foundation
import LinuxContainer
import OCI
import Processes
import Sockets
import SystemCalls

/// The runtime for the chosen isolation. VM isolation through the runc command line is the
/// [docker] work; until then it says so rather than silently running on the host.
func containerRuntime(_ config: Configuration) throws -> ContainerRuntime {
    guard config.runtime.isolation == .process else {
        throw CLIError("VM isolation is not available through the runc command line yet: use --isolation process "
            + "(or runtime.isolation = \"process\" in \(config.source ?? Configuration.defaultPath)) to run on this host")
    }
    return ContainerRuntime(root: config.runtime.root, initExecutable: try initBinary())
}

/// cocoon-init, next to this executable (a build tree) or in ../libexec/cocoon (an installation).
func initBinary() throws -> String {
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
            do {
                o.consoleSocket = try StreamSocket.connectUnix(path: consoleSocket, until: .after(seconds: 10)).detach()
            } catch {
                throw CLIError("--console-socket \(consoleSocket): \(error.message)")
            }
        }
        return o
    }

    var wantsTerminal: Bool { (try? OCI.Spec.load(bundle: bundle))?.process?.terminal == true }
}

struct Create: ParsableCommand {
    static let configuration = CommandConfiguration(abstract: "Create a container: set it up and leave it waiting for start.")
    @OptionGroup var global: GlobalOptions
    @OptionGroup var flags: CreateFlags
    @Argument(help: "The container id.") var id: String

    func run() throws {
        try runtimeCommand(global) { config, _ in
            let runtime = try containerRuntime(config)
            _ = try runtime.create(id: id, bundle: flags.bundle, options: try flags.options())
        }
    }
}

struct Start: ParsableCommand {
    static let configuration = CommandConfiguration(abstract: "Start the program of a created container.")
    @OptionGroup var global: GlobalOptions
    @Argument(help: "The container id.") var id: String

    func run() throws {
        try runtimeCommand(global) { config, _ in try containerRuntime(config).start(id) }
    }
}

struct State: ParsableCommand {
    static let configuration = CommandConfiguration(abstract: "Print a container's state as JSON.")
    @OptionGroup var global: GlobalOptions
    @Argument(help: "The container id.") var id: String

    func run() throws {
        try runtimeCommand(global) { config, _ in
            let state = try containerRuntime(config).state(id)
            let encoder = JSONEncoder()
            encoder.outputFormatting = [.prettyPrinted, .sortedKeys, .withoutEscapingSlashes]
            print(String(decoding: try encoder.encode(state), as: UTF8.self))
        }
    }
}

struct Kill: ParsableCommand {
    static let configuration = CommandConfiguration(abstract: "Send a signal (default SIGTERM) to a container's init process.")
    @OptionGroup var global: GlobalOptions
    @Flag(help: "Signal every process of the container.") var all = false
    @Argument(help: "The container id.") var id: String
    @Argument(help: "Signal name or number (TERM, SIGKILL, 9).") var signal: String = "SIGTERM"

    func run() throws {
        try runtimeCommand(global) { config, _ in
            guard let sig = Signals.parse(signal) else {
                throw CLIError("invalid signal '\(signal)': use a name such as TERM or SIGKILL, or a number from 1 to 64")
            }
            try containerRuntime(config).kill(id, signal: sig, all: all)
        }
    }
}

struct Delete: ParsableCommand {
    static let configuration = CommandConfiguration(abstract: "Delete a stopped container (--force: also a running one).")
    @OptionGroup var global: GlobalOptions
    @Flag(name: [.short, .long], help: "Kill the container first if it runs.") var force = false
    @Argument(help: "The container id.") var id: String

    func run() throws {
        try runtimeCommand(global) { config, _ in try containerRuntime(config).delete(id, force: force) }
    }
}

struct Run: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Create and start a container; without --detach wait for it and exit with its status.")
    @OptionGroup var global: GlobalOptions
    @OptionGroup var flags: CreateFlags
    @Flag(name: [.short, .long], help: "Return once the container started.") var detach = false
    @Flag(help: "Keep the container's state after it exits.") var keep = false
    @Argument(help: "The container id.") var id: String

    func run() throws {
        var status: Int32 = 0
        try runtimeCommand(global) { config, _ in
            let runtime = try containerRuntime(config)
            // Signals for the container are taken through a signalfd, blocked before any thread starts.
            let forwarded: [Int32] = [SIGINT, SIGTERM, SIGHUP, SIGQUIT, SIGUSR1, SIGUSR2, SIGWINCH]
            let sigfd = forwarded.withUnsafeBufferPointer { cocoon_signalfd($0.baseAddress, Int32($0.count)) }
            var options = try flags.options()
            // A terminal in the foreground without a console socket: cocoon takes the pty itself.
            var relayEnd: Int32?
            if flags.wantsTerminal && options.consoleSocket == nil && !detach {
                var pair: [Int32] = [0, 0]
                guard socketpair(AF_UNIX, Int32(SOCK_STREAM.rawValue), 0, &pair) == 0 else {
                    throw CLIError("socketpair for the terminal: \(String(cString: strerror(errno)))")
                }
                _ = cocoon_set_cloexec(pair[0])
                _ = cocoon_set_cloexec(pair[1])
                relayEnd = pair[0]
                options.consoleSocket = pair[1]
            }
            let created = try runtime.create(id: id, bundle: flags.bundle, options: options)
            if relayEnd != nil, let theirs = options.consoleSocket { close(theirs) }
            do {
                try runtime.start(id)
            } catch {
                try? runtime.delete(id, force: true)
                throw error
            }
            if detach { return }
            if let relayEnd {
                let relay = try TerminalRelay.receive(on: relayEnd, until: .after(seconds: 10))
                close(relayEnd)
                status = try relay.run(exitFD: created.process.exitDescriptor, signalFD: sigfd,
                                       onSignal: { try? runtime.kill(id, signal: $0) },
                                       exited: { created.process.poll()?.exitStatus })
                if !keep { try runtime.delete(id, force: true) }
                return
            }
            while true {
                // The container runs as long as it runs; the poll wakes for its exit or a signal.
                let ready = try Poll.wait(for: [created.process.exitDescriptor, sigfd], events: Int16(POLLIN), until: .after(seconds: 3600))
                if ready == 1 {
                    let sig = cocoon_signalfd_read(sigfd)
                    if sig > 0 { try? runtime.kill(id, signal: sig) }
                    continue
                }
                if let t = created.process.poll() {
                    status = t.exitStatus
                    break
                }
            }
            if !keep { try runtime.delete(id, force: true) }
        }
        if status != 0 { throw ExitCode(status) }
    }
}

struct List: ParsableCommand {
    static let configuration = CommandConfiguration(abstract: "List containers.")
    @OptionGroup var global: GlobalOptions
    @Option(name: [.short, .long], help: "table or json.") var format: String = "table"
    @Flag(name: [.short, .long], help: "Only ids.") var quiet = false

    func run() throws {
        try runtimeCommand(global) { config, _ in
            guard ["table", "json"].contains(format) else { throw CLIError("--format must be table or json, not '\(format)'") }
            let runtime = try containerRuntime(config)
            let states = runtime.store.list().compactMap { try? runtime.state($0) }
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
