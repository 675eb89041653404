import ArgumentParser
import Config
import Foundation
import Hypervisor
import Logging
import Sandbox
import SystemCalls

@main
struct CocoonBench: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "cocoon-bench",
        abstract: "cocoon's benchmarks. Each prints its figures next to a baseline measured in the same run.",
        subcommands: [BootBench.self, BareBench.self, SandboxBench.self])
}

func median(_ xs: [Double]) -> Double {
    let s = xs.sorted()
    guard !s.isEmpty else { return .nan }
    return s.count % 2 == 1 ? s[s.count / 2] : (s[s.count / 2 - 1] + s[s.count / 2]) / 2
}

/// What every VM benchmark takes: the configuration, the bare-boot baseline, how many runs.
struct VMBenchOptions: ParsableArguments {
    @Option(help: "Configuration file (default: $COCOON_CONFIG).")
    var config: String?

    @Option(help: "Initramfs whose /init prints one line and powers off (make baseline builds it).")
    var baselineInitrd: String

    @Option(help: "Initramfs whose /init is the smallest static Swift program printing one line: the floor under a Swift agent's boot.")
    var swiftBaselineInitrd: String?

    @Option(help: "Runs of each kind (at least 5 for a median worth reading).")
    var runs: Int = 5

    func validate() throws {
        guard runs >= 1 && runs <= 100 else { throw ValidationError("--runs must be between 1 and 100") }
        guard FileManager.default.fileExists(atPath: baselineInitrd) else {
            throw ValidationError("--baseline-initrd \(baselineInitrd) not found: build it with 'make baseline'")
        }
        if let path = swiftBaselineInitrd, !FileManager.default.fileExists(atPath: path) {
            throw ValidationError("--swift-baseline-initrd \(path) not found: make bench-boot builds it")
        }
    }

    /// The configuration with the benchmarks' own state root.
    func configuration() throws -> Configuration {
        var configuration: Configuration
        do throws(ConfigError) {
            configuration = try Configuration.load(explicitPath: config)
        } catch {
            throw ValidationError(error.message)
        }
        configuration.runtime.root = "/run/cocoon-bench"
        return configuration
    }
}

