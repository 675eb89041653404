import Config
import Foundation
import Hypervisor
import Logging
import Sandbox
import SystemCalls
import Testing

/// Real VMs under QEMU (TCG here, KVM where the host has it). Serialized: each boot uses both cores.
@Suite(.serialized, .enabled(if: VMTestEnvironment.shared.ready, Comment(rawValue: VMTestEnvironment.shared.skipReason ?? "")))
struct SandboxBootTests {
    let env = VMTestEnvironment.shared
    let logger = Logger(label: "test") { _ in SwiftLogNoOpLogHandler() }

    func expectNothingLeft(_ sandboxID: String, sourceLocation: SourceLocation = #_sourceLocation) {
        let runDirectory = "\(env.configuration.runtime.root)/sandboxes/\(sandboxID)"
        #expect(VMTestEnvironment.qemuProcesses(mentioning: runDirectory).isEmpty, "QEMU left running", sourceLocation: sourceLocation)
        #expect(!FileManager.default.fileExists(atPath: runDirectory), "run directory left behind", sourceLocation: sourceLocation)
    }

    func boot(_ id: String, _ config: Configuration? = nil, options: Sandbox.BootOptions = .init()) throws(SandboxError) -> Sandbox {
        try Sandbox.boot(id: id, configuration: config ?? env.configuration, options: options, logger: logger)
    }

    @Test func microvmBootsAnswersAndShutsDownCleanly() throws {
        let sandbox = try boot("boot-microvm")
        let qemuPID = sandbox.vm.process.pid
        #expect(sandbox.firstHealth.pid == 1, "the agent is PID 1")
        #expect(sandbox.firstHealth.agentVersion == CocoonVersionForTests.string)
        #expect(sandbox.firstHealth.kernelRelease.hasPrefix("6.1"))
        #expect(sandbox.firstHealth.memoryTotalKib > 128 * 1024)
        #expect(sandbox.bootSeconds > 0 && sandbox.bootSeconds < env.configuration.hypervisor.bootTimeoutSeconds)
        // The QMP side of the driver sees a running VM.
        let qmp = try sandbox.vm.qmpClient(until: .after(seconds: 10))
        #expect(try qmp.status(until: .after(seconds: 10)) == "running")
        // A second health request over the same channel.
        #expect(try sandbox.health().uptimeSeconds >= sandbox.firstHealth.uptimeSeconds)
        let end = sandbox.shutdown()
        #expect(end == .exited(0), "the guest powered off and QEMU exited by itself")
        #expect(kill(qemuPID, 0) != 0)
        expectNothingLeft("boot-microvm")
        #expect(sandbox.shutdown() == end, "shutdown is idempotent")
    }

    @Test func q35BootsToo() throws {
        var config = env.configuration
        config.hypervisor.machine = .q35
        let sandbox = try boot("boot-q35", config)
        #expect(sandbox.firstHealth.pid == 1)
        sandbox.shutdown()
        expectNothingLeft("boot-q35")
    }

    @Test func stopWithoutTheAgentKillsQEMU() throws {
        let sandbox = try boot("boot-stop")
        let qemuPID = sandbox.vm.process.pid
        // QMP quit, the path taken when the agent cannot be reached.
        let end = sandbox.vm.stop(grace: 5)
        #expect(sandbox.vm.exited == end)
        #expect(kill(qemuPID, 0) != 0, "QEMU is gone and reaped")
        sandbox.shutdown()
        expectNothingLeft("boot-stop")
    }

    @Test func missingKernelNamesThePathAndTheMakeTarget() throws {
        var config = env.configuration
        config.hypervisor.kernel = "/nonexistent/vmlinux"
        do throws(SandboxError) {
            _ = try boot("boot-nokernel", config)
            Issue.record("boot succeeded without a kernel")
        } catch {
            #expect(error.code == .notFound)
            #expect(error.message.contains("/nonexistent/vmlinux"))
            #expect(error.message.contains("make kernel"))
        }
        expectNothingLeft("boot-nokernel")
    }

    @Test func duplicateAndInvalidIDsAreRefused() throws {
        #expect(throws: SandboxError.self) { try boot("../escape") }
        #expect(throws: SandboxError.self) { try boot("") }
        let runDirectory = "\(env.configuration.runtime.root)/sandboxes/boot-dup"
        try FileManager.default.createDirectory(atPath: runDirectory, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(atPath: runDirectory) }
        do throws(SandboxError) {
            _ = try boot("boot-dup")
            Issue.record("a second sandbox with the same id booted")
        } catch {
            #expect(error.code == .alreadyExists)
        }
    }

    @Test(.enabled(if: VMTestEnvironment.shared.baselineInitrd != nil, "COCOON_BASELINE_INITRD is not set (make test sets it)"))
    func guestPanicIsReportedWithTheConsole() throws {
        var options = Sandbox.BootOptions()
        options.initrdOverride = env.baselineInitrd
        options.extraKernelParameters = ["baseline.mode=exit"]
        let watch = Stopwatch()
        do throws(SandboxError) {
            _ = try boot("boot-panic", options: options)
            Issue.record("a guest whose init exits booted")
        } catch {
            #expect(error.code == .unavailable)
            #expect(error.consoleTail.joined(separator: "\n").contains("Kernel panic"), "\(error.description)")
            #expect(error.description.contains("last console lines"))
        }
        #expect(watch.elapsedSeconds < env.configuration.hypervisor.bootTimeoutSeconds, "reported at once, not at the deadline")
        expectNothingLeft("boot-panic")
    }

    @Test(.enabled(if: VMTestEnvironment.shared.baselineInitrd != nil, "COCOON_BASELINE_INITRD is not set (make test sets it)"))
    func silentGuestHitsTheBootDeadline() throws {
        var config = env.configuration
        config.hypervisor.bootTimeoutSeconds = 6
        var options = Sandbox.BootOptions()
        options.initrdOverride = env.baselineInitrd
        options.extraKernelParameters = ["baseline.mode=hang"]
        let watch = Stopwatch()
        do throws(SandboxError) {
            _ = try boot("boot-hang", config, options: options)
            Issue.record("a guest that never answers booted")
        } catch {
            #expect(error.code == .deadlineExceeded)
            #expect(error.message.contains("boot_timeout_seconds"))
            #expect(error.consoleTail.contains { $0.contains("hanging as asked") }, "\(error.description)")
        }
        #expect(watch.elapsedSeconds >= 6 && watch.elapsedSeconds < 20)
        expectNothingLeft("boot-hang")
    }
}

enum CocoonVersionForTests {
    static let string = "0.1.0"
}
