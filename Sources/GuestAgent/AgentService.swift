import AgentAPI
import Logging
import Mux
import Netlink
import StatusCodes
import SystemCalls
import TTRPC
#if canImport(Glibc)
import Glibc
#endif

/// The agent API's handlers. Transport-free: the same service runs behind a mux on virtio-serial,
/// vsock or a unix socket. The guest methods are here; the container methods in Containers/ContainerMethods.swift.
public final class AgentService: Sendable {
    public enum Mode: Sendable {
        /// PID 1 in a VM: Shutdown powers the guest off.
        case guest
        /// A plain host process (tests, development): Shutdown ends the process.
        case hostProcess
    }

    let mode: Mode
    let logger: Logger
    /// Runs after the Shutdown answer is on the wire.
    let onShutdown: @Sendable () -> Void
    let containers: GuestContainers
    let stateRoot: String

    /// `stateRoot` holds the agent's container state and guest bundles (/run/cocoon in a guest).
    public init(mode: Mode, stateRoot: String, logger: Logger, onShutdown: @escaping @Sendable () -> Void) {
        self.mode = mode
        self.logger = logger
        self.onShutdown = onShutdown
        self.stateRoot = stateRoot
        // The container init stage is this very binary (see AgentMain.run).
        let exe = (try? Files.readLink("/proc/self/exe")) ?? "/init"
        // Booted from the read-only image, the binary cannot change: no sealed copy of it is needed.
        let immutable = mode == .guest && GuestInit.rootIsReadOnlyDisk(containing: exe)
        containers = GuestContainers(stateRoot: stateRoot, initExecutable: exe, initIsImmutable: immutable, logger: logger)
        if mode == .guest {
            logger.info("containers' init stage", metadata: ["from": "\(immutable ? "the read-only image" : "a sealed copy")"])
        }
    }

    /// The service for one host session: stdio channels live on that session's mux.
    public func ttrpcService(mux: Mux) -> TTRPCService {
        var s = TTRPCService(AgentChannel.service)
        registerContainerMethods(&s, mux: mux)
        s.unary("Health") { [self] (_, _: Cocoon_Agent_V1_HealthRequest) in health() }
        s.unary("GuestDetails") { [self] (_, _: Cocoon_Agent_V1_GuestDetailsRequest) in guestDetails() }
        s.unary("ConfigureNetwork") { [self] (_, r: Cocoon_Agent_V1_ConfigureNetworkRequest) -> Cocoon_Agent_V1_Empty in
            // A host-process agent must not reconfigure the host it runs on.
            guard mode == .guest else {
                throw GuestAgentError(.failedPrecondition, "ConfigureNetwork only changes a guest's network, not a host-process agent's")
            }
            let socket: RouteSocket
            do throws(NetlinkError) {
                socket = try RouteSocket.open()
            } catch {
                throw GuestAgentError(error.code, error.message)
            }
            defer { socket.close() }
            try GuestNetwork.configure(r, socket: socket, logger: logger)
            return Cocoon_Agent_V1_Empty()
        }
        s.unary("SetTime") { [self] (_, r: Cocoon_Agent_V1_SetTimeRequest) in try setTime(r) }
        s.unary("Shutdown") { [onShutdown, logger, containers] (context, _: Cocoon_Agent_V1_ShutdownRequest) -> Cocoon_Agent_V1_Empty in
            logger.info("shutdown requested")
            context.afterResponse.add { [containers] in
                containers.removeAll()
                onShutdown()
            }
            return Cocoon_Agent_V1_Empty()
        }
        return s
    }

    func health() -> Cocoon_Agent_V1_HealthResponse {
        let uptime = (try? Files.readString("/proc/uptime")).flatMap { Double($0.split(separator: " ").first ?? "") } ?? 0
        return .with {
            $0.agentVersion = CocoonVersion.string
            $0.kernelRelease = Self.kernelRelease()
            $0.uptimeSeconds = uptime
            $0.pid = getpid()
            $0.agentRssKib = Self.kibValue("VmRSS:", in: "/proc/self/status")
            $0.memoryTotalKib = Self.kibValue("MemTotal:", in: "/proc/meminfo")
        }
    }

    func guestDetails() -> Cocoon_Agent_V1_GuestDetailsResponse {
        let filesystems = ((try? Files.readString("/proc/filesystems")) ?? "").split(separator: "\n").compactMap {
            $0.split(separator: "\t").last.map(String.init)
        }
        return .with {
            $0.agentVersion = CocoonVersion.string
            $0.kernelRelease = Self.kernelRelease()
            $0.onlineCpus = UInt32(max(0, sysconf(Int32(_SC_NPROCESSORS_ONLN))))
            $0.memoryTotalKib = Self.kibValue("MemTotal:", in: "/proc/meminfo")
            $0.filesystems = filesystems
            $0.cgroup2 = Files.exists("/sys/fs/cgroup/cgroup.controllers")
        }
    }

    func setTime(_ r: Cocoon_Agent_V1_SetTimeRequest) throws -> Cocoon_Agent_V1_Empty {
        guard mode == .guest else {
            throw TTRPCError(.failedPrecondition, "SetTime only changes the clock of a guest, not of a host-process agent")
        }
        guard r.unixNanoseconds > 0 else {
            throw TTRPCError(.invalidArgument, "unix_nanoseconds must be positive, got \(r.unixNanoseconds)")
        }
        var ts = timespec(tv_sec: Int(r.unixNanoseconds / 1_000_000_000), tv_nsec: Int(r.unixNanoseconds % 1_000_000_000))
        guard clock_settime(CLOCK_REALTIME, &ts) == 0 else {
            throw TTRPCError(.internal, "clock_settime: \(SystemError("clock_settime").message)")
        }
        return Cocoon_Agent_V1_Empty()
    }

    static func kernelRelease() -> String {
        var name = utsname()
        uname(&name)
        return withUnsafePointer(to: name.release) {
            String(cString: UnsafeRawPointer($0).assumingMemoryBound(to: CChar.self))
        }
    }

    static func kibValue(_ key: String, in path: String) -> UInt64 {
        guard let text = try? Files.readString(path) else { return 0 }
        for line in text.split(separator: "\n") where line.hasPrefix(key) {
            let fields = line.split(separator: " ", omittingEmptySubsequences: true)
            if fields.count >= 2, let v = UInt64(fields[1]) { return v }
        }
        return 0
    }
}
