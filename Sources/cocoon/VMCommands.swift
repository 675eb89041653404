import ArgumentParser
import Config
import Foundation
import LinuxContainer
import Logging
import OCI
import SandboxDaemon
import SystemCalls

/// Which runtime holds a container: its record decides (vm.json or state.json under --root); a
/// new container follows the configured isolation.
enum RuntimeChoice {
    case vm(VMRuntime)
    case process(ContainerRuntime)

    static func forNew(_ config: Configuration, _ global: GlobalOptions, _ logger: Logger) throws -> RuntimeChoice {
        return config.runtime.isolation == .vm ? .vm(vmRuntime(config, global, logger)) : .process(try containerRuntime(config, global))
    }

    static func forExisting(_ id: String, _ config: Configuration, _ global: GlobalOptions, _ logger: Logger) throws -> RuntimeChoice {
        let vm = vmRuntime(config, global, logger)
        if vm.store.exists(id) { return .vm(vm) }
        if Files.exists("\(config.runtime.root)/\(id)/state.json") {
            return .process(ContainerRuntime(root: config.runtime.root, initExecutable: try initBinary(config)))
        }
        return config.runtime.isolation == .vm ? .vm(vm) : .process(try containerRuntime(config, global))
    }
}

func vmRuntime(_ config: Configuration, _ global: GlobalOptions, _ logger: Logger) -> VMRuntime {
    let exe = (try? Files.readLink("/proc/self/exe")) ?? CommandLine.arguments[0]
    var arguments: [String] = []
    if let source = config.source { arguments += ["--config", source] }
    if global.debug { arguments.append("--debug") }
    if let log = global.log {
        arguments += ["--log", URL(fileURLWithPath: log).standardizedFileURL.path, "--log-format", global.logFormat.rawValue]
    }
    return VMRuntime(config: config, stateRoot: config.runtime.root, sandboxRoot: config.runtime.sandboxBase,
                     launcher: .init(executable: exe, globalArguments: arguments), systemdCgroup: global.systemdCgroup, logger: logger)
}

/// `cocoon sandbox-daemon`: started by `cocoon create`, never by hand.
struct SandboxDaemonCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "sandbox-daemon", abstract: "Hold a VM for containers created through the runc command line (internal).",
        shouldDisplay: false)
    @OptionGroup var global: GlobalOptions
    @Option(help: "The sandbox's name (its run directory under <root>/sandboxes).") var name: String
    @Option(help: "The bundle of the sandbox's first container (VM size, hostname).") var bundle: String
    @Option(help: "The network namespace the VM takes over.") var networkNamespace: String?
    @Option(help: "Where to serve the control socket (under the caller's --root).") var controlSocket: String
    @Option(help: "The descriptor that gets \"ready\" or the error.") var readyFd: Int32 = 3

    func run() throws {
        let signals = DaemonProcess.blockSignals()
        let logger = global.makeLogger("cocoon-sandbox-daemon")
        let config: Configuration
        do { config = try global.loadConfiguration() } catch {
            let ready = FileDescriptor(adopting: readyFd)
            _ = Array("error 3 \(error)\n".utf8).withUnsafeBytes { write(ready.rawValue, $0.baseAddress, $0.count) }
            ready.close()
            throw ExitCode(1)
        }
        let code = DaemonProcess.run(.init(sandboxName: name, bundle: bundle, networkNamespace: networkNamespace, controlSocket: controlSocket,
                                                  readyDescriptor: readyFd),
                                     config: config, signalDescriptor: signals, logger: logger)
        if code != 0 { throw ExitCode(code) }
    }
}

/// `cocoon stand-in`: started by `cocoon create` and `cocoon exec`, never by hand.
struct StandInCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "stand-in", abstract: "Stand in on the host for a process in a VM (internal).", shouldDisplay: false)
    @OptionGroup var global: GlobalOptions
    @Option(help: "The sandbox daemon's control socket.") var controlSocket: String
    @Option(help: "The container id.") var container: String
    @Option(help: "The exec id (an exec rather than the container's process).") var exec: String?
    @Option(help: "The container's bundle.") var bundle: String?
    @Option(help: "The exec's process JSON.") var processFile: String?
    @Flag(help: "The process has a terminal (its master goes to descriptor 4).") var terminal = false
    @Option(help: "Seconds to wait for the go-ahead.") var startTimeout: Double = 300

    func run() throws {
        let signals = StandIn.blockSignals()
        let logger = global.makeLogger("cocoon-stand-in")
        let parameters = StandIn.Parameters(
            controlSocket: controlSocket, containerID: container, execID: exec, bundle: bundle, processFile: processFile,
            terminal: terminal, syncDescriptor: 3, consoleDescriptor: terminal ? 4 : nil, startTimeout: startTimeout)
        let status = StandIn(parameters: parameters, signalDescriptor: signals, logger: logger).run()
        if status != 0 { throw ExitCode(status) }
    }
}
