import AgentAPI
import Config
import Foundation
import Hypervisor
import Logging
import PodNetwork
import Processes
import StatusCodes
import SystemCalls

/// One VM with its agent connection. Created by `boot`, which either returns a sandbox whose
/// agent has answered, or throws having left nothing behind (no QEMU, no run directory).
public final class Sandbox: @unchecked Sendable {
    public let id: String
    public let runDirectory: String
    public let vm: VirtualMachine
    public let agent: AgentClient
    public let accelerator: Accelerator
    /// From launching QEMU to the agent's first answer.
    public let bootSeconds: Double
    /// The agent's first answer.
    public let firstHealth: Cocoon_Agent_V1_HealthResponse
    /// The directory shared with the guest (container root filesystems), when the sandbox has one.
    public let shared: SharedDirectory?
    public let virtiofsd: VirtioFSDaemon?
    /// The pod network carried into the VM, if any.
    public let network: PodNetwork?
    private let connector: AgentConnector
    let logger: Logger
    let lock = NSLockLite()
    private var stopped = false  // guarded by lock
    var containers: [String: HostContainerRecord] = [:]  // guarded by lock
    /// Why the sandbox failed (QEMU or virtiofsd died, the agent stopped answering); guarded by lock.
    var failureReason: String?
    let monitorWake = Condition()
    var controlListener: FileDescriptor?  // guarded by lock

    /// Options the caller may set beyond configuration.toml (tests and benchmarks).
    public struct BootOptions: Sendable {
        public var initrdOverride: String?
        public var extraKernelParameters: [String] = []
        /// Share a directory with the guest for containers' root filesystems (hypervisor.shared_fs).
        public var shareFilesystem = false
        public var hostname = ""
        /// Overrides of hypervisor.memory_mib and hypervisor.vcpus (see VMSizing).
        public var memoryMiB: Int?
        public var vcpus: Int?
        /// A network namespace (CNI's, or one named in config.json) whose interfaces the VM takes over;
        /// nil: the VM has no NIC.
        public var networkNamespace: String?
        public init() {}
    }

    public static func validate(id: String) throws(SandboxError) {
        let allowed = Set("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_.-")
        guard (1...64).contains(id.count), id.allSatisfy(allowed.contains), id.first != ".", id.first != "-" else {
            throw SandboxError(.invalidArgument,
                "sandbox id '\(id)' is invalid: use 1 to 64 letters, digits, '_', '.' or '-', not starting with '.' or '-'")
        }
    }

