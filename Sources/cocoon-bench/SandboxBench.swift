import ArgumentParser
import Config
import Foundation
import Hypervisor
import Logging
import OCI
import Sandbox
import SystemCalls

/// Containers in VMs: launch to first output against the bare boot, exec latency, stdout throughput,
/// host memory per idle sandbox.
struct SandboxBench: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "sandbox",
        abstract: "Launch to first container output (against a bare boot), exec latency, stdout throughput, memory per sandbox.")

    @OptionGroup var options: VMBenchOptions

    @Option(help: "A container root filesystem with busybox (tests/fixtures/make-busybox-rootfs.sh makes one).")
    var rootfs: String

    @Option(help: "MiB the throughput container writes to stdout.")
    var mebibytes: Int = 256

    func validate() throws {
        guard (1...4096).contains(mebibytes) else { throw ValidationError("--mebibytes must be between 1 and 4096") }
        guard FileManager.default.fileExists(atPath: rootfs + "/bin/busybox") else {
            throw ValidationError("--rootfs \(rootfs) has no bin/busybox: make one with tests/fixtures/make-busybox-rootfs.sh")
        }
    }

    func run() throws {
        let configuration = try options.configuration()
        let runs = options.runs
        let logger = Logger(label: "cocoon-bench") { var h = StreamLogHandler.standardError(label: $0); h.logLevel = .warning; return h }
        let boot = BootBench.parseOrExit(["--baseline-initrd", options.baselineInitrd])
        let bundles = NSTemporaryDirectory() + "cocoon-bench-\(getpid())"
        defer { try? FileManager.default.removeItem(atPath: bundles) }

        // (a) launch -> first byte of the container's stdout, interleaved with bare boots.
        var launch: [Double] = [], bare: [Double] = [], swiftFloor: [Double] = []
        var phases: [[Double]] = [[], [], []]
        let hello = try bundle(bundles + "/hello", ["echo", "hello"])
        for i in 0..<runs {
            bare.append(try boot.baseline(configuration, initrd: options.baselineInitrd, line: BootBench.baselineLine, index: i, logger: logger))
            if let swiftInitrd = options.swiftBaselineInitrd {
                swiftFloor.append(try boot.baseline(configuration, initrd: swiftInitrd, line: BootBench.swiftBaselineLine, index: i, logger: logger))
            }
            let (total, parts) = try firstOutput(configuration, bundle: hello, index: i, logger: logger)
            launch.append(total)
            for (k, v) in parts.enumerated() { phases[k].append(v) }
            print(String(format: "run %d: bare boot %.3f s, launch to first output %.3f s", i + 1, bare.last!, launch.last!))
        }

        // (b), (c), (d) in one long-lived sandbox.
        let sandbox = try bootSharing("bench-sandbox-\(getpid())", configuration, logger: logger)
        defer { sandbox.shutdown() }
        let sink = try FileDescriptor.open("/dev/null", O_WRONLY)
        let quiet = HostStdio(stdin: nil, stdout: sink.rawValue, stderr: sink.rawValue, terminal: false)
        try sandbox.createContainer(id: "idle", bundle: try bundle(bundles + "/idle", ["sleep", "100000"]), stdio: quiet)
        try sandbox.startContainer("idle")
        sleep(seconds: 1)
        let qemuPSS = Double(ProcessMemory.proportionalKiB(pid: sandbox.vm.process.pid)) / 1024
        let virtiofsdPSS = sandbox.virtiofsd.map { Double(ProcessMemory.proportionalKiB(pid: $0.process.pid)) / 1024 } ?? 0
        let controllerPSS = Double(ProcessMemory.proportionalKiB(pid: getpid())) / 1024

        var execs: [Double] = []
        var process = Spec.runcDefault().process!
        process.args = ["true"]
        for i in 0..<max(runs * 2, 10) {
            let watch = Stopwatch()
            try sandbox.exec(containerID: "idle", execID: "e\(i)", process: process, stdio: quiet)
            _ = try sandbox.wait(containerID: "idle", execID: "e\(i)")
            execs.append(watch.elapsedSeconds)
        }

        let bytes = mebibytes << 20
        // dd with 64 KiB blocks: busybox head -c copies in small pieces and is itself the bottleneck under TCG.
        let catBundle = try bundle(bundles + "/cat", ["dd", "if=/dev/zero", "bs=65536", "count=\(bytes >> 16)"])
        let guestOnly = try bundle(bundles + "/devnull", ["dd", "if=/dev/zero", "of=/dev/null", "bs=65536", "count=\(bytes >> 16)"])
        let (throughput, received) = try stdoutThroughput(sandbox, id: "cat", bundle: catBundle, bytes: bytes)
        let guestSeconds = try timed(sandbox, id: "devnull", bundle: guestOnly, stdio: quiet)
        // Through a pipe to a second process, as the agent reads it, but not leaving the guest.
        let piped = try bundle(bundles + "/piped", ["sh", "-c", "dd if=/dev/zero bs=65536 count=\(bytes >> 16) 2>/dev/null | cat > /dev/null"])
        let pipedSeconds = try timed(sandbox, id: "piped", bundle: piped, stdio: quiet)
        let raw = try rawChannelThroughput(configuration, mebibytes: mebibytes, mode: "stream", logger: logger)
        // The agent's path written in C: a pipe from a child, read, framed, writev to the port.
        let relay = try rawChannelThroughput(configuration, mebibytes: mebibytes, mode: "relay", logger: logger)

        print("")
        print("sandbox benchmark: \(runs) launches, \(sandbox.accelerator.rawValue), \(configuration.hypervisor.machine.rawValue), "
            + "\(configuration.hypervisor.memoryMiB) MiB, \(configuration.hypervisor.sharedFS.rawValue)")
        print(String(format: "  (a) bare boot (trivial init, launch -> first console line):  median %.3f s", median(bare)))
        if !swiftFloor.isEmpty {
            print(String(format: "      smallest static Swift init, launch -> first line:        median %.3f s, ratio to bare boot %.2f",
                         median(swiftFloor), median(swiftFloor) / median(bare)))
        }
        print(String(format: "      launch -> first container output (boot, share, create, start): median %.3f s", median(launch)))
        print(String(format: "      ratio launch/bare boot:                                   %.2f (goal <= 1.15)", median(launch) / median(bare)))
        print(String(format: "      of which: boot to the agent's answer %.3f s, share + create %.3f s, start to first byte %.3f s",
                     median(phases[0]), median(phases[1]), median(phases[2])))
        print(String(format: "  (b) exec of `true` in a running sandbox:                    median %.1f ms (%d execs)", median(execs) * 1000, execs.count))
        print(String(format: "  (c) stdout of `dd` of %d MiB through the mux:               %.1f MiB/s (%d bytes received)",
                     mebibytes, throughput, received))
        print(String(format: "      the same bytes to /dev/null inside the guest:           %.1f MiB/s (the guest-side ceiling)",
                     Double(mebibytes) / guestSeconds))
        print(String(format: "      the same bytes through a pipe to `cat > /dev/null` in the guest: %.1f MiB/s", Double(mebibytes) / pipedSeconds))
        print(String(format: "      raw channel (a C init writing to the virtio-serial port): %.1f MiB/s", raw))
        print(String(format: "      the agent's path in C (pipe from a child, 64 KiB frames, writev): %.1f MiB/s", relay))
        print(String(format: "      ratio container stdout through the mux / raw channel:    %.2f (goal >= 0.8)", throughput / raw))
        print(String(format: "      ratio container stdout through the mux / the path in C:  %.2f", throughput / relay))
        print(String(format: "  (d) host memory of an idle sandbox (PSS): QEMU %.1f MiB + virtiofsd %.1f MiB + controller %.1f MiB = %.1f MiB",
                     qemuPSS, virtiofsdPSS, controllerPSS, qemuPSS + virtiofsdPSS + controllerPSS))
    }

    /// The transport alone (`stream`: the baseline init writes zeros straight to the agent's port), or
    /// the agent's data path in C (`relay`); the host reads the bytes from the socket QEMU connects to.
    /// Same kernel, QEMU, machine and device as a sandbox.
    func rawChannelThroughput(_ config: Configuration, mebibytes: Int, mode: String, logger: Logger) throws -> Double {
        let dir = "/run/cocoon-bench/raw-\(getpid())"
        try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let (accel, _) = try AccelerationChoice.resolve(config.hypervisor.accel, host: .probe())
        let spec = VMSpec(qemuPath: config.hypervisor.path, kernelPath: config.hypervisor.kernel, initrdPath: options.baselineInitrd,
                          machine: config.hypervisor.machine, accelerator: accel, memoryMiB: config.hypervisor.memoryMiB,
                          vcpus: config.hypervisor.vcpus, extraKernelParameters: ["baseline.mode=\(mode)", "baseline.mib=\(mebibytes)"],
                          channel: .serial(socketPath: dir + "/agent.sock"), qmpSocketPath: dir + "/qmp.sock",
                          consoleLogPath: dir + "/console.log")
        let connector = try AgentConnector(transport: spec.channel)
        defer { connector.close() }
        let vm = try VirtualMachine.launch(spec, qemuLogPath: dir + "/qemu.log", logger: logger)
        defer { vm.stop(grace: 5) }
        let fd = try connector.connect(to: vm, until: .after(seconds: 60))
        defer { fd.close() }
        let total = mebibytes << 20
        var received = 0
        var watch: Stopwatch?
        while received < total {
            let chunk = try fd.read(upTo: 1 << 20, until: .after(seconds: 120))
            if chunk.isEmpty { break }
            if watch == nil { watch = Stopwatch() }
            received += chunk.count
        }
        guard received == total, let watch else {
            throw ValidationError("the raw stream ended after \(received) of \(total) bytes")
        }
        return Double(mebibytes) / watch.elapsedSeconds
    }

    /// A sandbox as `cocoon run` boots one: with the shared filesystem for containers.
    func bootSharing(_ id: String, _ config: Configuration, logger: Logger) throws -> Sandbox {
        var options = Sandbox.BootOptions()
        options.shareFilesystem = true
        do throws(SandboxError) {
            return try Sandbox.boot(id: id, configuration: config, options: options, logger: logger)
        } catch {
            throw ValidationError("boot \(id): \(error.description)")
        }
    }

    func bundle(_ dir: String, _ args: [String]) throws -> String {
        try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
        if !FileManager.default.fileExists(atPath: dir + "/rootfs") {
            try FileManager.default.createSymbolicLink(atPath: dir + "/rootfs",
                                                       withDestinationPath: URL(fileURLWithPath: rootfs).standardizedFileURL.path)
        }
        var spec = Spec.runcDefault()
        spec.process?.args = args
        try Data(spec.encoded()).write(to: URL(fileURLWithPath: dir + "/config.json"))
        return dir
    }

    /// A fresh sandbox each time, as `cocoon run` makes one.
    func firstOutput(_ config: Configuration, bundle: String, index: Int, logger: Logger) throws -> (Double, [Double]) {
        var pipeFDs: [Int32] = [0, 0]
        guard pipe(&pipeFDs) == 0 else { throw ValidationError("pipe failed") }
        let reader = FileDescriptor(adopting: pipeFDs[0])
        let writer = FileDescriptor(adopting: pipeFDs[1])
        defer { reader.close(); writer.close() }
        let watch = Stopwatch()
        let sandbox = try bootSharing("bench-launch-\(getpid())-\(index)", config, logger: logger)
        defer { sandbox.shutdown() }
        let booted = watch.elapsedSeconds
        try sandbox.createContainer(id: "hello", bundle: bundle,
                                    stdio: HostStdio(stdin: nil, stdout: writer.rawValue, stderr: writer.rawValue, terminal: false))
        let created = watch.elapsedSeconds
        try sandbox.startContainer("hello")
        guard try reader.waitReadable(until: .after(seconds: 60)) else { throw ValidationError("no output within 60 s") }
        let seconds = watch.elapsedSeconds
        _ = try sandbox.wait(containerID: "hello", timeout: 60)
        return (seconds, [booted, created - booted, seconds - created])
    }

    func stdoutThroughput(_ sandbox: Sandbox, id: String, bundle: String, bytes: Int) throws -> (Double, Int) {
        var pipeFDs: [Int32] = [0, 0]
        guard pipe(&pipeFDs) == 0 else { throw ValidationError("pipe failed") }
        let reader = FileDescriptor(adopting: pipeFDs[0])
        let writer = FileDescriptor(adopting: pipeFDs[1])
        let counter = ByteCounter()
        try startDetachedThread {
            while let chunk = try? reader.readNow(upTo: 1 << 20), !chunk.isEmpty { counter.add(chunk.count) }
            counter.finish()
        }
        try sandbox.createContainer(id: id, bundle: bundle, stdio: HostStdio(stdin: nil, stdout: writer.rawValue, stderr: writer.rawValue, terminal: false))
        let watch = Stopwatch()
        try sandbox.startContainer(id)
        _ = try sandbox.wait(containerID: id, timeout: 3600)
        writer.close()
        counter.waitFinished()
        let seconds = watch.elapsedSeconds
        reader.close()
        try sandbox.removeContainer(id, force: true)
        return (Double(counter.total) / 1_048_576 / seconds, counter.total)
    }

    func timed(_ sandbox: Sandbox, id: String, bundle: String, stdio: HostStdio) throws -> Double {
        try sandbox.createContainer(id: id, bundle: bundle, stdio: stdio)
        let watch = Stopwatch()
        try sandbox.startContainer(id)
        _ = try sandbox.wait(containerID: id, timeout: 3600)
        let seconds = watch.elapsedSeconds
        try sandbox.removeContainer(id, force: true)
        return seconds
    }
}

final class ByteCounter: @unchecked Sendable {
    private let state = Condition()
    private var count = 0
    private var done = false
    func add(_ n: Int) { state.withLock { count += n } }
    func finish() { state.withLock { done = true; state.broadcast() } }
    func waitFinished() { state.withLock { while !done { _ = state.wait(until: nil) } } }
    var total: Int { state.withLock { count } }
}
