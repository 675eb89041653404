import ArgumentParser
import HostCheck

struct Check: ParsableCommand {
    static let configuration = CommandConfiguration(commandName: "check", abstract: "Check that this host can run cocoon; exit non-zero if it cannot.")

    @OptionGroup var global: GlobalOptions

    func run() throws {
        let config = try global.loadConfiguration()
        let results = HostCheck.run(configuration: config)
        for r in results { print(r.line) }
        if !HostCheck.passed(results) {
            print("cocoon cannot run on this host: fix the [FAIL] lines above")
            throw ExitCode(1)
        }
    }
}