    public static func boot(id: String, configuration config: Configuration, options: BootOptions = BootOptions(),
                            logger: Logger) throws(SandboxError) -> Sandbox {
        try validate(id: id)
        let host = HostVirtualization.probe()
        let accel: Accelerator
        do {
            let (chosen, warning) = try AccelerationChoice.resolve(config.hypervisor.accel, host: host)
            if let warning { logger.warning("\(warning)") }
            accel = chosen
        } catch {
            throw SandboxError(error.code, error.message)
        }

        let runDirectory = "\(config.runtime.root)/sandboxes/\(id)"
        let transport: ChannelTransport = host.vhostVsockUsable
            ? .vsock(cid: UInt32.random(in: 3...0x7fff_ffff))
            : .serial(socketPath: runDirectory + "/agent.sock")
        let qmpPath = runDirectory + "/qmp.sock"
        // virtiofs.sock is the longest socket name in the run directory.
        guard (runDirectory + "/virtiofs.sock").utf8.count <= 107 else {
            throw SandboxError(.invalidArgument,
                "runtime.root '\(config.runtime.root)' with sandbox id '\(id)' is too long for the unix socket paths of the sandbox (107 bytes)")
        }
        for stale in StaleSandboxes.sweep(root: config.runtime.root) {
            logger.warning("removed the leftovers of sandbox \(stale), whose controller is gone")
        }
        if Files.exists(runDirectory) {
            throw SandboxError(.alreadyExists, "sandbox \(id) already exists (\(runDirectory))")
        }
        do {
            try Files.makeDirectories(runDirectory, mode: 0o700)
        } catch {
            throw SandboxError(error.code, "cannot create \(runDirectory): \(error.message)")
        }
        StaleSandboxes.recordOwner(in: runDirectory)

        let spec = VMSpec(
            qemuPath: config.hypervisor.path,
            kernelPath: config.hypervisor.kernel,
            initrdPath: options.initrdOverride ?? config.hypervisor.initrd,
            machine: config.hypervisor.machine,
            accelerator: accel,
            memoryMiB: options.memoryMiB ?? config.hypervisor.memoryMiB,
            vcpus: options.vcpus ?? config.hypervisor.vcpus,
            extraKernelParameters: config.hypervisor.kernelParams + options.extraKernelParameters,
            channel: transport,
            qmpSocketPath: qmpPath,
            consoleLogPath: runDirectory + "/console.log",
            agentLogLevel: config.runtime.debug ? "debug" : config.agent.logLevel.rawValue,
            verboseKernel: config.runtime.debug)
        var vmSpec = spec
        // A test's own initramfs (initrdOverride) always boots as an initramfs.
        if options.initrdOverride == nil && config.hypervisor.bootFrom == .image {
            vmSpec.rootImagePath = config.hypervisor.image
        }

        var connector: AgentConnector?
        var vm: VirtualMachine?
        var agent: AgentClient?
        var virtiofsd: VirtioFSDaemon?
        var network: PodNetwork?
        do {
            connector = try AgentConnector(transport: transport)
            let watch = Stopwatch()
            let deadline = Deadline.after(seconds: config.hypervisor.bootTimeoutSeconds)
            if options.shareFilesystem {
                let shared = SharedDirectory(kind: config.hypervisor.sharedFS, hostPath: runDirectory + "/shared",
                                             tag: SharedFiles.tag, socketPath: runDirectory + "/virtiofs.sock")
                try SharedFiles.prepare(shared.hostPath)
                if shared.kind == .virtioFS {
                    virtiofsd = try VirtioFSDaemon.start(binary: config.hypervisor.virtiofsd, sharedDirectory: shared.hostPath,
                                                         socketPath: shared.socketPath, logPath: runDirectory + "/virtiofsd.log",
                                                         until: deadline, logger: logger)
                }
                vmSpec.shared = shared
            }
            if let path = options.networkNamespace {
                let model: PodNetwork.Model = switch config.runtime.networkModel {
                case .tcfilter: .tcfilter
                case .macvtap: .macvtap
                }
                network = try PodNetwork.attach(namespacePath: path, model: model, scratch: runDirectory, logger: logger)
                network!.record(to: runDirectory + "/" + StaleSandboxes.networkFile)
                vmSpec.networkDevices = network!.interfaces.enumerated().map { n, iface in
                    NetworkDevice(id: "net\(n)", mac: iface.mac.description, mtu: iface.mtu, tapDescriptor: iface.tapDescriptor)
                }
                vmSpec.vhostNet = accel == .kvm && Files.exists("/dev/vhost-net")
            }
            vm = try VirtualMachine.launch(vmSpec, qemuLogPath: runDirectory + "/qemu.log", logger: logger)
            let fd = try connector!.connect(to: vm!, until: deadline)
            do throws(AgentAPIError) {
                agent = try AgentClient(stream: DescriptorStream(fd), logger: logger)
            } catch {
                throw HypervisorError(error.code, error.message, consoleTail: vm!.consoleTail())
            }
            let health: Cocoon_Agent_V1_HealthResponse
            do throws(AgentAPIError) {
                health = try agent!.health(timeout: max(deadline.remainingSeconds, 0.001))
            } catch {
                if let t = vm!.waitForExit(until: .after(seconds: 1)) {
                    throw vm!.unexpectedExitError(t, while: "waiting for the agent's first answer")
                }
                if error.code == .deadlineExceeded {
                    throw HypervisorError(.deadlineExceeded,
                        "the guest agent did not answer within hypervisor.boot_timeout_seconds = \(config.hypervisor.bootTimeoutSeconds)",
                        consoleTail: vm!.consoleTail())
                }
                throw HypervisorError(error.code, error.message, consoleTail: vm!.consoleTail())
            }
            if let shared = vmSpec.shared {
                do throws(AgentAPIError) {
                    try agent!.createSandbox(.with {
                        $0.sandboxID = id
                        $0.hostname = options.hostname
                        $0.storages = [.with {
                            $0.fstype = shared.kind == .virtioFS ? "virtiofs" : "9p"
                            $0.source = shared.tag
                            $0.mountPoint = SharedFiles.guestMountPoint
                        }]
                    }, timeout: max(deadline.remainingSeconds, 5))
                } catch {
                    throw SandboxError(error.code, "setting up the guest: \(error.message)", consoleTail: vm!.consoleTail())
                }
            }
            if let network {
                do throws(AgentAPIError) {
                    try agent!.configureNetwork(network.agentRequest(), timeout: max(deadline.remainingSeconds, 5))
                } catch {
                    throw SandboxError(error.code, "configuring the guest network: \(error.message)", consoleTail: vm!.consoleTail())
                }
            }
            let seconds = watch.elapsedSeconds
            logger.info("sandbox booted", metadata: [
                "id": "\(id)", "seconds": "\(String(format: "%.3f", seconds))", "accel": "\(accel.rawValue)",
                "machine": "\(spec.machine.rawValue)",
            ])
            return Sandbox(id: id, runDirectory: runDirectory, vm: vm!, agent: agent!, accelerator: accel,
                           bootSeconds: seconds, firstHealth: health, shared: vmSpec.shared, virtiofsd: virtiofsd,
                           network: network, connector: connector!, logger: logger)
        } catch {
            agent?.close()
            vm?.stop(grace: 1)
            virtiofsd?.stop()
            network?.detach()
            connector?.close()
            SharedFiles.unmountAll(under: runDirectory)
            Files.removeTree(runDirectory)
            throw SandboxError(error.code, error.message, consoleTail: error.consoleTail)
        }
    }