struct BootBench: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "boot",
        abstract: "Launch of QEMU to the agent's first answer, against the same kernel booting a trivial init.")

    @OptionGroup var options: VMBenchOptions
    var swiftBaselineInitrd: String? { options.swiftBaselineInitrd }
    var runs: Int { options.runs }
    var baselineInitrd: String { options.baselineInitrd }
    static let baselineLine = "cocoon-baseline: init started"
    static let swiftBaselineLine = "cocoon-swift-baseline: init started"

    func run() throws {
        let configuration = try options.configuration()
        let logger = Logger(label: "cocoon-bench") { StreamLogHandler.standardError(label: $0) }
        var agentBoot: [Double] = [], shutdown: [Double] = [], baselineBoot: [Double] = [], swiftBoot: [Double] = []
        var agentRSS: [Double] = [], qemuRSS: [Double] = [], qemuPSS: [Double] = []
        var accel = "?"
        for i in 0..<runs {
            // Interleaved, so that a change in machine load hits both series alike.
            baselineBoot.append(try baseline(configuration, initrd: baselineInitrd, line: Self.baselineLine, index: i, logger: logger))
            if let swiftBaselineInitrd {
                swiftBoot.append(try baseline(configuration, initrd: swiftBaselineInitrd, line: Self.swiftBaselineLine, index: i, logger: logger))
            }
            let sandbox: Sandbox
            do throws(SandboxError) {
                sandbox = try Sandbox.boot(id: "bench-\(getpid())-\(i)", configuration: configuration, logger: logger)
            } catch {
                throw ValidationError("boot \(i): \(error.description)")
            }
            accel = sandbox.accelerator.rawValue
            agentBoot.append(sandbox.bootSeconds)
            agentRSS.append(Double(sandbox.firstHealth.agentRssKib))
            qemuRSS.append(Double(ProcessMemory.residentKiB(pid: sandbox.vm.process.pid)))
            qemuPSS.append(Double(ProcessMemory.proportionalKiB(pid: sandbox.vm.process.pid)))
            let watch = Stopwatch()
            sandbox.shutdown()
            shutdown.append(watch.elapsedSeconds)
            print(String(format: "run %d: baseline %.3f s, agent %.3f s, shutdown %.3f s", i + 1, baselineBoot.last!, agentBoot.last!, shutdown.last!))
        }
        let rootFile = configuration.hypervisor.bootFrom == .image ? configuration.hypervisor.image : configuration.hypervisor.initrd
        let rootSize = (try? FileManager.default.attributesOfItem(atPath: rootFile)[.size] as? Int) ?? 0
        print("")
        print("boot benchmark: \(runs) runs each, \(accel), \(configuration.hypervisor.machine.rawValue), \(configuration.hypervisor.memoryMiB) MiB, \(configuration.hypervisor.vcpus) vCPU")
        print(String(format: "  baseline (trivial static init, launch -> first console line): median %.3f s", median(baselineBoot)))
        if !swiftBoot.isEmpty {
            print(String(format: "  smallest static Swift init (launch -> first console line):      median %.3f s, ratio to baseline %.2f",
                         median(swiftBoot), median(swiftBoot) / median(baselineBoot)))
        }
        print(String(format: "  cocoon agent (launch -> health answer):                         median %.3f s", median(agentBoot)))
        print(String(format: "  ratio agent/baseline:                                           %.2f", median(agentBoot) / median(baselineBoot)))
        print(String(format: "  orderly shutdown (agent powers off -> QEMU exited):            median %.3f s", median(shutdown)))
        print(String(format: "  agent RSS in the guest: %.0f KiB; guest root: ", median(agentRSS))
              + configuration.hypervisor.bootFrom.rawValue + String(format: " of %.1f MiB", Double(rootSize) / 1_048_576))
        print(String(format: "  QEMU on the host: RSS %.1f MiB, PSS %.1f MiB", median(qemuRSS) / 1024, median(qemuPSS) / 1024))
    }

    /// The same kernel, QEMU binary, machine and devices, with an init that prints `line` and powers off.
    func baseline(_ config: Configuration, initrd: String, line: String, index: Int, logger: Logger) throws -> Double {
        let dir = "/run/cocoon-bench/baseline-\(getpid())-\(index)"
        try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let (accel, _) = try AccelerationChoice.resolve(config.hypervisor.accel, host: .probe())
        let spec = VMSpec(qemuPath: config.hypervisor.path, kernelPath: config.hypervisor.kernel, initrdPath: initrd,
                          machine: config.hypervisor.machine, accelerator: accel, memoryMiB: config.hypervisor.memoryMiB,
                          vcpus: config.hypervisor.vcpus, channel: .serial(socketPath: dir + "/agent.sock"),
                          qmpSocketPath: dir + "/qmp.sock", consoleLogPath: dir + "/console.log")
        // The serial device needs a peer to connect to, exactly as in a real boot.
        let connector = try AgentConnector(transport: spec.channel)
        defer { connector.close() }
        let watch = Stopwatch()
        let vm = try VirtualMachine.launch(spec, qemuLogPath: dir + "/qemu.log", logger: logger)
        defer { vm.stop(grace: 5) }
        let deadline = Deadline.after(seconds: config.hypervisor.bootTimeoutSeconds)
        while !deadline.hasPassed {
            if let data = FileManager.default.contents(atPath: spec.consoleLogPath),
               String(decoding: data, as: UTF8.self).contains(line) {
                return watch.elapsedSeconds
            }
            if let t = vm.exited { throw vm.unexpectedExitError(t, while: "booting the baseline") }
            sleep(seconds: 0.002)
        }
        throw HypervisorError(.deadlineExceeded, "the baseline guest printed nothing in time", consoleTail: vm.consoleTail())
    }
}
