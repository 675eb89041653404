import ArgumentParser
import Foundation
import Hypervisor
import Sandbox

struct Debug: ParsableCommand {
    static let configuration = CommandConfiguration(commandName: "debug", abstract: "Diagnostics for developers.", subcommands: [Boot.self])

    struct Boot: ParsableCommand {
        static let configuration = CommandConfiguration(commandName: "boot",
            abstract: "Boot a sandbox VM, print the agent's health answer and the boot time, and shut it down.")

        @OptionGroup var global: GlobalOptions

        @Option(help: "Sandbox id (default: debug-<pid>).")
        var id: String?

        @Flag(help: "Print the guest console after shutdown.")
        var console = false

        func run() throws {
            let config = try global.loadConfiguration()
            let logger = global.makeLogger()
            let sandboxID = id ?? "debug-\(getpid())"
            let sandbox: Sandbox
            do throws(SandboxError) {
                sandbox = try Sandbox.boot(id: sandboxID, configuration: config, logger: logger)
            } catch {
                throw CLIError("cannot boot sandbox \(sandboxID): \(error.description)")
            }
            let h = sandbox.firstHealth
            let qemuRSS = ProcessMemory.residentKiB(pid: sandbox.vm.process.pid)
            print(String(format: "sandbox %@ booted in %.3f s (%@, %@, %d MiB, %d vCPU)", sandboxID, sandbox.bootSeconds,
                         sandbox.accelerator.rawValue, config.hypervisor.machine.rawValue,
                         config.hypervisor.memoryMiB, config.hypervisor.vcpus))
            print("agent: cocoon-agent \(h.agentVersion), pid \(h.pid), RSS \(h.agentRssKib) KiB")
            print(String(format: "guest: Linux %@, up %.2f s, %d MiB memory", h.kernelRelease, h.uptimeSeconds, h.memoryTotalKib / 1024))
            print("host: QEMU pid \(sandbox.vm.process.pid), RSS \(qemuRSS / 1024) MiB")
            let consoleLines = console ? sandbox.vm.consoleTail(200) : []
            let end = sandbox.shutdown()
            print("shut down: QEMU \(end.map { "\($0)" } ?? "state unknown")")
            if console {
                print("--- guest console ---")
                consoleLines.forEach { print($0) }
            }
        }
    }
}