    private init(id: String, runDirectory: String, vm: VirtualMachine, agent: AgentClient, accelerator: Accelerator,
                 bootSeconds: Double, firstHealth: Cocoon_Agent_V1_HealthResponse, shared: SharedDirectory?,
                 virtiofsd: VirtioFSDaemon?, network: PodNetwork?, connector: AgentConnector, logger: Logger) {
        self.shared = shared
        self.network = network
        self.virtiofsd = virtiofsd
        self.id = id
        self.runDirectory = runDirectory
        self.vm = vm
        self.agent = agent
        self.accelerator = accelerator
        self.bootSeconds = bootSeconds
        self.firstHealth = firstHealth
        self.connector = connector
        self.logger = logger
    }

    var isStopped: Bool { lock.withLock { stopped } }

    public func health(timeout: Double = 5) throws(SandboxError) -> Cocoon_Agent_V1_HealthResponse {
        do throws(AgentAPIError) {
            return try agent.health(timeout: timeout)
        } catch {
            throw SandboxError(error.code, error.message, consoleTail: vm.consoleTail())
        }
    }

    /// Orderly: the agent powers the guest off; if that does not end QEMU in time, QMP quit,
    /// then SIGKILL. Always removes the run directory. Safe to call twice.
    @discardableResult
    public func shutdown(timeout: Double = 5) -> Termination? {
        let first = lock.withLock { () -> Bool in
            defer { stopped = true }
            return !stopped
        }
        guard first else { return vm.exited }
        monitorWake.withLock { monitorWake.broadcast() }
        lock.withLock { controlListener }?.close()
        let deadline = Deadline.after(seconds: timeout)
        var termination: Termination?
        if vm.exited == nil && failure == nil {
            do throws(AgentAPIError) {
                try agent.shutdown(timeout: max(deadline.remainingSeconds, 0.001))
                termination = vm.waitForExit(until: deadline)
            } catch {
                logger.warning("agent shutdown failed: \(error.message); stopping QEMU")
            }
        }
        let final = termination ?? vm.stop()
        agent.close()
        virtiofsd?.stop()
        network?.detach()
        connector.close()
        SharedFiles.unmountAll(under: runDirectory)
        Files.removeTree(runDirectory)
        logger.debug("sandbox stopped", metadata: ["id": "\(id)", "qemu": "\(final)"])
        return final
    }
}

extension Error {
    var code: StatusCodes.StatusCode { (self as? any CocoonError)?.code ?? .internal }
    var message: String { (self as? any CocoonError)?.message ?? "\(self)" }
    var consoleTail: [String] {
        (self as? HypervisorError)?.consoleTail ?? (self as? SandboxError)?.consoleTail ?? []
    }
}
