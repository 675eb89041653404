import ArgumentParser
import Config
import Logging
import Sandbox
import AgentAPI

/// Global options, accepted before the subcommand as runc takes them.
struct GlobalOptions: ParsableArguments {
    @Option(help: "Configuration file (default: $COCOON_CONFIG, else /etc/cocoon/configuration.toml, else built-in defaults).")
    var config: String?

    @Flag(help: "Debug logging (also boots the guest with kernel messages and agent debug logs).")
    var debug = false

    func loadConfiguration() throws -> Configuration {
        do throws(ConfigError) {
            var c = try Configuration.load(explicitPath: config)
            if debug { c.runtime.debug = true }
            return c
        } catch {
            throw CLIError(error.message)
        }
    }

    func makeLogger(_ label: String = "cocoon") -> Logger {
        var logger = Logger(label: label) { StreamLogHandler.standardError(label: $0) }
        logger.logLevel = debug ? .debug : .info
        return logger
    }
}

struct CLIError: Error, CustomStringConvertible {
    let description: String
    init(_ d: String) { description = d }
}

@main
struct Cocoon: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "cocoon",
        abstract: "A container runtime that runs every pod in its own lightweight VM.",
        version: "cocoon version \(CocoonVersion.string)",
        subcommands: [Check.self, Debug.self])

    // Declared here too so that they parse before the subcommand name (`cocoon --config F check`).
    @OptionGroup var global: GlobalOptions
}
