import AgentAPI
import ArgumentParser
import Config
import Foundation
import Logging
import Sandbox

/// Global options, accepted before the subcommand as runc takes them.
struct GlobalOptions: ParsableArguments {
    @Option(help: "Configuration file (default: $COCOON_CONFIG, else /etc/cocoon/configuration.toml, else built-in defaults).")
    var config: String?

    @Flag(help: "Debug logging (also boots the guest with kernel messages and agent debug logs).")
    var debug = false

    @Option(help: "State directory (default: runtime.root of the configuration, /run/cocoon).")
    var root: String?

    @Option(help: "Log file (default: stderr). Errors are also written here, as containerd's runc shim expects.")
    var log: String?

    @Option(help: "Log format: text or json.")
    var logFormat: LogFormat = .text

    @Option(help: "Isolation: vm (the default) or process (containers on this host, like runc).")
    var isolation: String?

    @Flag(help: "Cgroups as systemd transient scopes: linux.cgroupsPath is slice:prefix:name (process isolation).")
    var systemdCgroup = false

    func loadConfiguration() throws -> Configuration {
        do throws(ConfigError) {
            var c = try Configuration.load(explicitPath: config)
            if debug { c.runtime.debug = true }
            if let root {
                c.runtime.sandboxRoot = c.runtime.root
                c.runtime.root = root
            }
            if let isolation {
                guard let i = Isolation(rawValue: isolation) else {
                    throw ConfigError(file: "--isolation", key: nil, problem: "'\(isolation)' is not valid; valid values: vm, process")
                }
                c.runtime.isolation = i
            }
            return c
        } catch {
            throw CLIError(error.message)
        }
    }

    func makeLogger(_ label: String = "cocoon") -> Logger {
        let handler = RuntimeLogHandler.make(path: log, format: logFormat, level: debug ? .debug : .info)
        return Logger(label: label) { _ in handler }
    }
}

enum LogFormat: String, ExpressibleByArgument, Sendable {
    case text, json
}

struct CLIError: Error, CustomStringConvertible {
    let description: String
    init(_ d: String) { description = d }
}

/// Runs a command body; a failure is logged (to --log, as runc does) and exits 1.
func runtimeCommand(_ global: GlobalOptions, _ body: (Configuration, Logger) throws -> Void) throws {
    let logger = global.makeLogger()
    do {
        let config = try global.loadConfiguration()
        try body(config, logger)
    } catch let exit as ExitCode {
        throw exit
    } catch {
        let message = "\(error)"
        if global.log != nil { logger.error("\(message)") }
        FileHandle.standardError.write(Data((message + "\n").utf8))
        throw ExitCode(1)
    }
}

@main
struct Cocoon: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "cocoon",
        abstract: "A container runtime that runs every pod in its own lightweight VM.",
        version: "cocoon version \(CocoonVersion.string)\nspec: 1.2.0",
        subcommands: [
            Create.self, Start.self, State.self, Kill.self, Delete.self, Run.self, Exec.self, List.self, Ps.self,
            Pause.self, Resume.self, Update.self, Events.self, Spec.self, FeaturesCommand.self,
            Check.self, Debug.self, SandboxDaemonCommand.self, StandInCommand.self,
        ])

    // Declared here too so that they parse before the subcommand name (`cocoon --root R create ...`).
    @OptionGroup var global: GlobalOptions
}
